import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';

/**
 * Load generator for STUN Binding requests: keeps `window` requests in
 * flight against one server and counts success responses. Bounded by count
 * and by time. Prints one JSON line: {sent, answered, elapsedMs, perSecond}.
 *
 *   node dist/test/bench/stun-load-client.js HOST PORT COUNT WINDOW TIMEOUT_MS
 */

const [
  host = '127.0.0.1',
  portText = '3478',
  countText = '20000',
  windowText = '64',
  timeoutText = '20000',
] = process.argv.slice(2);
const port = Number(portText);
const total = Number(countText);
const window = Number(windowText);
const timeoutMs = Number(timeoutText);

const MAGIC_COOKIE = 0x2112a442;
const socket = createSocket('udp4');
const pending = new Set<string>();
let sent = 0;
let answered = 0;
const startedAtMs = performance.now();

function sendOne(): void {
  if (sent >= total) {
    return;
  }
  const request = Buffer.alloc(20);
  request.writeUInt16BE(0x0001, 0);
  request.writeUInt16BE(0, 2);
  request.writeUInt32BE(MAGIC_COOKIE, 4);
  const transactionId = randomBytes(12);
  transactionId.copy(request, 8);
  pending.add(transactionId.toString('hex'));
  sent += 1;
  socket.send(request, port, host);
}

function finish(): void {
  const elapsedMs = performance.now() - startedAtMs;
  process.stdout.write(
    `${JSON.stringify({ sent, answered, elapsedMs: Math.round(elapsedMs), perSecond: Math.round((answered / elapsedMs) * 1000) })}\n`,
  );
  socket.close();
  process.exit(0);
}

socket.on('message', (message) => {
  if (message.length < 20 || message.readUInt16BE(0) !== 0x0101) {
    return;
  }
  const key = message.subarray(8, 20).toString('hex');
  if (!pending.delete(key)) {
    return;
  }
  answered += 1;
  if (answered >= total) {
    finish();
  }
  sendOne();
});

setTimeout(finish, timeoutMs).unref();
// Lost datagrams would shrink the window; top it up now and then.
setInterval(() => {
  while (pending.size < window && sent < total) {
    sendOne();
  }
}, 50).unref();

socket.bind(0, () => {
  for (let index = 0; index < window; index++) {
    sendOne();
  }
});
