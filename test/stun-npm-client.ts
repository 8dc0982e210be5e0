import { createSocket } from 'node:dgram';
import { createRequire } from 'node:module';

/**
 * Runs the npm `stun` package (2.1.0, unmaintained, used only as an
 * interoperability client) against a STUN server and prints one JSON line:
 *   node dist/test/stun-npm-client.js <host:port> [local port]
 * On success: {"ok":true,"xorAddress":{...},"software":...,"fingerprintValid":...}.
 * On an error response: {"ok":false,"error":{"code":...,"reason":...}}.
 */

interface StunPackageResponse {
  getXorAddress(): { address: string; port: number; family: string } | undefined;
  getSoftware(): string | undefined;
  getError(): { code: number; reason: string } | undefined;
}

interface StunPackage {
  request(
    url: string,
    options: { socket?: unknown; retries?: number },
  ): Promise<StunPackageResponse>;
  validateFingerprint(message: StunPackageResponse): boolean;
}

const stun = createRequire(import.meta.url)('stun') as StunPackage;

async function main(): Promise<void> {
  const [url = '', localPortText] = process.argv.slice(2);
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(Number(localPortText ?? 0), resolve));
  try {
    const response = await stun.request(url, { socket, retries: 3 });
    process.stdout.write(
      `${JSON.stringify({
        ok: true,
        xorAddress: response.getXorAddress(),
        software: response.getSoftware(),
        fingerprintValid: stun.validateFingerprint(response),
      })}\n`,
    );
  } catch (error) {
    const packet = (error as { packet?: StunPackageResponse }).packet;
    process.stdout.write(
      `${JSON.stringify({ ok: false, error: packet?.getError() ?? String(error) })}\n`,
    );
  } finally {
    try {
      socket.close();
    } catch {
      // The package closes the socket itself after the transaction.
    }
  }
}

void main();
