import { randomInt } from 'node:crypto';
import type { Logger } from '../../rpc/logger.js';
import { type BackendGrant, createBackend, type UpstreamBackend } from './upstream-backends.js';
import { isUpstreamError } from './upstream-errors.js';
import type { MappingProtocol, RouterInfo, UpstreamClock, UpstreamVia } from './upstream-types.js';
import { systemUpstreamClock } from './upstream-types.js';

/**
 * Keeps the broker's mappings on the home router: picks the first protocol
 * the router speaks, maps, renews at half the lease, verifies that mappings
 * still exist, re-creates those that vanish, and reports changes of the
 * external address. Every mapping points at sys-net's LAN address.
 */

/**
 * Default protocol order. PCP comes first: it is the newest standard, its
 * nonce protects mappings from other LAN hosts, and its replies carry the
 * external address. NAT-PMP is next because it is a single UDP exchange
 * without XML. IGD comes last because SOAP over HTTP is slower and its
 * implementations have the most quirks, and v2 goes before v1 because v2 has
 * AddAnyPortMapping and bounded leases.
 */
export const DEFAULT_PROTOCOL_ORDER: readonly UpstreamVia[] = ['pcp', 'natpmp', 'igd2', 'igd1'];

/** How often mappings are verified (IGD) or refreshed (NAT-PMP, PCP). Default 60 s. */
export const DEFAULT_VERIFY_INTERVAL_MS = 60_000;
/** How often the external address is polled. Default 300 s. */
export const DEFAULT_ADDRESS_POLL_INTERVAL_MS = 300_000;
/** Random external ports tried after the hint on an IGD 718 conflict. */
const RANDOM_PORT_CANDIDATES = 4;
/** Lowest port requested unless the caller allows well-known ports. */
const MIN_UNPRIVILEGED_PORT = 1024;

export interface UpstreamMapperOptions {
  logger: Logger;
  clock?: UpstreamClock;
  router: RouterInfo;
  protocolOrder?: readonly UpstreamVia[];
  verifyIntervalMs?: number;
  addressPollIntervalMs?: number;
  /** Attempts per NAT-PMP/PCP request (250 ms, doubling). */
  maxAttempts?: number;
  /** Mapping description shown in the router's UPnP list. */
  description?: string;
}

export interface UpstreamMapRequest {
  protocol: MappingProtocol;
  /** Port on sys-net's LAN address. */
  internalPort: number;
  /** Requested external port; null, 0 or a port below 1024 (unless allowed) means the internal port or a random one. */
  externalPortHint: number | null;
  lifetimeSeconds: number;
  /** Allow external ports below 1024; only when the user asked for such a port. */
  allowWellKnownPort?: boolean;
}

export interface UpstreamMapping {
  protocol: MappingProtocol;
  internalPort: number;
  externalAddress: string | null;
  externalPort: number;
  /** 0 for a permanent IGD mapping. */
  lifetimeSeconds: number;
  via: UpstreamVia;
}

export type UpstreamFailureCode = 'unavailable' | 'rejected' | 'invalid-request' | 'stopped';
export type UpstreamMapResult =
  | { ok: true; mapping: UpstreamMapping }
  | { ok: false; code: UpstreamFailureCode; message: string };

export type MappingChangeListener = (change: {
  protocol: MappingProtocol;
  internalPort: number;
  mapping: UpstreamMapping | null;
}) => void;
export type AddressChangeListener = (change: { previous: string | null; current: string }) => void;

interface ActiveMapping {
  grant: BackendGrant;
  backend: UpstreamBackend;
  request: UpstreamMapRequest;
  renewAtMs: number | null;
}

export class UpstreamMapper {
  private readonly clock: UpstreamClock;
  private readonly logger: Logger;
  private readonly backends: UpstreamBackend[];
  private readonly mappings = new Map<string, ActiveMapping>();
  private readonly addressListeners = new Set<AddressChangeListener>();
  private readonly mappingListeners = new Set<MappingChangeListener>();
  private readonly stateLostVias = new Set<UpstreamVia>();
  private active: UpstreamBackend | null = null;
  private address: string | null = null;
  private shutdown = new AbortController();
  private timer: unknown = null;
  private queue: Promise<unknown> = Promise.resolve();
  private nextVerifyMs = 0;
  private nextAddressPollMs = 0;
  private running = false;

  constructor(private readonly options: UpstreamMapperOptions) {
    this.clock = options.clock ?? systemUpstreamClock;
    this.logger = options.logger.child({ component: 'upstream-mapper' });
    const context = {
      logger: this.logger,
      clock: this.clock,
      router: options.router,
      maxAttempts: options.maxAttempts,
      description: options.description ?? 'qubes-nat-broker',
      onStateLost: (via: UpstreamVia) => this.stateLostVias.add(via),
    };
    this.backends = (options.protocolOrder ?? DEFAULT_PROTOCOL_ORDER).map((via) =>
      createBackend(via, context),
    );
  }

  /** Probes the protocols in order and starts maintenance. Resolves also when no protocol works (status 'unavailable'). */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.shutdown = new AbortController();
    await this.serialize(() => this.selectBackend());
    this.scheduleTick();
  }

  /** Stops maintenance and, unless keepMappings, deletes every mapping (best effort). */
  async stop(options: { keepMappings?: boolean } = {}): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.clock.clearTimeout(this.timer);
    this.shutdown.abort();
    await this.queue.catch(() => undefined);
    if (options.keepMappings) return;
    for (const [key, entry] of this.mappings) {
      try {
        await entry.backend.unmap(entry.grant, AbortSignal.timeout(5000));
      } catch (error) {
        this.logger.error({ err: error, key }, 'could not delete mapping on stop');
      }
    }
    this.mappings.clear();
  }

  status(): { state: 'active' | 'unavailable'; via: UpstreamVia | null } {
    return {
      state: this.active === null ? 'unavailable' : 'active',
      via: this.active?.via ?? null,
    };
  }

  /** Returns the last known external address: null before the first probe or when no protocol works. */
  externalAddress(): string | null {
    return this.address;
  }

  mappingsList(): UpstreamMapping[] {
    return [...this.mappings.values()].map((entry) => this.toMapping(entry));
  }

  onExternalAddressChange(listener: AddressChangeListener): () => void {
    this.addressListeners.add(listener);
    return () => this.addressListeners.delete(listener);
  }

  /** Reports mappings re-created with another port, and mappings that could not be re-created (mapping null). */
  onMappingChange(listener: MappingChangeListener): () => void {
    this.mappingListeners.add(listener);
    return () => this.mappingListeners.delete(listener);
  }

  map(request: UpstreamMapRequest): Promise<UpstreamMapResult> {
    const invalid = validateRequest(request);
    if (invalid !== null)
      return Promise.resolve({ ok: false, code: 'invalid-request', message: invalid });
    if (!this.running)
      return Promise.resolve({
        ok: false,
        code: 'stopped',
        message: 'the upstream mapper is stopped',
      });
    return this.serialize(() => this.mapNow(request));
  }

  /** Deletes a mapping, then verifies other IGD mappings on the same external port (see removeGrant). */
  unmap(target: { protocol: MappingProtocol; internalPort: number }): Promise<void> {
    return this.serialize(async () => {
      const key = mappingKey(target.protocol, target.internalPort);
      const entry = this.mappings.get(key);
      if (entry === undefined) return;
      this.mappings.delete(key);
      await this.removeGrant(entry);
    });
  }

  /** Runs one maintenance pass now: epoch recovery, due renewals, verification and the address poll. */
  maintainNow(): Promise<void> {
    return this.serialize(() => this.maintain(true));
  }

  private async mapNow(request: UpstreamMapRequest): Promise<UpstreamMapResult> {
    const key = mappingKey(request.protocol, request.internalPort);
    const existing = this.mappings.get(key);
    if (existing !== undefined) {
      this.mappings.delete(key);
      await this.removeGrant(existing);
    }

    if (this.active === null) await this.selectBackend();
    const tried = new Set<UpstreamBackend>();
    let lastMessage = 'no upstream protocol is available';
    while (this.active !== null && !tried.has(this.active)) {
      const backend = this.active;
      tried.add(backend);
      try {
        const grant = await backend.map(
          { ...request, externalPortCandidates: portCandidates(request) },
          this.shutdown.signal,
        );
        const entry = { grant, backend, request, renewAtMs: this.renewAt(grant) };
        this.mappings.set(key, entry);
        this.noteAddress(grant.externalAddress);
        this.logger.info({ ...this.toMapping(entry) }, 'upstream mapping created');
        return { ok: true, mapping: this.toMapping(entry) };
      } catch (error) {
        lastMessage = error instanceof Error ? error.message : String(error);
        this.logger.error({ err: error, via: backend.via, key }, 'upstream mapping failed');
        if (isUpstreamError(error, 'aborted'))
          return { ok: false, code: 'stopped', message: lastMessage };
        await this.selectBackend(tried);
      }
    }
    const code = tried.size === 0 ? 'unavailable' : 'rejected';
    return { ok: false, code, message: lastMessage };
  }

  /** Picks the first backend in order (skipping `skip`) whose probe succeeds; null when none does. */
  private async selectBackend(skip: ReadonlySet<UpstreamBackend> = new Set()): Promise<void> {
    this.active = null;
    for (const backend of this.backends) {
      if (skip.has(backend)) continue;
      try {
        const address = await backend.probe(this.shutdown.signal);
        this.active = backend;
        this.noteAddress(address);
        this.logger.info(
          { via: backend.via, externalAddress: address },
          'upstream protocol selected',
        );
        return;
      } catch (error) {
        this.logger.info({ via: backend.via, err: error }, 'upstream protocol not available');
        if (isUpstreamError(error, 'aborted')) return;
      }
    }
    this.logger.warn(
      { router: this.options.router },
      'no upstream protocol works; mappings are unavailable',
    );
  }

  private async maintain(force: boolean): Promise<void> {
    const now = this.clock.nowMs();
    const verifyDue = force || now >= this.nextVerifyMs;
    if (verifyDue)
      this.nextVerifyMs = now + (this.options.verifyIntervalMs ?? DEFAULT_VERIFY_INTERVAL_MS);

    const lost = new Set(this.stateLostVias);
    this.stateLostVias.clear();
    for (const [key, entry] of this.mappings) {
      if (!this.running) return;
      try {
        if (lost.has(entry.backend.via)) {
          this.logger.warn(
            { key, via: entry.backend.via },
            'router lost its state; re-creating mapping',
          );
          await this.recreate(key, entry);
        } else if (entry.renewAtMs !== null && now >= entry.renewAtMs) {
          await this.renew(key, entry);
        } else if (verifyDue) {
          await this.verify(key, entry);
        }
      } catch (error) {
        this.logger.error({ err: error, key }, 'upstream mapping maintenance failed');
      }
    }

    if (force || now >= this.nextAddressPollMs) {
      this.nextAddressPollMs =
        now + (this.options.addressPollIntervalMs ?? DEFAULT_ADDRESS_POLL_INTERVAL_MS);
      await this.pollAddress();
    }
  }

  private async renew(key: string, entry: ActiveMapping): Promise<void> {
    try {
      const grant = await entry.backend.renew(entry.grant, this.shutdown.signal);
      this.replaceGrant(key, entry, grant);
      this.logger.info(
        { ...this.toMapping(this.mappings.get(key) ?? entry) },
        'upstream mapping renewed',
      );
    } catch (error) {
      this.logger.warn({ err: error, key }, 'renewal failed; re-creating mapping');
      await this.recreate(key, entry);
    }
  }

  /** NAT-PMP and PCP cannot list mappings, so their verification is a renewal, which re-creates a lost one. */
  private async verify(key: string, entry: ActiveMapping): Promise<void> {
    if (entry.backend.via === 'natpmp' || entry.backend.via === 'pcp') {
      await this.renew(key, entry);
      return;
    }
    if ((await entry.backend.verify(entry.grant, this.shutdown.signal)) === 'present') return;
    this.logger.warn(
      { key, externalPort: entry.grant.externalPort },
      'upstream mapping vanished; re-creating it',
    );
    await this.recreate(key, entry);
  }

  private async recreate(key: string, entry: ActiveMapping): Promise<void> {
    try {
      const grant = await entry.backend.map(
        {
          ...entry.request,
          externalPortCandidates: [entry.grant.externalPort, ...portCandidates(entry.request)],
        },
        this.shutdown.signal,
      );
      this.replaceGrant(key, entry, grant);
      this.logger.info(
        { ...this.toMapping(this.mappings.get(key) ?? entry) },
        'upstream mapping re-created',
      );
    } catch (error) {
      this.mappings.delete(key);
      this.logger.error({ err: error, key }, 'could not re-create upstream mapping');
      this.emitMapping(entry.request.protocol, entry.request.internalPort, null);
    }
  }

  private replaceGrant(key: string, entry: ActiveMapping, grant: BackendGrant): void {
    const updated = { ...entry, grant, renewAtMs: this.renewAt(grant) };
    this.mappings.set(key, updated);
    this.noteAddress(grant.externalAddress);
    if (grant.externalPort !== entry.grant.externalPort) {
      this.emitMapping(grant.protocol, grant.internalPort, this.toMapping(updated));
    }
  }

  /**
   * Deletes a grant. miniupnpd 2.3.1's nftables backend can delete the rule
   * of the other protocol when TCP and UDP share an external port, so after
   * an IGD delete every other IGD mapping on that port is verified and
   * re-created when it vanished.
   */
  private async removeGrant(entry: ActiveMapping): Promise<void> {
    try {
      await entry.backend.unmap(entry.grant, this.shutdown.signal);
      this.logger.info({ ...this.toMapping(entry) }, 'upstream mapping removed');
    } catch (error) {
      this.logger.error(
        { err: error, externalPort: entry.grant.externalPort },
        'could not delete upstream mapping',
      );
    }
    if (entry.backend.via !== 'igd1' && entry.backend.via !== 'igd2') return;
    for (const [key, sibling] of this.mappings) {
      if (
        sibling.backend !== entry.backend ||
        sibling.grant.externalPort !== entry.grant.externalPort
      )
        continue;
      await this.verify(key, sibling).catch((error: unknown) => {
        this.logger.error(
          { err: error, key },
          'could not verify mapping after a delete on the same port',
        );
      });
    }
  }

  private async pollAddress(): Promise<void> {
    if (this.active === null) {
      await this.selectBackend();
      return;
    }
    try {
      this.noteAddress(await this.active.externalAddress(this.shutdown.signal));
    } catch (error) {
      this.logger.error({ err: error, via: this.active.via }, 'external address poll failed');
    }
  }

  private noteAddress(address: string | null): void {
    if (address === null || address === this.address) return;
    const previous = this.address;
    this.address = address;
    if (previous !== null)
      this.logger.info({ previous, current: address }, 'external address changed');
    for (const listener of this.addressListeners) listener({ previous, current: address });
  }

  private emitMapping(
    protocol: MappingProtocol,
    internalPort: number,
    mapping: UpstreamMapping | null,
  ): void {
    for (const listener of this.mappingListeners) listener({ protocol, internalPort, mapping });
  }

  /** Renew at half the granted lease (RFC 6886 section 3.7 suggests half); never for lease 0. */
  private renewAt(grant: BackendGrant): number | null {
    if (grant.lifetimeSeconds === 0) return null;
    return this.clock.nowMs() + (grant.lifetimeSeconds * 1000) / 2;
  }

  private toMapping(entry: ActiveMapping): UpstreamMapping {
    return {
      protocol: entry.grant.protocol,
      internalPort: entry.grant.internalPort,
      externalAddress: entry.grant.externalAddress ?? this.address,
      externalPort: entry.grant.externalPort,
      lifetimeSeconds: entry.grant.lifetimeSeconds,
      via: entry.backend.via,
    };
  }

  private scheduleTick(): void {
    if (!this.running) return;
    const tickMs = Math.min(1000, this.options.verifyIntervalMs ?? DEFAULT_VERIFY_INTERVAL_MS);
    this.timer = this.clock.setTimeout(() => {
      void this.serialize(() => this.maintain(false))
        .catch((error: unknown) => this.logger.error({ err: error }, 'upstream maintenance failed'))
        .finally(() => this.scheduleTick());
    }, tickMs);
  }

  /** Runs operations one at a time, so maintenance never races a map or unmap of the same mapping. */
  private serialize<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.queue.then(operation, operation);
    this.queue = result.catch(() => undefined);
    return result;
  }
}

function mappingKey(protocol: MappingProtocol, internalPort: number): string {
  return `${protocol}/${internalPort}`;
}

function validateRequest(request: UpstreamMapRequest): string | null {
  if (
    !Number.isInteger(request.internalPort) ||
    request.internalPort < 1 ||
    request.internalPort > 65535
  ) {
    return `invalid internal port ${request.internalPort}: use an integer from 1 to 65535`;
  }
  if (
    !Number.isInteger(request.lifetimeSeconds) ||
    request.lifetimeSeconds < 1 ||
    request.lifetimeSeconds > 0x7fffffff
  ) {
    return `invalid lifetime ${request.lifetimeSeconds} s: use a positive integer number of seconds`;
  }
  const hint = request.externalPortHint;
  if (hint !== null && (!Number.isInteger(hint) || hint < 0 || hint > 65535)) {
    return `invalid external port hint ${hint}: use an integer from 0 to 65535, or null`;
  }
  return null;
}

/**
 * External ports to request, in order: the hint, else the internal port,
 * then random ports. Port 0 is never requested, and ports below 1024 only
 * when the caller allowed them.
 */
export function portCandidates(request: UpstreamMapRequest): number[] {
  const minimum = request.allowWellKnownPort ? 1 : MIN_UNPRIVILEGED_PORT;
  const usable = (port: number | null): port is number =>
    port !== null && port >= minimum && port <= 65535;
  const candidates: number[] = [];
  if (usable(request.externalPortHint)) candidates.push(request.externalPortHint);
  else if (usable(request.internalPort)) candidates.push(request.internalPort);
  while (candidates.length < 1 + RANDOM_PORT_CANDIDATES) {
    const port = randomInt(MIN_UNPRIVILEGED_PORT, 65536);
    if (!candidates.includes(port)) candidates.push(port);
  }
  return candidates;
}
