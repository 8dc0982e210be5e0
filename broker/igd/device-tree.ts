import { createHash } from 'node:crypto';
import {
  DeviceType,
  IgdPath,
  IgdVersion,
  rootDescriptionPath,
  ServiceType,
} from './igd-constants.js';

/**
 * The two device trees the broker exposes, one per IGD version, each rooted
 * at its own description path with its own UDNs:
 *
 *   InternetGatewayDevice:N
 *     WANDevice:N                 (WANCommonInterfaceConfig:1)
 *       WANConnectionDevice:N     (WANIPConnection:N)
 *
 * SSDP and the description builder both read this model, so a search target
 * matches exactly the types the descriptions list.
 */

export interface ServiceNode {
  serviceType: string;
  serviceId: string;
  scpdPath: string;
  controlPath: string;
  eventSubPath: string;
}

export interface DeviceNode {
  deviceType: string;
  /** `uuid:` followed by a UUID. */
  udn: string;
  friendlyName: string;
  services: ServiceNode[];
  devices: DeviceNode[];
}

export interface DeviceTree {
  version: IgdVersion;
  descriptionPath: string;
  root: DeviceNode;
}

/**
 * Derives a stable name-based UUID (the layout of RFC 9562 version 5) from a
 * seed and a role, so restarts with the same seed keep the same UDNs.
 */
export function deriveUuid(seed: string, role: string): string {
  const hash = createHash('sha1').update(`${seed}\u0000${role}`).digest();
  hash[6] = ((hash[6] ?? 0) & 0x0f) | 0x50;
  hash[8] = ((hash[8] ?? 0) & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

export function buildDeviceTree(version: IgdVersion, seed: string): DeviceTree {
  const udn = (role: string) => `uuid:${deriveUuid(seed, `igd${version}-${role}`)}`;
  const name = `Qubes NAT broker (IGD v${version})`;

  const wanIpConnection: ServiceNode = {
    serviceType: ServiceType.wanIpConnection(version),
    serviceId: 'urn:upnp-org:serviceId:WANIPConn1',
    scpdPath:
      version === IgdVersion.v1 ? IgdPath.wanIpConnectionScpdV1 : IgdPath.wanIpConnectionScpdV2,
    controlPath: IgdPath.wanIpConnectionControl,
    eventSubPath: IgdPath.wanIpConnectionEvents,
  };
  const commonInterfaceConfig: ServiceNode = {
    serviceType: ServiceType.wanCommonInterfaceConfig,
    serviceId: 'urn:upnp-org:serviceId:WANCommonIFC1',
    scpdPath: IgdPath.wanCommonInterfaceConfigScpd,
    controlPath: IgdPath.wanCommonInterfaceConfigControl,
    eventSubPath: IgdPath.wanCommonInterfaceConfigEvents,
  };

  const connectionDevice: DeviceNode = {
    deviceType: DeviceType.wanConnectionDevice(version),
    udn: udn('wan-connection-device'),
    friendlyName: `${name} WAN connection`,
    services: [wanIpConnection],
    devices: [],
  };
  const wanDevice: DeviceNode = {
    deviceType: DeviceType.wanDevice(version),
    udn: udn('wan-device'),
    friendlyName: `${name} WAN`,
    services: [commonInterfaceConfig],
    devices: [connectionDevice],
  };
  const root: DeviceNode = {
    deviceType: DeviceType.internetGatewayDevice(version),
    udn: udn('root'),
    friendlyName: name,
    services: [],
    devices: [wanDevice],
  };

  return { version, descriptionPath: rootDescriptionPath(version), root };
}

/** One SSDP search target a tree announces, with the USN that goes with it. */
export interface Advertisement {
  searchTarget: string;
  usn: string;
  descriptionPath: string;
}

/**
 * Lists every advertisement of a tree in the order of UPnP Device
 * Architecture 1.1 section 1.1.2: the root device, then per device its UDN and
 * type, then each service type.
 */
export function listAdvertisements(tree: DeviceTree): Advertisement[] {
  const path = tree.descriptionPath;
  const rootUdn = tree.root.udn;
  const entries: Advertisement[] = [
    { searchTarget: 'upnp:rootdevice', usn: `${rootUdn}::upnp:rootdevice`, descriptionPath: path },
  ];

  const visit = (device: DeviceNode): void => {
    entries.push({ searchTarget: device.udn, usn: device.udn, descriptionPath: path });
    entries.push({
      searchTarget: device.deviceType,
      usn: `${device.udn}::${device.deviceType}`,
      descriptionPath: path,
    });
    for (const service of device.services) {
      entries.push({
        searchTarget: service.serviceType,
        usn: `${device.udn}::${service.serviceType}`,
        descriptionPath: path,
      });
    }
    for (const child of device.devices) visit(child);
  };
  visit(tree.root);

  return entries;
}

/**
 * Builds the IGD v1 and v2 trees the broker serves. Pass the same seed on
 * every start (for example the VM's machine id) to keep the UDNs stable, and
 * hand the same trees to the SSDP and IGD servers.
 */
export function buildIgdDeviceTrees(seed: string): DeviceTree[] {
  return [buildDeviceTree(IgdVersion.v1, seed), buildDeviceTree(IgdVersion.v2, seed)];
}
