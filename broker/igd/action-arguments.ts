import { isIPv4 } from 'node:net';
import type { TransportProtocol } from '../../rpc/wire-types.js';
import { MAX_LEASE_SECONDS } from './igd-constants.js';
import { UpnpErrorCode } from './soap-envelope.js';

/**
 * Total parsers for the arguments of WANIPConnection actions. Each returns the
 * value or the UPnP error code to send with a specific message.
 */

export type ArgumentResult<T> =
  | { ok: true; value: T }
  | { ok: false; code: UpnpErrorCode; message: string };

type Arguments = ReadonlyMap<string, string>;

/** Longest port mapping description kept; longer ones are cut, as routers do. */
export const MAX_DESCRIPTION_CHARACTERS = 256;

const invalid = <T>(message: string): ArgumentResult<T> => ({
  ok: false,
  code: UpnpErrorCode.invalidArgs,
  message,
});

function required(args: Arguments, name: string): ArgumentResult<string> {
  const value = args.get(name);
  if (value === undefined) return invalid(`missing argument ${name}`);
  return { ok: true, value };
}

/** Parses a ui2/ui4 decimal: digits only, no sign, no exponent. */
function parseUnsigned(name: string, text: string, maximum: number): ArgumentResult<number> {
  if (!/^[0-9]{1,10}$/.test(text)) {
    return invalid(
      `${name} ${JSON.stringify(text.slice(0, 32))} is not an unsigned decimal number`,
    );
  }
  const value = Number(text);
  if (value > maximum) return invalid(`${name} ${value} is above the maximum of ${maximum}`);
  return { ok: true, value };
}

/** Parses a port argument; 0 is allowed here and callers decide what it means. */
export function parsePortArgument(args: Arguments, name: string): ArgumentResult<number> {
  const text = required(args, name);
  if (!text.ok) return text;
  return parseUnsigned(name, text.value, 65535);
}

/** Parses NewProtocol; `tcp`, `Tcp` and `TCP` are the same protocol. */
export function parseProtocolArgument(args: Arguments): ArgumentResult<TransportProtocol> {
  const text = required(args, 'NewProtocol');
  if (!text.ok) return text;
  const upper = text.value.toUpperCase();
  if (upper === 'TCP') return { ok: true, value: 'tcp' };
  if (upper === 'UDP') return { ok: true, value: 'udp' };
  return invalid(`NewProtocol ${JSON.stringify(text.value.slice(0, 32))} is not TCP or UDP`);
}

/**
 * Parses NewLeaseDuration in seconds. A missing value or 0 means the IGD v2
 * maximum of 604800 s, for v1 clients too (they mean "permanent", which the
 * broker does not grant), and longer leases are cut to that maximum, as the
 * WANIPConnection v2 template prescribes.
 */
export function parseLeaseArgument(args: Arguments): ArgumentResult<number> {
  const text = args.get('NewLeaseDuration');
  if (text === undefined || text === '') return { ok: true, value: MAX_LEASE_SECONDS };
  const parsed = parseUnsigned('NewLeaseDuration', text, 0xffffffff);
  if (!parsed.ok) return parsed;
  if (parsed.value === 0) return { ok: true, value: MAX_LEASE_SECONDS };
  return { ok: true, value: Math.min(parsed.value, MAX_LEASE_SECONDS) };
}

/**
 * Checks NewRemoteHost. Empty (and `*`, which some clients send) is the
 * wildcard. A specific remote host gets 726 RemoteHostOnlySupportsWildcard,
 * as miniupnpd does when built with UPNP_STRICT and without remote host
 * support: the broker's forward rules accept any remote peer, so accepting a
 * specific host would silently open the port wider than the client asked.
 */
export function checkRemoteHostArgument(args: Arguments): ArgumentResult<null> {
  const text = args.get('NewRemoteHost');
  if (text === undefined || text === '' || text === '*') return { ok: true, value: null };
  return {
    ok: false,
    code: UpnpErrorCode.remoteHostOnlySupportsWildcard,
    message: `NewRemoteHost ${JSON.stringify(text.slice(0, 64))} is not supported: send an empty value`,
  };
}

/** Parses NewInternalClient; empty means the requesting client. Host names are not resolved. */
export function parseInternalClientArgument(
  args: Arguments,
  clientAddress: string,
): ArgumentResult<string> {
  const text = args.get('NewInternalClient');
  if (text === undefined || text === '') return { ok: true, value: clientAddress };
  if (!isIPv4(text)) {
    return invalid(`NewInternalClient ${JSON.stringify(text.slice(0, 64))} is not an IPv4 address`);
  }
  return { ok: true, value: text };
}

export function parseDescriptionArgument(args: Arguments): string {
  const text = args.get('NewPortMappingDescription') ?? '';
  return Array.from(text).slice(0, MAX_DESCRIPTION_CHARACTERS).join('');
}

/** Parses a UPnP boolean (`0`, `1`, `false`, `true`, `no`, `yes`); missing means `defaultValue`. */
export function parseBooleanArgument(
  args: Arguments,
  name: string,
  defaultValue: boolean,
): ArgumentResult<boolean> {
  const text = args.get(name);
  if (text === undefined || text === '') return { ok: true, value: defaultValue };
  const lower = text.toLowerCase();
  if (lower === '1' || lower === 'true' || lower === 'yes') return { ok: true, value: true };
  if (lower === '0' || lower === 'false' || lower === 'no') return { ok: true, value: false };
  return invalid(`${name} ${JSON.stringify(text.slice(0, 32))} is not a boolean (0 or 1)`);
}

export function parseIndexArgument(args: Arguments, name: string): ArgumentResult<number> {
  const text = required(args, name);
  if (!text.ok) return text;
  return parseUnsigned(name, text.value, 0xffffffff);
}
