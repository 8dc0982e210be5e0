import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_SOAP_BODY_BYTES,
  parseSoapActionHeader,
  parseSoapBody,
  SoapParseErrorCode,
} from '../broker/igd/soap-request-parser.js';
import { escapeXml } from '../broker/igd/xml-escape.js';

const WANIP1 = 'urn:schemas-upnp-org:service:WANIPConnection:1';

const envelope = (inner: string) =>
  '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
  `s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>${inner}</s:Body></s:Envelope>`;

describe('parseSoapActionHeader', () => {
  it('accepts the quoted form', () => {
    const result = parseSoapActionHeader(`"${WANIP1}#AddPortMapping"`);
    expect(result).toEqual({
      ok: true,
      value: {
        serviceType: WANIP1,
        serviceName: 'WANIPConnection',
        serviceVersion: 1,
        actionName: 'AddPortMapping',
      },
    });
  });

  it('accepts the bare form', () => {
    const result = parseSoapActionHeader(`${WANIP1}#GetStatusInfo`);
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.value.actionName).toBe('GetStatusInfo');
  });

  for (const value of [
    undefined,
    '',
    '""',
    WANIP1,
    `urn:evil:service:X:1#Add`,
    `${WANIP1}#`,
    `${WANIP1}#Add Port`,
    `"${WANIP1}#A${'a'.repeat(300)}"`,
  ]) {
    it(`rejects ${JSON.stringify(value)?.slice(0, 40)}`, () => {
      expect(parseSoapActionHeader(value).ok).toBe(false);
    });
  }

  it('never throws', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), (value) => {
        expect(typeof parseSoapActionHeader(value).ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });
});

describe('parseSoapBody', () => {
  it('parses a miniupnpc AddPortMapping body', () => {
    const body = envelope(
      `<u:AddPortMapping xmlns:u="${WANIP1}"><NewRemoteHost></NewRemoteHost>` +
        '<NewExternalPort>8080</NewExternalPort><NewProtocol>TCP</NewProtocol>' +
        '<NewInternalPort>8080</NewInternalPort><NewInternalClient>10.201.0.2</NewInternalClient>' +
        '<NewEnabled>1</NewEnabled><NewPortMappingDescription>a &amp; b &lt;c&gt;</NewPortMappingDescription>' +
        '<NewLeaseDuration>0</NewLeaseDuration></u:AddPortMapping>',
    );
    const result = parseSoapBody(body);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.actionName).toBe('AddPortMapping');
    expect(result.value.arguments.get('NewRemoteHost')).toBe('');
    expect(result.value.arguments.get('NewExternalPort')).toBe('8080');
    expect(result.value.arguments.get('NewPortMappingDescription')).toBe('a & b <c>');
  });

  it('parses an action without arguments', () => {
    const result = parseSoapBody(
      envelope(`<u:GetStatusInfo xmlns:u="${WANIP1}"></u:GetStatusInfo>`),
    );
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.value.arguments.size).toBe(0);
  });

  it('parses a self-closing action', () => {
    const result = parseSoapBody(envelope(`<u:GetStatusInfo xmlns:u="${WANIP1}"/>`));
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.value.actionName).toBe('GetStatusInfo');
  });

  const hostile: Array<[string, string, SoapParseErrorCode]> = [
    [
      'internal entity',
      `<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x "boom">]>${envelope('<u:A><B>&x;</B></u:A>').replace('<?xml version="1.0"?>\r\n', '')}`,
      'doctype-forbidden',
    ],
    [
      'billion laughs',
      '<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;">]><l>&c;</l>',
      'doctype-forbidden',
    ],
    [
      'external entity',
      '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
      'doctype-forbidden',
    ],
    ['not XML', 'hello', 'malformed-xml'],
    ['unclosed tag', envelope('<u:A><B>1</u:A>'), 'malformed-xml'],
    ['no envelope', '<Body><A/></Body>', 'missing-envelope'],
    ['no body', '<s:Envelope xmlns:s="x"><s:Header/></s:Envelope>', 'missing-envelope'],
    ['empty body', envelope(''), 'missing-envelope'],
    ['two actions', envelope('<u:A/><u:B/>'), 'missing-action'],
    ['duplicate argument', envelope('<u:A><B>1</B><B>2</B></u:A>'), 'duplicate-argument'],
    ['nested argument', envelope('<u:A><B><script>x</script></B></u:A>'), 'nested-argument'],
    ['prototype key', envelope('<u:A><__proto__>1</__proto__></u:A>'), 'malformed-xml'],
  ];
  for (const [name, body, code] of hostile) {
    it(`rejects ${name}`, () => {
      const result = parseSoapBody(body);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.error.code).toBe(code);
    });
  }

  it('keeps an undeclared entity as literal text', () => {
    const result = parseSoapBody(envelope('<u:A><B>&xxe;</B></u:A>'));
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.value.arguments.get('B')).toBe('&xxe;');
  });

  it('rejects a body over the size limit', () => {
    const result = parseSoapBody(envelope(`<u:A><B>${'x'.repeat(MAX_SOAP_BODY_BYTES)}</B></u:A>`));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.code).toBe('too-large');
  });

  it('never throws on random text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 600 }), (text) => {
        expect(typeof parseSoapBody(text).ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });

  it('returns argument text for any escaped value', () => {
    const name = fc.stringMatching(/^[A-Za-z][A-Za-z0-9]{0,15}$/);
    fc.assert(
      fc.property(fc.dictionary(name, fc.string({ maxLength: 40 }), { maxKeys: 8 }), (args) => {
        const inner = Object.entries(args)
          .map(([key, value]) => `<${key}>${escapeXml(value)}</${key}>`)
          .join('');
        const result = parseSoapBody(envelope(`<u:Act xmlns:u="${WANIP1}">${inner}</u:Act>`));
        expect(result.ok).toBe(true);
        if (!result.ok) return;
        for (const [key, value] of result.value.arguments) {
          expect(typeof value).toBe('string');
          expect(Object.hasOwn(args, key)).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on mutated envelopes', () => {
    const fragment = fc.oneof(
      fc.constantFrom(
        '<',
        '>',
        '&',
        '&amp;',
        '&#0;',
        '<!DOCTYPE',
        ']]>',
        '<![CDATA[',
        '</u:A>',
        '<B>',
        '"',
        '\u0000',
      ),
      fc.string({ maxLength: 10 }),
    );
    fc.assert(
      fc.property(fc.array(fragment, { maxLength: 20 }), (parts) => {
        const result = parseSoapBody(envelope(`<u:A>${parts.join('')}</u:A>`));
        if (!result.ok) expect(Object.values(SoapParseErrorCode)).toContain(result.error.code);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('escapeXml', () => {
  it('escapes markup and replaces forbidden characters', () => {
    expect(escapeXml('<script>alert("x")</script>&\'')).toBe(
      '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&apos;',
    );
    expect(escapeXml('a\u0000b\u001fc\ud800')).toBe('a\ufffdb\ufffdc\ufffd');
    expect(escapeXml('emoji \u{1f600}')).toBe('emoji \u{1f600}');
  });
});
