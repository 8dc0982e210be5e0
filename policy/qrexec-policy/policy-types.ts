/**
 * Types of a parsed qrexec policy (Qubes policy format v5, files in
 * `/etc/qubes/policy.d/`), shared by the parser, the loader and the evaluator.
 */

/** One VM specification: a qube name or an `@token`, as written in a policy column. */
export type VmToken =
  | { kind: 'name'; name: string }
  | { kind: 'adminvm' }
  | { kind: 'anyvm' }
  | { kind: 'default' }
  | { kind: 'dispvm' }
  | { kind: 'dispvmTemplate'; template: string }
  | { kind: 'dispvmTag'; tag: string }
  | { kind: 'tag'; tag: string }
  | { kind: 'type'; vmType: string };

export type VmTokenKind = VmToken['kind'];

export type YesNo = 'yes' | 'no';

export type PolicyAction =
  | { kind: 'allow'; target?: VmToken; user?: string; notify?: YesNo; autostart?: YesNo }
  | { kind: 'deny'; notify?: YesNo }
  | {
      kind: 'ask';
      target?: VmToken;
      defaultTarget?: VmToken;
      user?: string;
      notify?: YesNo;
      autostart?: YesNo;
    };

export interface PolicyRuleOrigin {
  /** File name as given to the parser (for a directory load: the full path). */
  file: string;
  /** Line number, starting at 1. */
  line: number;
  /** The line without surrounding whitespace. */
  text: string;
}

export interface PolicyRule {
  /** Service name, or null for `*`. */
  service: string | null;
  /** Argument including its leading `+` (`+` alone is the empty argument), or null for `*`. */
  argument: string | null;
  source: VmToken;
  target: VmToken;
  action: PolicyAction;
  origin: PolicyRuleOrigin;
}

export type PolicyErrorCode =
  | 'invalid-file-name'
  | 'read-failed'
  | 'wrong-field-count'
  | 'invalid-service'
  | 'invalid-argument'
  | 'argument-without-plus'
  | 'argument-for-any-service'
  | 'invalid-token'
  | 'token-not-allowed-here'
  | 'invalid-action'
  | 'invalid-parameter-syntax'
  | 'duplicate-parameter'
  | 'unknown-parameter'
  | 'invalid-parameter-value'
  | 'allow-default-without-target'
  | 'include-not-supported'
  | 'invalid-directive';

export interface PolicyError {
  code: PolicyErrorCode;
  file: string;
  /** Line number, or 0 for an error about the whole file. */
  line: number;
  message: string;
}

export type ParsePolicyResult =
  | { ok: true; rules: PolicyRule[] }
  | { ok: false; errors: PolicyError[] };

/**
 * A loaded policy. When `errors` is not empty the policy failed to load and
 * the evaluator denies every request, as qrexec does for a broken policy.
 */
export interface QrexecPolicy {
  rules: PolicyRule[];
  errors: PolicyError[];
}

/** What the evaluator knows of one domain (the relevant part of qrexec's system info). */
export interface DomainInfo {
  /** Qubes VM class: `AdminVM`, `AppVM`, `TemplateVM`, `StandaloneVM`, `DispVM`. */
  type: string;
  tags: string[];
  /** True when disposables can be started from this qube. */
  templateForDispvms?: boolean;
  /** The qube's `default_dispvm` property, or null when unset. */
  defaultDispvm?: string | null;
  /** For a disposable: the qube it was started from. */
  dispvmTemplate?: string | null;
}

export interface QrexecSystemInfo {
  domains: Record<string, DomainInfo>;
}

export interface PolicyRequest {
  service: string;
  /** Argument without the leading `+`; empty or undefined for none. */
  argument?: string;
  source: string;
  /** Intended target as the caller wrote it; empty means `@default`. */
  target: string;
}

export type PolicyDecision =
  | {
      action: 'allow';
      /** Resolved target: a qube name, `@adminvm` or `@dispvm:TEMPLATE`. */
      target: string;
      user?: string;
      rule: PolicyRuleOrigin;
    }
  | {
      action: 'ask';
      /** The target the caller asked for (after the `dom0` alias). */
      target: string;
      /** Targets the user may choose from, sorted; `dom0` stands for the admin VM. */
      targets: string[];
      defaultTarget?: string;
      user?: string;
      rule: PolicyRuleOrigin;
    }
  | {
      action: 'deny';
      reason: string;
      /** The rule that decided, or undefined when no rule matched or the policy is broken. */
      rule?: PolicyRuleOrigin;
    };
