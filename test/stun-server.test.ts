import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeAddressAttribute,
  decodeErrorCode,
  decodeUnknownAttributes,
  encodeChangeRequest,
} from '../broker/stun/stun-attributes.js';
import { buildBindingRequest, buildStunMessage } from '../broker/stun/stun-builder.js';
import { findAttribute, parseStunMessage, type StunMessage } from '../broker/stun/stun-codec.js';
import {
  STUN_MAGIC_COOKIE,
  StunAttributeType,
  StunClass,
  StunMethod,
} from '../broker/stun/stun-constants.js';
import { StunServer } from '../broker/stun/stun-server.js';
import { createLogger } from '../rpc/logger.js';
import { StunFakeMappingService } from './stun-fake-mapping-service.js';

/**
 * Drives StunServer over real UDP sockets on 127.0.0.1. StunFakeMappingService
 * replaces the broker core, which needs dom0 and a home router. Silence
 * is checked without timers: after the packet that must get no reply, the
 * test sends a valid request, and the first datagram back must answer that one.
 */

const clock = { nowMs: () => nowMs };
let nowMs = 1_000_000;
const deniedClientPorts: number[] = [];
const failedClientPorts: number[] = [];
const enabledClients = ['127.0.0.1'];
const mappingService = new StunFakeMappingService({
  enabledClients,
  externalAddress: '203.0.113.9',
  externalPort: 45678,
  deniedClientPorts,
  failedClientPorts,
});
const server = new StunServer({
  mappingService,
  logger: createLogger('stun-server-test', { level: 'silent' }),
  clock,
  address: '127.0.0.1',
  ports: [0, 0],
});
let serverPorts: number[] = [];
const clients: Socket[] = [];

beforeAll(async () => {
  const bound = await server.start();
  serverPorts = bound.map((entry) => entry.port);
});

afterAll(async () => {
  await server.stop();
});

afterEach(() => {
  mappingService.holdRequests = false;
  mappingService.releaseHeldRequests();
  for (const client of clients.splice(0)) {
    client.close();
  }
});

/** Opens a client socket whose received datagrams queue up for `next()`. */
async function openClient(): Promise<{
  socket: Socket;
  port: number;
  next: () => Promise<Uint8Array>;
}> {
  const socket = createSocket('udp4');
  clients.push(socket);
  const queue: Uint8Array[] = [];
  const waiters: Array<(bytes: Uint8Array) => void> = [];
  socket.on('message', (message) => {
    const bytes = new Uint8Array(message);
    const waiter = waiters.shift();
    if (waiter === undefined) {
      queue.push(bytes);
    } else {
      waiter(bytes);
    }
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const next = () => {
    const queued = queue.shift();
    return queued !== undefined
      ? Promise.resolve(queued)
      : new Promise<Uint8Array>((resolve) => waiters.push(resolve));
  };
  return { socket, port: socket.address().port, next };
}

function send(socket: Socket, bytes: Uint8Array, port = serverPorts[0] ?? 0): void {
  socket.send(bytes, port, '127.0.0.1');
}

function parsed(bytes: Uint8Array): StunMessage {
  const result = parseStunMessage(bytes);
  if (!result.ok) {
    throw new Error(result.error.message);
  }
  return result.message;
}

function errorCodeOf(message: StunMessage): number | undefined {
  const attribute = findAttribute(message, StunAttributeType.errorCode);
  const decoded = decodeErrorCode(attribute?.value ?? new Uint8Array());
  return decoded.ok ? decoded.value.code : undefined;
}

async function waitForMappingRequests(count: number): Promise<void> {
  for (let attempt = 0; attempt < 200 && mappingService.requests.length < count; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('StunServer Binding', () => {
  it('answers with mapped address', async () => {
    const client = await openClient();
    const transactionId = randomBytes(12);
    send(client.socket, buildBindingRequest(transactionId, { fingerprint: true }));

    const response = parsed(await client.next());
    expect(response.messageClass).toBe(StunClass.successResponse);
    expect(Buffer.from(response.transactionId)).toEqual(transactionId);
    expect(response.fingerprint).toBe('valid');
    const mapped = findAttribute(response, StunAttributeType.xorMappedAddress);
    expect(decodeAddressAttribute(mapped?.value ?? new Uint8Array(), transactionId)).toEqual({
      ok: true,
      value: { family: 'ipv4', address: '203.0.113.9', port: 45678 },
    });

    const request = mappingService.requests.at(-1);
    expect(request).toEqual({
      clientAddress: '127.0.0.1',
      protocol: 'udp',
      internalAddress: '127.0.0.1',
      internalPort: client.port,
      suggestedExternalPort: null,
      requireSuggestedPort: false,
      lifetimeSeconds: 300,
      via: 'stun',
      description: 'STUN binding',
    });
  });

  it('serves second port', async () => {
    const client = await openClient();
    send(client.socket, buildBindingRequest(randomBytes(12)), serverPorts[1]);
    expect(parsed(await client.next()).messageClass).toBe(StunClass.successResponse);
  });

  it('answers RFC 3489 client', async () => {
    const client = await openClient();
    send(client.socket, buildBindingRequest(randomBytes(12), { magicCookie: 0x01020304 }));
    const response = parsed(await client.next());
    expect(response.magicCookie).toBe(0x01020304);
    const mapped = findAttribute(response, StunAttributeType.mappedAddress);
    expect(decodeAddressAttribute(mapped?.value ?? new Uint8Array())).toEqual({
      ok: true,
      value: { family: 'ipv4', address: '203.0.113.9', port: 45678 },
    });
    expect(findAttribute(response, StunAttributeType.xorMappedAddress)).toBeUndefined();
  });

  it('holds reply and repeats it', async () => {
    const client = await openClient();
    const request = buildBindingRequest(randomBytes(12));
    const before = mappingService.requests.length;
    mappingService.holdRequests = true;

    send(client.socket, request);
    await waitForMappingRequests(before + 1);
    send(client.socket, request); // retransmission while the core still decides
    mappingService.releaseHeldRequests();
    const first = await client.next();

    send(client.socket, request); // retransmission after the answer
    const second = await client.next();
    expect(second).toEqual(first);
    expect(mappingService.requests.length).toBe(before + 1);
  });

  it('asks again after cache expiry', async () => {
    const client = await openClient();
    const request = buildBindingRequest(randomBytes(12));
    const before = mappingService.requests.length;
    send(client.socket, request);
    await client.next();

    nowMs += 41_000;
    send(client.socket, request);
    await client.next();
    expect(mappingService.requests.length).toBe(before + 2);
  });

  it('returns 403 when denied', async () => {
    const client = await openClient();
    deniedClientPorts.push(client.port);
    send(client.socket, buildBindingRequest(randomBytes(12)));
    const response = parsed(await client.next());
    expect(response.messageClass).toBe(StunClass.errorResponse);
    expect(errorCodeOf(response)).toBe(403);
    expect(response.fingerprint).toBe('valid');
  });

  it('returns 500 when core fails', async () => {
    const client = await openClient();
    failedClientPorts.push(client.port);
    send(client.socket, buildBindingRequest(randomBytes(12)));
    expect(errorCodeOf(parsed(await client.next()))).toBe(500);
  });
});

describe('StunServer input rules', () => {
  /** Sends `bytes`, then a valid request. Returns the first reply, or 'silent' when that reply belongs to the valid request. */
  async function replyTo(bytes: Uint8Array): Promise<StunMessage | 'silent'> {
    const client = await openClient();
    send(client.socket, bytes);
    const probeId = randomBytes(12);
    send(client.socket, buildBindingRequest(probeId));
    const first = parsed(await client.next());
    return Buffer.from(first.transactionId).equals(probeId) ? 'silent' : first;
  }

  it('ignores clients without NAT traversal', async () => {
    const client = await openClient();
    enabledClients.splice(0);
    const checksBefore = mappingService.enabledChecks.length;
    send(client.socket, buildBindingRequest(randomBytes(12)));
    for (let attempt = 0; attempt < 200; attempt += 1) {
      if (mappingService.enabledChecks.length > checksBefore) {
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    enabledClients.push('127.0.0.1');
    expect(mappingService.enabledChecks.length).toBe(checksBefore + 1);
    const probeId = randomBytes(12);
    send(client.socket, buildBindingRequest(probeId));
    expect(Buffer.from(parsed(await client.next()).transactionId)).toEqual(probeId);
  });

  it('returns 420 for change request', async () => {
    const reply = await replyTo(
      buildBindingRequest(randomBytes(12), {
        attributes: [
          { type: StunAttributeType.changeRequest, value: encodeChangeRequest(false, true) },
        ],
      }),
    );
    expect(reply).not.toBe('silent');
    const message = reply as StunMessage;
    expect(errorCodeOf(message)).toBe(420);
    const unknown = findAttribute(message, StunAttributeType.unknownAttributes);
    expect(decodeUnknownAttributes(unknown?.value ?? new Uint8Array())).toEqual({
      ok: true,
      value: [StunAttributeType.changeRequest],
    });
  });

  it('serves change request without flags', async () => {
    const reply = await replyTo(
      buildBindingRequest(randomBytes(12), {
        attributes: [
          { type: StunAttributeType.changeRequest, value: encodeChangeRequest(false, false) },
        ],
      }),
    );
    expect(reply).not.toBe('silent');
    expect((reply as StunMessage).messageClass).toBe(StunClass.successResponse);
  });

  it('returns 420 for unknown required attribute', async () => {
    const reply = await replyTo(
      buildBindingRequest(randomBytes(12), {
        attributes: [
          { type: StunAttributeType.responsePort, value: Uint8Array.from([0x12, 0x34, 0, 0]) },
          { type: 0x7f00, value: new Uint8Array(0) },
          { type: 0xc001, value: new Uint8Array(4) }, // comprehension-optional: ignored
        ],
      }),
    );
    const message = reply as StunMessage;
    expect(errorCodeOf(message)).toBe(420);
    const unknown = findAttribute(message, StunAttributeType.unknownAttributes);
    expect(decodeUnknownAttributes(unknown?.value ?? new Uint8Array())).toEqual({
      ok: true,
      value: [StunAttributeType.responsePort, 0x7f00],
    });
  });

  it('returns 400 for attribute past end', async () => {
    const request = buildBindingRequest(randomBytes(12), {
      attributes: [{ type: StunAttributeType.software, value: new Uint8Array(4) }],
    });
    request[23] = 40; // SOFTWARE length runs past the message end
    const reply = await replyTo(request);
    expect(errorCodeOf(reply as StunMessage)).toBe(400);
  });

  it('returns 400 for short change request', async () => {
    const reply = await replyTo(
      buildBindingRequest(randomBytes(12), {
        attributes: [{ type: StunAttributeType.changeRequest, value: new Uint8Array(2) }],
      }),
    );
    expect(errorCodeOf(reply as StunMessage)).toBe(400);
  });

  it('ignores ICE connectivity check', async () => {
    const reply = await replyTo(
      buildBindingRequest(randomBytes(12), {
        attributes: [
          { type: StunAttributeType.username, value: new TextEncoder().encode('evtj:h6vY') },
          { type: StunAttributeType.priority, value: Uint8Array.from([0x6e, 0, 1, 0xff]) },
          { type: StunAttributeType.messageIntegrity, value: new Uint8Array(20) },
        ],
        fingerprint: true,
      }),
    );
    expect(reply).toBe('silent');
  });

  it('ignores indication', async () => {
    const indication = buildStunMessage({
      method: StunMethod.binding,
      messageClass: StunClass.indication,
      magicCookie: STUN_MAGIC_COOKIE,
      transactionId: randomBytes(12),
      attributes: [],
      fingerprint: true,
    });
    expect(await replyTo(indication)).toBe('silent');
  });

  it('ignores responses and other methods', async () => {
    const response = buildStunMessage({
      method: StunMethod.binding,
      messageClass: StunClass.successResponse,
      magicCookie: STUN_MAGIC_COOKIE,
      transactionId: randomBytes(12),
      attributes: [],
      fingerprint: false,
    });
    expect(await replyTo(response)).toBe('silent');
    const allocate = buildStunMessage({
      method: 0x003,
      messageClass: StunClass.request,
      magicCookie: STUN_MAGIC_COOKIE,
      transactionId: randomBytes(12),
      attributes: [],
      fingerprint: false,
    });
    expect(await replyTo(allocate)).toBe('silent');
  });

  it('ignores malformed datagrams', async () => {
    expect(await replyTo(new Uint8Array(0))).toBe('silent');
    expect(await replyTo(Uint8Array.from([0x80, 0x60, 0, 0]))).toBe('silent');
    const wrongLength = buildBindingRequest(randomBytes(12));
    wrongLength[3] = 4;
    expect(await replyTo(wrongLength)).toBe('silent');
    const badFingerprint = buildBindingRequest(randomBytes(12), { fingerprint: true });
    badFingerprint[27] = (badFingerprint[27] ?? 0) ^ 0xff;
    expect(await replyTo(badFingerprint)).toBe('silent');
  });

  it('ignores oversized request', async () => {
    const large = buildBindingRequest(randomBytes(12), {
      attributes: [{ type: StunAttributeType.software, value: new Uint8Array(600) }],
    });
    expect(await replyTo(large)).toBe('silent');
  });
});
