import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../rpc/logger.js';
import { parsePolicyText } from './policy-parser.js';
import type { PolicyError, PolicyRule, QrexecPolicy } from './policy-types.js';

/**
 * Loader of a qrexec policy directory such as `/etc/qubes/policy.d`. Files
 * whose name starts with `.` or does not end in `.policy` are ignored (editor
 * backups, README). The others are read in "C" locale order and must be named
 * with `[0-9a-z_.-]` only. Any error in any file fails the whole policy
 * closed: the evaluator then denies every request.
 */

export const POLICY_FILE_SUFFIX = '.policy';
export const POLICY_FILE_NAME_PATTERN = /^[0-9a-z_.-]+$/;

export async function loadPolicyDirectory(dir: string, logger?: Logger): Promise<QrexecPolicy> {
  const policy = await readPolicyDirectory(dir);

  for (const error of policy.errors) {
    logger?.error(
      { file: error.file, line: error.line, code: error.code },
      `qrexec policy rejected, every call is denied: ${error.message}`,
    );
  }

  return policy;
}

async function readPolicyDirectory(dir: string): Promise<QrexecPolicy> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    return failed({
      code: 'read-failed',
      file: dir,
      line: 0,
      message: `${dir}: cannot read policy directory: ${describe(error)}`,
    });
  }

  const candidates = names
    .filter((name) => !name.startsWith('.') && name.endsWith(POLICY_FILE_SUFFIX))
    .sort(compareBytes);

  const rules: PolicyRule[] = [];
  const errors: PolicyError[] = [];
  for (const name of candidates) {
    const path = join(dir, name);

    if (!POLICY_FILE_NAME_PATTERN.test(name)) {
      errors.push({
        code: 'invalid-file-name',
        file: path,
        line: 0,
        message: `${path}: invalid policy file name: use only 0-9, a-z, _, . and -`,
      });
      continue;
    }

    const text = await readPolicyFile(path);
    if (typeof text !== 'string') {
      errors.push(text);
      continue;
    }

    const result = parsePolicyText(text, path);
    if (result.ok) {
      rules.push(...result.rules);
    } else {
      errors.push(...result.errors);
    }
  }

  return errors.length > 0 ? { rules: [], errors } : { rules, errors: [] };
}

async function readPolicyFile(path: string): Promise<string | PolicyError> {
  try {
    const info = await stat(path);
    if (!info.isFile()) {
      return { code: 'read-failed', file: path, line: 0, message: `${path}: not a regular file` };
    }
    return await readFile(path, 'utf8');
  } catch (error) {
    return {
      code: 'read-failed',
      file: path,
      line: 0,
      message: `${path}: cannot read policy file: ${describe(error)}`,
    };
  }
}

function failed(error: PolicyError): QrexecPolicy {
  return { rules: [], errors: [error] };
}

/** Orders names by UTF-16 code units, which for the allowed ASCII names is the "C" locale order. */
function compareBytes(a: string, b: string): number {
  if (a < b) {
    return -1;
  }
  return a > b ? 1 : 0;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
