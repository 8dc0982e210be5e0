import { DEFAULT_POLICY_DIR } from '../nat-traversal/p2p-policy-file.js';
import { runQvmNatTraversal } from './qvm-nat-traversal.js';

process.exitCode = await runQvmNatTraversal(
  process.argv.slice(2),
  {
    stdout: (text) => process.stdout.write(`${text}\n`),
    stderr: (text) => process.stderr.write(`${text}\n`),
  },
  process.env.QNB_POLICY_DIR ?? DEFAULT_POLICY_DIR,
);
