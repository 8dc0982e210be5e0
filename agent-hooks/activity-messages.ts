import { z } from 'zod';

/**
 * Messages of the qrexec service `qubes.NatBrokerActivity`: dom0 sends a
 * qube's netvm a list of UDP sockets of that qube, and the netvm replies
 * whether its conntrack table contains a flow of each, that is whether the
 * socket sent or received traffic recently.
 */

export const NAT_BROKER_ACTIVITY_SERVICE = 'qubes.NatBrokerActivity';

/** Maximum number of sockets per request; dom0 splits longer lists. */
export const MAX_ACTIVITY_QUERIES = 64;

/** Largest request the service reads: 64 queries take about 5 kB of JSON. */
export const MAX_ACTIVITY_PAYLOAD_BYTES = 16 * 1024;

export const activityQuerySchema = z.strictObject({
  clientAddress: z.ipv4(),
  protocol: z.literal('udp'),
  port: z.int().min(1).max(65_535),
});
export type ActivityQuery = z.infer<typeof activityQuerySchema>;

export const activityRequestSchema = z.array(activityQuerySchema).max(MAX_ACTIVITY_QUERIES);

export const activityReplySchema = z.strictObject({
  result: z.literal('ok'),
  flows: z.array(activityQuerySchema.extend({ active: z.boolean() })).max(MAX_ACTIVITY_QUERIES),
});
export type ActivityReply = z.infer<typeof activityReplySchema>;

export const ActivityRequestErrorCode = {
  /** The payload is not UTF-8 JSON. */
  InvalidJson: 'invalid-json',
  /** The JSON is not a list of at most MAX_ACTIVITY_QUERIES UDP sockets. */
  InvalidPayload: 'invalid-payload',
} as const;
export type ActivityRequestErrorCode =
  (typeof ActivityRequestErrorCode)[keyof typeof ActivityRequestErrorCode];

export type ActivityRequestResult =
  | { ok: true; queries: ActivityQuery[] }
  | { ok: false; code: ActivityRequestErrorCode; message: string };

/** Parses a request payload; returns the queries or an error naming the first violations. */
export function parseActivityRequest(payload: string): ActivityRequestResult {
  let json: unknown;
  try {
    json = JSON.parse(payload);
  } catch {
    return {
      ok: false,
      code: ActivityRequestErrorCode.InvalidJson,
      message: 'payload is not JSON: send a list of {clientAddress, protocol:"udp", port}',
    };
  }

  const parsed = activityRequestSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .slice(0, 5)
      .map((issue) => `${issue.path.join('.') || '(payload)'}: ${issue.message}`);
    return {
      ok: false,
      code: ActivityRequestErrorCode.InvalidPayload,
      message: `invalid payload: ${issues.join('; ')}; send at most ${MAX_ACTIVITY_QUERIES} entries {clientAddress: IPv4, protocol: "udp", port: 1-65535}`,
    };
  }
  return { ok: true, queries: parsed.data };
}
