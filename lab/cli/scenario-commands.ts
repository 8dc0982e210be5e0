import type { Logger } from '../../rpc/logger.js';
import { LabSession } from '../lab-session.js';
import { runManualForwardScenario } from '../scenarios/manual-forward.js';
import { runNatTraversalScenario } from '../scenarios/nat-traversal.js';
import { runP2pScenario } from '../scenarios/p2p.js';

/**
 * `scenario NAME` runs a user story on a fresh lab of its own and exits 0
 * only if every step held; `restart VM` restarts a VM of a running lab.
 */

type Scenario = (
  session: LabSession,
  print: (line: string) => void,
  logger: Logger,
) => Promise<boolean>;

export const SCENARIOS: Record<
  string,
  { run: Scenario; description: string; routerNat?: 'cone' | 'symmetric' }
> = {
  'manual-forward': {
    run: runManualForwardScenario,
    description: 'dom0 forwards TCP 8443 to the HTTPS server on 443 in work; lanpeer reaches it',
  },
  'nat-traversal': {
    run: runNatTraversalScenario,
    description:
      'upnpc, natpmpc, nat-port-mapper and PCP in work get mappings after a dom0 prompt; the internet reaches work',
  },
  p2p: {
    run: runP2pScenario,
    description:
      'behind a symmetric router, a WebRTC data channel from work to a remote peer fails without NAT traversal and connects with it (STUN through the broker, no TURN)',
    routerNat: 'symmetric',
  },
};

/**
 * Runs a scenario on a new lab named after `prefix` with an `s` at the end,
 * so it never collides with a lab the user keeps running. The lab is always
 * torn down, also when a step throws or on Ctrl-C.
 */
export async function runScenario(
  name: string | undefined,
  prefix: string,
  logger: Logger,
): Promise<number> {
  const scenario = name === undefined ? undefined : SCENARIOS[name];
  if (scenario === undefined) {
    const known = Object.entries(SCENARIOS)
      .map(([key, value]) => `  ${key}: ${value.description}`)
      .join('\n');
    process.stderr.write(`unknown scenario ${JSON.stringify(name ?? '')}; scenarios:\n${known}\n`);
    return 2;
  }

  const print = (line: string) => process.stdout.write(`${line}\n`);
  const scenarioPrefix = `${prefix.slice(0, 7)}s`;
  const startedAtMs = performance.now();
  print(`scenario ${name} on lab "${scenarioPrefix}"`);

  const session = await LabSession.open({
    prefix: scenarioPrefix,
    logger,
    ...(scenario.routerNat === undefined ? {} : { routerNat: scenario.routerNat }),
  });
  print(`ok    lab up with every component (${Math.round(performance.now() - startedAtMs)} ms)`);
  let passed = false;
  try {
    passed = await scenario.run(session, print, logger);
  } finally {
    const teardownStartedAtMs = performance.now();
    await session.close();
    print(`ok    lab torn down (${Math.round(performance.now() - teardownStartedAtMs)} ms)`);
  }

  print(passed ? `scenario ${name}: every step held` : `scenario ${name}: FAILED`);
  return passed ? 0 : 1;
}

export async function restartVm(
  vm: string | undefined,
  prefix: string,
  logger: Logger,
): Promise<number> {
  if (vm === undefined) {
    process.stderr.write('restart needs a VM name: npm run lab -- restart sys-net\n');
    return 2;
  }
  const session = LabSession.attach(prefix, logger);
  await session.restartVm(vm);
  process.stdout.write(
    `${vm} restarted: its tables were flushed and reloaded, and its forward rules restored\n`,
  );
  return 0;
}
