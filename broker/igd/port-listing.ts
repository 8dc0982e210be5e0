import type { Mapping } from '../mapping/mapping-service.js';
import { escapeXml } from './xml-escape.js';

/**
 * One port mapping as WANIPConnection actions report it. The broker supports
 * only the wildcard remote host and enabled mappings.
 */
export interface PortMappingEntry {
  externalPort: number;
  protocol: 'TCP' | 'UDP';
  internalPort: number;
  internalClient: string;
  description: string;
  /** Seconds left until the lease expires. */
  leaseSeconds: number;
}

export function toPortMappingEntry(mapping: Mapping, nowMs: number): PortMappingEntry {
  return {
    externalPort: mapping.externalPort,
    protocol: mapping.protocol === 'tcp' ? 'TCP' : 'UDP',
    internalPort: mapping.internalPort,
    internalClient: mapping.internalAddress,
    description: mapping.description,
    leaseSeconds: Math.max(0, Math.ceil((mapping.expiresAtUnixMs - nowMs) / 1000)),
  };
}

/**
 * Builds the NewPortListing value of GetListOfPortMappings, a
 * PortMappingList document of the WANIPConnection v2 template. The caller
 * escapes the whole document once more, because it travels as the text of a
 * SOAP argument.
 */
export function buildPortListing(entries: readonly PortMappingEntry[]): string {
  const rows = entries.map(
    (entry) =>
      '<p:PortMappingEntry>' +
      '<p:NewRemoteHost></p:NewRemoteHost>' +
      `<p:NewExternalPort>${entry.externalPort}</p:NewExternalPort>` +
      `<p:NewProtocol>${entry.protocol}</p:NewProtocol>` +
      `<p:NewInternalPort>${entry.internalPort}</p:NewInternalPort>` +
      `<p:NewInternalClient>${escapeXml(entry.internalClient)}</p:NewInternalClient>` +
      '<p:NewEnabled>1</p:NewEnabled>' +
      `<p:NewDescription>${escapeXml(entry.description)}</p:NewDescription>` +
      `<p:NewLeaseTime>${entry.leaseSeconds}</p:NewLeaseTime>` +
      '</p:PortMappingEntry>',
  );
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    '<p:PortMappingList xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection" ' +
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ' +
    'xsi:schemaLocation="urn:schemas-upnp-org:gw:WANIPConnection ' +
    'http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd">' +
    `${rows.join('')}</p:PortMappingList>`
  );
}
