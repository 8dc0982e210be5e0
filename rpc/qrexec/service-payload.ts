/**
 * Reads a qrexec service's payload from standard input, up to `maxBytes`.
 * Returns null when the caller sent more, so the service can reject it
 * without reading the rest.
 */
export async function readServicePayload(maxBytes: number): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      return null;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
