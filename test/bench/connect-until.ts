import { connect } from 'node:net';

/**
 * Tries a TCP connection every few milliseconds until one is answered, then prints the
 * wall-clock time of that answer (UNIX ms) and exits. Bounded by a timeout.
 *
 *   node dist/test/bench/connect-until.js HOST PORT TIMEOUT_MS
 */

const [host = '', portText = '0', timeoutText = '10000'] = process.argv.slice(2);
const deadlineMs = Date.now() + Number(timeoutText);

function attempt(): void {
  if (Date.now() > deadlineMs) {
    process.stdout.write('{"reachedAtUnixMs":null}\n');
    process.exit(1);
  }
  // A SYN sent before the rules exist is dropped, so attempts are short and frequent.
  const socket = connect({ host, port: Number(portText), timeout: 20 });
  socket.once('connect', () => {
    process.stdout.write(`${JSON.stringify({ reachedAtUnixMs: Date.now() })}\n`);
    process.exit(0);
  });
  const retry = () => {
    socket.destroy();
    setTimeout(attempt, 2);
  };
  socket.once('error', retry);
  socket.once('timeout', retry);
}

process.stdout.write('ready\n');
attempt();
