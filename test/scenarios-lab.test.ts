import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { LabSession } from '../lab/lab-session.js';
import { runManualForwardScenario } from '../lab/scenarios/manual-forward.js';
import { runNatTraversalScenario } from '../lab/scenarios/nat-traversal.js';
import { runP2pScenario } from '../lab/scenarios/p2p.js';

/**
 * Runs the lab scenarios (the user stories that `npm run lab -- scenario
 * NAME` prints step by step) as tests, each on a fresh lab, so every client
 * they drive (upnpc, natpmpc, @achingbrain/nat-port-mapper, the PCP client,
 * werift) is covered by `npm test`.
 */

const logger = pino({ level: 'silent' });

async function runScenario(
  prefix: string,
  scenario: typeof runManualForwardScenario,
  routerNat: 'cone' | 'symmetric' = 'cone',
): Promise<{ passed: boolean; lines: string[] }> {
  const lines: string[] = [];
  const session = await LabSession.open({ prefix, logger, routerNat });
  try {
    const passed = await scenario(session, (line) => lines.push(line), logger);
    return { passed, lines };
  } finally {
    await session.close();
  }
}

describe('lab scenarios', () => {
  it('manual-forward holds every step', { timeout: 120_000 }, async () => {
    const { passed, lines } = await runScenario('tsm', runManualForwardScenario);
    expect(lines.filter((line) => line.startsWith('FAIL'))).toEqual([]);
    expect(passed).toBe(true);
  });

  it('p2p holds every step on a symmetric router', { timeout: 120_000 }, async () => {
    const { passed, lines } = await runScenario('tsp', runP2pScenario, 'symmetric');
    expect(lines.filter((line) => line.startsWith('FAIL'))).toEqual([]);
    expect(passed).toBe(true);
  });

  it('nat-traversal holds every step', { timeout: 180_000 }, async () => {
    const { passed, lines } = await runScenario('tsn', runNatTraversalScenario);
    expect(lines.filter((line) => line.startsWith('FAIL'))).toEqual([]);
    expect(passed).toBe(true);
  });
});
