import { readServiceInvocation } from '../../rpc/qrexec/service-invocation.js';
import { readServicePayload } from '../../rpc/qrexec/service-payload.js';
import { createDom0Context } from '../dom0-context.js';
import { ServiceInputError } from './decision-service.js';

/**
 * Entry point of dom0's NAT traversal services (`/etc/qubes-rpc/qubes.NatTraversal`,
 * `...Renew`, `...Release`, `...Clients`, `...Leases`, all the same program).
 * Prints one JSON reply; exits 0 when a reply was produced (the result is in
 * it), 2 for invalid input, 1 for internal errors.
 */

/** Largest payload read; the messages are a few hundred bytes. */
const MAX_PAYLOAD_BYTES = 64 * 1024;

const invocation = readServiceInvocation(process.env, process.argv.slice(2));
if (!invocation.ok) {
  process.stdout.write(`${JSON.stringify({ error: invocation.message })}\n`);
  process.exit(2);
}

const context = createDom0Context(process.env);
const payload = await readServicePayload(MAX_PAYLOAD_BYTES);
if (payload === null) {
  process.stdout.write(
    `${JSON.stringify({ error: `payload larger than ${MAX_PAYLOAD_BYTES} bytes` })}\n`,
  );
  process.exit(2);
}

try {
  const reply = await context.decisions.handle({
    serviceName: invocation.invocation.serviceName,
    argument: invocation.invocation.argument,
    remoteDomain: invocation.invocation.remoteDomain,
    payload,
  });
  process.stdout.write(`${JSON.stringify(reply)}\n`);
} catch (error) {
  const invalid = error instanceof ServiceInputError;
  if (!invalid) {
    context.logger.error(
      { err: error, service: invocation.invocation.serviceName },
      'service failed',
    );
  }
  process.stdout.write(`${JSON.stringify({ error: (error as Error).message })}\n`);
  process.exitCode = invalid ? 2 : 1;
}
