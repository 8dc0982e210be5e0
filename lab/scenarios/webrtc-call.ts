import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { LabSession } from '../lab-session.js';
import { distRoot } from '../services/lab-service-table.js';

/**
 * Runs one WebRTC data channel call between two lab VMs with the werift peer
 * (lab/peers/webrtc-peer.ts), passing the offer and answer between them as a
 * signalling server would. The offerer gathers first; the answerer then
 * gathers and starts its connectivity checks before the offerer has the
 * answer, as in a real call.
 */

export interface WebrtcCallOptions {
  offerVm: string;
  answerVm: string;
  /** STUN server both peers use, `HOST:PORT`. */
  stun: string;
  /** How long each peer waits for an open data channel. */
  timeoutMs: number;
  message?: string;
}

export interface WebrtcCallResult {
  connected: boolean;
  /** Offerer: from the start of gathering to the open channel; null when it never opened. */
  openMs: number | null;
  /** Message the offerer received back on the channel. */
  echo: string | null;
  offerCandidates: string[];
  answerCandidates: string[];
  reason: string | null;
}

interface PeerMessage {
  type: string;
  sdp?: string;
  candidates?: string[];
  connected?: boolean;
  openMs?: number | null;
  echo?: string | null;
  reason?: string | null;
}

class PeerProcess {
  private readonly queue: PeerMessage[] = [];
  private readonly waiters: Array<(message: PeerMessage) => void> = [];
  readonly child: ChildProcess;
  stderr = '';

  constructor(namespace: string, args: string[]) {
    const script = join(distRoot(), 'lab', 'peers', 'webrtc-peer.js');
    this.child = spawn('ip', ['netns', 'exec', namespace, process.execPath, script, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr = `${this.stderr}${chunk.toString()}`.slice(-4000);
    });
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      let message: PeerMessage;
      try {
        message = JSON.parse(line) as PeerMessage;
      } catch {
        return;
      }
      const waiter = this.waiters.shift();
      if (waiter === undefined) {
        this.queue.push(message);
      } else {
        waiter(message);
      }
    });
    this.child.once('exit', (code) => {
      const ended = { type: 'result', connected: false, reason: `peer exited with ${code}` };
      for (const waiter of this.waiters.splice(0)) {
        waiter(ended);
      }
      this.queue.push(ended);
    });
  }

  /** Waits for the next message of one of `types`, skipping others; bounded by `timeoutMs`. */
  async next(types: string[], timeoutMs: number): Promise<PeerMessage | null> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const message = await new Promise<PeerMessage | null>((resolve) => {
        const queued = this.queue.shift();
        if (queued !== undefined) {
          resolve(queued);
          return;
        }
        const timer = setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          resolve(null);
        }, deadline - Date.now());
        const waiter = (received: PeerMessage) => {
          clearTimeout(timer);
          resolve(received);
        };
        this.waiters.push(waiter);
      });
      if (message === null) {
        return null;
      }
      if (types.includes(message.type) || message.type === 'result') {
        return message;
      }
      if (message.type === 'candidates') {
        this.candidates = message.candidates ?? [];
      }
    }
    return null;
  }

  candidates: string[] = [];

  send(message: PeerMessage): void {
    this.child.stdin?.write(`${JSON.stringify(message)}\n`);
  }

  stop(): void {
    this.child.kill('SIGTERM');
  }
}

export async function runWebrtcCall(
  session: LabSession,
  options: WebrtcCallOptions,
): Promise<WebrtcCallResult> {
  const namespaceOf = (vm: string) => {
    const namespace = session.state.vms[vm]?.namespace;
    if (namespace === undefined) {
      throw new Error(`unknown lab VM "${vm}"`);
    }
    return namespace;
  };
  const common = ['--stun', options.stun, '--timeout-ms', String(options.timeoutMs)];
  const offerer = new PeerProcess(namespaceOf(options.offerVm), [
    '--role',
    'offer',
    '--name',
    options.offerVm,
    '--message',
    options.message ?? 'hello',
    ...common,
  ]);
  const answerer = new PeerProcess(namespaceOf(options.answerVm), [
    '--role',
    'answer',
    '--name',
    options.answerVm,
    ...common,
  ]);
  const failed = (reason: string): WebrtcCallResult => ({
    connected: false,
    openMs: null,
    echo: null,
    offerCandidates: offerer.candidates,
    answerCandidates: answerer.candidates,
    reason,
  });
  const waitMs = options.timeoutMs + 10_000;

  try {
    const offer = await offerer.next(['offer'], waitMs);
    if (offer?.type !== 'offer' || offer.sdp === undefined) {
      return failed(`no offer from ${options.offerVm}: ${offer?.reason ?? offerer.stderr.trim()}`);
    }
    answerer.send({ type: 'offer', sdp: offer.sdp });
    const answer = await answerer.next(['answer'], waitMs);
    if (answer?.type !== 'answer' || answer.sdp === undefined) {
      return failed(
        `no SDP answer from ${options.answerVm}: ${answer?.reason ?? answerer.stderr.trim()}`,
      );
    }
    offerer.send({ type: 'answer', sdp: answer.sdp });
    const result = await offerer.next(['result'], waitMs);
    return {
      connected: result?.connected === true,
      openMs: result?.openMs ?? null,
      echo: result?.echo ?? null,
      offerCandidates: offerer.candidates,
      answerCandidates: answerer.candidates,
      reason: result?.reason ?? (result === null ? 'no result from the offerer' : null),
    };
  } finally {
    offerer.stop();
    answerer.stop();
  }
}
