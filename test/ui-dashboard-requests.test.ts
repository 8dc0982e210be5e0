import type { IncomingMessage } from 'node:http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatRuleProblems, parseRuleWords } from '../policy/forwards/rule-words.js';
import { auditQuerySchema, parseAuditLine } from '../ui/server/audit-log.js';
import {
  authenticate,
  isLoopbackHost,
  newDashboardToken,
  sessionCookieName,
  tokenMatches,
} from '../ui/server/dashboard-auth.js';
import {
  forwardFormSchema,
  forwardFormWords,
  parseForwardForm,
  parseNatTraversalForm,
} from '../ui/server/dashboard-requests.js';

const NOW_UNIX_SECONDS = 1_800_000_000;
const FORM_KEYS = ['proto', 'port', 'to-port', 'src', 'expire', 'comment'] as const;

describe('forward form', () => {
  it('accepts a valid form as the CLI does', () => {
    const form = { proto: 'tcp', port: '8443', 'to-port': '443', expire: '+3600', comment: 'web' };
    const result = parseForwardForm(form, NOW_UNIX_SECONDS);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.words).toEqual([
      'proto=tcp',
      'port=8443',
      'to-port=443',
      'expire=+3600',
      'comment=web',
    ]);
    expect(result.fields.expiresAtUnixSeconds).toBe(NOW_UNIX_SECONDS + 3600);
    expect(result.fields.targetPorts).toEqual({ first: 443, last: 443 });
  });

  it('puts the CLI message on the port field', () => {
    const result = parseForwardForm({ proto: 'tcp', port: '70000' }, NOW_UNIX_SECONDS);
    const cli = parseRuleWords(['proto=tcp', 'port=70000'], NOW_UNIX_SECONDS);
    expect(result.ok).toBe(false);
    expect(cli.ok).toBe(false);
    if (result.ok || cli.ok) return;
    expect(result.fieldErrors.port).toEqual([formatRuleProblems(cli.problems)]);
    expect(result.formErrors).toEqual([]);
  });

  it('reports every invalid field at once', () => {
    const result = parseForwardForm(
      { proto: 'icmp', port: '', src: '10.0.0.1/8', expire: '+0', comment: 'a\nb' },
      NOW_UNIX_SECONDS,
    );
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(Object.keys(result.fieldErrors).sort()).toEqual([
      'comment',
      'expire',
      'port',
      'proto',
      'src',
    ]);
    expect(result.fieldErrors.port?.[0]).toBe('port= is missing; add port=N or port=FIRST-LAST');
  });

  it('keeps a value with spaces in one word', () => {
    expect(forwardFormWords({ proto: 'tcp', port: '80 comment=x' })).toEqual([
      'proto=tcp',
      'port=80 comment=x',
    ]);
    expect(parseForwardForm({ proto: 'tcp', port: '80 comment=x' }, NOW_UNIX_SECONDS).ok).toBe(
      false,
    );
  });

  it('rejects unknown and overlong fields in the schema', () => {
    expect(forwardFormSchema.safeParse({ proto: 'tcp', action: 'accept' }).success).toBe(false);
    expect(forwardFormSchema.safeParse({ port: '1'.repeat(65) }).success).toBe(false);
    expect(forwardFormSchema.safeParse({ port: 80 }).success).toBe(false);
    expect(forwardFormSchema.safeParse([]).success).toBe(false);
  });

  it('never throws and attaches errors to known fields', () => {
    const formArbitrary = fc.record(
      Object.fromEntries(FORM_KEYS.map((key) => [key, fc.string({ maxLength: 20 })])),
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(formArbitrary, (form) => {
        const result = parseForwardForm(form, NOW_UNIX_SECONDS);
        if (!result.ok) {
          for (const key of Object.keys(result.fieldErrors)) {
            expect(FORM_KEYS as readonly string[]).toContain(key);
          }
          expect(Object.keys(result.fieldErrors).length + result.formErrors.length).toBeGreaterThan(
            0,
          );
        }
      }),
    );
  });

  it('accepts every valid single port', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 65535 }),
        fc.constantFrom('tcp', 'udp'),
        (port, proto) => {
          const result = parseForwardForm({ proto, port: String(port) }, NOW_UNIX_SECONDS);
          expect(result.ok).toBe(true);
        },
      ),
    );
  });
});

describe('NAT traversal form', () => {
  it('maps empty values to removed features', () => {
    const result = parseNatTraversalForm({
      enabled: true,
      ports: ' ',
      protocols: '',
      maxLeaseSeconds: '',
    });
    expect(result).toEqual({
      ok: true,
      features: { enabled: '1', ports: null, protocols: null, maxLease: null },
    });
  });

  it('puts each invalid value on its field', () => {
    const ports = parseNatTraversalForm({
      enabled: false,
      ports: '80-90000',
      protocols: '',
      maxLeaseSeconds: '',
    });
    expect(ports.ok).toBe(false);
    if (!ports.ok)
      expect(ports.fieldErrors.ports?.[0]).toContain('invalid nat-traversal-ports="80-90000"');
    const lease = parseNatTraversalForm({
      enabled: true,
      ports: '',
      protocols: 'tcp',
      maxLeaseSeconds: '0',
    });
    expect(lease.ok).toBe(false);
    if (!lease.ok)
      expect(lease.fieldErrors.maxLeaseSeconds?.[0]).toContain('nat-traversal-max-lease');
    const protocols = parseNatTraversalForm({
      enabled: true,
      ports: '',
      protocols: 'icmp',
      maxLeaseSeconds: '',
    });
    expect(protocols.ok).toBe(false);
    if (!protocols.ok) expect(protocols.fieldErrors.protocols).toHaveLength(1);
  });

  it('never throws on any text', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.string(),
        fc.string(),
        fc.string(),
        (enabled, ports, protocols, maxLeaseSeconds) => {
          parseNatTraversalForm({ enabled, ports, protocols, maxLeaseSeconds });
        },
      ),
    );
  });
});

describe('audit log lines', () => {
  it('parses a pino line and keeps its own fields', () => {
    const line = JSON.stringify({
      level: 30,
      time: 5,
      pid: 1,
      hostname: 'h',
      name: 'dom0',
      qube: 'work',
      msg: 'forward added',
    });
    expect(parseAuditLine(line)).toEqual({
      timeUnixMs: 5,
      level: 'info',
      component: 'dom0',
      message: 'forward added',
      details: { qube: 'work' },
    });
  });

  it('skips foreign lines and never throws', () => {
    expect(parseAuditLine('not json')).toBeNull();
    expect(parseAuditLine('[1,2]')).toBeNull();
    expect(parseAuditLine('{"level":"x","time":1}')).toBeNull();
    fc.assert(fc.property(fc.string(), (line) => void parseAuditLine(line)));
    fc.assert(fc.property(fc.jsonValue(), (value) => void parseAuditLine(JSON.stringify(value))));
  });

  it('validates the filters strictly', () => {
    expect(auditQuerySchema.safeParse({ level: 'info', qube: 'work', limit: '50' }).success).toBe(
      true,
    );
    expect(auditQuerySchema.safeParse({ level: 'loud' }).success).toBe(false);
    expect(auditQuerySchema.safeParse({ qube: '../etc' }).success).toBe(false);
    expect(auditQuerySchema.safeParse({ limit: '100000' }).success).toBe(false);
    expect(auditQuerySchema.safeParse({ order: 'asc' }).success).toBe(false);
  });
});

describe('dashboard access', () => {
  const token = newDashboardToken();
  const fakeRequest = (headers: Record<string, string>, method = 'GET') =>
    ({ headers, method }) as unknown as IncomingMessage;
  const url = (path: string) => new URL(path, 'http://127.0.0.1:4000');

  it('compares tokens exactly', () => {
    expect(tokenMatches(token, token)).toBe(true);
    expect(tokenMatches(`${token}x`, token)).toBe(false);
    expect(tokenMatches('', token)).toBe(false);
    fc.assert(
      fc.property(
        fc.string(),
        (candidate) => tokenMatches(candidate, token) === (candidate === token),
      ),
    );
  });

  it('accepts only loopback Host headers of its port', () => {
    expect(isLoopbackHost('127.0.0.1:4000', 4000)).toBe(true);
    expect(isLoopbackHost('localhost:4000', 4000)).toBe(true);
    expect(isLoopbackHost('127.0.0.1:4001', 4000)).toBe(false);
    expect(isLoopbackHost('attacker.example:4000', 4000)).toBe(false);
    expect(isLoopbackHost(undefined, 4000)).toBe(false);
  });

  it('takes the token from bearer, cookie or the page URL', () => {
    const cookie = `${sessionCookieName(4000)}=${token}`;
    expect(
      authenticate(
        fakeRequest({ authorization: `Bearer ${token}` }),
        url('/api/qubes'),
        4000,
        token,
      ).ok,
    ).toBe(true);
    expect(
      authenticate(fakeRequest({ cookie: `a=b; ${cookie}` }), url('/api/qubes'), 4000, token).ok,
    ).toBe(true);
    expect(authenticate(fakeRequest({}), url(`/?token=${token}`), 4000, token)).toEqual({
      ok: true,
      via: 'query',
    });
  });

  it('rejects the token in an API URL and a cookie of another port', () => {
    expect(authenticate(fakeRequest({}), url(`/api/qubes?token=${token}`), 4000, token).ok).toBe(
      false,
    );
    expect(authenticate(fakeRequest({}, 'POST'), url(`/?token=${token}`), 4000, token).ok).toBe(
      false,
    );
    const otherPort = `${sessionCookieName(4001)}=${token}`;
    expect(authenticate(fakeRequest({ cookie: otherPort }), url('/'), 4000, token).ok).toBe(false);
    expect(
      authenticate(fakeRequest({ authorization: `Basic ${token}` }), url('/'), 4000, token).ok,
    ).toBe(false);
  });
});
