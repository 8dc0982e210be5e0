import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

/**
 * The JSON state file of a running lab: what `lab up` built, so that `exec`,
 * `down`, scenarios and tests find namespaces, addresses, sockets and
 * processes without guessing.
 */

/** Lab prefixes are short so namespace and file names stay readable. */
export const LAB_PREFIX_PATTERN = /^[a-z][a-z0-9]{0,7}$/;
export const DEFAULT_LAB_PREFIX = 'qnb';

/** Parent of every lab's run folder; a tmpfs on Debian, so a reboot clears it. */
export const LAB_RUN_ROOT = '/run/qubes-nat-broker-lab';

export const labVmKindSchema = z.enum([
  'dom0',
  'netvm',
  'qube',
  'broker',
  'router',
  'lanpeer',
  'internet',
  'remote-router',
  'remote-peer',
]);
export type LabVmKind = z.infer<typeof labVmKindSchema>;

export const labVmSchema = z.strictObject({
  name: z.string(),
  kind: labVmKindSchema,
  namespace: z.string(),
  /** Qubes IP of a qube or netvm (its `ip` property); for other hosts their main address. */
  address: z.string().nullable(),
  /** Name of the Qubes netvm, for Qubes VMs; null for sys-net and non-Qubes hosts. */
  netvm: z.string().nullable(),
  /** Folder standing for this VM's persistent storage (`/rw`, `/var/lib`). */
  stateDir: z.string(),
});
export type LabVm = z.infer<typeof labVmSchema>;

export const labProcessSchema = z.strictObject({
  name: z.string(),
  vm: z.string(),
  pid: z.number().int(),
  logFile: z.string(),
});
export type LabProcess = z.infer<typeof labProcessSchema>;

export const labStateSchema = z.strictObject({
  prefix: z.string().regex(LAB_PREFIX_PATTERN),
  runDir: z.string(),
  createdAtUnixMs: z.number().int(),
  /** PID of the `lab up` process that owns this lab. */
  ownerPid: z.number().int(),
  options: z.strictObject({
    withVpn: z.boolean(),
    routerNat: z.enum(['cone', 'symmetric']),
  }),
  vms: z.record(z.string(), labVmSchema),
  addresses: z.strictObject({
    routerWan: z.string(),
    routerLan: z.string(),
    sysNetLan: z.string(),
    lanPeer: z.string(),
    internetGateway: z.string(),
    internetPeer: z.string(),
    stunPrimary: z.string(),
    stunSecondary: z.string(),
    /** The remote home's router on the internet, and the peer on its LAN; absent in older labs. */
    remoteHomeWan: z.string().optional(),
    remoteHomeLan: z.string().optional(),
    remotePeer: z.string().optional(),
  }),
  dom0: z.strictObject({
    qubesdSocket: z.string(),
    qrexecSocketDir: z.string(),
    policyDir: z.string(),
    stateDir: z.string(),
  }),
  processes: z.array(labProcessSchema),
});
export type LabState = z.infer<typeof labStateSchema>;

export function labRunDir(prefix: string): string {
  return join(LAB_RUN_ROOT, prefix);
}

export function labStateFile(prefix: string): string {
  return join(labRunDir(prefix), 'lab-state.json');
}

export function labNamespace(prefix: string, vmName: string): string {
  return `${prefix}-${vmName}`;
}

export function readLabState(prefix: string): LabState {
  const file = labStateFile(prefix);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new Error(
      `no running lab with prefix "${prefix}" (missing ${file}); start one with: npm run lab -- up --detach`,
    );
  }
  return labStateSchema.parse(JSON.parse(text));
}
