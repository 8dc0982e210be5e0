import type { Logger } from '../../rpc/logger.js';
import { sleep } from '../lab-exec.js';
import type { LabSession } from '../lab-session.js';
import { STUN_PORT } from '../lab-topology.js';
import { expectThat, ScenarioSteps } from './scenario-steps.js';
import { runWebrtcCall, type WebrtcCallResult } from './webrtc-call.js';

/**
 * The peer-to-peer user story on a fresh lab whose home router is a
 * symmetric NAT: a WebRTC data channel (werift, no TURN server) between
 * `work` and `rpeer`, a peer behind an ordinary NAT in a remote home, with
 * the lab's coturn as both peers' STUN server. Without NAT traversal the
 * call fails, because the router gives each destination another port; with
 * NAT traversal enabled and one policy line allowing work's STUN mappings
 * (no prompt), work's STUN request reaches the broker, which maps the port
 * on every hop and on the router, and the call connects and echoes a message.
 */

/** How long each peer waits for an open data channel. */
export const CALL_TIMEOUT_MS = 15_000;

function describeCall(call: WebrtcCallResult): string {
  const candidates = (list: string[]) =>
    list.filter((candidate) => candidate.includes('srflx')).join(' | ') || 'no srflx candidate';
  return `work ${candidates(call.offerCandidates)}; rpeer ${candidates(call.answerCandidates)}`;
}

export async function runP2pScenario(
  session: LabSession,
  print: (line: string) => void,
  _logger: Logger,
): Promise<boolean> {
  const steps = new ScenarioSteps(print);
  const stun = `${session.state.addresses.stunPrimary}:${STUN_PORT}`;
  const call = () =>
    runWebrtcCall(session, {
      offerVm: 'work',
      answerVm: 'rpeer',
      stun,
      timeoutMs: CALL_TIMEOUT_MS,
    });
  const prompts: string[] = [];
  const stopAnswering = await session.answerPrompts((prompt) => {
    prompts.push(prompt.argument);
    return false;
  });

  try {
    await steps.check(`router NAT is ${session.state.options.routerNat}`, async () => {
      expectThat(
        session.state.options.routerNat === 'symmetric',
        'the p2p scenario needs a symmetric router',
      );
      return true;
    });

    await steps.check('NAT traversal off: work ↔ rpeer data channel fails (no TURN)', async () => {
      const result = await call();
      expectThat(!result.connected, `the call connected: ${describeCall(result)}`);
      return `no open channel within ${CALL_TIMEOUT_MS} ms as expected; ${describeCall(result)}`;
    });

    await steps.check('dom0: qvm-features work nat-traversal 1', async () => {
      const result = await session.exec('dom0', ['qvm-features', 'work', 'nat-traversal', '1']);
      expectThat(result.exitCode === 0, result.stderr);
      await waitForStunRedirect(session);
      return true;
    });

    await steps.check('dom0: qvm-nat-traversal work p2p allow', async () => {
      const result = await session.exec('dom0', ['qvm-nat-traversal', 'work', 'p2p', 'allow']);
      expectThat(result.exitCode === 0, result.stderr);
      return result.stderr.trim();
    });

    await steps.check(
      'NAT traversal on: work ↔ rpeer data channel opens and echoes, no prompt',
      async () => {
        const result = await call();
        expectThat(
          result.connected,
          `the call failed: ${result.reason ?? ''}; ${describeCall(result)}`,
        );
        expectThat(
          result.echo === 'echo: hello from work',
          `unexpected echo ${JSON.stringify(result.echo)}`,
        );
        expectThat(prompts.length === 0, `unexpected prompts: ${prompts.join(', ')}`);
        return `channel open ${result.openMs} ms after the first STUN request, echo ${JSON.stringify(result.echo)}; ${describeCall(result)}`;
      },
    );

    await steps.check("dom0 lists work's STUN lease", async () => {
      const list = await session.qvmForward('work');
      expectThat(/udp.*stun:/.test(list.stdout), `no STUN lease listed:\n${list.stdout}`);
      return true;
    });
  } finally {
    stopAnswering();
  }
  return steps.passed;
}

/** Waits until work's netvm redirects STUN to the broker (dom0 pushes the state). */
async function waitForStunRedirect(session: LabSession): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (
      (await session.ruleset('sys-firewall')).includes(`${session.address('work')} . ${STUN_PORT}`)
    ) {
      return;
    }
    await sleep(100);
  }
  throw new Error('sys-firewall did not get the STUN redirect of work within 10 s');
}
