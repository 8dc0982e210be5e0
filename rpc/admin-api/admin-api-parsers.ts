import { isIPv4 } from 'node:net';
import { QUBE_NAME_PATTERN } from '../wire-types.js';
import type { ParseResult } from './qubesd-wire.js';

/**
 * Parsers of Admin API reply values, in the formats of QubesOS/qubes-core-admin
 * `qubes/api/admin.py`. Each returns a typed value or an error naming the
 * offending line.
 */

/** Feature names that admin.vm.feature.Set accepts (`\A[a-zA-Z0-9_.-]+\Z` in qubesd). */
export const FEATURE_NAME_PATTERN = /^[a-zA-Z0-9_.-]{1,64}$/;

/** Feature values that admin.vm.feature.Set accepts: printable ASCII (`\A[\x20-\x7E]*\Z`). */
export const FEATURE_VALUE_PATTERN = /^[\x20-\x7e]*$/;

/** Property names as qubes `property.__name__` spells them. */
export const PROPERTY_NAME_PATTERN = /^[a-z][a-z0-9_]{0,63}$/;

/** Power states of `QubesVM.get_power_state()`. */
export const VM_POWER_STATES = [
  'Running',
  'Halted',
  'Paused',
  'Suspended',
  'Transient',
  'Halting',
  'Dying',
  'Crashed',
  'NA',
] as const;
export type VmPowerState = (typeof VM_POWER_STATES)[number];

export interface VmListEntry {
  name: string;
  /** VM class: AdminVM, AppVM, TemplateVM, StandaloneVM, DispVM. */
  klass: string;
  state: VmPowerState;
}

/** Property value types of admin.vm.property.Get. */
export const PROPERTY_TYPES = ['str', 'int', 'bool', 'vm', 'label'] as const;
export type PropertyType = (typeof PROPERTY_TYPES)[number];

export interface PropertyValue {
  /** True when the property has its default value (not set explicitly). */
  isDefault: boolean;
  type: PropertyType;
  /** The value as qubesd prints it; null when qubesd sent an empty value (no netvm, no IP). */
  value: string | null;
}

const KLASS_PATTERN = /^[A-Z][A-Za-z0-9]{0,63}$/;

/**
 * Parses admin.vm.List: one `NAME class=KLASS state=STATE` line per VM, with
 * further `key=value` words (current qubesd adds `uuid=`) accepted and ignored.
 */
export function parseVmList(text: string): ParseResult<VmListEntry[]> {
  const entries: VmListEntry[] = [];
  const seen = new Set<string>();

  for (const line of splitLines(text)) {
    const [name = '', ...words] = line.split(' ');
    if (!QUBE_NAME_PATTERN.test(name)) {
      return { ok: false, error: `admin.vm.List line ${JSON.stringify(line)}: invalid VM name` };
    }
    if (seen.has(name)) {
      return { ok: false, error: `admin.vm.List lists ${name} twice` };
    }

    const fields = new Map<string, string>();
    for (const word of words) {
      const separator = word.indexOf('=');
      if (separator <= 0 || fields.has(word.slice(0, separator))) {
        return {
          ok: false,
          error: `admin.vm.List line ${JSON.stringify(line)}: invalid word ${JSON.stringify(word)}`,
        };
      }
      fields.set(word.slice(0, separator), word.slice(separator + 1));
    }

    const klass = fields.get('class') ?? '';
    const state = fields.get('state') ?? '';
    if (!KLASS_PATTERN.test(klass)) {
      return { ok: false, error: `admin.vm.List line ${JSON.stringify(line)}: invalid class` };
    }
    if (!isPowerState(state)) {
      return { ok: false, error: `admin.vm.List line ${JSON.stringify(line)}: invalid state` };
    }

    seen.add(name);
    entries.push({ name, klass, state });
  }
  return { ok: true, value: entries };
}

/**
 * Parses admin.vm.property.Get: `default=True|False type=TYPE VALUE`, where
 * VALUE runs to the end and is empty for None.
 */
export function parsePropertyValue(text: string): ParseResult<PropertyValue> {
  const match = /^default=(True|False) type=([a-z]+) ([^\n]*)$/.exec(text);
  if (match === null) {
    return {
      ok: false,
      error: `property value ${JSON.stringify(text.slice(0, 80))} is not "default=True|False type=TYPE VALUE"`,
    };
  }

  const [, defaultText = '', typeText = '', valueText = ''] = match;
  if (!isPropertyType(typeText)) {
    return { ok: false, error: `unknown property type ${JSON.stringify(typeText)}` };
  }
  return {
    ok: true,
    value: {
      isDefault: defaultText === 'True',
      type: typeText,
      value: valueText === '' ? null : valueText,
    },
  };
}

/**
 * Checks a property value against what its name promises: IPv4 addresses for
 * `ip`, `gateway`, `visible_ip` and `visible_gateway`, VM names for `vm`
 * properties, `True`/`False` for `bool`, digits for `int`.
 */
export function validatePropertyValue(name: string, property: PropertyValue): string | null {
  const { value } = property;
  if (value === null) {
    return null;
  }
  if (IPV4_PROPERTIES.has(name) && !isIPv4(value)) {
    return `property ${name} value ${JSON.stringify(value)} is not an IPv4 address`;
  }
  if (property.type === 'vm' && !QUBE_NAME_PATTERN.test(value)) {
    return `property ${name} value ${JSON.stringify(value)} is not a VM name`;
  }
  if (property.type === 'bool' && value !== 'True' && value !== 'False') {
    return `property ${name} value ${JSON.stringify(value)} is not True or False`;
  }
  if (property.type === 'int' && !/^-?\d{1,19}$/.test(value)) {
    return `property ${name} value ${JSON.stringify(value)} is not an integer`;
  }
  return null;
}

const IPV4_PROPERTIES = new Set(['ip', 'gateway', 'visible_ip', 'visible_gateway']);

/** Parses admin.vm.property.List: one property name per line. */
export function parsePropertyList(text: string): ParseResult<string[]> {
  const names = splitLines(text);
  for (const name of names) {
    if (!PROPERTY_NAME_PATTERN.test(name)) {
      return {
        ok: false,
        error: `admin.vm.property.List returned an invalid property name ${JSON.stringify(name)}`,
      };
    }
  }
  return { ok: true, value: names };
}

/** Parses admin.vm.feature.List: one feature name per line. */
export function parseFeatureList(text: string): ParseResult<string[]> {
  const names = splitLines(text);
  for (const name of names) {
    if (!FEATURE_NAME_PATTERN.test(name)) {
      return {
        ok: false,
        error: `admin.vm.feature.List returned an invalid feature name ${JSON.stringify(name)}`,
      };
    }
  }
  return { ok: true, value: names };
}

/**
 * Parses admin.vm.firewall.Get: one rule per line in the API format
 * (`action=accept proto=tcp dstports=443-443 ...`, `comment=` last), printable
 * ASCII, each starting with `action=accept` or `action=drop`.
 */
export function parseFirewallRules(text: string): ParseResult<string[]> {
  const rules = splitLines(text);
  for (const rule of rules) {
    if (!/^[\x20-\x7e]+$/.test(rule) || !/^action=(accept|drop)( |$)/.test(rule)) {
      return {
        ok: false,
        error: `admin.vm.firewall.Get returned an invalid rule ${JSON.stringify(rule.slice(0, 120))}`,
      };
    }
  }
  return { ok: true, value: rules };
}

/** Splits newline-terminated lines; an empty text has no lines. */
function splitLines(text: string): string[] {
  if (text === '') {
    return [];
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') {
    lines.pop();
  }
  return lines;
}

function isPowerState(value: string): value is VmPowerState {
  return (VM_POWER_STATES as readonly string[]).includes(value);
}

function isPropertyType(value: string): value is PropertyType {
  return (PROPERTY_TYPES as readonly string[]).includes(value);
}
