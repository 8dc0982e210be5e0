/**
 * Parser for SSDP search requests (UPnP Device Architecture 1.1 section
 * 1.3.2). Total: any datagram gives a typed request or a typed error.
 *
 *   M-SEARCH * HTTP/1.1
 *   HOST: 239.255.255.250:1900
 *   MAN: "ssdp:discover"
 *   MX: 2
 *   ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1
 */

/** Largest datagram parsed, in bytes. Real searches are about 150 bytes. */
export const MAX_SSDP_DATAGRAM_BYTES = 2048;

export const SSDP_MULTICAST_ADDRESS = '239.255.255.250';
export const SSDP_PORT = 1900;

export interface MSearchRequest {
  searchTarget: string;
  /** MX in seconds as sent; null for a unicast search without MX. */
  maxWaitSeconds: number | null;
  host: string;
  /** True when HOST names the SSDP multicast group. */
  isMulticast: boolean;
}

export const MSearchErrorCode = {
  tooLarge: 'too-large',
  notMSearch: 'not-m-search',
  malformedHeader: 'malformed-header',
  duplicateHeader: 'duplicate-header',
  missingHeader: 'missing-header',
  invalidMan: 'invalid-man',
  invalidMx: 'invalid-mx',
  invalidSearchTarget: 'invalid-search-target',
  invalidHost: 'invalid-host',
} as const;
export type MSearchErrorCode = (typeof MSearchErrorCode)[keyof typeof MSearchErrorCode];

export type MSearchParseResult =
  | { ok: true; request: MSearchRequest }
  | { ok: false; error: { code: MSearchErrorCode; message: string } };

const REQUEST_LINE = 'M-SEARCH * HTTP/1.1';
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/;
/** Printable ASCII without spaces, as in every URN, UUID and ssdp: token. */
const SEARCH_TARGET = /^[\x21-\x7e]{1,256}$/;
const HOST_VALUE = /^[A-Za-z0-9.:[\]-]{1,64}$/;

const fail = (code: MSearchErrorCode, message: string): MSearchParseResult => ({
  ok: false,
  error: { code, message },
});

/** Shortens untrusted text for an error message. */
const quote = (text: string): string =>
  JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);

export function parseMSearch(datagram: Uint8Array): MSearchParseResult {
  if (datagram.byteLength > MAX_SSDP_DATAGRAM_BYTES) {
    return fail(
      'too-large',
      `datagram of ${datagram.byteLength} bytes exceeds ${MAX_SSDP_DATAGRAM_BYTES}`,
    );
  }

  // latin1 maps every byte to one character and never throws; non-ASCII bytes
  // then fail the character checks below.
  const text = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength).toString(
    'latin1',
  );
  const lines = text.split(/\r?\n/);
  const requestLine = lines[0] ?? '';
  if (requestLine !== REQUEST_LINE) {
    return fail('not-m-search', `request line ${quote(requestLine)} is not ${quote(REQUEST_LINE)}`);
  }

  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!HEADER_NAME.test(name)) {
      return fail('malformed-header', `header line ${quote(line)} is not "NAME: value"`);
    }
    const key = name.toUpperCase();
    if (headers.has(key)) return fail('duplicate-header', `header ${key} appears more than once`);
    headers.set(key, line.slice(colon + 1).trim());
  }

  const host = headers.get('HOST');
  if (host === undefined) return fail('missing-header', 'missing HOST header');
  if (!HOST_VALUE.test(host)) return fail('invalid-host', `HOST ${quote(host)} is not an address`);
  const isMulticast =
    host === SSDP_MULTICAST_ADDRESS || host === `${SSDP_MULTICAST_ADDRESS}:${SSDP_PORT}`;

  const man = headers.get('MAN');
  if (man === undefined) return fail('missing-header', 'missing MAN header');
  if (man !== '"ssdp:discover"') {
    return fail('invalid-man', `MAN ${quote(man)} must be "ssdp:discover" in double quotes`);
  }

  const searchTarget = headers.get('ST');
  if (searchTarget === undefined) return fail('missing-header', 'missing ST header');
  if (!SEARCH_TARGET.test(searchTarget)) {
    return fail(
      'invalid-search-target',
      `ST ${quote(searchTarget)} is empty, too long or not printable ASCII`,
    );
  }

  const mx = headers.get('MX');
  let maxWaitSeconds: number | null = null;
  if (mx === undefined) {
    if (isMulticast)
      return fail('missing-header', 'missing MX header, which multicast searches require');
  } else {
    if (!/^[0-9]{1,3}$/.test(mx))
      return fail('invalid-mx', `MX ${quote(mx)} is not a number of seconds`);
    maxWaitSeconds = Number(mx);
    if (isMulticast && maxWaitSeconds < 1) {
      return fail(
        'invalid-mx',
        `MX ${maxWaitSeconds} is below 1, the minimum for multicast searches`,
      );
    }
  }

  return { ok: true, request: { searchTarget, maxWaitSeconds, host, isMulticast } };
}
