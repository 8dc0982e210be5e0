import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { QubesExceptionType } from '../../rpc/admin-api/qubesd-errors.js';
import { encodeQubesdEvent } from '../../rpc/admin-api/qubesd-events.js';
import {
  encodeExceptionReply,
  encodeSuccessReply,
  parseQubesdRequest,
  QUBESD_MAX_REQUEST_BYTES,
  type QubesdRequest,
} from '../../rpc/admin-api/qubesd-wire.js';
import type { Logger } from '../../rpc/logger.js';
import { QUBE_NAME_PATTERN } from '../../rpc/wire-types.js';
import type { LabState } from '../lab-state.js';
import { buildLabInventory, type LabQubesVm } from './lab-inventory.js';
import {
  checkCallShape,
  LAB_METHODS,
  LabAbort,
  type LabQubesdContext,
  LabQubesException,
  vmNotFound,
} from './lab-qubesd-methods.js';
import { LabQubesdStore, type LabQubesdStoreData } from './lab-qubesd-store.js';

/**
 * The lab's stand-in for qubesd: the Admin API on a Unix socket (mode 0600),
 * in the real wire format, serving VMs from a LabState inventory. Features and
 * explicitly set netvms persist in the lab's dom0 state folder.
 */

export interface LabQubesdOptions {
  socketPath: string;
  /** Folder for the persistent store (features, netvm changes). */
  stateDir: string;
  labState: LabState;
}

/** An admin.Events subscriber whose unsent output exceeds this is disconnected. */
const MAX_SUBSCRIBER_BACKLOG_BYTES = 1024 * 1024;

interface Subscriber {
  socket: Socket;
  /** dom0 for all events, or one VM name. */
  destination: string;
}

export class LabQubesd {
  private readonly inventory: Map<string, LabQubesVm>;
  private readonly store: LabQubesdStore;
  private data: LabQubesdStoreData;
  private readonly subscribers = new Set<Subscriber>();
  private readonly connections = new Set<Socket>();
  private server: Server | null = null;
  private readonly context: LabQubesdContext;

  constructor(
    private readonly deps: { logger: Logger },
    private readonly options: LabQubesdOptions,
  ) {
    this.inventory = buildLabInventory(options.labState);
    this.store = new LabQubesdStore(options.stateDir);
    this.data = this.store.load();
    this.applyStoredNetvms();
    this.context = this.makeContext();
  }

  get socketPath(): string {
    return this.options.socketPath;
  }

  /** Listens on the socket; a stale socket file is replaced, a live one is an error. */
  async start(): Promise<void> {
    await removeStaleSocket(this.options.socketPath);

    const server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    // The umask closes the window between bind and chmod in which the socket would be group-writable.
    const previousUmask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.options.socketPath, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(previousUmask);
    }
    chmodSync(this.options.socketPath, 0o600);

    server.on('error', (error) =>
      this.deps.logger.error({ err: error }, 'lab qubesd server error'),
    );
    this.server = server;
    this.deps.logger.info(
      { socketPath: this.options.socketPath, vms: [...this.inventory.keys()] },
      'lab qubesd listening',
    );
  }

  /** Closes the socket and every connection, event subscribers included. */
  async stop(): Promise<void> {
    const server = this.server;
    if (server === null) {
      return;
    }
    this.server = null;
    for (const socket of this.connections) {
      socket.destroy();
    }
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.deps.logger.info({ socketPath: this.options.socketPath }, 'lab qubesd stopped');
  }

  /** Sends one event to every admin.Events subscriber that watches `subject`. */
  emitEvent(subject: string | null, event: string, properties: Record<string, string> = {}): void {
    const frame = encodeQubesdEvent(subject, event, properties);
    for (const subscriber of this.subscribers) {
      if (subscriber.destination !== 'dom0' && subscriber.destination !== subject) {
        continue;
      }
      if (subscriber.socket.writableLength > MAX_SUBSCRIBER_BACKLOG_BYTES) {
        this.deps.logger.warn(
          { event },
          'admin.Events subscriber is not reading; disconnecting it',
        );
        subscriber.socket.destroy();
        continue;
      }
      subscriber.socket.write(frame);
    }
  }

  /** Emits `domain-start` for `vm` and marks it Running. */
  emitDomainStart(vm: string): void {
    this.requireVm(vm).state = 'Running';
    this.emitEvent(vm, 'domain-start', { start_guid: 'False' });
  }

  /** Emits `domain-shutdown` for `vm` and marks it Halted. */
  emitDomainShutdown(vm: string): void {
    this.requireVm(vm).state = 'Halted';
    this.emitEvent(vm, 'domain-shutdown');
  }

  /** Emits what a restart of `vm` looks like to admin.Events: `domain-shutdown`, then `domain-start`. */
  restartVm(vm: string): void {
    this.emitDomainShutdown(vm);
    this.emitDomainStart(vm);
    this.deps.logger.info({ vm }, 'lab VM restart announced');
  }

  private requireVm(name: string): LabQubesVm {
    const vm = this.inventory.get(name);
    if (vm === undefined) {
      throw new Error(
        `no Qubes VM named ${name} in this lab; known: ${[...this.inventory.keys()].join(', ')}`,
      );
    }
    return vm;
  }

  private accept(socket: Socket): void {
    this.connections.add(socket);
    socket.on('close', () => this.connections.delete(socket));
    socket.on('error', (error) =>
      this.deps.logger.debug({ err: error }, 'lab qubesd connection error'),
    );

    const chunks: Buffer[] = [];
    let length = 0;
    socket.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length > QUBESD_MAX_REQUEST_BYTES) {
        this.deps.logger.warn({ bytes: length }, 'request too long; aborting connection');
        socket.destroy();
        return;
      }
      chunks.push(chunk);
    });
    socket.on('end', () => {
      if (!socket.destroyed) {
        this.respond(socket, Buffer.concat(chunks, length));
      }
    });
  }

  private respond(socket: Socket, data: Buffer): void {
    const parsed = parseQubesdRequest(data);
    if (!parsed.ok) {
      this.deps.logger.warn({ reason: parsed.error }, 'framing error; aborting connection');
      socket.destroy();
      return;
    }

    const request = parsed.value;
    try {
      if (this.dispatch(socket, request)) {
        return;
      }
    } catch (error) {
      this.replyError(socket, request, error);
    }
  }

  /** Runs one call; returns true when the socket stays open as an event stream. */
  private dispatch(socket: Socket, request: QubesdRequest): boolean {
    const source = this.lookupVm(request.source);
    const destination = this.lookupVm(request.destination);
    const call = { source, destination, argument: request.argument, payload: request.payload };

    if (request.method === 'admin.Events') {
      checkCallShape(
        request.method,
        { wantsArgument: false, wantsPayload: false, destinationAdminVm: null, handle: () => null },
        call,
      );
      this.subscribe(socket, destination.name);
      return true;
    }

    const method = LAB_METHODS.get(request.method);
    if (method === undefined) {
      throw new LabAbort('ProtocolError', `no such method: ${request.method}`);
    }
    checkCallShape(request.method, method, call);
    const value = method.handle(this.context, call);
    socket.end(encodeSuccessReply(value ?? ''));
    return false;
  }

  private replyError(socket: Socket, request: QubesdRequest, error: unknown): void {
    const where = {
      method: request.method,
      argument: request.argument,
      source: request.source,
      destination: request.destination,
    };
    if (error instanceof LabQubesException) {
      this.deps.logger.debug({ ...where, type: error.type }, 'call failed');
      socket.end(encodeExceptionReply(error.type, error.message));
      return;
    }
    if (error instanceof LabAbort) {
      this.deps.logger.warn(
        { ...where, type: error.type, reason: error.message },
        'call rejected; aborting connection',
      );
    } else {
      this.deps.logger.error({ ...where, err: error }, 'unhandled exception; aborting connection');
    }
    socket.destroy();
  }

  private lookupVm(name: string): LabQubesVm {
    if (!QUBE_NAME_PATTERN.test(name)) {
      // NOTE: qubesd raises this from qubes.vm.validate_name; the lab's message wording is its own.
      throw new LabQubesException(
        QubesExceptionType.valueError,
        `VM name contains illegal characters: ${JSON.stringify(name)}`,
      );
    }
    const vm = this.inventory.get(name);
    if (vm === undefined) {
      throw vmNotFound(name);
    }
    return vm;
  }

  private subscribe(socket: Socket, destination: string): void {
    const subscriber: Subscriber = { socket, destination };
    this.subscribers.add(subscriber);
    socket.on('close', () => this.subscribers.delete(subscriber));
    socket.write(encodeQubesdEvent(null, 'connection-established'));
    this.deps.logger.debug(
      { destination, subscribers: this.subscribers.size },
      'admin.Events subscriber added',
    );
  }

  private makeContext(): LabQubesdContext {
    return {
      inventory: this.inventory,
      getFeatures: (vm) => new Map(Object.entries(this.data.features[vm] ?? {})),
      setFeature: (vm, name, value) => this.setFeature(vm, name, value),
      removeFeature: (vm, name) => this.removeFeature(vm, name),
      setNetvm: (vm, netvm) => this.setNetvm(vm, netvm),
      restartVm: (vm) => this.restartVm(vm),
    };
  }

  private setFeature(vm: string, name: string, value: string): void {
    const features = { ...(this.data.features[vm] ?? {}) };
    const oldValue = Object.hasOwn(features, name) ? features[name] : undefined;
    const properties: Record<string, string> = { feature: name, value };
    if (oldValue !== undefined) {
      properties.oldvalue = oldValue;
    }

    this.emitEvent(vm, `domain-feature-pre-set:${name}`, properties);
    features[name] = value;
    this.commit({ ...this.data, features: { ...this.data.features, [vm]: features } });
    this.emitEvent(vm, `domain-feature-set:${name}`, properties);
    this.deps.logger.info({ vm, feature: name }, 'feature set');
  }

  private removeFeature(vm: string, name: string): void {
    const features = { ...(this.data.features[vm] ?? {}) };
    this.emitEvent(vm, `domain-feature-pre-delete:${name}`, { feature: name });
    delete features[name];
    this.commit({ ...this.data, features: { ...this.data.features, [vm]: features } });
    this.emitEvent(vm, `domain-feature-delete:${name}`, { feature: name });
    this.deps.logger.info({ vm, feature: name }, 'feature removed');
  }

  private setNetvm(vm: LabQubesVm, netvm: string | null): void {
    // qubesd sends str(None) for an absent VM value.
    const properties = { name: 'netvm', newvalue: netvm ?? 'None', oldvalue: vm.netvm ?? 'None' };
    this.emitEvent(vm.name, 'property-pre-set:netvm', properties);
    vm.netvm = netvm;
    vm.netvmIsDefault = false;
    this.commit({ ...this.data, netvms: { ...this.data.netvms, [vm.name]: netvm } });
    this.emitEvent(vm.name, 'property-set:netvm', properties);
    this.deps.logger.info({ vm: vm.name, netvm }, 'netvm set');
  }

  /** Saves first, so a failed write leaves memory and file unchanged. */
  private commit(next: LabQubesdStoreData): void {
    this.store.save(next);
    this.data = next;
  }

  private applyStoredNetvms(): void {
    for (const [name, netvm] of Object.entries(this.data.netvms)) {
      const vm = this.inventory.get(name);
      if (vm === undefined || (netvm !== null && !this.inventory.has(netvm))) {
        this.deps.logger.warn(
          { vm: name, netvm },
          'stored netvm refers to a VM not in this lab; ignoring it',
        );
        continue;
      }
      vm.netvm = netvm;
      vm.netvmIsDefault = false;
    }
  }
}

/** Removes a socket file that no process listens on, as qubesd's cleanup_socket does; a live one is an error. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  if (!existsSync(socketPath)) {
    return;
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) {
    throw new Error(`${socketPath} is in use by another qubesd; stop it first`);
  }
  unlinkSync(socketPath);
}
