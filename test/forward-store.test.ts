import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ForwardRule } from '../policy/forwards/forward-rule.js';
import {
  emptyForwardStore,
  ForwardStore,
  ForwardStoreError,
  newForwardId,
} from '../policy/forwards/forward-store.js';

const logger = pino({ level: 'silent' });

function rule(qube: string, port: number): ForwardRule {
  return {
    id: newForwardId(),
    qube,
    protocol: 'tcp',
    ports: { first: port, last: port },
    targetPorts: { first: port, last: port },
    sourceCidr: '0.0.0.0/0',
    expiresAtUnixSeconds: null,
    comment: null,
    createdAtUnixSeconds: 1,
  };
}

describe('ForwardStore', () => {
  let directory: string;
  let store: ForwardStore;

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'qnb-store-'));
    store = new ForwardStore({ filePath: join(directory, 'forwards.json'), logger });
  });

  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('reads a missing file as an empty store', async () => {
    expect(await store.read()).toEqual(emptyForwardStore());
  });

  it('writes and reads back forwards', async () => {
    const added = rule('work', 8443);
    await store.update(async (data) => ({ data: { ...data, forwards: [added] }, result: null }));
    expect((await store.read()).forwards).toEqual([added]);
    const text = await readFile(store.filePath, 'utf8');
    expect(JSON.parse(text).format).toBe('qubes-nat-broker-forwards');
  });

  it('leaves the file unchanged when the update throws', async () => {
    await store.update(async (data) => ({
      data: { ...data, forwards: [rule('work', 1)] },
      result: null,
    }));
    const before = await readFile(store.filePath, 'utf8');
    await expect(
      store.update(async () => {
        throw new Error('push failed');
      }),
    ).rejects.toThrow('push failed');
    expect(await readFile(store.filePath, 'utf8')).toBe(before);
  });

  it('serializes concurrent writers without losing a forward', async () => {
    const writers = Array.from({ length: 20 }, (_, index) =>
      store.update(async (data) => ({
        data: { ...data, forwards: [...data.forwards, rule('work', 1000 + index)] },
        result: null,
      })),
    );
    await Promise.all(writers);
    expect((await store.read()).forwards).toHaveLength(20);
  });

  it('refuses a corrupt file and never overwrites it', async () => {
    await writeFile(store.filePath, '{"format": "something else"');
    await expect(store.read()).rejects.toBeInstanceOf(ForwardStoreError);
    await expect(store.update(async (data) => ({ data, result: null }))).rejects.toThrow(
      'fix the file or move it away',
    );
    expect(await readFile(store.filePath, 'utf8')).toBe('{"format": "something else"');
  });

  it('names the invalid field of a well-formed but wrong file', async () => {
    const data = {
      ...emptyForwardStore(),
      forwards: [{ ...rule('work', 80), ports: { first: 0, last: 80 } }],
    };
    await writeFile(store.filePath, JSON.stringify(data));
    await expect(store.read()).rejects.toThrow('forwards.0.ports.first');
  });
});
