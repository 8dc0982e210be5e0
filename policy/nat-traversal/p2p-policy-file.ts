import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { QUBE_NAME_PATTERN } from '../../rpc/wire-types.js';

/**
 * The qrexec policy file that holds one line per qube for STUN mappings
 * (peer-to-peer use), so one line decides every call of that qube:
 *
 *   qubes.NatTraversal  +work+udp+stun  sys-nat  @adminvm  allow
 *
 * The file name sorts before 50-qubes-nat-broker.policy, whose `ask` line
 * applies to qubes without a line here. It is rewritten whole: a temporary
 * file in the same folder, fsynced, then renamed over the old one, under a
 * lock, so qrexec never reads half a file and two writers never lose a line.
 */

export const P2P_POLICY_FILE_NAME = '40-qubes-nat-broker-p2p.policy';
export const DEFAULT_POLICY_DIR = '/etc/qubes/policy.d';
export const DEFAULT_BROKER_VM = 'sys-nat';

export type P2pDecision = 'allow' | 'ask' | 'deny';
export const P2P_DECISIONS: readonly P2pDecision[] = ['allow', 'ask', 'deny'];

const HEADER = `# Written by qvm-nat-traversal: STUN mappings (peer-to-peer use) per qube.
# A qube without a line here gets the prompt of 50-qubes-nat-broker.policy.
`;

/** One parsed line of the file. */
export interface P2pPolicyLine {
  qube: string;
  broker: string;
  decision: 'allow' | 'deny';
}

const LINE_PATTERN =
  /^qubes\.NatTraversal\s+\+(\S+)\+udp\+stun\s+(\S+)\s+@adminvm\s+(allow|deny)\s*$/;

export class P2pPolicyError extends Error {
  override name = 'P2pPolicyError';
}

export function p2pPolicyFile(policyDir: string): string {
  return join(policyDir, P2P_POLICY_FILE_NAME);
}

export function formatP2pLine(line: P2pPolicyLine): string {
  return `qubes.NatTraversal  +${line.qube}+udp+stun  ${line.broker}  @adminvm  ${line.decision}`;
}

/**
 * Parses the file: comments and blank lines are skipped; any other line that
 * is not ours is an error naming the line, because rewriting would drop it.
 */
export function parseP2pPolicy(text: string): P2pPolicyLine[] {
  const lines: P2pPolicyLine[] = [];
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) {
      continue;
    }
    const match = LINE_PATTERN.exec(line);
    const [, qube = '', broker = '', decision = ''] = match ?? [];
    if (match === null || !QUBE_NAME_PATTERN.test(qube) || !QUBE_NAME_PATTERN.test(broker)) {
      throw new P2pPolicyError(
        `line ${index + 1} of ${P2P_POLICY_FILE_NAME} is not a STUN line this tool writes: ${JSON.stringify(raw)}; move it to another policy file`,
      );
    }
    lines.push({ qube, broker, decision: decision as 'allow' | 'deny' });
  }
  return lines;
}

export function renderP2pPolicy(lines: readonly P2pPolicyLine[]): string {
  return `${HEADER}${lines.map((line) => `${formatP2pLine(line)}\n`).join('')}`;
}

/** Reads the decision for a qube: 'ask' when the file has no line for it. */
export async function readP2pDecision(policyDir: string, qube: string): Promise<P2pDecision> {
  const lines = await readLines(policyDir);
  return lines.find((line) => line.qube === qube)?.decision ?? 'ask';
}

/** Sets a qube's decision; 'ask' removes its line. Returns the line written, or null. */
export async function writeP2pDecision(
  policyDir: string,
  qube: string,
  decision: P2pDecision,
  broker: string = DEFAULT_BROKER_VM,
): Promise<string | null> {
  if (!QUBE_NAME_PATTERN.test(qube) || !QUBE_NAME_PATTERN.test(broker)) {
    throw new P2pPolicyError(
      `invalid VM name ${JSON.stringify(qube)} or ${JSON.stringify(broker)}`,
    );
  }
  await mkdir(policyDir, { recursive: true });
  const release = await lockfile.lock(policyDir, {
    lockfilePath: join(policyDir, `.${P2P_POLICY_FILE_NAME}.lock`),
    retries: { retries: 20, minTimeout: 25, maxTimeout: 250 },
  });
  try {
    const others = (await readLines(policyDir)).filter((line) => line.qube !== qube);
    const written: P2pPolicyLine | null = decision === 'ask' ? null : { qube, broker, decision };
    await writeAtomically(
      p2pPolicyFile(policyDir),
      renderP2pPolicy(written === null ? others : [...others, written]),
    );
    return written === null ? null : formatP2pLine(written);
  } finally {
    await release();
  }
}

async function readLines(policyDir: string): Promise<P2pPolicyLine[]> {
  let text: string;
  try {
    text = await readFile(p2pPolicyFile(policyDir), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      return [];
    }
    throw error;
  }
  return parseP2pPolicy(text);
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const temporary = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const handle = await open(temporary, 'wx', 0o644);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
