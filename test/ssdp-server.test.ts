import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildIgdDeviceTrees } from '../broker/igd/device-tree.js';
import { SsdpServer } from '../broker/ssdp/ssdp-server.js';
import { FakeMappingService } from './igd-fake-mapping-service.js';

// FakeMappingService replaces the broker core, which needs dom0 and a home
// router. The UDP socket and the SSDP responder under test are real.

const IGD1 = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1';
const IGD2 = 'urn:schemas-upnp-org:device:InternetGatewayDevice:2';

const search = (st: string, mx = '3') =>
  `M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: ${mx}\r\nST: ${st}\r\n\r\n`;

function headersOf(datagram: Buffer): Map<string, string> {
  const headers = new Map<string, string>();
  for (const line of datagram.toString('latin1').split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).toUpperCase(), line.slice(colon + 1).trim());
  }
  return headers;
}

describe('SsdpServer', () => {
  const enabledClients = ['127.0.0.1', '127.0.0.3'];
  const server = new SsdpServer(
    {
      mappingService: new FakeMappingService({ enabledClients }),
      logger: pino({ level: 'silent' }),
      deviceTrees: buildIgdDeviceTrees('ssdp-test'),
      locationHostFor: (client) => (client === '127.0.0.3' ? null : '10.137.0.1'),
      httpPort: 2189,
      // No MX delay, so responses arrive in the order of the searches.
      random: () => 0,
    },
    { listenAddress: '127.0.0.1', port: 0 },
  );
  let client: Socket;
  const received: Buffer[] = [];
  const waiters: Array<() => void> = [];

  async function nextDatagram(): Promise<Buffer> {
    while (received.length === 0) {
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
    return received.shift() as Buffer;
  }

  const send = (text: string) => client.send(text, server.port(), '127.0.0.1');

  beforeAll(async () => {
    await server.start();
    client = createSocket('udp4');
    client.on('message', (message) => {
      received.push(message);
      for (const wake of waiters.splice(0)) wake();
    });
    client.bind(0, '127.0.0.1');
    await once(client, 'listening');
  });

  afterAll(async () => {
    client.close();
    await server.stop();
  });

  it('answers IGD:1 with a v1 ST and LOCATION', async () => {
    send(search(IGD1));
    const headers = headersOf(await nextDatagram());
    expect(headers.get('ST')).toBe(IGD1);
    expect(headers.get('LOCATION')).toBe('http://10.137.0.1:2189/rootDesc.xml');
    expect(headers.get('USN')).toMatch(
      /^uuid:[0-9a-f-]{36}::urn:schemas-upnp-org:device:InternetGatewayDevice:1$/,
    );
  });

  it('answers IGD:2 with the v2 description', async () => {
    send(search(IGD2, '1'));
    const headers = headersOf(await nextDatagram());
    expect(headers.get('ST')).toBe(IGD2);
    expect(headers.get('LOCATION')).toBe('http://10.137.0.1:2189/rootDesc2.xml');
  });

  it('answers ssdp:all with every advertisement', async () => {
    send(search('ssdp:all'));
    const targets: string[] = [];
    for (let i = 0; i < 18; i += 1) targets.push(headersOf(await nextDatagram()).get('ST') ?? '');
    expect(targets.filter((st) => st === 'upnp:rootdevice')).toHaveLength(2);
    expect(targets).toContain('urn:schemas-upnp-org:service:WANIPConnection:2');
    expect(targets).toContain('urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1');
  });

  it('answers a unicast search without MX', async () => {
    send(
      'M-SEARCH * HTTP/1.1\r\nHOST: 127.0.0.1:1900\r\nMAN: "ssdp:discover"\r\nST: upnp:rootdevice\r\n\r\n',
    );
    expect(headersOf(await nextDatagram()).get('ST')).toBe('upnp:rootdevice');
    expect(headersOf(await nextDatagram()).get('ST')).toBe('upnp:rootdevice');
  });

  it('ignores malformed, disabled and unlocated clients', async () => {
    // 127.0.0.2 has NAT traversal disabled; 127.0.0.3 has no LOCATION address.
    const silent: Buffer[] = [];
    const others = await Promise.all(
      ['127.0.0.2', '127.0.0.3'].map(async (address) => {
        const socket = createSocket('udp4');
        socket.on('message', (message) => silent.push(message));
        socket.bind(0, address);
        await once(socket, 'listening');
        return socket;
      }),
    );
    for (const socket of others) socket.send(search(IGD1), server.port(), '127.0.0.1');
    send('M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMX: 1\r\nST: ssdp:all\r\n\r\n');
    send(Buffer.alloc(1500, 0x41).toString());

    // The first answer on the enabled client must belong to this last search.
    send(search('urn:schemas-upnp-org:service:WANIPConnection:1'));
    expect(headersOf(await nextDatagram()).get('ST')).toBe(
      'urn:schemas-upnp-org:service:WANIPConnection:1',
    );
    expect(silent).toEqual([]);
    for (const socket of others) socket.close();
  });
});
