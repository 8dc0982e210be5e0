import { XMLParser } from 'fast-xml-parser';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildIgdDeviceTrees } from '../broker/igd/device-tree.js';
import { IgdServer } from '../broker/igd/igd-server.js';
import { UpnpErrorCode } from '../broker/igd/soap-envelope.js';
import { faultForMappingResult } from '../broker/igd/wan-ip-connection.js';
import { FakeMappingService } from './igd-fake-mapping-service.js';

// FakeMappingService replaces the broker core, which needs dom0 and a home
// router. The HTTP server and SOAP handling under test are real.

const WANIP1 = 'urn:schemas-upnp-org:service:WANIPConnection:1';
const WANIP2 = 'urn:schemas-upnp-org:service:WANIPConnection:2';
const CIF = 'urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1';
const logger = pino({ level: 'silent' });
const xml = new XMLParser({ removeNSPrefix: true, parseTagValue: false });

interface SoapReply {
  status: number;
  text: string;
  /** Out arguments of a success, or the UPnP error code of a fault. */
  out: Record<string, string>;
  errorCode: number | null;
}

function startServer(mappingService: FakeMappingService) {
  return new IgdServer(
    { mappingService, logger, deviceTrees: buildIgdDeviceTrees('igd-server-test') },
    { listenAddress: '127.0.0.1', port: 0 },
  );
}

function makeClient(server: () => IgdServer) {
  const base = () => `http://127.0.0.1:${server().address().port}`;

  async function soap(
    serviceType: string,
    action: string,
    args: Record<string, string> = {},
    options: { quoted?: boolean; path?: string } = {},
  ): Promise<SoapReply> {
    const inner = Object.entries(args)
      .map(([name, value]) => `<${name}>${value}</${name}>`)
      .join('');
    const body =
      '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">' +
      `<s:Body><u:${action} xmlns:u="${serviceType}">${inner}</u:${action}></s:Body></s:Envelope>`;
    const header = `${serviceType}#${action}`;
    const path = options.path ?? (serviceType === CIF ? '/ctl/CmnIfCfg' : '/ctl/IPConn');
    const response = await fetch(`${base()}${path}`, {
      method: 'POST',
      headers: {
        'Content-Type': 'text/xml',
        SOAPAction: options.quoted === false ? header : `"${header}"`,
      },
      body,
    });
    const text = await response.text();
    const parsed = xml.parse(text);
    const soapBody = parsed.Envelope?.Body ?? {};
    const errorCode = soapBody.Fault?.detail?.UPnPError?.errorCode;
    const out = soapBody[`${action}Response`];
    return {
      status: response.status,
      text,
      out: typeof out === 'object' ? out : {},
      errorCode: errorCode === undefined ? null : Number(errorCode),
    };
  }

  return { base, soap };
}

const mapping = (overrides: Record<string, string> = {}) => ({
  NewRemoteHost: '',
  NewExternalPort: '8080',
  NewProtocol: 'TCP',
  NewInternalPort: '8080',
  NewInternalClient: '127.0.0.1',
  NewEnabled: '1',
  NewPortMappingDescription: 'test',
  NewLeaseDuration: '0',
  ...overrides,
});

describe('IgdServer for an enabled client', () => {
  const fake = new FakeMappingService({
    enabledClients: ['127.0.0.1'],
    deniedInternalPorts: [9090],
    takenExternalPorts: [7777],
  });
  const server = startServer(fake);
  const { base, soap } = makeClient(() => server);

  beforeAll(() => server.start());
  afterAll(() => server.stop());

  it('serves both root descriptions', async () => {
    for (const [path, version] of [
      ['/rootDesc.xml', 1],
      ['/rootDesc2.xml', 2],
    ] as const) {
      const response = await fetch(`${base()}${path}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toContain('text/xml');
      const root = xml.parse(await response.text()).root;
      expect(root.device.deviceType).toBe(
        `urn:schemas-upnp-org:device:InternetGatewayDevice:${version}`,
      );
      const connection = root.device.deviceList.device.deviceList.device;
      expect(connection.serviceList.service.serviceType).toBe(
        `urn:schemas-upnp-org:service:WANIPConnection:${version}`,
      );
      expect(root.device.UDN).toMatch(/^uuid:/);
    }
  });

  it('serves SCPDs per version', async () => {
    const v1 = await (await fetch(`${base()}/WANIPCn.xml`)).text();
    const v2 = await (await fetch(`${base()}/WANIPCn2.xml`)).text();
    const cif = await (await fetch(`${base()}/WANCfg.xml`)).text();
    expect(v1).toContain('<name>AddPortMapping</name>');
    expect(v1).not.toContain('AddAnyPortMapping');
    expect(v2).toContain('<name>AddAnyPortMapping</name>');
    expect(v2).toContain('<name>GetListOfPortMappings</name>');
    expect(cif).toContain('<name>GetCommonLinkProperties</name>');
    expect(() => xml.parse(v2)).not.toThrow();
  });

  it('returns 404 and 405 for unknown paths and methods', async () => {
    expect((await fetch(`${base()}/nothing.xml`)).status).toBe(404);
    expect((await fetch(`${base()}/rootDesc.xml`, { method: 'PUT', body: 'x' })).status).toBe(405);
  });

  it('answers the status actions', async () => {
    expect((await soap(WANIP1, 'GetExternalIPAddress')).out.NewExternalIPAddress).toBe(
      '203.0.113.7',
    );
    expect((await soap(WANIP1, 'GetStatusInfo')).out.NewConnectionStatus).toBe('Connected');
    expect((await soap(WANIP2, 'GetConnectionTypeInfo')).out.NewConnectionType).toBe('IP_Routed');
    expect((await soap(WANIP1, 'GetNATRSIPStatus')).out.NewNATEnabled).toBe('1');
    expect((await soap(CIF, 'GetCommonLinkProperties')).out.NewPhysicalLinkStatus).toBe('Up');
  });

  it('echoes the client service version', async () => {
    const v1 = await soap(WANIP1, 'GetExternalIPAddress', {}, { quoted: false });
    const v2 = await soap(WANIP2, 'GetExternalIPAddress');
    expect(v1.text).toContain(`xmlns:u="${WANIP1}"`);
    expect(v2.text).toContain(`xmlns:u="${WANIP2}"`);
  });

  it('adds a mapping with lease 0 as the maximum', async () => {
    const reply = await soap(
      WANIP1,
      'AddPortMapping',
      mapping({ NewInternalClient: '', NewProtocol: 'tcp' }),
    );
    expect(reply.status).toBe(200);
    const request = fake.requests.at(-1);
    expect(request?.lifetimeSeconds).toBe(604800);
    expect(request?.internalAddress).toBe('127.0.0.1');
    expect(request?.protocol).toBe('tcp');
    expect(request?.requireSuggestedPort).toBe(true);
  });

  it('lists only the client own mappings', async () => {
    const own = fake.mappings[0];
    if (own === undefined) throw new Error('the previous test added no mapping');
    fake.mappings.push({
      ...own,
      id: 'other',
      internalAddress: '10.0.0.9',
      externalPort: 1234,
    });
    const first = await soap(WANIP1, 'GetGenericPortMappingEntry', { NewPortMappingIndex: '0' });
    expect(first.out.NewExternalPort).toBe('8080');
    expect(first.out.NewProtocol).toBe('TCP');
    expect(Number(first.out.NewLeaseDuration)).toBeGreaterThan(604000);
    const end = await soap(WANIP1, 'GetGenericPortMappingEntry', { NewPortMappingIndex: '1' });
    expect(end.errorCode).toBe(UpnpErrorCode.specifiedArrayIndexInvalid);
    fake.mappings.splice(
      fake.mappings.findIndex((entry) => entry.id === 'other'),
      1,
    );
  });

  it('finds a specific entry case-insensitively', async () => {
    const reply = await soap(WANIP1, 'GetSpecificPortMappingEntry', {
      NewRemoteHost: '',
      NewExternalPort: '8080',
      NewProtocol: 'Tcp',
    });
    expect(reply.out.NewInternalClient).toBe('127.0.0.1');
    const missing = await soap(WANIP1, 'GetSpecificPortMappingEntry', {
      NewRemoteHost: '',
      NewExternalPort: '8080',
      NewProtocol: 'UDP',
    });
    expect(missing.errorCode).toBe(UpnpErrorCode.noSuchEntryInArray);
  });

  it('echoes a description escaped', async () => {
    const hostile = '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;';
    await soap(
      WANIP1,
      'AddPortMapping',
      mapping({ NewExternalPort: '8081', NewPortMappingDescription: hostile }),
    );
    const reply = await soap(WANIP1, 'GetSpecificPortMappingEntry', {
      NewRemoteHost: '',
      NewExternalPort: '8081',
      NewProtocol: 'TCP',
    });
    expect(reply.text).not.toContain('<script>');
    expect(reply.text).toContain('&lt;script&gt;');
    expect(reply.out.NewPortMappingDescription).toBe('<script>alert("x")</script>&');
  });

  it('returns the reserved port for AddAnyPortMapping', async () => {
    const reply = await soap(
      WANIP2,
      'AddAnyPortMapping',
      mapping({ NewExternalPort: '7777', NewInternalPort: '7000' }),
    );
    expect(reply.text).toContain(`xmlns:u="${WANIP2}"`);
    expect(Number(reply.out.NewReservedPort)).toBeGreaterThanOrEqual(40000);
  });

  it('lists mappings in a port range', async () => {
    const reply = await soap(WANIP2, 'GetListOfPortMappings', {
      NewStartPort: '8000',
      NewEndPort: '8100',
      NewProtocol: 'TCP',
      NewManage: '1',
      NewNumberOfPorts: '0',
    });
    const listing = xml.parse(reply.out.NewPortListing ?? '');
    const entries = listing.PortMappingList.PortMappingEntry;
    expect(entries.map((entry: { NewExternalPort: string }) => entry.NewExternalPort)).toEqual([
      '8080',
      '8081',
    ]);
  });

  const faults: Array<[string, string, string, Record<string, string>, number]> = [
    ['unknown action', WANIP1, 'Reboot', {}, UpnpErrorCode.invalidAction],
    ['v2 action on v1', WANIP1, 'AddAnyPortMapping', mapping(), UpnpErrorCode.invalidAction],
    [
      'external port 0',
      WANIP1,
      'AddPortMapping',
      mapping({ NewExternalPort: '0' }),
      UpnpErrorCode.wildCardNotPermittedInExtPort,
    ],
    [
      'other internal client',
      WANIP1,
      'AddPortMapping',
      mapping({ NewInternalClient: '10.0.0.9' }),
      UpnpErrorCode.actionNotAuthorized,
    ],
    [
      'denied port',
      WANIP1,
      'AddPortMapping',
      mapping({ NewExternalPort: '9090', NewInternalPort: '9090' }),
      UpnpErrorCode.actionNotAuthorized,
    ],
    [
      'taken port',
      WANIP1,
      'AddPortMapping',
      mapping({ NewExternalPort: '7777' }),
      UpnpErrorCode.conflictInMappingEntry,
    ],
    [
      'specific remote host',
      WANIP1,
      'AddPortMapping',
      mapping({ NewRemoteHost: '198.51.100.1' }),
      UpnpErrorCode.remoteHostOnlySupportsWildcard,
    ],
    [
      'missing protocol',
      WANIP1,
      'DeletePortMapping',
      { NewRemoteHost: '', NewExternalPort: '8080' },
      UpnpErrorCode.invalidArgs,
    ],
    [
      'port above 65535',
      WANIP1,
      'AddPortMapping',
      mapping({ NewExternalPort: '70000' }),
      UpnpErrorCode.invalidArgs,
    ],
    [
      'port not a number',
      WANIP1,
      'AddPortMapping',
      mapping({ NewInternalPort: '80a' }),
      UpnpErrorCode.invalidArgs,
    ],
    [
      'internal port 0',
      WANIP1,
      'AddPortMapping',
      mapping({ NewInternalPort: '0' }),
      UpnpErrorCode.invalidArgs,
    ],
    [
      'bad protocol',
      WANIP1,
      'AddPortMapping',
      mapping({ NewProtocol: 'SCTP' }),
      UpnpErrorCode.invalidArgs,
    ],
    [
      'host name client',
      WANIP1,
      'AddPortMapping',
      mapping({ NewInternalClient: 'localhost' }),
      UpnpErrorCode.invalidArgs,
    ],
    [
      'negative lease',
      WANIP1,
      'AddPortMapping',
      mapping({ NewLeaseDuration: '-1' }),
      UpnpErrorCode.invalidArgs,
    ],
    [
      'inverted range',
      WANIP2,
      'DeletePortMappingRange',
      { NewStartPort: '9000', NewEndPort: '8000', NewProtocol: 'TCP', NewManage: '0' },
      UpnpErrorCode.inconsistentParameters,
    ],
    [
      'empty range',
      WANIP2,
      'GetListOfPortMappings',
      {
        NewStartPort: '1',
        NewEndPort: '100',
        NewProtocol: 'UDP',
        NewManage: '0',
        NewNumberOfPorts: '0',
      },
      UpnpErrorCode.portMappingNotFound,
    ],
    [
      'nested argument',
      WANIP1,
      'AddPortMapping',
      mapping({ NewPortMappingDescription: '<b>x</b>' }),
      UpnpErrorCode.invalidArgs,
    ],
  ];
  for (const [name, serviceType, action, args, code] of faults) {
    it(`faults on ${name}`, async () => {
      const reply = await soap(serviceType, action, args);
      expect(reply.status).toBe(500);
      expect(reply.errorCode).toBe(code);
    });
  }

  it('faults on a service at the wrong control URL', async () => {
    const reply = await soap(CIF, 'GetCommonLinkProperties', {}, { path: '/ctl/IPConn' });
    expect(reply.errorCode).toBe(UpnpErrorCode.invalidAction);
  });

  it('faults on a DTD in the body', async () => {
    const response = await fetch(`${base()}/ctl/IPConn`, {
      method: 'POST',
      headers: { SOAPAction: `"${WANIP1}#GetStatusInfo"` },
      body: '<!DOCTYPE x [<!ENTITY a "b">]><s:Envelope xmlns:s="x"><s:Body><u:GetStatusInfo>&a;</u:GetStatusInfo></s:Body></s:Envelope>',
    });
    expect(response.status).toBe(500);
    expect(await response.text()).toContain('<errorCode>402</errorCode>');
  });

  it('rejects a huge body with 413', async () => {
    const response = await fetch(`${base()}/ctl/IPConn`, {
      method: 'POST',
      headers: { SOAPAction: `"${WANIP1}#GetStatusInfo"` },
      body: 'x'.repeat(1024 * 1024),
    });
    expect(response.status).toBe(413);
  });

  it('deletes mappings', async () => {
    const args = { NewRemoteHost: '', NewExternalPort: '8080', NewProtocol: 'TCP' };
    expect((await soap(WANIP1, 'DeletePortMapping', args)).status).toBe(200);
    expect((await soap(WANIP1, 'DeletePortMapping', args)).errorCode).toBe(
      UpnpErrorCode.noSuchEntryInArray,
    );
    const range = { NewStartPort: '1', NewEndPort: '65535', NewProtocol: 'TCP', NewManage: '1' };
    expect((await soap(WANIP2, 'DeletePortMappingRange', range)).status).toBe(200);
    expect(fake.list('127.0.0.1')).toEqual([]);
  });
});

describe('IgdServer for a client without NAT traversal', () => {
  const server = startServer(new FakeMappingService({ enabledClients: [] }));
  const { base, soap } = makeClient(() => server);

  beforeAll(() => server.start());
  afterAll(() => server.stop());

  it('refuses descriptions with 403', async () => {
    expect((await fetch(`${base()}/rootDesc.xml`)).status).toBe(403);
  });

  it('refuses actions with 606', async () => {
    expect((await soap(WANIP1, 'GetExternalIPAddress')).errorCode).toBe(
      UpnpErrorCode.actionNotAuthorized,
    );
  });
});

describe('faultForMappingResult', () => {
  it('maps every refusal to its fault', () => {
    const table = [
      ['not-authorized', 606],
      ['unknown-client', 606],
      ['address-mismatch', 606],
      ['conflict', 718],
      ['no-resources', 728],
      ['failed', 501],
    ] as const;
    for (const [code, upnpCode] of table) {
      expect(faultForMappingResult({ code, message: 'x' }).code).toBe(upnpCode);
    }
  });
});
