import { createHash } from 'node:crypto';
import type { VmPowerState } from '../../rpc/admin-api/admin-api-parsers.js';
import type { LabState, LabVmKind } from '../lab-state.js';
import { planLabVms } from '../lab-topology.js';

/**
 * The Qubes VMs of a lab, as the lab's qubesd stand-in presents them: every
 * lab VM of kind dom0, netvm, qube or broker. Property values follow
 * QubesOS/qubes-core-admin `qubes/vm/mix/net.py`: `gateway` is the VM's own
 * IP when it provides network, `visible_ip` equals `ip` (no `net.fake-ip`
 * feature in the lab), `visible_gateway` is the netvm's gateway.
 */

export interface LabQubesVm {
  name: string;
  kind: LabVmKind;
  /** `AdminVM` for dom0, `AppVM` for every other lab VM. */
  klass: 'AdminVM' | 'AppVM';
  providesNetwork: boolean;
  /** The `ip` property; null for dom0 and for VMs without an address. */
  ip: string | null;
  /** For a netvm: the gateway address its clients use (the lab's downstream vif address). */
  downstreamGateway: string | null;
  netvm: string | null;
  /** True while `netvm` has not been set explicitly. */
  netvmIsDefault: boolean;
  label: string;
  uuid: string;
  state: VmPowerState;
}

/** The VM that real Qubes uses as `default_netvm`, and so the lab's default. */
export const LAB_DEFAULT_NETVM = 'sys-firewall';

const QUBES_KINDS: ReadonlySet<LabVmKind> = new Set(['dom0', 'netvm', 'qube', 'broker']);

const LABEL_BY_KIND: Readonly<Record<string, string>> = {
  dom0: 'black',
  netvm: 'red',
  broker: 'orange',
  qube: 'green',
};

/** dom0's UUID in Qubes is all zeros. */
const DOM0_UUID = '00000000-0000-0000-0000-000000000000';

/** Builds the Qubes VM inventory of a lab; dom0 is always present. */
export function buildLabInventory(state: LabState): Map<string, LabQubesVm> {
  const vms = new Map<string, LabQubesVm>();
  const names = Object.values(state.vms)
    .filter((vm) => QUBES_KINDS.has(vm.kind))
    .map((vm) => vm.name);
  const defaultNetvm = names.includes(LAB_DEFAULT_NETVM) ? LAB_DEFAULT_NETVM : null;

  const plans = planLabVms(state.options.withVpn);

  vms.set('dom0', makeDom0());
  for (const vm of Object.values(state.vms)) {
    if (!QUBES_KINDS.has(vm.kind) || vm.kind === 'dom0') {
      continue;
    }
    const providesNetwork = vm.kind === 'netvm';
    const plan = plans.find((candidate) => candidate.name === vm.name);
    vms.set(vm.name, {
      downstreamGateway: plan?.providesNetwork?.gateway ?? null,
      name: vm.name,
      kind: vm.kind,
      klass: 'AppVM',
      providesNetwork,
      ip: vm.address,
      netvm: vm.netvm,
      netvmIsDefault: !providesNetwork && vm.netvm !== null && vm.netvm === defaultNetvm,
      label: LABEL_BY_KIND[vm.kind] ?? 'gray',
      uuid: uuidForName(vm.name),
      state: 'Running',
    });
  }
  return vms;
}

function makeDom0(): LabQubesVm {
  return {
    name: 'dom0',
    kind: 'dom0',
    klass: 'AdminVM',
    providesNetwork: false,
    ip: null,
    downstreamGateway: null,
    netvm: null,
    netvmIsDefault: false,
    label: 'black',
    uuid: DOM0_UUID,
    state: 'Running',
  };
}

/** Derives a stable name-based UUID (version 5 layout over SHA-1), so lab runs list the same UUIDs. */
export function uuidForName(name: string): string {
  const hex = createHash('sha1').update(`qubes-nat-broker-lab:${name}`).digest('hex').slice(0, 32);
  const variant = ((Number.parseInt(hex.slice(16, 18), 16) & 0x3f) | 0x80).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${variant}${hex.slice(18, 20)}-${hex.slice(20, 32)}`;
}

/** Properties of the AdminVM class that the lab serves. */
const ADMIN_VM_PROPERTIES = ['klass', 'label', 'name', 'uuid'] as const;

/** Properties of QubesVM classes that the lab serves. */
const QUBES_VM_PROPERTIES = [
  'gateway',
  'ip',
  'klass',
  'label',
  'name',
  'netvm',
  'provides_network',
  'uuid',
  'visible_gateway',
  'visible_ip',
] as const;

export function propertyNames(vm: LabQubesVm): readonly string[] {
  return vm.klass === 'AdminVM' ? ADMIN_VM_PROPERTIES : QUBES_VM_PROPERTIES;
}

/**
 * Serializes one property as admin.vm.property.Get does:
 * `default=True|False type=TYPE VALUE`, VALUE empty for None. Returns null
 * when the VM has no such property.
 */
export function serializeProperty(
  vm: LabQubesVm,
  name: string,
  inventory: ReadonlyMap<string, LabQubesVm>,
): string | null {
  if (!propertyNames(vm).includes(name)) {
    return null;
  }

  const format = (isDefault: boolean, type: string, value: string | null): string =>
    `default=${isDefault ? 'True' : 'False'} type=${type} ${value ?? ''}`;
  // In Qubes a netvm's clients use its own IP as gateway; the lab gives each
  // netvm a separate downstream address (as the lab topology documents).
  const gatewayOf = (candidate: LabQubesVm | undefined): string | null =>
    candidate?.providesNetwork === true ? candidate.downstreamGateway : null;

  switch (name) {
    case 'name':
      return format(false, 'str', vm.name);
    // NOTE: klass is reported as a default str property; not checked against a real qubesd.
    case 'klass':
      return format(true, 'str', vm.klass);
    case 'label':
      return format(false, 'label', vm.label);
    case 'uuid':
      return format(false, 'str', vm.uuid);
    case 'netvm':
      return format(vm.netvmIsDefault, 'vm', vm.netvm);
    case 'provides_network':
      return format(!vm.providesNetwork, 'bool', vm.providesNetwork ? 'True' : 'False');
    case 'ip':
    case 'visible_ip':
      return format(true, 'str', vm.ip);
    case 'gateway':
      return format(true, 'str', gatewayOf(vm));
    case 'visible_gateway':
      return format(true, 'str', vm.netvm === null ? null : gatewayOf(inventory.get(vm.netvm)));
    default:
      return null;
  }
}
