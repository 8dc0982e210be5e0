import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseRootDescription } from '../broker/upstream/igd/igd-description.js';
import {
  buildSoapRequest,
  parseSoapResponse,
  UpnpErrorCode,
} from '../broker/upstream/igd/igd-soap.js';
import { parseXml } from '../broker/upstream/igd/igd-xml.js';
import { buildMSearch, parseSsdpReply } from '../broker/upstream/ssdp-discovery.js';

/** Root description served by miniupnpd 2.3.1 (Debian 12) in the lab router. */
const MINIUPNPD_2_3_1_DESCRIPTION = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0" configId="1337"><specVersion><major>1</major><minor>1</minor></specVersion><device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType><friendlyName>Lab home router</friendlyName><manufacturer>Debian</manufacturer><manufacturerURL>http://www.debian.org/</manufacturerURL><modelDescription>Debian router</modelDescription><modelName>Debian router</modelName><modelNumber>1</modelNumber><modelURL>http://www.debian.org/</modelURL><serialNumber>00000000</serialNumber><UDN>uuid:4c616220-726f-7574-6572-687532303030</UDN><serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><serviceId>urn:upnp-org:serviceId:L3Forwarding1</serviceId><SCPDURL>/L3F.xml</SCPDURL><controlURL>/ctl/L3F</controlURL><eventSubURL>/evt/L3F</eventSubURL></service><service><serviceType>urn:schemas-upnp-org:service:DeviceProtection:1</serviceType><serviceId>urn:upnp-org:serviceId:DeviceProtection1</serviceId><SCPDURL>/DP.xml</SCPDURL><controlURL>/ctl/DP</controlURL><eventSubURL>/evt/DP</eventSubURL></service></serviceList><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:2</deviceType><friendlyName>WANDevice</friendlyName><manufacturer>MiniUPnP</manufacturer><manufacturerURL>http://miniupnp.free.fr/</manufacturerURL><modelDescription>WAN Device</modelDescription><modelName>WAN Device</modelName><modelNumber>20221221</modelNumber><modelURL>http://miniupnp.free.fr/</modelURL><serialNumber>00000000</serialNumber><UDN>uuid:4c616220-726f-7574-6572-687532303031</UDN><UPC>000000000000</UPC><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType><serviceId>urn:upnp-org:serviceId:WANCommonIFC1</serviceId><SCPDURL>/WANCfg.xml</SCPDURL><controlURL>/ctl/CmnIfCfg</controlURL><eventSubURL>/evt/CmnIfCfg</eventSubURL></service></serviceList><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2</deviceType><friendlyName>WANConnectionDevice</friendlyName><manufacturer>MiniUPnP</manufacturer><manufacturerURL>http://miniupnp.free.fr/</manufacturerURL><modelDescription>MiniUPnP daemon</modelDescription><modelName>MiniUPnPd</modelName><modelNumber>20221221</modelNumber><modelURL>http://miniupnp.free.fr/</modelURL><serialNumber>00000000</serialNumber><UDN>uuid:4c616220-726f-7574-6572-687532303032</UDN><UPC>000000000000</UPC><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><SCPDURL>/WANIPCn.xml</SCPDURL><controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL></service><service><serviceType>urn:schemas-upnp-org:service:WANIPv6FirewallControl:1</serviceType><serviceId>urn:upnp-org:serviceId:WANIPv6Firewall1</serviceId><SCPDURL>/WANIP6FC.xml</SCPDURL><controlURL>/ctl/IP6FCtl</controlURL><eventSubURL>/evt/IP6FCtl</eventSubURL></service></serviceList></device></deviceList></device></deviceList><presentationURL>http://192.168.77.1/</presentationURL></device></root>`;

const LOCATION = 'http://192.168.77.1:5000/rootDesc.xml';

/** An IGD v1 description with URLBase and a WANPPPConnection next to WANIPConnection:1. */
const IGD1_DESCRIPTION = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><URLBase>http://10.0.0.99:49000/</URLBase>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>/upnp/control/WANPPPConn1</controlURL></service>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>upnp/control/WANIPConn1?x=1</controlURL></service>
</serviceList></device></deviceList></device></deviceList></device></root>`;

describe('IGD root description', () => {
  it('finds WANIPConnection:2 in miniupnpd 2.3.1', () => {
    const services = parseRootDescription(MINIUPNPD_2_3_1_DESCRIPTION, LOCATION);
    expect(services).toEqual({
      ok: true,
      value: [
        {
          serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:2',
          igdVersion: 2,
          controlUrl: 'http://192.168.77.1:5000/ctl/IPConn',
        },
      ],
    });
  });

  it('orders v1 services and keeps the location host', () => {
    const services = parseRootDescription(IGD1_DESCRIPTION, LOCATION);
    expect(services.ok && services.value.map((service) => service.controlUrl)).toEqual([
      'http://192.168.77.1:5000/upnp/control/WANIPConn1?x=1',
      'http://192.168.77.1:5000/upnp/control/WANPPPConn1',
    ]);
  });

  it('rejects a description without WAN services', () => {
    const result = parseRootDescription(
      '<root><device><deviceType>x</deviceType></device></root>',
      LOCATION,
    );
    expect(result.ok || result.error).toMatch(/no WANIPConnection/);
  });

  it('rejects a non-http location', () => {
    expect(parseRootDescription(IGD1_DESCRIPTION, 'file:///etc/passwd').ok).toBe(false);
  });

  it('ignores non-http control URLs', () => {
    const text = IGD1_DESCRIPTION.replaceAll('/upnp/control/WANPPPConn1', 'ftp://x/y').replace(
      'upnp/control/WANIPConn1?x=1',
      'javascript:alert(1)',
    );
    expect(parseRootDescription(text, LOCATION).ok).toBe(false);
  });
});

describe('safe XML parsing', () => {
  it('rejects entity declarations', () => {
    const billionLaughs =
      '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><root>&lol2;</root>';
    expect(parseXml(billionLaughs, 65536)).toEqual({
      ok: false,
      error: expect.stringMatching(/document type declaration/),
    });
  });

  it('rejects oversized documents', () => {
    const huge = `<root>${'<a>x</a>'.repeat(40_000)}</root>`;
    expect(parseXml(huge, 64 * 1024).ok).toBe(false);
  });

  it('rejects deep nesting', () => {
    const deep = `${'<a>'.repeat(200)}x${'</a>'.repeat(200)}`;
    expect(parseXml(deep, 65536).ok).toBe(false);
  });

  it('rejects prototype pollution names', () => {
    expect(parseXml('<__proto__><polluted>1</polluted></__proto__>', 65536).ok).toBe(false);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('is total on random text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        parseXml(text, 65536);
        parseSoapResponse(text, 'GetExternalIPAddress');
        parseRootDescription(text, LOCATION);
      }),
    );
  });

  it('is total on mutated descriptions', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: MINIUPNPD_2_3_1_DESCRIPTION.length }),
        fc.string({ maxLength: 8 }),
        (index, insert) => {
          const text =
            MINIUPNPD_2_3_1_DESCRIPTION.slice(0, index) +
            insert +
            MINIUPNPD_2_3_1_DESCRIPTION.slice(index + 1);
          parseRootDescription(text, LOCATION);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('SOAP', () => {
  it('builds an escaped request', () => {
    const body = buildSoapRequest(
      'urn:schemas-upnp-org:service:WANIPConnection:2',
      'AddPortMapping',
      [
        ['NewProtocol', 'TCP'],
        ['NewPortMappingDescription', '<x>&"\'</x>'],
      ],
    );
    expect(body).toContain(
      '<u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2">',
    );
    expect(body).toContain(
      '<NewPortMappingDescription>&lt;x&gt;&amp;&quot;&apos;&lt;/x&gt;</NewPortMappingDescription>',
    );
    const parsed = parseXml(body, 65536);
    expect(parsed.ok).toBe(true);
  });

  it('parses the miniupnpd 2.3.1 GetExternalIPAddress response', () => {
    const text =
      '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:GetExternalIPAddressResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2"><NewExternalIPAddress>203.0.113.1</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>';
    expect(parseSoapResponse(text, 'GetExternalIPAddress')).toEqual({
      ok: true,
      value: { kind: 'response', values: { NewExternalIPAddress: '203.0.113.1' } },
    });
  });

  it('parses the miniupnpd 2.3.1 714 fault', () => {
    const text =
      '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>714</errorCode><errorDescription>NoSuchEntryInArray</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>';
    expect(parseSoapResponse(text, 'GetSpecificPortMappingEntry')).toEqual({
      ok: true,
      value: {
        kind: 'fault',
        fault: {
          errorCode: UpnpErrorCode.NoSuchEntryInArray,
          errorDescription: 'NoSuchEntryInArray',
        },
      },
    });
  });

  it('parses a fault without a UPnP error code', () => {
    const text =
      '<Envelope><Body><Fault><faultcode>Server</faultcode><faultstring>busy</faultstring></Fault></Body></Envelope>';
    expect(parseSoapResponse(text, 'AddPortMapping')).toEqual({
      ok: true,
      value: { kind: 'fault', fault: { errorCode: null, errorDescription: 'busy' } },
    });
  });

  it('keeps empty arguments as empty strings', () => {
    const text = '<Envelope><Body><u:AddPortMappingResponse xmlns:u="x"/></Body></Envelope>';
    expect(parseSoapResponse(text, 'AddPortMapping')).toEqual({
      ok: true,
      value: { kind: 'response', values: {} },
    });
    const withEmpty =
      '<Envelope><Body><RResponse><NewRemoteHost></NewRemoteHost><NewEnabled>1</NewEnabled></RResponse></Body></Envelope>';
    expect(parseSoapResponse(withEmpty, 'R')).toEqual({
      ok: true,
      value: { kind: 'response', values: { NewRemoteHost: '', NewEnabled: '1' } },
    });
  });

  it('rejects hostile responses', () => {
    const cases: Array<[string, string]> = [
      ['other action', '<Envelope><Body><OtherResponse/></Body></Envelope>'],
      ['no envelope', '<html><body>error</body></html>'],
      [
        'nested argument',
        '<Envelope><Body><RResponse><A><B>1</B></A></RResponse></Body></Envelope>',
      ],
      ['truncated', '<Envelope><Body><RResponse><A>1</A>'],
      [
        'entity',
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><Envelope><Body><RResponse><A>&e;</A></RResponse></Body></Envelope>',
      ],
      [
        'huge',
        `<Envelope><Body><RResponse><A>${'x'.repeat(70_000)}</A></RResponse></Body></Envelope>`,
      ],
    ];
    for (const [name, text] of cases) {
      expect(parseSoapResponse(text, 'R').ok, name).toBe(false);
    }
  });
});

describe('SSDP', () => {
  it('builds an M-SEARCH', () => {
    expect(buildMSearch('urn:schemas-upnp-org:device:InternetGatewayDevice:2', 2)).toBe(
      'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 2\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\n\r\n',
    );
  });

  it('parses a search reply', () => {
    const text =
      'HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:x::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://192.168.77.1:5000/rootDesc.xml\r\n\r\n';
    expect(parseSsdpReply(text)).toEqual({
      ok: true,
      value: {
        location: LOCATION,
        searchTarget: 'urn:schemas-upnp-org:device:InternetGatewayDevice:1',
        usn: 'uuid:x::urn:schemas-upnp-org:device:InternetGatewayDevice:1',
      },
    });
  });

  it('rejects hostile replies', () => {
    const cases = [
      'NOTIFY * HTTP/1.1\r\nLOCATION: http://a/\r\nST: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nST: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nLOCATION: file:///etc/passwd\r\nST: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nLOCATION http://a/\r\n\r\n',
      `HTTP/1.1 200 OK\r\n${'X: y\r\n'.repeat(1000)}`,
    ];
    for (const text of cases) expect(parseSsdpReply(text).ok).toBe(false);
  });

  it('parser is total on random text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 500 }), (text) => {
        parseSsdpReply(text);
        parseSsdpReply(`HTTP/1.1 200 OK\r\n${text}`);
      }),
    );
  });
});
