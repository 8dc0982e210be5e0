import { QUBE_NAME_PATTERN } from '../../rpc/wire-types.js';
import {
  DEFAULT_BROKER_VM,
  DEFAULT_POLICY_DIR,
  P2P_DECISIONS,
  type P2pDecision,
  P2pPolicyError,
  p2pPolicyFile,
  readP2pDecision,
  writeP2pDecision,
} from '../nat-traversal/p2p-policy-file.js';

/**
 * `qvm-nat-traversal`: the dom0 command for a qube's STUN mappings
 * (peer-to-peer use). `allow` writes the one policy line that lets the
 * broker get every STUN mapping of the qube without a prompt, `deny` one that
 * refuses them, `ask` removes the line so each call prompts. Exit codes: 0
 * success, 1 the policy file could not be read or written, 2 invalid command
 * line.
 */

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export const USAGE = `usage: qvm-nat-traversal [--broker VMNAME] VMNAME p2p [allow|ask|deny]

STUN mappings of VMNAME (peer-to-peer calls), decided in the qrexec policy:
  allow  the broker gets every STUN mapping of VMNAME without a prompt
  ask    each new STUN mapping prompts (the default; removes the line)
  deny   every STUN mapping is refused
Without a decision, prints the current one.
--broker  the broker VM named in the policy line (default: ${DEFAULT_BROKER_VM})
The line goes to the file QNB_POLICY_DIR/40-qubes-nat-broker-p2p.policy
(default folder: ${DEFAULT_POLICY_DIR}).`;

export interface NatTraversalCliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export async function runQvmNatTraversal(
  argv: readonly string[],
  io: NatTraversalCliIo,
  policyDir: string,
): Promise<number> {
  let broker = DEFAULT_BROKER_VM;
  const words: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const word = argv[index] ?? '';
    if (word === '--help' || word === '-h') {
      io.stdout(USAGE);
      return EXIT_OK;
    }
    if (word === '--broker') {
      broker = argv[index + 1] ?? '';
      index += 1;
      if (!QUBE_NAME_PATTERN.test(broker)) {
        return usageError(io, `invalid --broker VM name ${JSON.stringify(broker)}`);
      }
    } else if (word.startsWith('-')) {
      return usageError(io, `unknown option ${word}`);
    } else {
      words.push(word);
    }
  }

  const [vm, topic, decision, ...rest] = words;
  if (vm === undefined || !QUBE_NAME_PATTERN.test(vm)) {
    return usageError(io, `invalid or missing VMNAME ${JSON.stringify(vm ?? '')}`);
  }
  if (topic !== 'p2p') {
    return usageError(io, `unknown setting ${JSON.stringify(topic ?? '')}: use p2p`);
  }
  if (rest.length > 0) {
    return usageError(io, `unexpected words after the decision: ${rest.join(' ')}`);
  }
  if (decision !== undefined && !P2P_DECISIONS.includes(decision as P2pDecision)) {
    return usageError(io, `invalid decision ${JSON.stringify(decision)}: use allow, ask or deny`);
  }

  try {
    if (decision === undefined) {
      io.stdout(await readP2pDecision(policyDir, vm));
      return EXIT_OK;
    }
    const line = await writeP2pDecision(policyDir, vm, decision as P2pDecision, broker);
    io.stderr(
      line === null
        ? `${vm}: STUN mappings ask at each new call (line removed from ${p2pPolicyFile(policyDir)})`
        : `${vm}: ${line} (in ${p2pPolicyFile(policyDir)})`,
    );
    return EXIT_OK;
  } catch (error) {
    const message = error instanceof P2pPolicyError ? error.message : (error as Error).message;
    io.stderr(`qvm-nat-traversal: ${message}`);
    return EXIT_FAILED;
  }
}

function usageError(io: NatTraversalCliIo, message: string): number {
  io.stderr(`qvm-nat-traversal: ${message}\n${USAGE}`);
  return EXIT_USAGE;
}
