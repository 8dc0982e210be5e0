import { createSocket } from 'node:dgram';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { parseArgs } from 'node:util';

/**
 * A lab test client: sends one message to a TCP, UDP or HTTPS server and
 * prints the reply. Exits 0 with the reply on standard output, or 1 with
 * `no reply` when nothing came back within the timeout (dropped, rejected or
 * refused), so scripts can tell "reached" from "not reached".
 *
 *   node dist/lab/peers/probe.js --protocol tcp|udp|https --host A --port N
 *        [--message TEXT] [--timeout-ms 2000] [--local-port N] [--count N]
 */

const { values } = parseArgs({
  options: {
    protocol: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'string' },
    message: { type: 'string', default: 'ping' },
    'timeout-ms': { type: 'string', default: '2000' },
    'local-port': { type: 'string' },
  },
});

const host = values.host ?? '';
const port = Number(values.port);
const timeoutMs = Number(values['timeout-ms']);
const message = values.message;

function succeed(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  process.exit(0);
}

function fail(reason: string): void {
  process.stdout.write(`no reply (${reason})\n`);
  process.exit(1);
}

setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs).unref();

switch (values.protocol) {
  case 'tcp': {
    const socket = connect({ host, port });
    let received = '';
    socket.on('connect', () => socket.write(`${message}\n`));
    socket.on('data', (data) => {
      received += data.toString();
    });
    socket.on('end', () => (received ? succeed(received) : fail('connection closed')));
    socket.on('error', (error) => fail(error.message));
    break;
  }

  case 'udp': {
    const socket = createSocket('udp4');
    socket.on('message', (data) => succeed(data.toString()));
    socket.on('error', (error) => fail(error.message));
    // Retransmitted every 500 ms like a real UDP client, so one datagram
    // lost on a loaded machine does not read as "not reachable".
    const send = () => socket.send(message, port, host);
    const start = () => {
      send();
      setInterval(send, 500).unref();
    };
    if (values['local-port'] !== undefined) {
      socket.bind(Number(values['local-port']), start);
    } else {
      start();
    }
    break;
  }

  case 'https': {
    const request = httpsRequest(
      { host, port, path: `/${encodeURIComponent(message)}`, rejectUnauthorized: false },
      (response) => {
        let body = '';
        response.on('data', (data) => {
          body += data.toString();
        });
        response.on('end', () => succeed(body));
      },
    );
    request.on('error', (error) => fail(error.message));
    request.end();
    break;
  }

  default:
    fail(`invalid --protocol ${values.protocol}: use tcp, udp or https`);
}
