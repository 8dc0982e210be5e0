import { escapeXml } from './xml-escape.js';

/**
 * UPnP error codes the IGD sends in SOAP faults, with the description strings
 * of UPnP Device Architecture 1.1 section 3.2.2 (4xx, 5xx, 6xx) and of the
 * WANIPConnection v1 and v2 service templates (7xx).
 */
export const UpnpErrorCode = {
  invalidAction: 401,
  invalidArgs: 402,
  actionFailed: 501,
  actionNotAuthorized: 606,
  specifiedArrayIndexInvalid: 713,
  noSuchEntryInArray: 714,
  wildCardNotPermittedInExtPort: 716,
  conflictInMappingEntry: 718,
  /**
   * Never sent by this server: it grants every lease up to the IGD v2 maximum
   * and turns a requested 0 (permanent) into that maximum. Listed because the
   * WANIPConnection v1 template defines it and clients handle it.
   */
  onlyPermanentLeasesSupported: 725,
  remoteHostOnlySupportsWildcard: 726,
  noPortMapsAvailable: 728,
  portMappingNotFound: 730,
  inconsistentParameters: 733,
} as const;
export type UpnpErrorCode = (typeof UpnpErrorCode)[keyof typeof UpnpErrorCode];

export const UPNP_ERROR_DESCRIPTION: Readonly<Record<UpnpErrorCode, string>> = {
  401: 'Invalid Action',
  402: 'Invalid Args',
  501: 'Action Failed',
  606: 'Action not authorized',
  713: 'SpecifiedArrayIndexInvalid',
  714: 'NoSuchEntryInArray',
  716: 'WildCardNotPermittedInExtPort',
  718: 'ConflictInMappingEntry',
  725: 'OnlyPermanentLeasesSupported',
  726: 'RemoteHostOnlySupportsWildcard',
  728: 'NoPortMapsAvailable',
  730: 'PortMappingNotFound',
  733: 'InconsistentParameters',
};

const ENVELOPE_OPEN =
  '<?xml version="1.0"?>\r\n' +
  '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
  's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>';
const ENVELOPE_CLOSE = '</s:Body></s:Envelope>\r\n';

/**
 * Builds the body of a successful action response. `serviceType` is the URN
 * the client used, so a v1 client gets a v1 response and a v2 client a v2 one.
 */
export function buildActionResponse(
  actionName: string,
  serviceType: string,
  outArguments: ReadonlyArray<readonly [string, string]>,
): string {
  const argumentXml = outArguments
    .map(([name, value]) => `<${name}>${escapeXml(value)}</${name}>`)
    .join('');
  return (
    `${ENVELOPE_OPEN}<u:${actionName}Response xmlns:u="${escapeXml(serviceType)}">` +
    `${argumentXml}</u:${actionName}Response>${ENVELOPE_CLOSE}`
  );
}

/** Builds a SOAP fault carrying a UPnPError (sent with HTTP status 500). */
export function buildFaultResponse(code: UpnpErrorCode): string {
  return (
    `${ENVELOPE_OPEN}<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>` +
    '<detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0">' +
    `<errorCode>${code}</errorCode><errorDescription>${escapeXml(UPNP_ERROR_DESCRIPTION[code])}` +
    `</errorDescription></UPnPError></detail></s:Fault>${ENVELOPE_CLOSE}`
  );
}
