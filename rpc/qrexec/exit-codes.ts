/**
 * Exit codes that qrexec itself reports in place of a service's own, as
 * documented in qubes-core-qrexec `doc/execution.rst` and `libqrexec`.
 */
export { QREXEC_EXIT_REFUSED } from '../qrexec-transport.js';

/** qrexec failed for a reason other than policy (the call could not be set up or run). */
export const QREXEC_EXIT_PROBLEM = 125;

/** The target has no handler for the service; nothing was started. */
export const QREXEC_EXIT_SERVICE_NOT_FOUND = 127;
