import { QUBE_NAME_PATTERN } from '../../rpc/wire-types.js';
import { createDom0Context, type Dom0Context } from '../dom0-context.js';
import { ForwardRequestError } from '../forwards/forward-manager.js';
import type { ForwardRule } from '../forwards/forward-rule.js';
import { ForwardStoreError } from '../forwards/forward-store.js';
import { formatRuleProblems, parseRuleWords } from '../forwards/rule-words.js';
import { InventoryError } from '../network/qube-inventory.js';
import { PushError } from '../network/rule-pusher.js';
import { formatForwardRaw, formatForwardTable } from './forward-table.js';

/**
 * `qvm-forward`: the dom0 command line for port forwards, in the style of
 * `qvm-firewall`. Exit codes: 0 success, 1 the change failed (a VM could not
 * apply it, the store is unreadable), 2 invalid command line or rule.
 */

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export const USAGE = `usage: qvm-forward [--raw] VMNAME [list]
       qvm-forward VMNAME add proto=tcp|udp port=N[-M] [to-port=N] [src=CIDR]
                          [expire=+SECONDS|UNIXTIME] [upstream=yes] [comment=TEXT...]
       qvm-forward VMNAME del N
       qvm-forward VMNAME del RULE...
       qvm-forward VMNAME reset
       qvm-forward --reload [VMNAME]

Forwards inbound connections from the uplink of VMNAME's network chain
(sys-net's LAN address) to VMNAME, with matching rules on every netvm.
port=   external port or range, the same on every hop
to-port= port inside the qube for a single external port (default: port)
src=    allowed source address or prefix (default: any)
expire= UNIX time, or +SECONDS from now (default: never)
upstream= yes: also map the port on the home router through the broker
comment= free text; comes last and may contain spaces`;

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export async function runQvmForward(
  argv: readonly string[],
  io: CliIo,
  context: Dom0Context,
): Promise<number> {
  const options = { raw: false, reload: false };
  let index = 0;
  for (; index < argv.length && argv[index]?.startsWith('-'); index++) {
    const option = argv[index];
    if (option === '--raw') {
      options.raw = true;
    } else if (option === '--reload') {
      options.reload = true;
    } else if (option === '--help' || option === '-h') {
      io.stdout(USAGE);
      return EXIT_OK;
    } else {
      return usageError(io, `unknown option ${option}`);
    }
  }

  const vm = argv[index];
  const action = argv[index + 1] ?? 'list';
  const words = argv.slice(index + 2);
  if (vm !== undefined && !QUBE_NAME_PATTERN.test(vm)) {
    return usageError(io, `invalid VM name ${JSON.stringify(vm)}`);
  }

  try {
    if (options.reload) {
      const pushed = await context.manager.reload(vm);
      io.stderr(`rules pushed to: ${pushed.join(', ') || '(no running VM needed them)'}`);
      return EXIT_OK;
    }
    if (vm === undefined) {
      return usageError(io, 'missing VMNAME');
    }
    return await runAction(vm, action, words, options.raw, io, context);
  } catch (error) {
    if (error instanceof ForwardRequestError || error instanceof InventoryError) {
      io.stderr(`qvm-forward: ${error.message}`);
      return EXIT_USAGE;
    }
    if (error instanceof PushError || error instanceof ForwardStoreError) {
      io.stderr(`qvm-forward: ${error.message}\nNothing was changed.`);
      return EXIT_FAILED;
    }
    io.stderr(`qvm-forward: ${(error as Error).message}`);
    return EXIT_FAILED;
  }
}

async function runAction(
  vm: string,
  action: string,
  words: readonly string[],
  raw: boolean,
  io: CliIo,
  context: Dom0Context,
): Promise<number> {
  const nowUnixSeconds = Math.floor(context.nowUnixMs() / 1000);

  switch (action) {
    case 'list': {
      if (words.length > 0) {
        return usageError(io, `list takes no arguments, got: ${words.join(' ')}`);
      }
      await context.inventory.snapshot().then((snapshot) => snapshot.get(vm));
      const forwards = await context.manager.list(vm);
      io.stdout(raw ? formatForwardRaw(forwards) : formatForwardTable(forwards, nowUnixSeconds));
      return EXIT_OK;
    }

    case 'add': {
      const parsed = parseRuleWords(words, nowUnixSeconds);
      if (!parsed.ok) {
        io.stderr(`${prefixLines(formatRuleProblems(parsed.problems))}\nNothing was changed.`);
        return EXIT_USAGE;
      }
      const forward = await context.manager.add(vm, parsed.fields);
      if (parsed.fields.upstream === true) {
        const reply = await context.routerMappings.map(forward);
        if (reply.result === 'mapped') {
          io.stdout(
            `router: ${reply.mapping.externalAddress}:${reply.mapping.externalPort} -> sys-net port ${forward.ports.first}`,
          );
        } else {
          io.stderr(
            `qvm-forward: warning: no router mapping (${'message' in reply ? reply.message : reply.result}); the forward works from the LAN only`,
          );
        }
      }
      return EXIT_OK;
    }

    case 'del': {
      if (words.length === 1 && /^\d+$/.test(words[0] ?? '')) {
        await unmapFromRouter(
          await context.manager.remove(vm, { index: Number(words[0]) }),
          io,
          context,
        );
        return EXIT_OK;
      }
      if (words.length === 0) {
        return usageError(io, 'del needs a rule number (see qvm-forward VMNAME) or a rule');
      }
      const parsed = parseRuleWords(words, nowUnixSeconds);
      if (!parsed.ok) {
        io.stderr(`${prefixLines(formatRuleProblems(parsed.problems))}\nNothing was changed.`);
        return EXIT_USAGE;
      }
      await unmapFromRouter(
        await context.manager.remove(vm, { fields: parsed.fields }),
        io,
        context,
      );
      return EXIT_OK;
    }

    case 'reset': {
      if (words.length > 0) {
        return usageError(io, `reset takes no arguments, got: ${words.join(' ')}`);
      }
      for (const removed of await context.manager.reset(vm)) {
        await unmapFromRouter(removed, io, context);
      }
      return EXIT_OK;
    }

    default:
      return usageError(io, `unknown action "${action}"; use list, add, del or reset`);
  }
}

/** Deletes the router mapping of a removed forward that had one. */
async function unmapFromRouter(
  forward: ForwardRule,
  io: CliIo,
  context: Dom0Context,
): Promise<void> {
  if (forward.routerMapping == null) {
    return;
  }
  const reply = await context.routerMappings.unmap(forward);
  if (reply.result !== 'unmapped') {
    io.stderr(
      `qvm-forward: warning: the router mapping was not removed (${'message' in reply ? reply.message : reply.result})`,
    );
  }
}

function prefixLines(text: string): string {
  return text
    .split('\n')
    .map((line) => `qvm-forward: ${line}`)
    .join('\n');
}

function usageError(io: CliIo, message: string): number {
  io.stderr(`qvm-forward: ${message}\n${USAGE}`);
  return EXIT_USAGE;
}

export async function main(): Promise<void> {
  const io: CliIo = {
    stdout: (text) => {
      if (text !== '') process.stdout.write(`${text}\n`);
    },
    stderr: (text) => process.stderr.write(`${text}\n`),
  };
  const context = createDom0Context(process.env);
  process.exitCode = await runQvmForward(process.argv.slice(2), io, context);
}
