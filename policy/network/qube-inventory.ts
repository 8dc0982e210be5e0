import { isIPv4 } from 'node:net';

/**
 * The qubes dom0 knows about, read through the Qubes Admin API
 * (`admin.vm.List`, `admin.vm.property.Get`). In the lab a stand-in qubesd
 * answers the same calls, so this is the only code path.
 */

/** The Admin API calls the inventory needs; `AdminApi` in rpc/admin-api provides them. */
export interface AdminApiReader {
  listVms(): Promise<Array<{ name: string; klass: string; state: string }>>;
  getProperty(
    vm: string,
    property: string,
  ): Promise<{ isDefault: boolean; type: string; value: string | null }>;
  getFeature(vm: string, feature: string): Promise<string | null>;
}

export interface QubeInfo {
  name: string;
  klass: string;
  running: boolean;
  /** The qube's own address (`ip` property); null for dom0 and qubes without one. */
  ip: string | null;
  /** The qube's netvm, or null when it has none (sys-net, offline qubes). */
  netvm: string | null;
  providesNetwork: boolean;
}

export class InventoryError extends Error {
  override name = 'InventoryError';
}

/** Longest network chain followed; Qubes forbids netvm loops, so this is a guard only. */
const MAX_CHAIN_LENGTH = 16;

export class InventorySnapshot {
  constructor(readonly qubes: ReadonlyMap<string, QubeInfo>) {}

  get(name: string): QubeInfo {
    const qube = this.qubes.get(name);
    if (qube === undefined) {
      throw new InventoryError(`no qube named "${name}"; list them with qvm-ls`);
    }
    return qube;
  }

  /** Returns the netvms from the qube's own netvm up to the uplink netvm (sys-net). */
  networkChain(name: string): string[] {
    const chain: string[] = [];
    let current = this.get(name).netvm;
    while (current !== null) {
      if (chain.includes(current) || chain.length >= MAX_CHAIN_LENGTH) {
        throw new InventoryError(`the netvm chain of "${name}" loops through "${current}"`);
      }
      chain.push(current);
      current = this.get(current).netvm;
    }
    return chain;
  }

  /** Returns the uplink netvm of a qube's chain, or null for a qube without netvm. */
  uplinkOf(name: string): string | null {
    return this.networkChain(name).at(-1) ?? null;
  }
}

export class QubeInventory {
  constructor(private readonly adminApi: AdminApiReader) {}

  async snapshot(): Promise<InventorySnapshot> {
    const listed = await this.adminApi.listVms();
    const qubes = new Map<string, QubeInfo>();

    for (const vm of listed) {
      if (vm.klass === 'AdminVM') {
        qubes.set(vm.name, { ...baseInfo(vm), ip: null, netvm: null, providesNetwork: false });
        continue;
      }

      const [ip, netvm, providesNetwork] = await Promise.all([
        this.adminApi.getProperty(vm.name, 'ip'),
        this.adminApi.getProperty(vm.name, 'netvm'),
        this.adminApi.getProperty(vm.name, 'provides_network'),
      ]);
      qubes.set(vm.name, {
        ...baseInfo(vm),
        ip: ip.value !== null && isIPv4(ip.value) ? ip.value : null,
        netvm: netvm.value === null || netvm.value === '' ? null : netvm.value,
        providesNetwork: providesNetwork.value === 'True',
      });
    }
    return new InventorySnapshot(qubes);
  }
}

function baseInfo(vm: { name: string; klass: string; state: string }) {
  return { name: vm.name, klass: vm.klass, running: vm.state === 'Running' };
}
