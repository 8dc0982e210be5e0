import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer } from 'node:net';
import { parseArgs } from 'node:util';

/**
 * A lab test peer: a TCP, UDP or HTTPS server that replies with who it is and
 * the peer address it saw, so a test proves both reachability and that no hop
 * rewrote the source address.
 *
 *   node dist/lab/peers/echo-server.js --protocol tcp|udp|https --port N --name work
 *        [--address A] [--cert FILE --key FILE]
 *
 * Prints `listening` on standard output once bound.
 */

const { values } = parseArgs({
  options: {
    protocol: { type: 'string' },
    port: { type: 'string' },
    name: { type: 'string', default: 'server' },
    address: { type: 'string', default: '0.0.0.0' },
    cert: { type: 'string' },
    key: { type: 'string' },
  },
});

const port = Number(values.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  throw new Error(`invalid --port ${values.port}: use 1-65535`);
}
const name = values.name;

function reply(remoteAddress: string, remotePort: number, payload: string): string {
  return `${name} saw ${remoteAddress}:${remotePort}: ${payload.trim()}\n`;
}

function announce(): void {
  process.stdout.write('listening\n');
}

switch (values.protocol) {
  case 'tcp': {
    const server = createTcpServer((socket) => {
      socket.once('data', (data) => {
        socket.end(reply(socket.remoteAddress ?? '', socket.remotePort ?? 0, data.toString()));
      });
      socket.on('error', () => socket.destroy());
    });
    server.listen(port, values.address, announce);
    break;
  }

  case 'udp': {
    const socket = createSocket('udp4');
    socket.on('message', (data, remote) => {
      socket.send(reply(remote.address, remote.port, data.toString()), remote.port, remote.address);
    });
    socket.bind(port, values.address, announce);
    break;
  }

  case 'https': {
    if (values.cert === undefined || values.key === undefined) {
      throw new Error('--protocol https needs --cert FILE and --key FILE');
    }
    const server = createHttpsServer(
      { cert: readFileSync(values.cert), key: readFileSync(values.key) },
      (request, response) => {
        response.end(
          reply(
            request.socket.remoteAddress ?? '',
            request.socket.remotePort ?? 0,
            request.url ?? '',
          ),
        );
      },
    );
    server.listen(port, values.address, announce);
    break;
  }

  default:
    throw new Error(`invalid --protocol ${values.protocol}: use tcp, udp or https`);
}

process.on('SIGTERM', () => process.exit(0));
