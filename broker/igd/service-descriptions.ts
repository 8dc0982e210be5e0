import { IgdVersion, MAX_LEASE_SECONDS } from './igd-constants.js';
import { escapeXml } from './xml-escape.js';

/**
 * The actions and state variables of the services the broker implements, as
 * listed in the UPnP Forum's WANIPConnection v1 and v2 and
 * WANCommonInterfaceConfig v1 service templates (only the actions the broker
 * serves). The SCPD documents are rendered from these tables and the SOAP
 * dispatcher uses them to tell a known action from an unknown one.
 */

export interface ActionArgument {
  name: string;
  relatedStateVariable: string;
}

export interface ActionDefinition {
  name: string;
  /** First WANIPConnection version that has this action. */
  sinceVersion: IgdVersion;
  in: ActionArgument[];
  out: ActionArgument[];
}

interface StateVariable {
  name: string;
  dataType: 'string' | 'boolean' | 'ui2' | 'ui4';
  sendEvents?: boolean;
  allowedValues?: string[];
  range?: { minimum: number; maximum: number };
  /** Only in v2 documents. */
  v2Only?: boolean;
}

const arg = (name: string, relatedStateVariable: string): ActionArgument => ({
  name,
  relatedStateVariable,
});

const REMOTE_HOST = arg('NewRemoteHost', 'RemoteHost');
const EXTERNAL_PORT = arg('NewExternalPort', 'ExternalPort');
const PROTOCOL = arg('NewProtocol', 'PortMappingProtocol');
const INTERNAL_PORT = arg('NewInternalPort', 'InternalPort');
const INTERNAL_CLIENT = arg('NewInternalClient', 'InternalClient');
const ENABLED = arg('NewEnabled', 'PortMappingEnabled');
const DESCRIPTION = arg('NewPortMappingDescription', 'PortMappingDescription');
const LEASE = arg('NewLeaseDuration', 'PortMappingLeaseDuration');
const MAPPING_IN = [
  REMOTE_HOST,
  EXTERNAL_PORT,
  PROTOCOL,
  INTERNAL_PORT,
  INTERNAL_CLIENT,
  ENABLED,
  DESCRIPTION,
  LEASE,
];

export const WAN_IP_CONNECTION_ACTIONS: readonly ActionDefinition[] = [
  {
    name: 'GetConnectionTypeInfo',
    sinceVersion: IgdVersion.v1,
    in: [],
    out: [
      arg('NewConnectionType', 'ConnectionType'),
      arg('NewPossibleConnectionTypes', 'PossibleConnectionTypes'),
    ],
  },
  {
    name: 'GetStatusInfo',
    sinceVersion: IgdVersion.v1,
    in: [],
    out: [
      arg('NewConnectionStatus', 'ConnectionStatus'),
      arg('NewLastConnectionError', 'LastConnectionError'),
      arg('NewUptime', 'Uptime'),
    ],
  },
  {
    name: 'GetNATRSIPStatus',
    sinceVersion: IgdVersion.v1,
    in: [],
    out: [arg('NewRSIPAvailable', 'RSIPAvailable'), arg('NewNATEnabled', 'NATEnabled')],
  },
  {
    name: 'GetGenericPortMappingEntry',
    sinceVersion: IgdVersion.v1,
    in: [arg('NewPortMappingIndex', 'PortMappingNumberOfEntries')],
    out: MAPPING_IN,
  },
  {
    name: 'GetSpecificPortMappingEntry',
    sinceVersion: IgdVersion.v1,
    in: [REMOTE_HOST, EXTERNAL_PORT, PROTOCOL],
    out: [INTERNAL_PORT, INTERNAL_CLIENT, ENABLED, DESCRIPTION, LEASE],
  },
  { name: 'AddPortMapping', sinceVersion: IgdVersion.v1, in: MAPPING_IN, out: [] },
  {
    name: 'AddAnyPortMapping',
    sinceVersion: IgdVersion.v2,
    in: MAPPING_IN,
    out: [arg('NewReservedPort', 'ExternalPort')],
  },
  {
    name: 'DeletePortMapping',
    sinceVersion: IgdVersion.v1,
    in: [REMOTE_HOST, EXTERNAL_PORT, PROTOCOL],
    out: [],
  },
  {
    name: 'DeletePortMappingRange',
    sinceVersion: IgdVersion.v2,
    in: [
      arg('NewStartPort', 'ExternalPort'),
      arg('NewEndPort', 'ExternalPort'),
      PROTOCOL,
      arg('NewManage', 'A_ARG_TYPE_Manage'),
    ],
    out: [],
  },
  {
    name: 'GetExternalIPAddress',
    sinceVersion: IgdVersion.v1,
    in: [],
    out: [arg('NewExternalIPAddress', 'ExternalIPAddress')],
  },
  {
    name: 'GetListOfPortMappings',
    sinceVersion: IgdVersion.v2,
    in: [
      arg('NewStartPort', 'ExternalPort'),
      arg('NewEndPort', 'ExternalPort'),
      PROTOCOL,
      arg('NewManage', 'A_ARG_TYPE_Manage'),
      arg('NewNumberOfPorts', 'PortMappingNumberOfEntries'),
    ],
    out: [arg('NewPortListing', 'A_ARG_TYPE_PortListing')],
  },
];

const WAN_IP_CONNECTION_STATE: readonly StateVariable[] = [
  { name: 'ConnectionType', dataType: 'string' },
  {
    name: 'PossibleConnectionTypes',
    dataType: 'string',
    sendEvents: true,
    allowedValues: ['Unconfigured', 'IP_Routed', 'IP_Bridged'],
  },
  {
    name: 'ConnectionStatus',
    dataType: 'string',
    sendEvents: true,
    allowedValues: ['Unconfigured', 'Connected', 'Disconnected'],
  },
  { name: 'Uptime', dataType: 'ui4' },
  { name: 'LastConnectionError', dataType: 'string', allowedValues: ['ERROR_NONE'] },
  { name: 'RSIPAvailable', dataType: 'boolean' },
  { name: 'NATEnabled', dataType: 'boolean' },
  { name: 'ExternalIPAddress', dataType: 'string', sendEvents: true },
  { name: 'PortMappingNumberOfEntries', dataType: 'ui2', sendEvents: true },
  { name: 'PortMappingEnabled', dataType: 'boolean' },
  {
    name: 'PortMappingLeaseDuration',
    dataType: 'ui4',
    range: { minimum: 0, maximum: MAX_LEASE_SECONDS },
  },
  { name: 'RemoteHost', dataType: 'string' },
  { name: 'ExternalPort', dataType: 'ui2' },
  { name: 'InternalPort', dataType: 'ui2', range: { minimum: 1, maximum: 65535 } },
  { name: 'PortMappingProtocol', dataType: 'string', allowedValues: ['TCP', 'UDP'] },
  { name: 'InternalClient', dataType: 'string' },
  { name: 'PortMappingDescription', dataType: 'string' },
  { name: 'SystemUpdateID', dataType: 'ui4', sendEvents: true, v2Only: true },
  { name: 'A_ARG_TYPE_Manage', dataType: 'boolean', v2Only: true },
  { name: 'A_ARG_TYPE_PortListing', dataType: 'string', v2Only: true },
];

export const WAN_COMMON_INTERFACE_CONFIG_ACTIONS: readonly ActionDefinition[] = [
  {
    name: 'GetCommonLinkProperties',
    sinceVersion: IgdVersion.v1,
    in: [],
    out: [
      arg('NewWANAccessType', 'WANAccessType'),
      arg('NewLayer1UpstreamMaxBitRate', 'Layer1UpstreamMaxBitRate'),
      arg('NewLayer1DownstreamMaxBitRate', 'Layer1DownstreamMaxBitRate'),
      arg('NewPhysicalLinkStatus', 'PhysicalLinkStatus'),
    ],
  },
];

const WAN_COMMON_INTERFACE_CONFIG_STATE: readonly StateVariable[] = [
  {
    name: 'WANAccessType',
    dataType: 'string',
    allowedValues: ['DSL', 'POTS', 'Cable', 'Ethernet'],
  },
  { name: 'Layer1UpstreamMaxBitRate', dataType: 'ui4' },
  { name: 'Layer1DownstreamMaxBitRate', dataType: 'ui4' },
  {
    name: 'PhysicalLinkStatus',
    dataType: 'string',
    sendEvents: true,
    allowedValues: ['Up', 'Down'],
  },
];

/** Returns the action of a WANIPConnection version, or undefined when that version has none of that name. */
export function findWanIpConnectionAction(
  name: string,
  version: IgdVersion,
): ActionDefinition | undefined {
  return WAN_IP_CONNECTION_ACTIONS.find(
    (action) => action.name === name && action.sinceVersion <= version,
  );
}

export function buildWanIpConnectionScpd(version: IgdVersion): string {
  return renderScpd(
    WAN_IP_CONNECTION_ACTIONS.filter((action) => action.sinceVersion <= version),
    WAN_IP_CONNECTION_STATE.filter((variable) => version === IgdVersion.v2 || !variable.v2Only),
  );
}

export function buildWanCommonInterfaceConfigScpd(): string {
  return renderScpd(WAN_COMMON_INTERFACE_CONFIG_ACTIONS, WAN_COMMON_INTERFACE_CONFIG_STATE);
}

/** Renders a service description (UPnP Device Architecture 1.1 section 2.5). */
function renderScpd(
  actions: readonly ActionDefinition[],
  stateVariables: readonly StateVariable[],
): string {
  const renderArgument = (argument: ActionArgument, direction: 'in' | 'out') =>
    `<argument><name>${escapeXml(argument.name)}</name><direction>${direction}</direction>` +
    `<relatedStateVariable>${escapeXml(argument.relatedStateVariable)}</relatedStateVariable></argument>`;

  const renderAction = (action: ActionDefinition) => {
    const argumentLines = [
      ...action.in.map((argument) => renderArgument(argument, 'in')),
      ...action.out.map((argument) => renderArgument(argument, 'out')),
    ];
    const argumentList =
      argumentLines.length > 0
        ? `\n<argumentList>\n${argumentLines.join('\n')}\n</argumentList>`
        : '';
    return `<action><name>${escapeXml(action.name)}</name>${argumentList}\n</action>`;
  };

  const renderVariable = (variable: StateVariable) => {
    const parts = [
      `<stateVariable sendEvents="${variable.sendEvents === true ? 'yes' : 'no'}">`,
      `<name>${escapeXml(variable.name)}</name>`,
      `<dataType>${variable.dataType}</dataType>`,
    ];
    if (variable.allowedValues !== undefined) {
      const values = variable.allowedValues.map(
        (value) => `<allowedValue>${escapeXml(value)}</allowedValue>`,
      );
      parts.push(`<allowedValueList>${values.join('')}</allowedValueList>`);
    }
    if (variable.range !== undefined) {
      parts.push(
        `<allowedValueRange><minimum>${variable.range.minimum}</minimum>` +
          `<maximum>${variable.range.maximum}</maximum></allowedValueRange>`,
      );
    }
    parts.push('</stateVariable>');
    return parts.join('');
  };

  return [
    '<?xml version="1.0"?>',
    '<scpd xmlns="urn:schemas-upnp-org:service-1-0">',
    '<specVersion><major>1</major><minor>1</minor></specVersion>',
    '<actionList>',
    ...actions.map(renderAction),
    '</actionList>',
    '<serviceStateTable>',
    ...stateVariables.map(renderVariable),
    '</serviceStateTable>',
    '</scpd>',
    '',
  ].join('\n');
}
