export { evaluatePolicy } from './policy-evaluator.js';
export {
  loadPolicyDirectory,
  POLICY_FILE_NAME_PATTERN,
  POLICY_FILE_SUFFIX,
} from './policy-loader.js';
export { parsePolicyText } from './policy-parser.js';
export type * from './policy-types.js';
export { formatVmToken, parseVmToken, VM_NAME_PATTERN } from './vm-tokens.js';
