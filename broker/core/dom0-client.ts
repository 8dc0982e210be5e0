import type { Logger } from '../../rpc/logger.js';
import {
  type ClientsReply,
  clientsReplySchema,
  formatMappingArgument,
  type LeasesReply,
  leasesReplySchema,
  type MappingArgument,
  type MappingGrantReply,
  type MappingGrantRequest,
  type MappingRenewRequest,
  mappingGrantReplySchema,
  NAT_TRAVERSAL_CLIENTS_SERVICE,
  NAT_TRAVERSAL_LEASES_SERVICE,
  NAT_TRAVERSAL_RELEASE_SERVICE,
  NAT_TRAVERSAL_RENEW_SERVICE,
  NAT_TRAVERSAL_SERVICE,
  releaseReplySchema,
} from '../../rpc/nat-traversal-messages.js';
import { QREXEC_EXIT_REFUSED, type QrexecTransport } from '../../rpc/qrexec-transport.js';

/**
 * The broker's calls to dom0. A request for a new mapping may wait for the
 * dom0 user to answer a prompt, so its timeout is long; the others are
 * answered by dom0 at once.
 */

/** Time for a new mapping: the dom0 user may take a while to answer the prompt. */
export const GRANT_TIMEOUT_MS = 120_000;
const QUICK_CALL_TIMEOUT_MS = 20_000;

export class Dom0CallError extends Error {
  override name = 'Dom0CallError';
}

export class Dom0Client {
  constructor(
    private readonly transport: QrexecTransport,
    private readonly logger: Logger,
  ) {}

  /** Asks for a new mapping; a policy refusal (the user denied the prompt) returns `not-allowed`. */
  async grant(argument: MappingArgument, request: MappingGrantRequest): Promise<MappingGrantReply> {
    return this.callMapping(NAT_TRAVERSAL_SERVICE, argument, request, GRANT_TIMEOUT_MS);
  }

  /** Renewals name the port (`QUBE+PROTO+PORT`), also for leases granted as `QUBE+udp+stun`. */
  async renew(argument: MappingArgument, request: MappingRenewRequest): Promise<MappingGrantReply> {
    return this.callMapping(
      NAT_TRAVERSAL_RENEW_SERVICE,
      { ...argument, requestClass: 'port' },
      request,
      QUICK_CALL_TIMEOUT_MS,
    );
  }

  async release(argument: MappingArgument): Promise<number> {
    const reply = await this.call(
      NAT_TRAVERSAL_RELEASE_SERVICE,
      formatMappingArgument({ ...argument, requestClass: 'port' }),
      '',
    );
    return parseReply(releaseReplySchema, reply, NAT_TRAVERSAL_RELEASE_SERVICE).removed;
  }

  async clients(): Promise<ClientsReply> {
    const reply = await this.call(NAT_TRAVERSAL_CLIENTS_SERVICE, '', '');
    return parseReply(clientsReplySchema, reply, NAT_TRAVERSAL_CLIENTS_SERVICE);
  }

  async leases(): Promise<LeasesReply> {
    const reply = await this.call(NAT_TRAVERSAL_LEASES_SERVICE, '', '');
    return parseReply(leasesReplySchema, reply, NAT_TRAVERSAL_LEASES_SERVICE);
  }

  private async callMapping(
    service: string,
    argument: MappingArgument,
    request: unknown,
    timeoutMs: number,
  ): Promise<MappingGrantReply> {
    const text = formatMappingArgument(argument);
    const result = await this.transport.call(
      { target: 'dom0', service, argument: text, payload: JSON.stringify(request) },
      { timeoutMs },
    );
    if (result.exitCode === QREXEC_EXIT_REFUSED) {
      this.logger.info({ request: `${service}+${text}` }, 'dom0 policy denied the request');
      return { result: 'not-allowed', message: `dom0 denied ${service}+${text}` };
    }
    if (result.exitCode !== 0) {
      throw new Dom0CallError(
        `${service}+${text} failed with exit code ${result.exitCode}: ${result.stdout.toString().trim()}`,
      );
    }
    return parseReply(mappingGrantReplySchema, result.stdout.toString(), service);
  }

  private async call(service: string, argument: string, payload: string): Promise<string> {
    const result = await this.transport.call(
      { target: 'dom0', service, argument, payload },
      { timeoutMs: QUICK_CALL_TIMEOUT_MS },
    );
    if (result.exitCode !== 0) {
      throw new Dom0CallError(
        `${service} failed with exit code ${result.exitCode}: ${result.stdout.toString().trim() || result.stderr.toString().trim()}`,
      );
    }
    return result.stdout.toString();
  }
}

function parseReply<T>(
  schema: {
    safeParse(
      value: unknown,
    ): { success: true; data: T } | { success: false; error: { message: string } };
  },
  text: string,
  service: string,
): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Dom0CallError(`invalid reply from dom0 to ${service}: not JSON`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new Dom0CallError(`invalid reply from dom0 to ${service}: ${parsed.error.message}`);
  }
  return parsed.data;
}
