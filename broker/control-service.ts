import { upstreamControlRequestSchema } from '../rpc/nat-traversal-messages.js';
import { readServiceInvocation } from '../rpc/qrexec/service-invocation.js';
import { readServicePayload } from '../rpc/qrexec/service-payload.js';
import { callControlSocket, controlSocketPath } from './core/control-socket.js';

/**
 * qrexec service `qubes.NatBrokerControl` in the broker VM: dom0 asks the
 * running broker to map (or unmap) a manual forward's port on the home
 * router, or to read its client list again. Only dom0 may call it; the
 * policy denies it to every VM, and this handler checks the caller again.
 */

const MAX_PAYLOAD_BYTES = 4096;
const stateDir = process.env.QNB_STATE_DIR ?? '/var/lib/qubes-nat-broker';

function reply(value: unknown, exitCode: number): never {
  process.stdout.write(`${JSON.stringify(value)}\n`);
  process.exit(exitCode);
}

const invocation = readServiceInvocation(process.env, process.argv.slice(2));
if (!invocation.ok) {
  reply({ result: 'failed', message: invocation.message }, 2);
}
if (invocation.invocation.remoteDomain !== 'dom0') {
  reply({ result: 'failed', message: 'only dom0 may call qubes.NatBrokerControl' }, 2);
}

const payload = await readServicePayload(MAX_PAYLOAD_BYTES);
if (payload === null) {
  reply({ result: 'failed', message: `request larger than ${MAX_PAYLOAD_BYTES} bytes` }, 2);
}

let request: unknown;
try {
  request = JSON.parse(payload);
} catch {
  reply({ result: 'failed', message: 'invalid request: not JSON' }, 2);
}
const parsed = upstreamControlRequestSchema.safeParse(request);
if (!parsed.success) {
  reply({ result: 'failed', message: `invalid request: ${parsed.error.message}` }, 2);
}

try {
  reply(await callControlSocket(controlSocketPath(stateDir), parsed.data), 0);
} catch (error) {
  reply({ result: 'unavailable', message: (error as Error).message }, 0);
}
