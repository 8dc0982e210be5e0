import { join } from 'node:path';
import type { Logger } from '../../rpc/logger.js';
import { runCommand } from '../lab-exec.js';
import type { LabSession } from '../lab-session.js';
import { expectThat, ScenarioSteps } from './scenario-steps.js';

/**
 * The manual forward user story, end to end on a fresh lab: the dom0 user
 * forwards TCP 8443 on sys-net's LAN address to the HTTPS server on port 443
 * in `work`, a computer on the LAN reaches it, and nothing else changes.
 */

const EXTERNAL_PORT = 8443;
const SERVER_PORT = 443;
/** Attempts when waiting for the first packet after `qvm-forward add` returns. */
const FIRST_PACKET_ATTEMPTS = 50;

export async function runManualForwardScenario(
  session: LabSession,
  print: (line: string) => void,
  _logger: Logger,
): Promise<boolean> {
  const steps = new ScenarioSteps(print);
  const sysNetLan = session.state.addresses.sysNetLan;
  const lanPeer = session.state.addresses.lanPeer;
  const cert = join(session.state.runDir, 'work-https-cert.pem');
  const key = join(session.state.runDir, 'work-https-key.pem');

  const stockBefore = {
    sysFirewall: await stockFirewallTable(session, 'sys-firewall'),
    personal: await session.ruleset('personal'),
  };

  await steps.check('HTTPS server listens on port 443 in work', async () => {
    await runCommand([
      'openssl',
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=work',
      '-keyout',
      key,
      '-out',
      cert,
    ]);
    await session.startServer('work', 'https', SERVER_PORT, ['--cert', cert, '--key', key]);
    await session.startServer('personal', 'https', SERVER_PORT, ['--cert', cert, '--key', key]);
    return true;
  });

  await steps.check('lanpeer cannot reach work before the forward', async () => {
    const probe = await session.probe('lanpeer', 'https', sysNetLan, EXTERNAL_PORT);
    expectThat(!probe.reached, `unexpected reply: ${probe.reply}`);
    return true;
  });

  let addReturnedAtMs = 0;
  await steps.check(
    `dom0: qvm-forward work add proto=tcp port=${EXTERNAL_PORT} to-port=${SERVER_PORT} expire=+3600 comment=web`,
    async () => {
      const result = await session.qvmForward(
        'work',
        'add',
        'proto=tcp',
        `port=${EXTERNAL_PORT}`,
        `to-port=${SERVER_PORT}`,
        'expire=+3600',
        'comment=web',
      );
      addReturnedAtMs = performance.now();
      expectThat(result.exitCode === 0, `exit ${result.exitCode}: ${result.stderr.trim()}`);
      return true;
    },
  );

  await steps.check(
    `lanpeer opens https://${sysNetLan}:${EXTERNAL_PORT} and work sees its address`,
    async () => {
      for (let attempt = 1; attempt <= FIRST_PACKET_ATTEMPTS; attempt++) {
        const probe = await session.probe('lanpeer', 'https', sysNetLan, EXTERNAL_PORT, {
          timeoutMs: 300,
        });
        if (probe.reached) {
          const firstPacketMs = Math.round(performance.now() - addReturnedAtMs);
          expectThat(probe.reply.startsWith(`work saw ${lanPeer}:`), `wrong reply: ${probe.reply}`);
          return `"${probe.reply}", first reply ${firstPacketMs} ms after qvm-forward returned`;
        }
      }
      throw new Error(`no reply after ${FIRST_PACKET_ATTEMPTS} attempts`);
    },
  );

  await steps.check('dom0: qvm-forward work lists the forward', async () => {
    const result = await session.qvmForward('work');
    expectThat(result.exitCode === 0, result.stderr);
    const row = result.stdout.split('\n').find((line) => line.startsWith('0 '));
    expectThat(
      row !== undefined && /tcp\s+8443\s+443\s+-\s+in (59m|1h)/.test(row) && row.endsWith('web'),
      `unexpected list:\n${result.stdout}`,
    );
    return row ?? '';
  });

  await steps.check('other ports and other qubes stay closed', async () => {
    const direct = await session.probe('lanpeer', 'https', sysNetLan, SERVER_PORT);
    expectThat(!direct.reached, `port ${SERVER_PORT} on sys-net answered: ${direct.reply}`);
    const personal = await session.probe(
      'lanpeer',
      'https',
      session.address('personal'),
      SERVER_PORT,
    );
    expectThat(!personal.reached, `personal answered: ${personal.reply}`);
    return true;
  });

  await steps.check('stock Qubes tables are unchanged', async () => {
    expectThat(
      (await stockFirewallTable(session, 'sys-firewall')) === stockBefore.sysFirewall,
      'ip qubes-firewall in sys-firewall changed',
    );
    expectThat(
      (await session.ruleset('personal')) === stockBefore.personal,
      'personal ruleset changed',
    );
    return true;
  });

  for (const vm of ['sys-firewall', 'sys-net', 'work']) {
    await steps.check(`forward comes back after ${vm} restarts`, async () => {
      await session.restartVm(vm);
      const probe = await session.probe('lanpeer', 'https', sysNetLan, EXTERNAL_PORT);
      expectThat(probe.reached, `no reply after restart: ${probe.reply}`);
      return true;
    });
  }

  await steps.check('dom0: qvm-forward work del 0 closes the port on every hop', async () => {
    const result = await session.qvmForward('work', 'del', '0');
    expectThat(result.exitCode === 0, result.stderr);
    const probe = await session.probe('lanpeer', 'https', sysNetLan, EXTERNAL_PORT);
    expectThat(!probe.reached, `still reachable: ${probe.reply}`);
    for (const vm of ['sys-net', 'sys-firewall', 'work']) {
      const ruleset = await session.ruleset(vm);
      expectThat(
        !ruleset.includes(String(EXTERNAL_PORT)) && !/\. 443\b/.test(ruleset),
        `${vm} still has the forward`,
      );
    }
    return true;
  });

  return steps.passed;
}

async function stockFirewallTable(session: LabSession, vm: string): Promise<string> {
  return (await session.exec(vm, ['nft', 'list', 'table', 'ip', 'qubes-firewall'])).stdout;
}
