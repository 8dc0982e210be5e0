import type { Logger } from '../rpc/logger.js';
import type { ActivityQuery } from './activity-messages.js';
import type { CommandRunner } from './nft-runner.js';

/**
 * Tells whether a UDP socket of a qube had recent traffic, from this VM's
 * conntrack table. The kernel keeps an unreplied UDP flow 30 s and an
 * assured one 120 s after its last packet (nf_conntrack_udp_timeout and
 * nf_conntrack_udp_timeout_stream, Linux defaults), so a listed flow means
 * a packet passed within that time.
 */

const SHOWN_PATTERN = /(\d+) flow entries have been shown/;

export class FlowActivityError extends Error {
  override name = 'FlowActivityError';
}

export class FlowActivity {
  constructor(
    private readonly conntrack: CommandRunner,
    private readonly logger: Logger,
  ) {}

  /**
   * Returns true when a flow exists that the socket started towards a peer
   * (original source), or that a peer started towards it (reply source,
   * after the lease's DNAT). Flows this VM redirected to the broker, such as
   * the STUN Binding requests themselves, are not traffic of a call and do
   * not count.
   */
  async isActive(query: ActivityQuery): Promise<boolean> {
    const outbound = await this.listFlows(query, [
      '--orig-src',
      query.clientAddress,
      '--sport',
      String(query.port),
    ]);
    if (outbound.some((line) => !isRedirectedFlow(line))) {
      return true;
    }
    const inbound = await this.listFlows(query, [
      '--reply-src',
      query.clientAddress,
      '--reply-port-src',
      String(query.port),
    ]);
    return inbound.length > 0;
  }

  /** Runs `conntrack -L` with the filters and returns its flow lines. */
  private async listFlows(query: ActivityQuery, filters: string[]): Promise<string[]> {
    const result = await this.conntrack.run(['-L', '-p', query.protocol, ...filters]);
    const match = SHOWN_PATTERN.exec(result.stderr);
    if (result.exitCode !== 0 || match === null) {
      this.logger.error(
        { ...query, exitCode: result.exitCode, stderr: result.stderr.trim() },
        'conntrack -L failed',
      );
      throw new FlowActivityError(
        `conntrack -L for ${query.clientAddress}:${query.port} failed with exit code ${result.exitCode}: ${result.stderr.trim()}`,
      );
    }
    return result.stdout.split('\n').filter((line) => line.includes('src='));
  }
}

/**
 * True for a flow line whose reply comes from another address than the
 * original destination, that is a flow this VM DNATed (to the broker).
 * A line reads `udp 17 28 src=A dst=B sport=P dport=Q src=C dst=D ...`,
 * with the original direction first and the reply direction second.
 */
export function isRedirectedFlow(line: string): boolean {
  const sources = [...line.matchAll(/\bsrc=(\S+)/g)].map((match) => match[1]);
  const destinations = [...line.matchAll(/\bdst=(\S+)/g)].map((match) => match[1]);
  const originalDestination = destinations[0];
  const replySource = sources[1];
  return (
    originalDestination !== undefined &&
    replySource !== undefined &&
    originalDestination !== replySource
  );
}
