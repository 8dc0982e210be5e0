import type { DeviceNode, DeviceTree, ServiceNode } from './device-tree.js';
import { PRODUCT_NAME, PRODUCT_VERSION } from './igd-constants.js';
import { escapeXml } from './xml-escape.js';

/**
 * Builds the root device description (UPnP Device Architecture 1.1 section
 * 2.3) of one IGD tree. It has no URLBase, which UDA 1.1 deprecates: clients
 * resolve the relative service URLs against the URL they fetched, so the same
 * document works whichever gateway address the netvm redirected.
 */
export function buildRootDescription(tree: DeviceTree): string {
  const lines = [
    '<?xml version="1.0"?>',
    '<root xmlns="urn:schemas-upnp-org:device-1-0">',
    '<specVersion><major>1</major><minor>1</minor></specVersion>',
    renderDevice(tree.root, true),
    '</root>',
  ];
  return `${lines.join('\n')}\n`;
}

function renderDevice(device: DeviceNode, isRoot: boolean): string {
  const parts = [
    '<device>',
    `<deviceType>${escapeXml(device.deviceType)}</deviceType>`,
    `<friendlyName>${escapeXml(device.friendlyName)}</friendlyName>`,
    '<manufacturer>Qubes OS NAT broker</manufacturer>',
    `<modelDescription>${escapeXml(PRODUCT_NAME)} port mapping service</modelDescription>`,
    `<modelName>${escapeXml(PRODUCT_NAME)}</modelName>`,
    `<modelNumber>${escapeXml(PRODUCT_VERSION)}</modelNumber>`,
    `<UDN>${escapeXml(device.udn)}</UDN>`,
  ];
  if (device.services.length > 0) {
    parts.push('<serviceList>', ...device.services.map(renderService), '</serviceList>');
  }
  if (device.devices.length > 0) {
    parts.push(
      '<deviceList>',
      ...device.devices.map((child) => renderDevice(child, false)),
      '</deviceList>',
    );
  }
  if (isRoot) parts.push('<presentationURL>/</presentationURL>');
  parts.push('</device>');
  return parts.join('\n');
}

function renderService(service: ServiceNode): string {
  return [
    '<service>',
    `<serviceType>${escapeXml(service.serviceType)}</serviceType>`,
    `<serviceId>${escapeXml(service.serviceId)}</serviceId>`,
    `<SCPDURL>${escapeXml(service.scpdPath)}</SCPDURL>`,
    `<controlURL>${escapeXml(service.controlPath)}</controlURL>`,
    `<eventSubURL>${escapeXml(service.eventSubPath)}</eventSubURL>`,
    '</service>',
  ].join('\n');
}
