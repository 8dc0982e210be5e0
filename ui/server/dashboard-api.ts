import type { z } from 'zod';
import type { Dom0Context } from '../../policy/dom0-context.js';
import { ForwardRequestError } from '../../policy/forwards/forward-manager.js';
import type { ForwardRule } from '../../policy/forwards/forward-rule.js';
import { ForwardStoreError } from '../../policy/forwards/forward-store.js';
import { formatRuleWords } from '../../policy/forwards/rule-words.js';
import {
  NAT_TRAVERSAL_FEATURE,
  NAT_TRAVERSAL_MAX_LEASE_FEATURE,
  NAT_TRAVERSAL_PORTS_FEATURE,
  NAT_TRAVERSAL_PROTOCOLS_FEATURE,
} from '../../policy/nat-traversal/nat-settings.js';
import { InventoryError } from '../../policy/network/qube-inventory.js';
import { PushError } from '../../policy/network/rule-pusher.js';
import { QUBE_NAME_PATTERN } from '../../rpc/wire-types.js';
import { auditQuerySchema, readAuditLog } from './audit-log.js';
import { numberForwards, readFirewallRules, readOverview } from './dashboard-data.js';
import {
  type FormErrors,
  forwardFormSchema,
  natTraversalCliCommands,
  natTraversalFormSchema,
  parseForwardForm,
  parseNatTraversalForm,
  promptAnswerSchema,
  zodFormErrors,
} from './dashboard-requests.js';
import { ForwardNotFoundError, removeForwardById, replaceForward } from './forward-actions.js';
import type { LiveEvents } from './live-events.js';
import type { PendingPrompts } from './pending-prompts.js';

/**
 * The JSON API under /api/. Every handler validates its input strictly and
 * changes state only through the components `qvm-forward` and
 * `qvm-features` use. Each change returns the equivalent command line.
 */

export interface ApiDependencies {
  context: Dom0Context;
  prompts: PendingPrompts | null;
  live: LiveEvents;
  logFile: string;
}

export interface ApiRequest {
  method: string;
  /** Path segments after /api/, already URL-decoded. */
  segments: string[];
  query: URLSearchParams;
  body: unknown;
}

export interface ApiResponse {
  status: number;
  body: unknown;
}

const FORWARD_ID_PATTERN = /^f-[0-9a-f]{12}$/;
const PROMPT_ID_PATTERN = /^[A-Za-z0-9-]{1,64}$/;

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details: Partial<FormErrors> = {},
  ) {
    super(message);
  }
}

export async function handleApi(deps: ApiDependencies, request: ApiRequest): Promise<ApiResponse> {
  try {
    return await route(deps, request);
  } catch (error) {
    return errorResponse(deps, error);
  }
}

async function route(deps: ApiDependencies, request: ApiRequest): Promise<ApiResponse> {
  const { method, segments } = request;
  const [collection, name, sub, id] = segments;

  if (collection === 'qubes' && segments.length === 1 && method === 'GET') {
    return ok(await readOverview(deps.context));
  }
  if (collection === 'qubes' && name !== undefined) {
    checkQubeName(name);
    if (segments.length === 2 && method === 'GET') {
      return ok(await readQubeDetail(deps, name));
    }
    if (sub === 'forwards' && segments.length === 3 && method === 'POST') {
      return addForward(deps, name, request.body);
    }
    if (sub === 'forwards' && id !== undefined && segments.length === 4) {
      checkId(id, FORWARD_ID_PATTERN, 'forward id');
      if (method === 'PUT') return editForward(deps, name, id, request.body);
      if (method === 'DELETE') return deleteForward(deps, name, id, false);
    }
    if (sub === 'nat-traversal' && segments.length === 3 && method === 'PUT') {
      return setNatTraversal(deps, name, request.body);
    }
  }

  if (collection === 'mappings' && segments.length === 1 && method === 'GET') {
    const leases = numberForwards(await deps.context.manager.list()).filter(
      (forward) => forward.natTraversal != null,
    );
    return ok({ nowUnixMs: deps.context.nowUnixMs(), mappings: leases });
  }
  if (collection === 'mappings' && name !== undefined && segments.length === 2) {
    checkId(name, FORWARD_ID_PATTERN, 'mapping id');
    if (method === 'DELETE') return revokeMapping(deps, name);
  }

  if (collection === 'prompts' && segments.length === 1 && method === 'GET') {
    return ok({ enabled: deps.prompts !== null, prompts: deps.prompts?.list() ?? [] });
  }
  if (collection === 'prompts' && name !== undefined && segments.length === 2) {
    checkId(name, PROMPT_ID_PATTERN, 'prompt id');
    if (method === 'POST') return answerPrompt(deps, name, request.body);
  }

  if (collection === 'audit' && segments.length === 1 && method === 'GET') {
    const parsed = auditQuerySchema.safeParse(Object.fromEntries(request.query));
    if (!parsed.success) {
      throw new ApiError(400, 'invalid audit filter', zodFormErrors(parsed.error));
    }
    return ok(await readAuditLog(deps.logFile, parsed.data));
  }

  throw new ApiError(404, `no API endpoint ${method} /api/${segments.join('/')}`);
}

async function readQubeDetail(deps: ApiDependencies, name: string) {
  const overview = await readOverview(deps.context);
  const qube = overview.qubes.find((candidate) => candidate.name === name);
  if (qube === undefined) {
    throw new ApiError(404, `no qube named "${name}"; list them with qvm-ls`);
  }
  const firewall = await readFirewallRules(deps.context, qube);
  return {
    nowUnixMs: overview.nowUnixMs,
    qube,
    firewall,
    forwards: overview.forwards.filter((forward) => forward.qube === name),
  };
}

async function addForward(deps: ApiDependencies, qube: string, body: unknown) {
  const form = parseBody(forwardFormSchema, body);
  const nowUnixSeconds = Math.floor(deps.context.nowUnixMs() / 1000);
  const parsed = parseForwardForm(form, nowUnixSeconds);
  if (!parsed.ok) {
    throw new ApiError(400, 'invalid forward rule; nothing was changed', parsed);
  }

  const forward = await deps.context.manager.add(qube, parsed.fields);
  const router =
    parsed.fields.upstream === true ? await deps.context.routerMappings.map(forward) : null;
  await deps.live.refresh();
  return ok({ forward, router, cli: `qvm-forward ${qube} add ${parsed.words.join(' ')}` }, 201);
}

async function editForward(deps: ApiDependencies, qube: string, id: string, body: unknown) {
  const form = parseBody(forwardFormSchema, body);
  rejectRouterMapping(form);
  const nowUnixSeconds = Math.floor(deps.context.nowUnixMs() / 1000);
  const parsed = parseForwardForm(form, nowUnixSeconds);
  if (!parsed.ok) {
    throw new ApiError(400, 'invalid forward rule; nothing was changed', parsed);
  }

  const previous = (await deps.context.manager.list(qube)).find((forward) => forward.id === id);
  const forward = await replaceForward(deps.context, qube, id, parsed.fields);
  await deps.live.refresh();
  const deleteCommand = previous === undefined ? '' : `${deleteCli(previous)} && `;
  return ok({ forward, cli: `${deleteCommand}qvm-forward ${qube} add ${parsed.words.join(' ')}` });
}

async function deleteForward(deps: ApiDependencies, qube: string, id: string, leaseOnly: boolean) {
  const removed = await removeForwardById(deps.context, qube, id, { leaseOnly });
  if (removed.routerMapping != null) {
    await deps.context.routerMappings.unmap(removed);
  }
  await deps.live.refresh();
  return ok({ removed, cli: deleteCli(removed) });
}

async function revokeMapping(deps: ApiDependencies, id: string) {
  const lease = (await deps.context.manager.list()).find((forward) => forward.id === id);
  if (lease === undefined || lease.natTraversal == null) {
    throw new ApiError(404, `no live mapping ${id}; it may have expired or been revoked`);
  }
  return deleteForward(deps, lease.qube, id, true);
}

async function setNatTraversal(deps: ApiDependencies, qube: string, body: unknown) {
  const form = parseBody(natTraversalFormSchema, body);
  const parsed = parseNatTraversalForm(form);
  if (!parsed.ok) {
    throw new ApiError(400, 'invalid NAT traversal settings; nothing was changed', parsed);
  }

  const inventory = await deps.context.inventory.snapshot();
  if (inventory.get(qube).klass === 'AdminVM') {
    throw new ApiError(400, 'dom0 has no network, so NAT traversal does not apply; choose a qube');
  }
  // Limits first, the switch last, so a qube is never enabled with old limits.
  const { adminApi } = deps.context;
  const changes: Array<[string, string | null]> = [
    [NAT_TRAVERSAL_PORTS_FEATURE, parsed.features.ports],
    [NAT_TRAVERSAL_PROTOCOLS_FEATURE, parsed.features.protocols],
    [NAT_TRAVERSAL_MAX_LEASE_FEATURE, parsed.features.maxLease],
    [NAT_TRAVERSAL_FEATURE, parsed.features.enabled],
  ];
  for (const [feature, value] of changes) {
    if (value === null) {
      await adminApi.removeFeature(qube, feature);
    } else {
      await adminApi.setFeature(qube, feature, value);
    }
  }
  deps.context.logger.info({ qube, features: parsed.features }, 'NAT traversal settings changed');
  await deps.live.refresh();
  return ok({ cli: natTraversalCliCommands(qube, parsed.features).join(' && ') });
}

function answerPrompt(deps: ApiDependencies, id: string, body: unknown) {
  const { allowed } = parseBody(promptAnswerSchema, body);
  if (deps.prompts === null) {
    throw new ApiError(404, 'this dashboard does not follow prompts (not started with the lab)');
  }
  if (!deps.prompts.answer(id, allowed)) {
    throw new ApiError(404, `prompt ${id} is not pending; it was answered or timed out`);
  }
  return ok({ answered: id, allowed });
}

/**
 * Rejects `upstream=yes` in an edit: the router mapping belongs to the old
 * port, so such a forward is deleted and added again instead.
 */
function rejectRouterMapping(form: Record<string, string | undefined>): void {
  const value = form.upstream?.trim() ?? '';
  if (value !== '' && value !== 'no') {
    const message = 'a forward with a router mapping cannot be edited; delete it and add it again';
    throw new ApiError(400, message, { fieldErrors: { upstream: [message] } });
  }
}

/** Formats the `qvm-forward del RULE` command, which selects by protocol, ports and source. */
function deleteCli(forward: ForwardRule): string {
  const words = formatRuleWords({ ...forward, expiresAtUnixSeconds: null, comment: null });
  return `qvm-forward ${forward.qube} del ${words}`;
}

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    throw new ApiError(
      400,
      'invalid request body; nothing was changed',
      zodFormErrors(parsed.error),
    );
  }
  return parsed.data;
}

function checkQubeName(name: string): void {
  if (!QUBE_NAME_PATTERN.test(name)) {
    throw new ApiError(400, `invalid VM name ${JSON.stringify(name)}`);
  }
}

function checkId(value: string, pattern: RegExp, what: string): void {
  if (!pattern.test(value)) {
    throw new ApiError(400, `invalid ${what} ${JSON.stringify(value.slice(0, 80))}`);
  }
}

function ok(body: unknown, status = 200): ApiResponse {
  return { status, body };
}

function errorResponse(deps: ApiDependencies, error: unknown): ApiResponse {
  if (error instanceof ApiError) {
    return { status: error.status, body: { error: error.message, ...error.details } };
  }
  if (error instanceof ForwardNotFoundError) {
    return { status: 404, body: { error: error.message } };
  }
  if (error instanceof ForwardRequestError || error instanceof InventoryError) {
    return { status: 400, body: { error: error.message, formErrors: [error.message] } };
  }
  if (error instanceof PushError || error instanceof ForwardStoreError) {
    const message = `${error.message}\nNothing was changed.`;
    return { status: 502, body: { error: message, formErrors: [message] } };
  }
  deps.context.logger.error({ err: error }, 'dashboard request failed');
  const message = (error as Error).message;
  return { status: 500, body: { error: message, formErrors: [message] } };
}
