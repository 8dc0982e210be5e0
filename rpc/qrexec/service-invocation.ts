import { QREXEC_ARGUMENT_PATTERN, QREXEC_SERVICE_PATTERN } from '../qrexec-transport.js';

/**
 * Reads how a qrexec service handler in `/etc/qubes-rpc/` was called: qrexec
 * sets `QREXEC_SERVICE_FULL_NAME` (`SERVICE+ARGUMENT`), `QREXEC_REMOTE_DOMAIN`
 * (the caller) and, for a non-empty argument, `QREXEC_SERVICE_ARGUMENT`; the
 * argument is also the handler's first command-line word.
 */

export interface ServiceInvocation {
  serviceName: string;
  /** Empty for a call without argument. */
  argument: string;
  /** The calling VM, `dom0` for the admin VM. */
  remoteDomain: string;
}

export type ServiceInvocationErrorCode =
  | 'missing-remote-domain'
  | 'invalid-remote-domain'
  | 'missing-service-name'
  | 'invalid-service-name'
  | 'invalid-argument'
  | 'argument-mismatch';

export type ReadServiceInvocationResult =
  | { ok: true; invocation: ServiceInvocation }
  | { ok: false; code: ServiceInvocationErrorCode; message: string };

const DOMAIN_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,30}$/;

/**
 * Validates the invocation; `argv` is the handler's arguments without the
 * program name (`process.argv.slice(2)` in Node).
 */
export function readServiceInvocation(
  env: Record<string, string | undefined>,
  argv: readonly string[],
): ReadServiceInvocationResult {
  const remoteDomain = env.QREXEC_REMOTE_DOMAIN;
  if (remoteDomain === undefined || remoteDomain === '') {
    return fail(
      'missing-remote-domain',
      'QREXEC_REMOTE_DOMAIN is not set: run this handler through qrexec',
    );
  }
  if (!DOMAIN_PATTERN.test(remoteDomain)) {
    return fail(
      'invalid-remote-domain',
      `QREXEC_REMOTE_DOMAIN ${JSON.stringify(remoteDomain)} is not a valid VM name`,
    );
  }

  const fullName = env.QREXEC_SERVICE_FULL_NAME;
  if (fullName === undefined || fullName === '') {
    return fail(
      'missing-service-name',
      'QREXEC_SERVICE_FULL_NAME is not set: run this handler through qrexec',
    );
  }
  const plus = fullName.indexOf('+');
  const serviceName = plus < 0 ? fullName : fullName.slice(0, plus);
  const nameArgument = plus < 0 ? '' : fullName.slice(plus + 1);
  if (!QREXEC_SERVICE_PATTERN.test(serviceName)) {
    return fail(
      'invalid-service-name',
      `service name ${JSON.stringify(serviceName)} is invalid: use letters, digits and ._-`,
    );
  }

  const argument = env.QREXEC_SERVICE_ARGUMENT ?? argv[0] ?? nameArgument;
  if (!QREXEC_ARGUMENT_PATTERN.test(argument)) {
    return fail(
      'invalid-argument',
      `argument ${JSON.stringify(argument)} is invalid: use at most 64 of A-Za-z0-9+-._`,
    );
  }
  if (argument !== nameArgument || (argv[0] !== undefined && argv[0] !== argument)) {
    return fail(
      'argument-mismatch',
      `argument ${JSON.stringify(argument)} differs between QREXEC_SERVICE_ARGUMENT, QREXEC_SERVICE_FULL_NAME and $1`,
    );
  }

  return { ok: true, invocation: { serviceName, argument, remoteDomain } };
}

function fail(code: ServiceInvocationErrorCode, message: string): ReadServiceInvocationResult {
  return { ok: false, code, message };
}
