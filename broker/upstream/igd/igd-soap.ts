import type { ParseResult } from '../upstream-types.js';
import { parsed, parseError } from '../upstream-types.js';
import { childElement, childText, escapeXml, isElement, parseXml } from './igd-xml.js';

/**
 * SOAP 1.1 envelopes for IGD control actions (UPnP Device Architecture 1.1
 * section 3.2): request builder, response and fault parser.
 */

/** Largest SOAP response accepted; real ones are under 2 KiB. */
export const MAX_SOAP_RESPONSE_BYTES = 64 * 1024;

/** UPnP error codes in SOAP faults (UPnP DA 1.1 section 3.2.2 and WANIPConnection:2 section 2.4). */
export enum UpnpErrorCode {
  InvalidAction = 401,
  InvalidArgs = 402,
  ActionFailed = 501,
  ActionNotAuthorized = 606,
  SpecifiedArrayIndexInvalid = 713,
  NoSuchEntryInArray = 714,
  WildCardNotPermittedInSrcIp = 715,
  WildCardNotPermittedInExtPort = 716,
  ConflictInMappingEntry = 718,
  SamePortValuesRequired = 724,
  OnlyPermanentLeasesSupported = 725,
  RemoteHostOnlySupportsWildcard = 726,
  ExternalPortOnlySupportsWildcard = 727,
  NoPortMapsAvailable = 728,
  ConflictWithOtherMechanisms = 729,
  WildCardNotPermittedInIntPort = 732,
}

export interface SoapFault {
  /** UPnP error code, or null when the fault carries none. */
  errorCode: number | null;
  errorDescription: string;
}

export type SoapResponse =
  | { kind: 'response'; values: Record<string, string> }
  | { kind: 'fault'; fault: SoapFault };

/** Builds the request body of an action; argument values are escaped. */
export function buildSoapRequest(
  serviceType: string,
  action: string,
  args: ReadonlyArray<readonly [string, string]>,
): string {
  const body = args.map(([name, value]) => `<${name}>${escapeXml(value)}</${name}>`).join('');
  return (
    '<?xml version="1.0"?>\r\n' +
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
    's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
    `<s:Body><u:${action} xmlns:u="${escapeXml(serviceType)}">${body}</u:${action}></s:Body></s:Envelope>\r\n`
  );
}

/** The SOAPAction header value: the service type and action, quoted. */
export function soapActionHeader(serviceType: string, action: string): string {
  return `"${serviceType}#${action}"`;
}

/**
 * Parses a response body: the `<actionResponse>` element's children as
 * strings, or a fault with its UPnP error code.
 */
export function parseSoapResponse(text: string, action: string): ParseResult<SoapResponse> {
  const document = parseXml(text, MAX_SOAP_RESPONSE_BYTES);
  if (!document.ok) return document;
  const envelope = childElement(document.value, 'Envelope');
  if (envelope === null) return parseError('SOAP response has no Envelope element');
  const body = childElement(envelope, 'Body');
  if (body === null) return parseError('SOAP response has no Body element');

  const fault = childElement(body, 'Fault');
  if (fault !== null) {
    const upnpError = childElement(childElement(fault, 'detail') ?? {}, 'UPnPError');
    const codeText = upnpError === null ? null : childText(upnpError, 'errorCode');
    const errorCode = codeText !== null && /^\d{1,4}$/.test(codeText) ? Number(codeText) : null;
    const errorDescription =
      (upnpError === null ? null : childText(upnpError, 'errorDescription')) ??
      childText(fault, 'faultstring') ??
      '';
    return parsed({ kind: 'fault', fault: { errorCode, errorDescription } });
  }

  const responseName = `${action}Response`;
  const hasResponse = Object.hasOwn(body, responseName);
  const response = childElement(body, responseName);
  if (!hasResponse) return parseError(`SOAP response has no ${responseName} element`);

  const values: Record<string, string> = {};
  for (const [name, value] of Object.entries(response ?? {})) {
    if (typeof value === 'string') values[name] = value;
    else if (isElement(value) && Object.keys(value).length === 0) values[name] = '';
    else return parseError(`SOAP ${responseName} argument ${name} is not a single text value`);
  }
  return parsed({ kind: 'response', values });
}

export function upnpErrorName(code: number | null): string {
  if (code === null) return 'fault without a UPnP error code';
  return `${code} ${UpnpErrorCode[code] ?? 'unknown error'}`;
}
