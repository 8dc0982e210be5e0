import { request } from 'node:http';

/**
 * Times IGD AddPortMapping round trips: one SOAP request per port, one after
 * another, against a control URL. Prints one JSON line per request:
 * {port, status, elapsedMs}. Used by the benchmark against our broker (from
 * a qube) and against miniupnpd (from sys-net) in the same run.
 *
 *   node dist/test/bench/soap-add-port-mapping.js CONTROL_URL SERVICE_URN INTERNAL_CLIENT FIRST_PORT COUNT
 */

const [
  controlUrl = '',
  serviceUrn = '',
  internalClient = '',
  firstPortText = '20000',
  countText = '5',
] = process.argv.slice(2);
const firstPort = Number(firstPortText);
const count = Number(countText);

function body(port: number): string {
  return (
    '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
    's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>' +
    `<u:AddPortMapping xmlns:u="${serviceUrn}"><NewRemoteHost></NewRemoteHost>` +
    `<NewExternalPort>${port}</NewExternalPort><NewProtocol>TCP</NewProtocol>` +
    `<NewInternalPort>${port}</NewInternalPort><NewInternalClient>${internalClient}</NewInternalClient>` +
    '<NewEnabled>1</NewEnabled><NewPortMappingDescription>bench</NewPortMappingDescription>' +
    '<NewLeaseDuration>3600</NewLeaseDuration></u:AddPortMapping></s:Body></s:Envelope>'
  );
}

function addPortMapping(port: number): Promise<number> {
  const payload = body(port);
  return new Promise((resolve, reject) => {
    const call = request(
      controlUrl,
      {
        method: 'POST',
        headers: {
          'Content-Type': 'text/xml; charset="utf-8"',
          SOAPAction: `"${serviceUrn}#AddPortMapping"`,
          'Content-Length': Buffer.byteLength(payload),
        },
        timeout: 60_000,
      },
      (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
      },
    );
    call.on('error', reject);
    call.on('timeout', () => call.destroy(new Error('timed out')));
    call.end(payload);
  });
}

for (let index = 0; index < count; index++) {
  const port = firstPort + index;
  const startedAtMs = performance.now();
  const status = await addPortMapping(port);
  process.stdout.write(
    `${JSON.stringify({ port, status, elapsedMs: performance.now() - startedAtMs })}\n`,
  );
}
