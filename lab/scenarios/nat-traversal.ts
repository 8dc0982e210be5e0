import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from '../../rpc/logger.js';
import type { LabSession } from '../lab-session.js';
import { distRoot } from '../services/lab-service-table.js';
import type { PromptMessage } from '../services/prompt-socket.js';
import { expectThat, ScenarioSteps } from './scenario-steps.js';

/**
 * The NAT traversal user story on a fresh lab: with NAT traversal enabled
 * for `work`, unmodified port-mapping clients in `work` (upnpc, natpmpc,
 * @achingbrain/nat-port-mapper and a PCP client) get a mapping after a dom0
 * prompt, and a peer on the internet reaches `work` through the router's
 * public address. A denied request and a qube without NAT traversal leave
 * nothing behind. The prompts are answered by this script, standing in for
 * the dom0 user at the Qubes dialog.
 */

const DENIED_PORT = 8081;

export async function runNatTraversalScenario(
  session: LabSession,
  print: (line: string) => void,
  _logger: Logger,
): Promise<boolean> {
  const steps = new ScenarioSteps(print);
  const work = session.address('work');
  const gateway = '10.137.0.1';
  const routerWan = session.state.addresses.routerWan;
  const prompts: PromptMessage[] = [];
  const stopAnswering = await session.answerPrompts((prompt) => {
    prompts.push(prompt);
    return !prompt.argument.endsWith(`+${DENIED_PORT}`);
  });
  const promptsOf = (argument: string) =>
    prompts.filter((prompt) => prompt.argument === argument).length;

  try {
    await session.startServer('work', 'tcp', 8080);
    await session.startServer('work', 'udp', 9000);
    await session.startServer('work', 'tcp', 7000);
    await session.startServer('work', 'udp', 7001);

    await steps.check(
      'personal (NAT traversal off) finds no IGD and raises no prompt',
      async () => {
        const result = await session.exec('personal', ['upnpc', '-i', '-s']);
        expectThat(
          !result.stdout.includes('Found valid IGD'),
          `personal found an IGD:\n${result.stdout}`,
        );
        expectThat(prompts.length === 0, `unexpected prompt: ${JSON.stringify(prompts)}`);
        return true;
      },
    );

    await steps.check('dom0: qvm-features work nat-traversal 1', async () => {
      const result = await session.exec('dom0', ['qvm-features', 'work', 'nat-traversal', '1']);
      expectThat(result.exitCode === 0, result.stderr);
      await waitForRedirect(session);
      return true;
    });

    await steps.check(
      'work: upnpc -i -a 10.137.0.20 8080 8080 TCP, allowed at the prompt',
      async () => {
        const startedAtMs = performance.now();
        const result = await session.exec(
          'work',
          ['upnpc', '-i', '-a', work, '8080', '8080', 'TCP'],
          { timeoutMs: 60_000 },
        );
        const elapsedMs = Math.round(performance.now() - startedAtMs);
        expectThat(
          result.stdout.includes(
            `external ${routerWan}:8080 TCP is redirected to internal ${work}:8080`,
          ),
          `unexpected upnpc output:\n${result.stdout}${result.stderr}`,
        );
        expectThat(promptsOf('work+tcp+8080') === 1, `prompts: ${JSON.stringify(prompts)}`);
        return `sys-nat asked qubes.NatTraversal+work+tcp+8080; upnpc done in ${elapsedMs} ms`;
      },
    );

    await steps.check(`internet peer reaches work at ${routerWan}:8080`, async () => {
      const probe = await session.probe('inet', 'tcp', routerWan, 8080);
      expectThat(
        probe.reply.startsWith(`work saw ${session.state.addresses.internetPeer}:`) ||
          probe.reply.startsWith('work saw 203.0.113.254:'),
        `reply: ${probe.reply}`,
      );
      return probe.reply;
    });

    await steps.check(
      'work: natpmpc -a 9000 9000 udp 3600, then UDP from the internet',
      async () => {
        const result = await session.exec(
          'work',
          ['natpmpc', '-g', gateway, '-a', '9000', '9000', 'udp', '3600'],
          { timeoutMs: 60_000 },
        );
        expectThat(
          /Mapped public port 9000 protocol UDP to local port 9000/.test(result.stdout),
          `natpmpc:\n${result.stdout}`,
        );
        const probe = await session.probe('inet', 'udp', routerWan, 9000);
        expectThat(probe.reached, `no UDP reply: ${probe.reply}`);
        return probe.reply;
      },
    );

    for (const client of ['nat-port-mapper', 'pcp'] as const) {
      const [protocol, port] =
        client === 'pcp' ? (['udp', 7001] as const) : (['tcp', 7000] as const);
      await steps.check(
        `work: ${client} maps ${protocol} ${port}; reached from the internet; unmap removes it`,
        async () => {
          const mapper = await startMappingClient(session, client, work, gateway, protocol, port);
          try {
            const mapped = await mapper.next();
            expectThat(mapped.step === 'mapped', `client output: ${JSON.stringify(mapped)}`);
            const probe = await session.probe(
              'inet',
              protocol,
              routerWan,
              Number(mapped.externalPort ?? port),
            );
            expectThat(probe.reached, `not reached: ${probe.reply}`);
            mapper.send('unmap');
            const unmapped = await mapper.next();
            expectThat(unmapped.step === 'unmapped', `client output: ${JSON.stringify(unmapped)}`);
            expectThat(
              !(await routerMappings(session)).includes(`${port}->192.168.77.10`),
              'router still maps it',
            );
            return `external ${String(mapped.externalAddress ?? routerWan)}:${String(mapped.externalPort ?? port)}`;
          } finally {
            mapper.stop();
          }
        },
      );
    }

    await steps.check(
      `denied request for ${DENIED_PORT} fails with 606 and leaves nothing`,
      async () => {
        const result = await session.exec(
          'work',
          ['upnpc', '-i', '-a', work, String(DENIED_PORT), String(DENIED_PORT), 'TCP'],
          { timeoutMs: 60_000 },
        );
        expectThat(/606/.test(result.stdout + result.stderr), `upnpc:\n${result.stdout}`);
        for (const vm of ['sys-net', 'sys-firewall', 'work']) {
          expectThat(
            !(await session.ruleset(vm)).includes(`. ${DENIED_PORT}`),
            `${vm} has a rule for ${DENIED_PORT}`,
          );
        }
        expectThat(
          !(await routerMappings(session)).includes(`${DENIED_PORT}->`),
          'the router has a mapping',
        );
        return true;
      },
    );

    await steps.check(
      'work: upnpc -d 8080 TCP removes it from the router and every hop',
      async () => {
        await session.exec('work', ['upnpc', '-i', '-d', '8080', 'TCP'], { timeoutMs: 30_000 });
        expectThat(
          !(await routerMappings(session)).includes('8080->192.168.77.10'),
          'router still maps 8080',
        );
        for (const vm of ['sys-net', 'sys-firewall', 'work']) {
          expectThat(!/tcp \. 8080\b/.test(await session.ruleset(vm)), `${vm} still forwards 8080`);
        }
        const probe = await session.probe('inet', 'tcp', routerWan, 8080);
        expectThat(!probe.reached, `still reachable: ${probe.reply}`);
        return true;
      },
    );
  } finally {
    stopAnswering();
  }
  return steps.passed;
}

/** Lists the router's UPnP mappings, as seen from sys-net (the router's LAN client). */
async function routerMappings(session: LabSession): Promise<string> {
  const url = `http://${session.state.addresses.routerLan}:5000/rootDesc.xml`;
  return (await session.exec('sys-net', ['upnpc', '-i', '-u', url, '-l'])).stdout;
}

/** Waits until sys-firewall redirects work's NAT-PMP requests (the dom0 service pushes on the feature event). */
async function waitForRedirect(session: LabSession): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    if ((await session.ruleset('sys-firewall')).includes('5351')) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('sys-firewall did not get the NAT traversal redirect within 5 s');
}

function startMappingClient(
  session: LabSession,
  client: 'nat-port-mapper' | 'pcp',
  localAddress: string,
  gateway: string,
  protocol: 'tcp' | 'udp',
  port: number,
) {
  const namespace = session.state.vms.work?.namespace ?? '';
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      namespace,
      process.execPath,
      join(distRoot(), 'lab', 'peers', 'mapping-client.js'),
      '--client',
      client,
      '--local-address',
      localAddress,
      '--gateway',
      gateway,
      '--protocol',
      protocol,
      '--port',
      String(port),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    async next(): Promise<Record<string, unknown>> {
      const timeout = new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`${client} gave no output within 60 s`)), 60_000).unref(),
      );
      const line = await Promise.race([lines.next(), timeout]);
      return line.done === true
        ? { step: 'exited' }
        : (JSON.parse(line.value) as Record<string, unknown>);
    },
    send(text: string) {
      child.stdin.write(`${text}\n`);
    },
    stop() {
      child.kill('SIGTERM');
    },
  };
}
