import { readdir, readFile } from 'node:fs/promises';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The page's static files (HTML, CSS, JavaScript modules), read once at
 * start. Only files found then are served, by exact name, so a request path
 * can never reach another file.
 */

export interface StaticFile {
  body: Buffer;
  contentType: string;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Returns `ui/static` of the checkout, from `ui/server` or from `dist/ui/server`. */
export function defaultStaticDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const root = resolve(here, '..', '..');
  const repoRoot = root.endsWith('/dist') ? resolve(root, '..') : root;
  return join(repoRoot, 'ui', 'static');
}

export async function loadStaticFiles(directory: string): Promise<Map<string, StaticFile>> {
  const files = new Map<string, StaticFile>();
  for (const name of await readdir(directory)) {
    const contentType = CONTENT_TYPES[extname(name)];
    if (contentType !== undefined && /^[a-z0-9-]+\.[a-z]+$/.test(name)) {
      files.set(name, { body: await readFile(join(directory, name)), contentType });
    }
  }
  if (!files.has('index.html')) {
    throw new Error(`the dashboard page is missing: no index.html in ${directory}`);
  }
  return files;
}
