import { z } from 'zod';
import type { ForwardRuleFields } from '../../policy/forwards/forward-rule.js';
import {
  formatRuleProblems,
  MAX_COMMENT_LENGTH,
  parseRuleWords,
  RULE_KEYS,
  type RuleKey,
} from '../../policy/forwards/rule-words.js';
import {
  NAT_TRAVERSAL_FEATURE,
  NAT_TRAVERSAL_MAX_LEASE_FEATURE,
  NAT_TRAVERSAL_PORTS_FEATURE,
  NAT_TRAVERSAL_PROTOCOLS_FEATURE,
  parseNatTraversalSettings,
} from '../../policy/nat-traversal/nat-settings.js';

/**
 * Request bodies of the dashboard API and their validation. The forward form
 * sends the `qvm-forward` rule keys as fields. They become `key=value` words
 * for `parseRuleWords`, the parser of the CLI, so the GUI shows the same
 * messages as `qvm-forward add`.
 */

/** Maximum length of one form field; longer values are rejected before parsing. */
const MAX_FIELD_LENGTH = 64;

const fieldSchema = z.string().max(MAX_FIELD_LENGTH).optional();

/** One optional string per rule key; the comment may be twice the rule limit, so an overlong one gets the parser's message. */
export const forwardFormSchema = z.strictObject(
  Object.fromEntries(
    RULE_KEYS.map((key) => [
      key,
      key === 'comment'
        ? z
            .string()
            .max(MAX_COMMENT_LENGTH * 2)
            .optional()
        : fieldSchema,
    ]),
  ) as Record<RuleKey, typeof fieldSchema>,
);
export type ForwardForm = z.infer<typeof forwardFormSchema>;

export const natTraversalFormSchema = z.strictObject({
  enabled: z.boolean(),
  /** Feature values; an empty string removes the feature, so the default applies. */
  ports: z.string().max(256),
  protocols: z.string().max(16),
  maxLeaseSeconds: z.string().max(16),
});
export type NatTraversalForm = z.infer<typeof natTraversalFormSchema>;

export const promptAnswerSchema = z.strictObject({ allowed: z.boolean() });

/** Problems of one form: per field (the field name as the form sends it) and for the whole form. */
export interface FormErrors {
  fieldErrors: Record<string, string[]>;
  formErrors: string[];
}

export type ForwardFormResult =
  | { ok: true; fields: ForwardRuleFields; words: string[] }
  | ({ ok: false } & FormErrors);

/** Turns the form into rule words (empty fields left out) in the order `qvm-forward` documents. */
export function forwardFormWords(form: ForwardForm): string[] {
  const words: string[] = [];
  for (const key of RULE_KEYS) {
    const value = form[key]?.trim() ?? '';
    // `upstream=no` is the default, so the equivalent command leaves it out.
    if (value !== '' && !(key === 'upstream' && value === 'no')) {
      words.push(`${key}=${value}`);
    }
  }
  return words;
}

/** Validates the forward form with the CLI's parser; each problem is attached to its field. */
export function parseForwardForm(form: ForwardForm, nowUnixSeconds: number): ForwardFormResult {
  const words = forwardFormWords(form);
  const parsed = parseRuleWords(words, nowUnixSeconds);
  if (parsed.ok) {
    return { ok: true, fields: parsed.fields, words };
  }

  const errors: FormErrors = { fieldErrors: {}, formErrors: [] };
  for (const problem of parsed.problems) {
    const message = formatRuleProblems([problem]);
    if (problem.key === null) {
      errors.formErrors.push(message);
    } else {
      addFieldError(errors, problem.key, message);
    }
  }
  return { ok: false, ...errors };
}

/** Feature values of the NAT traversal form: null removes the feature. */
export interface NatTraversalFeatures {
  enabled: string | null;
  ports: string | null;
  protocols: string | null;
  maxLease: string | null;
}

export type NatTraversalFormResult =
  | { ok: true; features: NatTraversalFeatures }
  | ({ ok: false } & FormErrors);

/**
 * Validates the NAT traversal form with the parser dom0 applies to the
 * features, so a value the GUI accepts never disables NAT traversal.
 */
export function parseNatTraversalForm(form: NatTraversalForm): NatTraversalFormResult {
  const valueOrNull = (value: string) => (value.trim() === '' ? null : value.trim());
  const features: NatTraversalFeatures = {
    enabled: form.enabled ? '1' : null,
    ports: valueOrNull(form.ports),
    protocols: valueOrNull(form.protocols),
    maxLease: valueOrNull(form.maxLeaseSeconds),
  };

  // The parser checks the other values only when NAT traversal is on, so check them as if it were.
  const settings = parseNatTraversalSettings({ ...features, enabled: '1' });
  if (settings.problem === null) {
    return { ok: true, features };
  }

  const errors: FormErrors = { fieldErrors: {}, formErrors: [] };
  const fieldOfFeature: Array<[string, string]> = [
    [NAT_TRAVERSAL_PORTS_FEATURE, 'ports'],
    [NAT_TRAVERSAL_PROTOCOLS_FEATURE, 'protocols'],
    [NAT_TRAVERSAL_MAX_LEASE_FEATURE, 'maxLeaseSeconds'],
  ];
  const match = fieldOfFeature.find(([feature]) =>
    settings.problem?.startsWith(`invalid ${feature}=`),
  );
  if (match === undefined) {
    errors.formErrors.push(settings.problem);
  } else {
    addFieldError(errors, match[1], settings.problem);
  }
  return { ok: false, ...errors };
}

/** Formats the `qvm-features` commands that make the same change as the NAT traversal form. */
export function natTraversalCliCommands(qube: string, features: NatTraversalFeatures): string[] {
  const entries: Array<[string, string | null]> = [
    [NAT_TRAVERSAL_FEATURE, features.enabled],
    [NAT_TRAVERSAL_PORTS_FEATURE, features.ports],
    [NAT_TRAVERSAL_PROTOCOLS_FEATURE, features.protocols],
    [NAT_TRAVERSAL_MAX_LEASE_FEATURE, features.maxLease],
  ];
  return entries.map(([feature, value]) =>
    value === null
      ? `qvm-features --unset ${qube} ${feature}`
      : `qvm-features ${qube} ${feature} ${value}`,
  );
}

/** Formats zod issues as form errors, one field per top-level key. */
export function zodFormErrors(error: z.ZodError): FormErrors {
  const errors: FormErrors = { fieldErrors: {}, formErrors: [] };
  for (const issue of error.issues) {
    const key = issue.path[0];
    if (issue.code === 'unrecognized_keys') {
      errors.formErrors.push(`unknown fields: ${issue.keys.join(', ')}; remove them`);
    } else if (typeof key === 'string') {
      addFieldError(errors, key, `invalid ${key}: ${issue.message}`);
    } else {
      errors.formErrors.push(`invalid request body: ${issue.message}`);
    }
  }
  return errors;
}

function addFieldError(errors: FormErrors, key: RuleKey | string, message: string): void {
  const list = errors.fieldErrors[key] ?? [];
  list.push(message);
  errors.fieldErrors[key] = list;
}
