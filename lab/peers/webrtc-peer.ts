import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { RTCPeerConnection } from 'werift';

/**
 * A WebRTC data channel peer for the lab (werift), driven over standard
 * input and output with one JSON object per line, so a scenario passes the
 * signalling out of band:
 *
 *   offer role:  prints {"type":"offer","sdp":…}, reads {"type":"answer","sdp":…},
 *                opens channel "chat", sends MESSAGE and waits for its echo
 *   answer role: reads {"type":"offer","sdp":…}, prints {"type":"answer","sdp":…},
 *                echoes every message on the channel
 *
 * Both roles print {"type":"candidates",…} with the gathered candidates and
 * end with {"type":"result","connected":…,"openMs":…,"echo":…,"reason":…};
 * `openMs` counts from the start of candidate gathering (the first STUN
 * request) to the open data channel. No TURN server is configured.
 *
 *   node dist/lab/peers/webrtc-peer.js --role offer|answer --stun HOST:PORT
 *        [--name NAME] [--message TEXT] [--timeout-ms 15000]
 */

const { values } = parseArgs({
  options: {
    role: { type: 'string' },
    stun: { type: 'string' },
    name: { type: 'string', default: 'peer' },
    message: { type: 'string', default: 'hello' },
    'timeout-ms': { type: 'string', default: '15000' },
  },
});

const role = values.role;
const timeoutMs = Number(values['timeout-ms']);
if ((role !== 'offer' && role !== 'answer') || values.stun === undefined || !(timeoutMs > 0)) {
  process.stderr.write(
    'usage: webrtc-peer --role offer|answer --stun HOST:PORT [--name NAME] [--message TEXT] [--timeout-ms N]\n',
  );
  process.exit(2);
}

function emit(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

const startedAtMs = performance.now();
let openMs: number | null = null;
const pc = new RTCPeerConnection({
  iceServers: [{ urls: `stun:${values.stun}` }],
  iceUseIpv6: false,
});

function finish(connected: boolean, echo: string | null, reason: string | null): void {
  emit({ type: 'result', connected, openMs, echo, reason });
  void pc.close().finally(() => process.exit(connected ? 0 : 1));
  setTimeout(() => process.exit(connected ? 0 : 1), 1000).unref();
}

setTimeout(
  () => finish(false, null, `no open data channel within ${timeoutMs} ms`),
  timeoutMs,
).unref();
pc.iceConnectionStateChange.subscribe((state) => emit({ type: 'ice', state }));

const lines = createInterface({ input: process.stdin });
const nextMessage = (): Promise<{ type: string; sdp: string }> =>
  new Promise((resolve) =>
    lines.once('line', (line) => resolve(JSON.parse(line) as { type: string; sdp: string })),
  );

async function gatheredDescription(): Promise<string> {
  if (pc.iceGatheringState !== 'complete') {
    await new Promise<void>((resolve) => {
      const { unSubscribe } = pc.iceGatheringStateChange.subscribe((state) => {
        if (state === 'complete') {
          unSubscribe();
          resolve();
        }
      });
    });
  }
  const sdp = pc.localDescription?.sdp ?? '';
  const candidates = sdp
    .split(/\r?\n/)
    .filter((line) => line.startsWith('a=candidate:'))
    .map((line) => line.replace(/^a=candidate:\S+ \d+ udp \d+ /i, '').trim());
  emit({ type: 'candidates', name: values.name, candidates });
  return sdp;
}

function opened(): void {
  openMs ??= Math.round(performance.now() - startedAtMs);
  emit({ type: 'open', name: values.name, openMs });
}

if (role === 'offer') {
  const channel = pc.createDataChannel('chat');
  channel.stateChanged.subscribe((state) => {
    if (state === 'open') {
      opened();
      channel.send(`${values.message} from ${values.name}`);
    }
  });
  channel.onMessage.subscribe((data) => finish(true, data.toString(), null));
  await pc.setLocalDescription(await pc.createOffer());
  emit({ type: 'offer', sdp: await gatheredDescription() });
  const answer = await nextMessage();
  await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
} else {
  pc.onDataChannel.subscribe((channel) => {
    const echo = (data: string | Buffer) => channel.send(`echo: ${data.toString()}`);
    channel.onMessage.subscribe((data) => {
      echo(data);
      // Linger so the echo leaves before the offerer's result ends the call.
      setTimeout(() => finish(true, data.toString(), null), 500);
    });
    if (channel.readyState === 'open') {
      opened();
    }
    channel.stateChanged.subscribe((state) => state === 'open' && opened());
  });
  const offer = await nextMessage();
  await pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  emit({ type: 'answer', sdp: await gatheredDescription() });
}
