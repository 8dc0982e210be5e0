import { QREXEC_EXIT_REFUSED } from '../qrexec-transport.js';
import { QREXEC_EXIT_PROBLEM } from './exit-codes.js';
import { LabQrexecTransport } from './lab-qrexec-transport.js';
import { DEFAULT_MAX_PAYLOAD_BYTES } from './lab-router-framing.js';

/**
 * Entry point of the lab's `qrexec-client-vm` stand-in
 * (`bin/lab/qrexec-client-vm`): `qrexec-client-vm TARGET SERVICE[+ARGUMENT]`
 * sends standard input to the lab router socket named by `QNB_QREXEC_SOCKET`,
 * writes the service's output to standard output and standard error, and
 * exits with the service's exit code, 126 when the policy refused the call.
 *
 * NOTE: standard input is read to its end before the call starts, unlike the
 * real tool, which streams both ways. The real tool's options and its
 * local-program form are not supported.
 */

const USAGE = 'usage: qrexec-client-vm TARGET SERVICE[+ARGUMENT]\n';
const EXIT_USAGE = 2;

async function readStandardInput(maxBytes: number): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of process.stdin) {
    const buffer = Buffer.from(chunk as Uint8Array);
    total += buffer.length;
    if (total > maxBytes) {
      return null;
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

async function main(argv: string[]): Promise<number> {
  const [target, serviceWithArgument, ...extra] = argv;
  if (target === undefined || serviceWithArgument === undefined || extra.length > 0) {
    process.stderr.write(USAGE);
    return EXIT_USAGE;
  }

  const socketPath = process.env.QNB_QREXEC_SOCKET;
  if (socketPath === undefined || socketPath === '') {
    process.stderr.write(
      "qrexec-client-vm: QNB_QREXEC_SOCKET is not set: point it at this VM's lab router socket\n",
    );
    return QREXEC_EXIT_PROBLEM;
  }

  const payload = await readStandardInput(DEFAULT_MAX_PAYLOAD_BYTES);
  if (payload === null) {
    process.stderr.write(
      `qrexec-client-vm: standard input exceeds ${DEFAULT_MAX_PAYLOAD_BYTES} bytes\n`,
    );
    return QREXEC_EXIT_PROBLEM;
  }

  const plus = serviceWithArgument.indexOf('+');
  const service = plus < 0 ? serviceWithArgument : serviceWithArgument.slice(0, plus);
  const argument = plus < 0 ? '' : serviceWithArgument.slice(plus + 1);

  try {
    const transport = new LabQrexecTransport({ socketPath });
    const result = await transport.call({ target, service, argument, payload });
    process.stdout.write(result.stdout);
    process.stderr.write(result.stderr);
    if (result.exitCode === QREXEC_EXIT_REFUSED && result.stderr.length === 0) {
      process.stderr.write('Request refused\n');
    }
    return result.exitCode;
  } catch (error) {
    process.stderr.write(
      `qrexec-client-vm: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    return QREXEC_EXIT_PROBLEM;
  }
}

process.exitCode = await main(process.argv.slice(2));
