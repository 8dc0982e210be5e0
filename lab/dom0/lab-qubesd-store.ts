import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import {
  FEATURE_NAME_PATTERN,
  FEATURE_VALUE_PATTERN,
} from '../../rpc/admin-api/admin-api-parsers.js';
import { qubeNameSchema } from '../../rpc/wire-types.js';

/**
 * Persistent state of the lab's qubesd, kept across restarts as qubesd keeps
 * it in `qubes.xml`: VM features, and netvm values set through
 * admin.vm.property.Set. One JSON file in the lab's dom0 state folder,
 * replaced atomically (write to a temporary file, fsync, rename).
 */

export const LAB_QUBESD_STORE_FILE = 'lab-qubesd.json';
export const LAB_QUBESD_STORE_VERSION = 1;

const featureMapSchema = z.record(
  z.string().regex(FEATURE_NAME_PATTERN, 'must be a feature name (a-z A-Z 0-9 _ . -)'),
  z.string().regex(FEATURE_VALUE_PATTERN, 'must be printable ASCII'),
);

export const labQubesdStoreSchema = z.strictObject({
  version: z.literal(LAB_QUBESD_STORE_VERSION),
  features: z.record(qubeNameSchema, featureMapSchema),
  /** Explicitly set netvm per VM; null means "no netvm". */
  netvms: z.record(qubeNameSchema, qubeNameSchema.nullable()),
});
export type LabQubesdStoreData = z.infer<typeof labQubesdStoreSchema>;

export class LabQubesdStore {
  readonly file: string;

  constructor(stateDir: string) {
    this.file = join(stateDir, LAB_QUBESD_STORE_FILE);
  }

  /** Reads the store; a missing file is an empty store, a corrupt one throws with the path. */
  load(): LabQubesdStoreData {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        return { version: LAB_QUBESD_STORE_VERSION, features: {}, netvms: {} };
      }
      throw error;
    }

    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new Error(
        `${this.file} is not valid JSON (${(error as Error).message}); remove it to start empty`,
      );
    }
    const parsed = labQubesdStoreSchema.safeParse(json);
    if (!parsed.success) {
      const problems = parsed.error.issues.map(
        (issue) => `${issue.path.join('.')}: ${issue.message}`,
      );
      throw new Error(`${this.file} is invalid: ${problems.join('; ')}; remove it to start empty`);
    }
    return parsed.data;
  }

  /** Replaces the file atomically, so a crash leaves either the old or the new content. */
  save(data: LabQubesdStoreData): void {
    const temporary = `${this.file}.tmp-${process.pid}`;
    const descriptor = openSync(temporary, 'w', 0o600);
    try {
      writeSync(descriptor, `${JSON.stringify(data, null, 2)}\n`);
      fsyncSync(descriptor);
    } finally {
      closeSync(descriptor);
    }
    renameSync(temporary, this.file);
  }
}
