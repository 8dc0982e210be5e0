import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTwoNamespaceFixture } from './two-namespace-fixture.js';

/**
 * Drives the PCP server with hand-built packets over real UDP sockets in
 * two namespaces: hp2-client (10.200.0.2, plus 10.200.0.3 for a qube
 * without NAT traversal) and hp2-broker (10.200.0.1). The server runs with
 * the in-memory MappingService, a stand-in for the broker core, which needs
 * dom0 and a home router. Requires root and a prior `npx tsc -p tsconfig.json`.
 */

const TABLE = {
  externalAddress: '203.0.113.7',
  clients: [
    { address: '10.200.0.2', qube: 'work', enabled: true },
    { address: '10.200.0.3', qube: 'personal', enabled: false },
  ],
};

/**
 * Sends each hex packet from `sourceAddress` on one socket and prints each
 * reply as hex, or "timeout" after 1.5 s. Runs in the client namespace.
 */
const DRIVER = `
const dgram = require('node:dgram');
const [source, ...packets] = process.argv.slice(1);
const socket = dgram.createSocket('udp4');
socket.bind({ address: source, port: 0 }, async () => {
  for (const hex of packets) {
    const reply = await new Promise((resolve) => {
      const timer = setTimeout(() => { socket.removeAllListeners('message'); resolve('timeout'); }, 1500);
      socket.once('message', (message, remote) => {
        clearTimeout(timer);
        resolve(remote.address + ' ' + message.toString('hex'));
      });
      socket.send(Buffer.from(hex, 'hex'), 5351, '10.200.0.1');
    });
    console.log(reply);
  }
  socket.close();
});
`;

const SERVER_COMMAND = [
  'node',
  'dist/broker/port-control/port-control-fake-main.js',
  JSON.stringify(TABLE),
];

const fixture = createTwoNamespaceFixture({
  prefix: 'hp2',
  clientAddresses: ['10.200.0.2/24', '10.200.0.3/24'],
  brokerAddress: '10.200.0.1/24',
});

/** Sends packets in order from one socket; returns one reply per packet. */
function exchange(
  sourceAddress: string,
  packets: Uint8Array[],
): Array<{ from: string; bytes: Buffer } | null> {
  const output = fixture.execInClient(
    [
      'node',
      '-e',
      DRIVER,
      sourceAddress,
      ...packets.map((packet) => Buffer.from(packet).toString('hex')),
    ],
    30_000,
  );
  return output
    .trim()
    .split('\n')
    .map((line) => {
      if (line === 'timeout') {
        return null;
      }
      const [from = '', hex = ''] = line.split(' ');
      return { from, bytes: Buffer.from(hex, 'hex') };
    });
}

function mapped(address: string): number[] {
  return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...address.split('.').map(Number)];
}

/** RFC 6887 §7.1 header and §11.1 MAP data. */
function mapRequest(fields: {
  nonce: number;
  lifetimeSeconds: number;
  internalPort: number;
  clientAddress?: string;
  protocol?: number;
  options?: number[];
}): Uint8Array {
  const bytes = Buffer.alloc(60);
  bytes[0] = 2;
  bytes[1] = 1;
  bytes.writeUInt32BE(fields.lifetimeSeconds, 4);
  Buffer.from(mapped(fields.clientAddress ?? '10.200.0.2')).copy(bytes, 8);
  bytes.fill(fields.nonce, 24, 36);
  bytes[36] = fields.protocol ?? 6;
  bytes.writeUInt16BE(fields.internalPort, 40);
  bytes.writeUInt16BE(fields.internalPort, 42);
  return Uint8Array.from([...bytes, ...(fields.options ?? [])]);
}

function resultCode(reply: { bytes: Buffer } | null | undefined): number | undefined {
  return reply?.bytes[3];
}

beforeAll(async () => {
  const firstLine = await fixture.start(SERVER_COMMAND);
  expect(firstLine).toContain('"listening"');
}, 30_000);

afterAll(() => fixture.destroy());

describe('PCP server over UDP', () => {
  it('answers ANNOUNCE', () => {
    const announce = Uint8Array.from([2, 0, 0, 0, 0, 0, 0, 0, ...mapped('10.200.0.2')]);
    const [reply] = exchange('10.200.0.2', [announce]);
    expect(reply?.from).toBe('10.200.0.1');
    expect(reply?.bytes.length).toBe(24);
    expect(reply?.bytes[0]).toBe(2);
    expect(reply?.bytes[1]).toBe(0x80);
    expect(resultCode(reply)).toBe(0);
  });

  it('maps, renews and protects with nonce', () => {
    const replies = exchange('10.200.0.2', [
      mapRequest({ nonce: 0x11, lifetimeSeconds: 600, internalPort: 8080 }),
      mapRequest({ nonce: 0x11, lifetimeSeconds: 1200, internalPort: 8080 }),
      mapRequest({ nonce: 0x22, lifetimeSeconds: 600, internalPort: 8080 }),
      mapRequest({ nonce: 0x22, lifetimeSeconds: 0, internalPort: 8080 }),
      mapRequest({ nonce: 0x11, lifetimeSeconds: 0, internalPort: 8080 }),
    ]);
    const [created, renewed, stolen, wrongDelete, deleted] = replies;

    expect(resultCode(created)).toBe(0);
    expect(created?.bytes[1]).toBe(0x81);
    expect(created?.bytes.readUInt32BE(4)).toBe(600);
    expect(created?.bytes.subarray(24, 36).every((byte) => byte === 0x11)).toBe(true);
    expect(created?.bytes.readUInt16BE(42)).toBe(8080);
    expect(Array.from(created?.bytes.subarray(44, 60) ?? [])).toEqual(mapped('203.0.113.7'));

    expect(resultCode(renewed)).toBe(0);
    expect(renewed?.bytes.readUInt32BE(4)).toBe(1200);

    expect(resultCode(stolen)).toBe(2);
    expect(stolen?.bytes.readUInt32BE(4)).toBe(1800);
    expect(resultCode(wrongDelete)).toBe(2);

    expect(resultCode(deleted)).toBe(0);
    expect(deleted?.bytes.readUInt32BE(4)).toBe(0);
  });

  it('clamps lifetime to 24 hours', () => {
    const [reply] = exchange('10.200.0.2', [
      mapRequest({ nonce: 0x33, lifetimeSeconds: 999_999, internalPort: 9000 }),
    ]);
    expect(resultCode(reply)).toBe(0);
    expect(reply?.bytes.readUInt32BE(4)).toBe(86_400);
  });

  it('answers ADDRESS_MISMATCH', () => {
    const [reply] = exchange('10.200.0.2', [
      mapRequest({
        nonce: 1,
        lifetimeSeconds: 600,
        internalPort: 7000,
        clientAddress: '10.200.0.9',
      }),
    ]);
    expect(resultCode(reply)).toBe(12);
    expect(reply?.bytes.readUInt32BE(4)).toBe(1800);
  });

  it('refuses THIRD_PARTY', () => {
    const thirdParty = [1, 0, 0, 16, ...mapped('10.200.0.50')];
    const [reply] = exchange('10.200.0.2', [
      mapRequest({ nonce: 2, lifetimeSeconds: 600, internalPort: 7001, options: thirdParty }),
    ]);
    expect(resultCode(reply)).toBe(5);
  });

  it('answers version 1 with version 2', () => {
    const request = mapRequest({ nonce: 3, lifetimeSeconds: 600, internalPort: 7002 });
    request[0] = 1;
    const [reply] = exchange('10.200.0.2', [request]);
    expect(reply?.bytes[0]).toBe(2);
    expect(resultCode(reply)).toBe(1);
  });

  it('rejects unsupported protocol', () => {
    const [reply] = exchange('10.200.0.2', [
      mapRequest({ nonce: 4, lifetimeSeconds: 600, internalPort: 7003, protocol: 132 }),
    ]);
    expect(resultCode(reply)).toBe(9);
  });

  it('stays silent to disabled qube', () => {
    const replies = exchange('10.200.0.3', [
      mapRequest({
        nonce: 5,
        lifetimeSeconds: 600,
        internalPort: 7004,
        clientAddress: '10.200.0.3',
      }),
      Uint8Array.from([0, 0]),
    ]);
    expect(replies).toEqual([null, null]);
  });

  it('drops truncated packet silently', () => {
    const [reply] = exchange('10.200.0.2', [Uint8Array.from([2, 1, 0, 0])]);
    expect(reply).toBeNull();
  });
});
