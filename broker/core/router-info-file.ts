import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { ipv4AddressSchema } from '../../rpc/wire-types.js';
import type { RouterInfo } from '../upstream/upstream-types.js';

/**
 * The home router as sys-net last reported it (service
 * `qubes.NatBrokerRouterInfo`), kept in the broker's state folder.
 */

export const ROUTER_INFO_FILE = 'router-info.json';

export const routerInfoSchema = z.strictObject({
  gatewayAddress: ipv4AddressSchema,
  lanAddress: ipv4AddressSchema,
  igdLocation: z
    .string()
    .max(512)
    .regex(
      /^http:\/\/[0-9.]+(:\d{1,5})?\/[\x21-\x7e]*$/,
      'must be an http:// URL on an IPv4 address',
    )
    .nullable(),
});

export function routerInfoPath(stateDir: string): string {
  return join(stateDir, ROUTER_INFO_FILE);
}

/** Returns the stored router report, or null when there is none or it is invalid. */
export async function readRouterInfo(stateDir: string): Promise<RouterInfo | null> {
  try {
    const parsed = routerInfoSchema.safeParse(
      JSON.parse(await readFile(routerInfoPath(stateDir), 'utf8')),
    );
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

export async function writeRouterInfo(stateDir: string, info: RouterInfo): Promise<void> {
  const path = routerInfoPath(stateDir);
  await mkdir(dirname(path), { recursive: true });
  const temporaryPath = `${path}.${process.pid}.tmp`;
  const file = await open(temporaryPath, 'w', 0o600);
  try {
    await file.writeFile(`${JSON.stringify(info)}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporaryPath, path);
}
