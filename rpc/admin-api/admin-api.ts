import { QUBE_NAME_PATTERN } from '../wire-types.js';
import {
  FEATURE_NAME_PATTERN,
  FEATURE_VALUE_PATTERN,
  PROPERTY_NAME_PATTERN,
  type PropertyValue,
  parseFeatureList,
  parseFirewallRules,
  parsePropertyList,
  parsePropertyValue,
  parseVmList,
  type VmListEntry,
  validatePropertyValue,
} from './admin-api-parsers.js';
import type { QubesdCaller } from './qubesd-client.js';
import {
  InvalidQubesdRequestError,
  QubesdCommunicationError,
  QubesdError,
  QubesExceptionType,
} from './qubesd-errors.js';
import type { QubesdEvent } from './qubesd-events.js';
import type { ParseResult } from './qubesd-wire.js';

/**
 * Typed calls of the Qubes Admin API that dom0 code of this project uses.
 * Every value qubesd returns is validated before it is returned; a value that
 * fails validation raises QubesdCommunicationError.
 */
export class AdminApi {
  constructor(private readonly qubesd: QubesdCaller) {}

  /** Lists every VM (admin.vm.List to dom0), dom0 included. */
  async listVms(): Promise<VmListEntry[]> {
    const text = await this.qubesd.call('admin.vm.List', 'dom0');
    return unwrap('admin.vm.List', parseVmList(text));
  }

  /** Reads one property (admin.vm.property.Get), such as `ip`, `netvm` or `provides_network`. */
  async getProperty(vm: string, name: string): Promise<PropertyValue> {
    checkVmName(vm);
    checkPropertyName(name);

    const text = await this.qubesd.call('admin.vm.property.Get', vm, name);
    const property = unwrap(`admin.vm.property.Get ${vm} ${name}`, parsePropertyValue(text));
    const problem = validatePropertyValue(name, property);
    if (problem !== null) {
      throw new QubesdCommunicationError(`admin.vm.property.Get ${vm}: ${problem}`);
    }
    return property;
  }

  /** Lists the property names of a VM (admin.vm.property.List). */
  async listProperties(vm: string): Promise<string[]> {
    checkVmName(vm);
    const text = await this.qubesd.call('admin.vm.property.List', vm);
    return unwrap(`admin.vm.property.List ${vm}`, parsePropertyList(text));
  }

  /** Sets one property (admin.vm.property.Set); an empty value sets a `vm` property to none. */
  async setProperty(vm: string, name: string, value: string): Promise<void> {
    checkVmName(vm);
    checkPropertyName(name);
    await this.qubesd.call('admin.vm.property.Set', vm, name, value);
  }

  /**
   * Reads one feature (admin.vm.feature.Get). Returns null when the VM does
   * not have it: qubesd then raises QubesFeatureNotFoundError. An empty string
   * is a set feature that Qubes reads as false.
   */
  async getFeature(vm: string, name: string): Promise<string | null> {
    checkVmName(vm);
    checkFeatureName(name);
    try {
      return await this.qubesd.call('admin.vm.feature.Get', vm, name);
    } catch (error) {
      if (error instanceof QubesdError && error.type === QubesExceptionType.featureNotFound) {
        return null;
      }
      throw error;
    }
  }

  /** Sets one feature (admin.vm.feature.Set); values are printable ASCII. */
  async setFeature(vm: string, name: string, value: string): Promise<void> {
    checkVmName(vm);
    checkFeatureName(name);
    if (!FEATURE_VALUE_PATTERN.test(value)) {
      throw new InvalidQubesdRequestError(
        `feature ${name} value ${JSON.stringify(value)} contains characters qubesd rejects: use printable ASCII`,
      );
    }
    await this.qubesd.call('admin.vm.feature.Set', vm, name, value);
  }

  /** Removes one feature (admin.vm.feature.Remove); returns false when it was not set. */
  async removeFeature(vm: string, name: string): Promise<boolean> {
    checkVmName(vm);
    checkFeatureName(name);
    try {
      await this.qubesd.call('admin.vm.feature.Remove', vm, name);
      return true;
    } catch (error) {
      if (error instanceof QubesdError && error.type === QubesExceptionType.featureNotFound) {
        return false;
      }
      throw error;
    }
  }

  /** Lists the names of a VM's features (admin.vm.feature.List). */
  async listFeatures(vm: string): Promise<string[]> {
    checkVmName(vm);
    const text = await this.qubesd.call('admin.vm.feature.List', vm);
    return unwrap(`admin.vm.feature.List ${vm}`, parseFeatureList(text));
  }

  /** Reads a VM's firewall rules in the API line format (admin.vm.firewall.Get). */
  async getFirewallRules(vm: string): Promise<string[]> {
    checkVmName(vm);
    const text = await this.qubesd.call('admin.vm.firewall.Get', vm);
    return unwrap(`admin.vm.firewall.Get ${vm}`, parseFirewallRules(text));
  }

  /**
   * Yields admin.Events for all VMs, starting with `connection-established`.
   * Events whose subject is not a valid VM name raise QubesdCommunicationError.
   */
  async *events(signal?: AbortSignal): AsyncGenerator<QubesdEvent> {
    for await (const event of this.qubesd.events(signal === undefined ? {} : { signal })) {
      if (event.subject !== null && !QUBE_NAME_PATTERN.test(event.subject)) {
        throw new QubesdCommunicationError(
          `admin.Events sent ${event.event} for an invalid VM name ${JSON.stringify(event.subject)}`,
        );
      }
      yield event;
    }
  }
}

function unwrap<T>(what: string, result: ParseResult<T>): T {
  if (!result.ok) {
    throw new QubesdCommunicationError(`invalid reply to ${what}: ${result.error}`);
  }
  return result.value;
}

function checkVmName(vm: string): void {
  if (!QUBE_NAME_PATTERN.test(vm)) {
    throw new InvalidQubesdRequestError(
      `invalid VM name ${JSON.stringify(vm)}: use a letter, then letters, digits, _ . - (31 characters at most)`,
    );
  }
}

function checkPropertyName(name: string): void {
  if (!PROPERTY_NAME_PATTERN.test(name)) {
    throw new InvalidQubesdRequestError(
      `invalid property name ${JSON.stringify(name)}: use lower-case letters, digits and _`,
    );
  }
}

function checkFeatureName(name: string): void {
  if (!FEATURE_NAME_PATTERN.test(name)) {
    throw new InvalidQubesdRequestError(
      `invalid feature name ${JSON.stringify(name)}: use 1-64 of a-z A-Z 0-9 _ . -`,
    );
  }
}
