import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildIgdDeviceTrees } from '../broker/igd/device-tree.js';
import {
  MAX_SSDP_DATAGRAM_BYTES,
  MSearchErrorCode,
  parseMSearch,
} from '../broker/ssdp/msearch-parser.js';
import { buildSearchResponse, selectAdvertisements } from '../broker/ssdp/search-response.js';

const IGD1 = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1';
const IGD2 = 'urn:schemas-upnp-org:device:InternetGatewayDevice:2';

const datagram = (lines: string[]) => Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');

/** The search miniupnpc 2.2.4 sends first. */
const miniupnpcSearch = datagram([
  'M-SEARCH * HTTP/1.1',
  'HOST: 239.255.255.250:1900',
  `ST: ${IGD1}`,
  'MAN: "ssdp:discover"',
  'MX: 2',
]);

describe('parseMSearch', () => {
  it('parses a miniupnpc multicast search', () => {
    const result = parseMSearch(miniupnpcSearch);
    expect(result).toEqual({
      ok: true,
      request: {
        searchTarget: IGD1,
        maxWaitSeconds: 2,
        host: '239.255.255.250:1900',
        isMulticast: true,
      },
    });
  });

  it('accepts lower-case header names and bare LF', () => {
    const result = parseMSearch(
      Buffer.from(
        'M-SEARCH * HTTP/1.1\nhost: 239.255.255.250:1900\nman: "ssdp:discover"\nmx: 1\nst: ssdp:all\n\n',
      ),
    );
    expect(result.ok).toBe(true);
  });

  it('allows a unicast search without MX', () => {
    const result = parseMSearch(
      datagram([
        'M-SEARCH * HTTP/1.1',
        'HOST: 10.201.0.1:1900',
        'MAN: "ssdp:discover"',
        'ST: upnp:rootdevice',
      ]),
    );
    expect(result.ok).toBe(true);
    if (result.ok)
      expect(result.request).toEqual({
        searchTarget: 'upnp:rootdevice',
        maxWaitSeconds: null,
        host: '10.201.0.1:1900',
        isMulticast: false,
      });
  });

  const cases: Array<[string, string[], MSearchErrorCode]> = [
    ['NOTIFY', ['NOTIFY * HTTP/1.1', 'HOST: 239.255.255.250:1900'], 'not-m-search'],
    ['response', ['HTTP/1.1 200 OK', 'ST: ssdp:all'], 'not-m-search'],
    [
      'missing MAN',
      ['M-SEARCH * HTTP/1.1', 'HOST: 239.255.255.250:1900', 'MX: 1', 'ST: ssdp:all'],
      'missing-header',
    ],
    [
      'unquoted MAN',
      [
        'M-SEARCH * HTTP/1.1',
        'HOST: 239.255.255.250:1900',
        'MAN: ssdp:discover',
        'MX: 1',
        'ST: ssdp:all',
      ],
      'invalid-man',
    ],
    [
      'missing ST',
      ['M-SEARCH * HTTP/1.1', 'HOST: 239.255.255.250:1900', 'MAN: "ssdp:discover"', 'MX: 1'],
      'missing-header',
    ],
    [
      'empty ST',
      ['M-SEARCH * HTTP/1.1', 'HOST: 239.255.255.250:1900', 'MAN: "ssdp:discover"', 'MX: 1', 'ST:'],
      'invalid-search-target',
    ],
    [
      'missing HOST',
      ['M-SEARCH * HTTP/1.1', 'MAN: "ssdp:discover"', 'MX: 1', 'ST: ssdp:all'],
      'missing-header',
    ],
    [
      'multicast without MX',
      ['M-SEARCH * HTTP/1.1', 'HOST: 239.255.255.250:1900', 'MAN: "ssdp:discover"', 'ST: ssdp:all'],
      'missing-header',
    ],
    [
      'MX 0 multicast',
      [
        'M-SEARCH * HTTP/1.1',
        'HOST: 239.255.255.250:1900',
        'MAN: "ssdp:discover"',
        'MX: 0',
        'ST: ssdp:all',
      ],
      'invalid-mx',
    ],
    [
      'negative MX',
      [
        'M-SEARCH * HTTP/1.1',
        'HOST: 239.255.255.250:1900',
        'MAN: "ssdp:discover"',
        'MX: -1',
        'ST: ssdp:all',
      ],
      'invalid-mx',
    ],
    [
      'huge MX',
      [
        'M-SEARCH * HTTP/1.1',
        'HOST: 239.255.255.250:1900',
        'MAN: "ssdp:discover"',
        'MX: 99999',
        'ST: ssdp:all',
      ],
      'invalid-mx',
    ],
    [
      'duplicate ST',
      [
        'M-SEARCH * HTTP/1.1',
        'HOST: 239.255.255.250:1900',
        'MAN: "ssdp:discover"',
        'MX: 1',
        'ST: ssdp:all',
        'ST: upnp:rootdevice',
      ],
      'duplicate-header',
    ],
    [
      'header without colon',
      ['M-SEARCH * HTTP/1.1', 'HOST 239.255.255.250:1900'],
      'malformed-header',
    ],
    [
      'non-ASCII ST',
      [
        'M-SEARCH * HTTP/1.1',
        'HOST: 239.255.255.250:1900',
        'MAN: "ssdp:discover"',
        'MX: 1',
        'ST: urn:\u00e9',
      ],
      'invalid-search-target',
    ],
    [
      'bad HOST',
      ['M-SEARCH * HTTP/1.1', 'HOST: <script>', 'MAN: "ssdp:discover"', 'MX: 1', 'ST: ssdp:all'],
      'invalid-host',
    ],
  ];
  for (const [name, lines, code] of cases) {
    it(`rejects ${name}`, () => {
      const result = parseMSearch(datagram(lines));
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.error.code).toBe(code);
    });
  }

  it('rejects an oversized datagram', () => {
    const padding = `X-PAD: ${'a'.repeat(MAX_SSDP_DATAGRAM_BYTES)}`;
    const result = parseMSearch(datagram(['M-SEARCH * HTTP/1.1', padding]));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.code).toBe('too-large');
  });

  it('never throws on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (bytes) => {
        const result = parseMSearch(bytes);
        expect(typeof result.ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on mutated searches', () => {
    const line = fc.oneof(
      fc.constantFrom('HOST: 239.255.255.250:1900', 'MAN: "ssdp:discover"', 'MX: 3', `ST: ${IGD2}`),
      fc.string({ maxLength: 80 }),
      fc
        .tuple(fc.constantFrom('HOST', 'MAN', 'MX', 'ST', 'mx'), fc.string({ maxLength: 40 }))
        .map(([name, value]) => `${name}:${value}`),
    );
    fc.assert(
      fc.property(
        fc.array(line, { maxLength: 12 }),
        fc.constantFrom('\r\n', '\n', '\r'),
        (lines, eol) => {
          const result = parseMSearch(
            Buffer.from(['M-SEARCH * HTTP/1.1', ...lines].join(eol), 'utf8'),
          );
          if (result.ok) {
            expect(result.request.searchTarget).toMatch(/^[\x21-\x7e]+$/);
            expect(
              result.request.isMulticast ? result.request.maxWaitSeconds : 1,
            ).toBeGreaterThanOrEqual(1);
          } else {
            expect(Object.values(MSearchErrorCode)).toContain(result.error.code);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('selectAdvertisements', () => {
  const trees = buildIgdDeviceTrees('test-seed');

  it('answers IGD:1 with the v1 tree only', () => {
    const answers = selectAdvertisements(trees, IGD1);
    expect(answers).toHaveLength(1);
    expect(answers[0]?.searchTarget).toBe(IGD1);
    expect(answers[0]?.descriptionPath).toBe('/rootDesc.xml');
  });

  it('answers IGD:2 with the v2 tree only', () => {
    const answers = selectAdvertisements(trees, IGD2);
    expect(answers.map((answer) => answer.descriptionPath)).toEqual(['/rootDesc2.xml']);
  });

  it('answers service and embedded device types', () => {
    for (const type of [
      'urn:schemas-upnp-org:service:WANIPConnection:1',
      'urn:schemas-upnp-org:service:WANIPConnection:2',
      'urn:schemas-upnp-org:device:WANDevice:1',
      'urn:schemas-upnp-org:device:WANConnectionDevice:2',
    ]) {
      expect(selectAdvertisements(trees, type)).toHaveLength(1);
    }
  });

  it('answers rootdevice once per tree', () => {
    expect(selectAdvertisements(trees, 'upnp:rootdevice')).toHaveLength(2);
  });

  it('answers ssdp:all with every advertisement', () => {
    const all = selectAdvertisements(trees, 'ssdp:all');
    expect(all.length).toBe(18);
    expect(new Set(all.map((answer) => answer.usn)).size).toBe(all.length);
  });

  it('ignores unknown and future versions', () => {
    expect(
      selectAdvertisements(trees, 'urn:schemas-upnp-org:device:InternetGatewayDevice:3'),
    ).toEqual([]);
    expect(selectAdvertisements(trees, 'urn:schemas-upnp-org:device:MediaServer:1')).toEqual([]);
  });

  it('gives the trees distinct UDNs', () => {
    const roots = trees.map((tree) => tree.root.udn);
    expect(new Set(roots).size).toBe(2);
    expect(roots[0]).toMatch(
      /^uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });
});

describe('buildSearchResponse', () => {
  it('builds the UDA 1.1 headers', () => {
    const [advertisement] = selectAdvertisements(buildIgdDeviceTrees('seed'), IGD2);
    if (advertisement === undefined) throw new Error('no advertisement');
    const text = buildSearchResponse({
      advertisement,
      locationOrigin: 'http://10.137.0.1:2189',
      bootId: 7,
      date: new Date(0),
    });
    expect(text.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
    expect(text.endsWith('\r\n\r\n')).toBe(true);
    expect(text).toContain('\r\nLOCATION: http://10.137.0.1:2189/rootDesc2.xml\r\n');
    expect(text).toContain(`\r\nST: ${IGD2}\r\n`);
    expect(text).toContain(`\r\nUSN: ${advertisement.usn}\r\n`);
    expect(text).toContain('\r\nCACHE-CONTROL: max-age=1800\r\n');
    expect(text).toContain('\r\nEXT:\r\n');
    expect(text).toContain('\r\nBOOTID.UPNP.ORG: 7\r\n');
  });
});
