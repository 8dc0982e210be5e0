import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LabSession } from '../lab/lab-session.js';
import type { Dashboard } from '../ui/server/dashboard-server.js';
import { startLabDashboard } from '../ui/server/lab-dashboard.js';

/**
 * The dashboard in a real browser (Debian's chromium driven by
 * playwright-core) against a full lab: every change is checked on the nft
 * rulesets of the hops, and the CLI and the page see each other's changes.
 * Screenshots of each view go to docs/screenshots/.
 */

const logger = pino({ level: process.env.QNB_TEST_LOG_LEVEL ?? 'silent' });
const SCREENSHOTS = join(process.cwd(), 'docs', 'screenshots');
const VIEWPORT = { width: 1280, height: 800 };
const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-extensions',
];

/** Sends one request with full control of the headers (fetch does not allow setting Host). */
function rawRequest(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const outgoing = request(
      { host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers },
      (response) => {
        let body = '';
        response.setEncoding('utf8').on('data', (chunk: string) => {
          body += chunk;
        });
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      },
    );
    outgoing.on('error', reject);
    outgoing.end(options.body);
  });
}

describe('dom0 dashboard in a browser', () => {
  let lab: LabSession;
  let dashboard: Dashboard;
  let browser: BrowserContext;
  let page: Page;
  let userDataDir: string;
  let token: string;

  const forwardRows = () => page.locator('section[aria-labelledby="forwards-heading"] tbody tr');
  const screenshot = (name: string) => page.screenshot({ path: join(SCREENSHOTS, name) });
  const hopRules = async (vm: string) => lab.ruleset(vm);

  beforeAll(async () => {
    lab = await LabSession.open({ prefix: 'hg1', logger });
    dashboard = await startLabDashboard(lab.state, logger, { pollIntervalMs: 500 });
    token = new URL(dashboard.loginUrl).searchParams.get('token') ?? '';
    await mkdir(SCREENSHOTS, { recursive: true });
    userDataDir = await mkdtemp(join(tmpdir(), 'hg1-chromium-'));
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: '/usr/bin/chromium',
      args: CHROMIUM_ARGS,
      viewport: VIEWPORT,
    });
    page = browser.pages()[0] ?? (await browser.newPage());
    await page.goto(dashboard.loginUrl);
    await page.getByText('Live', { exact: true }).waitFor();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    await lab?.close();
    if (userDataDir !== undefined) await rm(userDataDir, { recursive: true, force: true });
  });

  it('refuses requests without the token', async () => {
    expect((await rawRequest(dashboard.port, '/api/qubes')).status).toBe(401);
    expect((await rawRequest(dashboard.port, '/')).status).toBe(401);
    expect((await rawRequest(dashboard.port, '/api/events')).status).toBe(401);
    expect((await rawRequest(dashboard.port, `/api/qubes?token=${token}`)).status).toBe(401);
    const wrong = { Authorization: `Bearer ${'x'.repeat(43)}` };
    expect((await rawRequest(dashboard.port, '/api/qubes', { headers: wrong })).status).toBe(401);
    const bearer = { Authorization: `Bearer ${token}` };
    expect((await rawRequest(dashboard.port, '/api/qubes', { headers: bearer })).status).toBe(200);
  });

  it('refuses a foreign Host and a cross-origin change', async () => {
    const bearer = { Authorization: `Bearer ${token}` };
    const rebound = await rawRequest(dashboard.port, '/api/qubes', {
      headers: { ...bearer, Host: `attacker.example:${dashboard.port}` },
    });
    expect(rebound.status).toBe(403);
    const crossOrigin = await rawRequest(dashboard.port, '/api/qubes/work/forwards', {
      method: 'POST',
      headers: { ...bearer, Origin: 'http://attacker.example', 'Content-Type': 'application/json' },
      body: JSON.stringify({ proto: 'tcp', port: '7000' }),
    });
    expect(crossOrigin.status).toBe(403);
    const formPost = await rawRequest(dashboard.port, '/api/qubes/work/forwards', {
      method: 'POST',
      headers: { ...bearer, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'proto=tcp&port=7000',
    });
    expect(formPost.status).toBe(415);
  });

  it('sets a strict HttpOnly cookie and a CSP', async () => {
    const cookies = await browser.cookies();
    const session = cookies.find((cookie) => cookie.name === `qnb_dashboard_${dashboard.port}`);
    expect(session?.httpOnly).toBe(true);
    expect(session?.sameSite).toBe('Strict');
    expect(page.url()).toBe(dashboard.url);
    const response = await page.request.get(dashboard.url);
    expect(response.headers()['content-security-policy']).toContain("default-src 'self'");
  });

  it('shows the qubes with their network chain', async () => {
    await page.goto(`${dashboard.url}#/qubes`);
    const workRow = page.locator('tbody tr', { has: page.getByRole('link', { name: 'work' }) });
    await expect.poll(() => workRow.textContent()).toContain('work → sys-firewall → sys-net');
    await screenshot('qubes.png');
  });

  it('adds a forward that reaches every hop', async () => {
    await page.getByRole('link', { name: 'work', exact: true }).click();
    await page.getByRole('heading', { name: 'Qube work' }).waitFor();
    await expect.poll(() => page.locator('.firewall tbody').textContent()).toContain('accept');

    await page.getByLabel('Protocol', { exact: true }).selectOption('tcp');
    await page.getByLabel('External port(s)').fill('8443');
    await page.getByLabel('Port in the qube').fill('443');
    await page.getByLabel('Expires', { exact: true }).fill('+3600');
    await page.getByLabel('Comment').fill('web');
    await page.getByRole('button', { name: 'Add forward' }).click();

    await expect
      .poll(() => page.getByRole('status').filter({ hasText: 'Added' }).textContent())
      .toContain('qvm-forward work add proto=tcp port=8443 to-port=443 expire=+3600 comment=web');
    await expect.poll(() => forwardRows().first().textContent()).toMatch(/8443.*443.*in (59m|1h)/);
    expect(await hopRules('sys-net')).toContain('tcp . 8443');
    expect(await hopRules('sys-firewall')).toContain('tcp . 8443');
    expect(await hopRules('work')).toContain('tcp . 443');
    expect((await lab.qvmForward('--raw', 'work')).stdout).toContain('port=8443 to-port=443');
    await screenshot('qube-work.png');
  });

  it('shows the CLI message next to an invalid port', async () => {
    const cli = await lab.qvmForward('work', 'add', 'proto=tcp', 'port=70000');
    expect(cli.exitCode).toBe(2);
    const cliMessage = cli.stderr.split('\n')[0]?.replace(/^qvm-forward: /, '') ?? '';
    expect(cliMessage).toContain('70000');

    await page.getByLabel('External port(s)').fill('70000');
    await page.getByLabel('Port in the qube').fill('');
    await page.getByRole('button', { name: 'Add forward' }).click();
    const error = page.locator('#fw-port-error');
    await expect.poll(() => error.textContent()).toBe(cliMessage);
    expect(await page.getByLabel('External port(s)').getAttribute('aria-invalid')).toBe('true');
    await expect.poll(() => page.evaluate('document.activeElement?.id')).toBe('fw-port');
    await screenshot('qube-work-invalid-port.png');
    expect(await forwardRows().count()).toBe(1);
  });

  it('edits a forward in one change', async () => {
    await page.getByRole('button', { name: /^Edit forward 0/ }).click();
    await page.getByLabel('External port(s)').fill('8444');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await expect.poll(() => forwardRows().first().textContent()).toContain('8444');
    const sysNet = await hopRules('sys-net');
    expect(sysNet).toContain('tcp . 8444');
    expect(sysNet).not.toContain('tcp . 8443');
    expect(await hopRules('work')).toContain('tcp . 443');
    expect((await lab.qvmForward('--raw', 'work')).stdout).toContain('port=8444 to-port=443');
  });

  it('shows a change made with the CLI', async () => {
    const added = await lab.qvmForward('work', 'add', 'proto=udp', 'port=5000', 'comment=from-cli');
    expect(added.exitCode).toBe(0);
    await expect.poll(() => forwardRows().count()).toBe(2);
    expect(await forwardRows().nth(1).textContent()).toContain('from-cli');
  });

  it('deletes a forward from the keyboard', async () => {
    await page.getByRole('button', { name: /^Delete forward 1 \(udp 5000\)/ }).focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => forwardRows().count()).toBe(1);
    expect((await lab.qvmForward('--raw', 'work')).stdout).not.toContain('5000');

    await page.getByRole('button', { name: /^Delete forward 0/ }).click();
    await expect.poll(() => forwardRows().first().textContent()).toContain('no forwards');
    expect(await hopRules('sys-net')).not.toContain('tcp . 8444');
    expect(await hopRules('sys-firewall')).not.toContain('tcp . 8444');
    expect(await hopRules('work')).not.toContain('tcp . 443');
  });

  it('switches NAT traversal on with its limits', async () => {
    await page.getByLabel('Allowed ports').fill('80-90000');
    await page.getByRole('button', { name: 'Save NAT traversal settings' }).click();
    await expect
      .poll(() => page.locator('#nat-ports-error').textContent())
      .toContain('invalid nat-traversal-ports="80-90000"');

    await page.getByLabel(/Allow this qube to request port mappings/).check();
    await page.getByLabel('Allowed ports').fill('8000-9000');
    await page.getByLabel('Longest lease (seconds)').fill('1800');
    await page.getByRole('button', { name: 'Save NAT traversal settings' }).click();
    await expect
      .poll(() => page.locator('.nat-state').textContent())
      .toContain('On: tcp, udp on ports 8000-9000, leases up to 1800 s');
    const feature = await lab.exec('dom0', ['qvm-features', 'work', 'nat-traversal-ports']);
    expect(feature.stdout.trim()).toBe('8000-9000');
    expect((await lab.exec('dom0', ['qvm-features', 'work', 'nat-traversal'])).stdout.trim()).toBe(
      '1',
    );
    await screenshot('qube-work-nat-traversal.png');
  });

  it('answers a prompt and revokes the mapping', async () => {
    await page.goto(`${dashboard.url}#/prompts`);
    const upnpc = lab.exec('work', ['upnpc', '-i', '-a', '10.137.0.20', '8080', '8080', 'TCP'], {
      timeoutMs: 45_000,
    });
    const allow = page.getByRole('button', {
      name: /^Allow: sys-nat asks to map TCP port 8080 of work/,
    });
    await allow.waitFor({ timeout: 30_000 });
    await screenshot('prompts.png');

    // Reach the Allow button with Tab alone, as a keyboard user would.
    await page.locator('main h2').focus();
    for (let step = 0; step < 40; step++) {
      const focused = await page.evaluate("document.activeElement?.textContent ?? ''");
      if (focused === 'Allow') break;
      await page.keyboard.press('Tab');
    }
    await page.keyboard.press('Enter');
    const result = await upnpc;
    expect(result.stdout).toContain('is redirected to internal 10.137.0.20:8080');

    await page.getByRole('link', { name: /Mappings/ }).click();
    const row = page.locator('tbody tr', { hasText: '8080' });
    await expect.poll(() => row.textContent()).toMatch(/work.*tcp.*8080.*upnp.*in (29m|30m)/);
    await expect.poll(() => row.textContent(), { timeout: 20_000 }).toContain('203.0.113.1:8080');
    expect(await hopRules('sys-net')).toContain('tcp . 8080');
    await screenshot('mappings.png');

    await page.getByRole('button', { name: 'Revoke mapping work tcp 8080' }).click();
    await expect.poll(() => page.locator('tbody').textContent()).toContain('No live mappings');
    for (const vm of ['sys-net', 'sys-firewall', 'work']) {
      expect(await hopRules(vm), vm).not.toContain('tcp . 8080');
    }
    expect((await lab.qvmForward('--raw', 'work')).stdout).not.toContain('8080');
  });

  it('filters the audit log', async () => {
    await page.goto(`${dashboard.url}#/audit`);
    await page.getByLabel('Text').fill('lease revoked');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await expect.poll(() => page.locator('tbody').textContent()).toContain('lease revoked');
    await page.getByLabel('Text').fill('');
    await page.getByLabel('Qube').selectOption('work');
    await expect.poll(() => page.locator('tbody').textContent()).toContain('forward added');
    await screenshot('audit.png');
  });

  it('fits a narrow window', async () => {
    await page.setViewportSize({ width: 400, height: 800 });
    await page.goto(`${dashboard.url}#/qubes/work`);
    await page.getByRole('heading', { name: 'Qube work' }).waitFor();
    const overflow = await page.evaluate(
      'document.documentElement.scrollWidth - document.documentElement.clientWidth',
    );
    expect(overflow).toBeLessThanOrEqual(0);
    await page.screenshot({ path: join(SCREENSHOTS, 'qube-work-narrow.png') });
    await page.setViewportSize(VIEWPORT);
  });
});
