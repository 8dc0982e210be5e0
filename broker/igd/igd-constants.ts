/**
 * Names, paths and limits of the broker's UPnP Internet Gateway Device.
 * Device and service types are from the UPnP Forum's InternetGatewayDevice
 * v1 (2001) and v2 (2010) device templates.
 */

/**
 * TCP port of the IGD HTTP server. It is fixed, not ephemeral as in a stock
 * miniupnpd, because the netvm's redirect rule names it and every SSDP
 * LOCATION header carries it. 2189 is unprivileged, lies below the Linux
 * ephemeral range (32768-60999), so no outgoing client socket can hold it,
 * and is not 5000, which many desktop services and router UIs already use.
 */
export const DEFAULT_IGD_HTTP_PORT = 2189;

export const IgdVersion = { v1: 1, v2: 2 } as const;
export type IgdVersion = (typeof IgdVersion)[keyof typeof IgdVersion];

const DEVICE_PREFIX = 'urn:schemas-upnp-org:device:';
const SERVICE_PREFIX = 'urn:schemas-upnp-org:service:';

export const DeviceType = {
  internetGatewayDevice: (version: IgdVersion) =>
    `${DEVICE_PREFIX}InternetGatewayDevice:${version}`,
  wanDevice: (version: IgdVersion) => `${DEVICE_PREFIX}WANDevice:${version}`,
  wanConnectionDevice: (version: IgdVersion) => `${DEVICE_PREFIX}WANConnectionDevice:${version}`,
} as const;

export const ServiceType = {
  wanIpConnection: (version: IgdVersion) => `${SERVICE_PREFIX}WANIPConnection:${version}`,
  /** Version 1 in both IGD v1 and IGD v2 device trees. */
  wanCommonInterfaceConfig: `${SERVICE_PREFIX}WANCommonInterfaceConfig:1`,
} as const;

/** HTTP paths served by the IGD server. */
export const IgdPath = {
  rootDescriptionV1: '/rootDesc.xml',
  rootDescriptionV2: '/rootDesc2.xml',
  wanIpConnectionScpdV1: '/WANIPCn.xml',
  wanIpConnectionScpdV2: '/WANIPCn2.xml',
  wanCommonInterfaceConfigScpd: '/WANCfg.xml',
  /** One control URL for WANIPConnection v1 and v2: the SOAPAction names the version. */
  wanIpConnectionControl: '/ctl/IPConn',
  wanCommonInterfaceConfigControl: '/ctl/CmnIfCfg',
  /** Event subscription is not implemented; the URLs exist because descriptions require them. */
  wanIpConnectionEvents: '/evt/IPConn',
  wanCommonInterfaceConfigEvents: '/evt/CmnIfCfg',
} as const;

export function rootDescriptionPath(version: IgdVersion): string {
  return version === IgdVersion.v1 ? IgdPath.rootDescriptionV1 : IgdPath.rootDescriptionV2;
}

/**
 * Maximum lease of a port mapping: WANIPConnection v2 limits
 * PortMappingLeaseDuration to 604800 s (one week) and turns a requested 0
 * into that maximum. The broker applies the same rule to v1 clients, which
 * ask for 0 to mean "permanent", because the broker grants no permanent leases.
 */
export const MAX_LEASE_SECONDS = 604_800;

/** Product token in SERVER headers and descriptions. */
export const PRODUCT_NAME = 'qubes-nat-broker';
export const PRODUCT_VERSION = '0.1';
export const SERVER_HEADER = `Linux UPnP/1.1 ${PRODUCT_NAME}/${PRODUCT_VERSION}`;
