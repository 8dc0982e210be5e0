export { ChildProcessCallError, runChildProcess } from './child-process-call.js';
export { buildQvmRunArgs, Dom0QrexecTransport } from './dom0-qrexec-transport.js';
export {
  QREXEC_EXIT_PROBLEM,
  QREXEC_EXIT_REFUSED,
  QREXEC_EXIT_SERVICE_NOT_FOUND,
} from './exit-codes.js';
export type { LabQrexecRouterOptions, LabServiceEntry, LabVmEntry } from './lab-qrexec-router.js';
export { LabQrexecRouter } from './lab-qrexec-router.js';
export { LabQrexecTransport, LabQrexecTransportError } from './lab-qrexec-transport.js';
export type { PromptAnswer, PromptChoices, Prompter } from './prompter.js';
export { ScriptedPrompter } from './prompter.js';
export { QrexecClientVmTransport } from './qrexec-client-vm-transport.js';
export type { ServiceInvocation } from './service-invocation.js';
export { readServiceInvocation } from './service-invocation.js';
