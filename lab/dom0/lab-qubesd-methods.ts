import { FEATURE_VALUE_PATTERN } from '../../rpc/admin-api/admin-api-parsers.js';
import { QubesExceptionType } from '../../rpc/admin-api/qubesd-errors.js';
import { type LabQubesVm, propertyNames, serializeProperty } from './lab-inventory.js';

/**
 * The Admin API methods that the lab's qubesd serves, with the same argument,
 * payload and destination checks as QubesOS/qubes-core-admin
 * `qubes/api/admin.py` and the same exception names and messages
 * (`qubes/exc.py`).
 */

/** An exception that the server sends as a `2\0` reply. */
export class LabQubesException extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
    this.name = 'LabQubesException';
  }
}

/**
 * A request that real qubesd rejects by aborting the connection without a
 * reply: ProtocolError (unknown method, unexpected argument or payload) and
 * PermissionDenied.
 */
export class LabAbort extends Error {
  constructor(
    readonly type: 'ProtocolError' | 'PermissionDenied',
    message: string,
  ) {
    super(message);
    this.name = 'LabAbort';
  }
}

export interface LabCall {
  source: LabQubesVm;
  destination: LabQubesVm;
  argument: string;
  payload: Buffer;
}

/** Server state that a method handler may read and change. */
export interface LabQubesdContext {
  readonly inventory: ReadonlyMap<string, LabQubesVm>;
  getFeatures(vm: string): ReadonlyMap<string, string>;
  setFeature(vm: string, name: string, value: string): void;
  removeFeature(vm: string, name: string): void;
  setNetvm(vm: LabQubesVm, netvm: string | null): void;
  restartVm(vm: string): void;
}

export interface LabMethod {
  /** true: argument required; false: argument forbidden; null: not checked. */
  wantsArgument: boolean | null;
  /** true: payload required; false: payload forbidden; null: not checked. */
  wantsPayload: boolean | null;
  /** true: destination must be dom0; false: must not be dom0; null: not checked. */
  destinationAdminVm: boolean | null;
  /** Returns the reply value; null for an empty `0\0` reply. */
  handle(context: LabQubesdContext, call: LabCall): string | null;
}

/** Exception for admin.vm.feature.Get and Remove of an absent feature. */
function featureNotFound(vm: LabQubesVm, feature: string): LabQubesException {
  return new LabQubesException(
    QubesExceptionType.featureNotFound,
    `Feature not set for domain ${vm.name}: ${feature}`,
  );
}

function noSuchProperty(vm: LabQubesVm, property: string): LabQubesException {
  return new LabQubesException(
    QubesExceptionType.noSuchProperty,
    `Invalid property ${pythonRepr(property)} of ${vm.name}`,
  );
}

/** Python's `repr()` of a str with no quotes or backslashes in it, as qubesd puts names in messages. */
export function pythonRepr(text: string): string {
  return `'${text}'`;
}

/** Orders VMs by name in code-point order, as Python's sorted() orders qubesd's VM names. */
export function compareByName(a: { name: string }, b: { name: string }): number {
  if (a.name < b.name) {
    return -1;
  }
  return a.name > b.name ? 1 : 0;
}

export function vmNotFound(name: string): LabQubesException {
  return new LabQubesException(
    QubesExceptionType.vmNotFound,
    `No such domain: ${pythonRepr(name)}`,
  );
}

export const LAB_METHODS: ReadonlyMap<string, LabMethod> = new Map<string, LabMethod>([
  [
    'admin.vm.List',
    {
      wantsArgument: false,
      wantsPayload: false,
      destinationAdminVm: null,
      handle(context, call) {
        const vms =
          call.destination.name === 'dom0' ? [...context.inventory.values()] : [call.destination];
        vms.sort(compareByName);
        return vms
          .map((vm) => `${vm.name} class=${vm.klass} state=${vm.state} uuid=${vm.uuid}\n`)
          .join('');
      },
    },
  ],
  [
    'admin.vm.property.List',
    {
      wantsArgument: false,
      wantsPayload: false,
      destinationAdminVm: null,
      handle(_context, call) {
        return propertyNames(call.destination)
          .map((name) => `${name}\n`)
          .join('');
      },
    },
  ],
  [
    'admin.vm.property.Get',
    {
      wantsArgument: true,
      wantsPayload: false,
      destinationAdminVm: null,
      handle(context, call) {
        const value = serializeProperty(call.destination, call.argument, context.inventory);
        if (value === null) {
          throw noSuchProperty(call.destination, call.argument);
        }
        return value;
      },
    },
  ],
  [
    'admin.vm.property.Set',
    {
      wantsArgument: true,
      wantsPayload: null,
      destinationAdminVm: null,
      handle(context, call) {
        const vm = call.destination;
        if (!propertyNames(vm).includes(call.argument)) {
          throw noSuchProperty(vm, call.argument);
        }
        if (call.argument !== 'netvm') {
          throw new LabQubesException(
            'QubesNotImplementedError',
            `the lab qubesd sets only the netvm property, not ${call.argument}`,
          );
        }
        context.setNetvm(vm, parseNetvmValue(context, vm, call.payload));
        return null;
      },
    },
  ],
  [
    'admin.vm.feature.List',
    {
      wantsArgument: false,
      wantsPayload: false,
      destinationAdminVm: null,
      handle(context, call) {
        return [...context.getFeatures(call.destination.name).keys()]
          .map((name) => `${name}\n`)
          .join('');
      },
    },
  ],
  [
    'admin.vm.feature.Get',
    {
      wantsArgument: true,
      wantsPayload: false,
      destinationAdminVm: null,
      handle(context, call) {
        const value = context.getFeatures(call.destination.name).get(call.argument);
        if (value === undefined) {
          throw featureNotFound(call.destination, call.argument);
        }
        return value;
      },
    },
  ],
  [
    'admin.vm.feature.Set',
    {
      wantsArgument: true,
      wantsPayload: null,
      destinationAdminVm: null,
      handle(context, call) {
        if (!/^[a-zA-Z0-9_.-]+$/.test(call.argument)) {
          throw new LabQubesException(
            QubesExceptionType.valueError,
            'feature name contains illegal characters',
          );
        }
        const value = call.payload.toString('latin1');
        if (!FEATURE_VALUE_PATTERN.test(value)) {
          throw new LabQubesException(
            QubesExceptionType.valueError,
            `${call.argument} value contains illegal characters`,
          );
        }
        context.setFeature(call.destination.name, call.argument, value);
        return null;
      },
    },
  ],
  [
    'admin.vm.feature.Remove',
    {
      wantsArgument: true,
      wantsPayload: false,
      destinationAdminVm: null,
      handle(context, call) {
        if (!context.getFeatures(call.destination.name).has(call.argument)) {
          throw featureNotFound(call.destination, call.argument);
        }
        context.removeFeature(call.destination.name, call.argument);
        return null;
      },
    },
  ],
  [
    'admin.vm.firewall.Get',
    {
      wantsArgument: false,
      wantsPayload: false,
      destinationAdminVm: false,
      // The lab keeps no firewall.xml, so every VM has the Qubes default: one accept rule.
      handle() {
        return 'action=accept\n';
      },
    },
  ],
  [
    'lab.vm.Restarted',
    {
      wantsArgument: false,
      wantsPayload: false,
      destinationAdminVm: false,
      handle(context, call) {
        if (call.source.name !== 'dom0') {
          throw new LabAbort(
            'PermissionDenied',
            `lab.vm.Restarted is for dom0, not ${call.source.name}`,
          );
        }
        context.restartVm(call.destination.name);
        return null;
      },
    },
  ],
]);

/** Checks argument, payload and destination as `AbstractQubesAPI.execute` does. */
export function checkCallShape(method: string, spec: LabMethod, call: LabCall): void {
  if (spec.wantsPayload === true && call.payload.length === 0) {
    throw new LabAbort('ProtocolError', `${method}: expected payload`);
  }
  if (spec.wantsPayload === false && call.payload.length > 0) {
    throw new LabAbort('ProtocolError', `${method}: unexpected payload`);
  }
  if (spec.wantsArgument === true && call.argument === '') {
    throw new LabAbort('ProtocolError', `${method}: expected an argument`);
  }
  if (spec.wantsArgument === false && call.argument !== '') {
    throw new LabAbort('ProtocolError', `${method}: unexpected argument`);
  }
  if (spec.destinationAdminVm === true && call.destination.klass !== 'AdminVM') {
    throw new LabAbort('ProtocolError', `${method}: expected destination to be AdminVM`);
  }
  if (spec.destinationAdminVm === false && call.destination.klass === 'AdminVM') {
    throw new LabAbort('ProtocolError', `${method}: expected destination to not be AdminVM`);
  }
}

/**
 * Validates a netvm payload: empty for none, else a VM that provides network
 * and does not route back through `vm`.
 */
function parseNetvmValue(
  context: LabQubesdContext,
  vm: LabQubesVm,
  payload: Buffer,
): string | null {
  const name = payload.toString('latin1');
  if (name === '') {
    return null;
  }

  const netvm = context.inventory.get(name);
  if (netvm === undefined) {
    throw vmNotFound(name);
  }
  // NOTE: the two messages below are the lab's wording; qubesd's own differ in detail.
  if (!netvm.providesNetwork) {
    throw new LabQubesException(
      QubesExceptionType.propertyValueError,
      `The ${netvm.name} qube does not provide network`,
    );
  }
  // The hop count bound stops the walk even if the lab state already contains a loop.
  let hop: LabQubesVm | undefined = netvm;
  for (let hops = 0; hop !== undefined && hops <= context.inventory.size; hops += 1) {
    if (hop.name === vm.name) {
      throw new LabQubesException(
        QubesExceptionType.propertyValueError,
        `Loops in network are unsupported: ${netvm.name} already routes through ${vm.name}`,
      );
    }
    hop = hop.netvm === null ? undefined : context.inventory.get(hop.netvm);
  }
  return name;
}
