import { upstreamControlRequestSchema } from '../rpc/nat-traversal-messages.js';
import { readServiceInvocation } from '../rpc/qrexec/service-invocation.js';
import { callControlSocket, controlSocketPath } from './core/control-socket.js';

/**
 * qrexec service `qubes.NatBrokerUpstream` in the broker VM: dom0 asks the
 * running broker to map (or unmap) a manual forward's port on the home
 * router. Only dom0 may call it; the policy denies it to every VM, and this
 * handler checks the caller again.
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
  reply({ result: 'failed', message: 'only dom0 may call qubes.NatBrokerUpstream' }, 2);
}

const chunks: Buffer[] = [];
let size = 0;
for await (const chunk of process.stdin) {
  size += (chunk as Buffer).length;
  if (size > MAX_PAYLOAD_BYTES) {
    reply({ result: 'failed', message: `request larger than ${MAX_PAYLOAD_BYTES} bytes` }, 2);
  }
  chunks.push(chunk as Buffer);
}

let request: unknown;
try {
  request = JSON.parse(Buffer.concat(chunks).toString('utf8'));
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
