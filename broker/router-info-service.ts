import { createLogger } from '../rpc/logger.js';
import { readServiceInvocation } from '../rpc/qrexec/service-invocation.js';
import { readServicePayload } from '../rpc/qrexec/service-payload.js';
import { routerInfoSchema, writeRouterInfo } from './core/router-info-file.js';

/**
 * qrexec service `qubes.NatBrokerRouterInfo` in the broker VM: sys-net
 * reports the home router it found on its uplink (JSON `RouterInfo` on
 * standard input). The policy allows only sys-net to call it; the broker
 * validates the report and stores it, and the running broker picks it up.
 */

const MAX_PAYLOAD_BYTES = 4096;
const logger = createLogger('router-info-service');
const stateDir = process.env.QNB_STATE_DIR ?? '/var/lib/qubes-nat-broker';

const invocation = readServiceInvocation(process.env, process.argv.slice(2));
if (!invocation.ok) {
  process.stdout.write(`${JSON.stringify({ error: invocation.message })}\n`);
  process.exit(2);
}

const payload = await readServicePayload(MAX_PAYLOAD_BYTES);
if (payload === null) {
  process.stdout.write(
    `${JSON.stringify({ error: `report larger than ${MAX_PAYLOAD_BYTES} bytes` })}\n`,
  );
  process.exit(2);
}

let report: unknown;
try {
  report = JSON.parse(payload);
} catch {
  process.stdout.write(`${JSON.stringify({ error: 'invalid router report: not JSON' })}\n`);
  process.exit(2);
}
const parsed = routerInfoSchema.safeParse(report);
if (!parsed.success) {
  const issues = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
  logger.warn({ from: invocation.invocation.remoteDomain, issues }, 'invalid router report');
  process.stdout.write(
    `${JSON.stringify({ error: `invalid router report: ${issues.join('; ')}` })}\n`,
  );
  process.exit(2);
}

await writeRouterInfo(stateDir, parsed.data);
logger.info({ from: invocation.invocation.remoteDomain, ...parsed.data }, 'router report stored');
process.stdout.write(`${JSON.stringify({ result: 'stored' })}\n`);
