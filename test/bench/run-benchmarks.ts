import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { runCommand, runInNamespace, sleep } from '../../lab/lab-exec.js';
import { LabSession } from '../../lab/lab-session.js';
import { distRoot } from '../../lab/services/lab-service-table.js';

/**
 * `npm run bench`: measures the product against a peer in the same run on
 * the same machine, and prints a Markdown table (docs/benchmarks.md keeps
 * the results). Every loop is bounded in count and time; all traffic stays
 * in namespaces this script creates.
 *
 * 1. IGD AddPortMapping, request to reply: our broker from `work` (dom0
 *    decision, pushes to every hop, router mapping) vs miniupnpd answering
 *    the same SOAP request from sys-net.
 * 2. qvm-forward add: command time vs applying the same rules by hand with
 *    `nft` in each hop; and time from the command's return to the first TCP
 *    connection from the LAN.
 * 3. STUN Binding responses per second and resident memory: our StunServer
 *    (with an in-memory mapping service standing in for dom0) vs coturn.
 */

const logger = pino({ level: 'silent' });
const ROUNDS = 8;
const node = process.execPath;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

function format(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

interface Row {
  what: string;
  ours: string;
  peer: string;
  ratio: string;
}
const rows: Row[] = [];

async function jsonLines(vmNamespace: string, command: string[], timeoutMs: number) {
  const result = await runInNamespace(vmNamespace, command, { timeoutMs, allowFailure: true });
  return result.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, number>);
}

async function benchAddPortMapping(lab: LabSession): Promise<void> {
  await lab.exec('dom0', ['qvm-features', 'work', 'nat-traversal', '1']);
  // The dom0 service pushes the redirects and tells the broker; wait for both.
  for (
    let attempt = 0;
    attempt < 100 && !(await lab.ruleset('sys-firewall')).includes('5351');
    attempt++
  ) {
    await sleep(100);
  }
  await sleep(3000);
  const client = join(distRoot(), 'test', 'bench', 'soap-add-port-mapping.js');
  const urn = 'urn:schemas-upnp-org:service:WANIPConnection:1';
  const work = lab.state.vms.work?.namespace ?? '';
  const sysNet = lab.state.vms['sys-net']?.namespace ?? '';

  const ours = await jsonLines(
    work,
    [
      node,
      client,
      'http://10.137.0.1:2189/ctl/IPConn',
      urn,
      lab.address('work'),
      '20000',
      String(ROUNDS),
    ],
    120_000,
  );
  const peer = await jsonLines(
    sysNet,
    [
      node,
      client,
      `http://${lab.state.addresses.routerLan}:5000/ctl/IPConn`,
      urn,
      lab.state.addresses.sysNetLan,
      '30000',
      String(ROUNDS),
    ],
    60_000,
  );
  const ok = (lines: Record<string, number>[]) => lines.filter((line) => line.status === 200);
  if (ok(ours).length < ROUNDS) {
    process.stderr.write(`broker AddPortMapping results: ${JSON.stringify(ours)}\n`);
  }
  const oursMs = median(ok(ours).map((line) => line.elapsedMs ?? 0));
  const peerMs = median(ok(peer).map((line) => line.elapsedMs ?? 0));
  rows.push({
    what: `IGD AddPortMapping request to reply, median of ${ok(ours).length}/${ROUNDS} (ms)`,
    ours: format(oursMs),
    peer: `${format(peerMs)} (miniupnpd, ${ok(peer).length}/${ROUNDS})`,
    ratio: `${(oursMs / peerMs).toFixed(1)}x`,
  });
}

async function benchManualForward(lab: LabSession): Promise<void> {
  const commandMs: number[] = [];
  const firstPacketMs: number[] = [];
  const handMs: number[] = [];
  const lanpeer = lab.state.vms.lanpeer?.namespace ?? '';

  for (let round = 0; round < ROUNDS; round++) {
    const port = 21000 + round;
    await lab.startServer('work', 'tcp', port);
    const waiter = spawn('ip', [
      'netns',
      'exec',
      lanpeer,
      node,
      join(distRoot(), 'test', 'bench', 'connect-until.js'),
      lab.state.addresses.sysNetLan,
      String(port),
      '10000',
    ]);
    const lines = createInterface({ input: waiter.stdout })[Symbol.asyncIterator]();
    await lines.next();

    const startedAtMs = performance.now();
    await lab.qvmForwardOk('work', 'add', 'proto=tcp', `port=${port}`);
    commandMs.push(performance.now() - startedAtMs);
    const returnedAtUnixMs = Date.now();
    const reached = await lines.next();
    const reachedAtUnixMs =
      reached.done === true
        ? null
        : (JSON.parse(reached.value) as { reachedAtUnixMs: number | null }).reachedAtUnixMs;
    if (reachedAtUnixMs !== null) {
      firstPacketMs.push(Math.max(0, reachedAtUnixMs - returnedAtUnixMs));
    }
  }

  // The peer: the same three rules written by hand, one nft call per hop.
  for (let round = 0; round < ROUNDS; round++) {
    const port = 22000 + round;
    const startedAtMs = performance.now();
    for (const [vm, rule] of [
      ['sys-net', `add rule ip bench prerouting tcp dport ${port} dnat to 10.138.0.2:${port}`],
      [
        'sys-firewall',
        `add rule ip bench prerouting tcp dport ${port} dnat to 10.137.0.20:${port}`,
      ],
      ['work', `add rule ip bench input tcp dport ${port} accept`],
    ] as const) {
      const namespace = lab.state.vms[vm]?.namespace ?? '';
      const script =
        round === 0
          ? `table ip bench {\n chain prerouting { type nat hook prerouting priority dstnat - 20; }\n chain input { type filter hook input priority filter - 2; }\n}\n${rule}\n`
          : `${rule}\n`;
      await runInNamespace(namespace, ['nft', '-f', '-'], { input: script });
    }
    handMs.push(performance.now() - startedAtMs);
  }

  rows.push({
    what: `qvm-forward add, whole command, median of ${ROUNDS} (ms)`,
    ours: format(median(commandMs)),
    peer: `${format(median(handMs))} (nft -f by hand in 3 VMs)`,
    ratio: `${(median(commandMs) / median(handMs)).toFixed(1)}x`,
  });
  rows.push({
    what: `qvm-forward add returned to first TCP connection from the LAN, median of ${firstPacketMs.length} (ms)`,
    ours: format(median(firstPacketMs)),
    peer: '-',
    ratio: '-',
  });
}

async function benchStun(): Promise<void> {
  const namespace = `qnbb-stun-${process.pid}`;
  const dir = await mkdtemp(join(tmpdir(), 'qnbb-'));
  const children: ReturnType<typeof spawn>[] = [];
  await runCommand(['ip', 'netns', 'add', namespace]);
  try {
    await runInNamespace(namespace, ['ip', 'link', 'set', 'lo', 'up']);
    await writeFile(join(dir, 'turnserver.conf'), '# empty\n');
    const coturn = spawn(
      'ip',
      [
        'netns',
        'exec',
        namespace,
        'turnserver',
        '-c',
        join(dir, 'turnserver.conf'),
        '--stun-only',
        '--no-cli',
        '--no-tls',
        '--no-dtls',
        '--listening-ip',
        '127.0.0.1',
        '--listening-port',
        '3478',
        '--pidfile',
        join(dir, 'turnserver.pid'),
        '--log-file',
        join(dir, 'turnserver.log'),
        '--simple-log',
        '--userdb',
        join(dir, 'turndb'),
      ],
      { stdio: 'ignore' },
    );
    const ours = spawn(
      'ip',
      [
        'netns',
        'exec',
        namespace,
        node,
        join(distRoot(), 'test', 'stun-lab-broker.js'),
        JSON.stringify({
          listenAddress: '127.0.0.1',
          ports: [3479],
          enabledClients: ['127.0.0.1'],
          externalAddress: '203.0.113.9',
          externalPort: 45678,
        }),
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    children.push(coturn, ours);
    await sleep(1500);

    const load = join(distRoot(), 'test', 'bench', 'stun-load-client.js');
    const count = '30000';
    const [peerResult] = await jsonLines(
      namespace,
      [node, load, '127.0.0.1', '3478', count, '64', '20000'],
      30_000,
    );
    const [ourResult] = await jsonLines(
      namespace,
      [node, load, '127.0.0.1', '3479', count, '64', '20000'],
      30_000,
    );
    const rssKb = async (pid: number | undefined) => {
      const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
      return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
    };
    const coturnPid = Number(
      (await readFile(join(dir, 'turnserver.pid'), 'utf8').catch(() => '')).trim(),
    );
    const ourPid = Number(
      (await runCommand(['ip', 'netns', 'pids', namespace])).stdout
        .split('\n')
        .find((pid) => pid !== '' && Number(pid) !== coturnPid),
    );

    rows.push({
      what: `STUN Binding responses per second (${count} requests, 64 in flight)`,
      ours: String(ourResult?.perSecond ?? 'failed'),
      peer: `${peerResult?.perSecond ?? 'failed'} (coturn)`,
      ratio: `${((ourResult?.perSecond ?? 0) / (peerResult?.perSecond ?? 1)).toFixed(2)}x`,
    });
    const ourRss = await rssKb(ourPid);
    const peerRss = await rssKb(coturnPid);
    rows.push({
      what: 'STUN server resident memory after the load (MiB)',
      ours: (ourRss / 1024).toFixed(1),
      peer: `${(peerRss / 1024).toFixed(1)} (coturn)`,
      ratio: `${(ourRss / peerRss).toFixed(1)}x`,
    });
  } finally {
    for (const child of children) {
      child.kill('SIGTERM');
    }
    const pids = (await runCommand(['ip', 'netns', 'pids', namespace], { allowFailure: true }))
      .stdout;
    for (const pid of pids.split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    await sleep(200);
    await runCommand(['ip', 'netns', 'del', namespace], { allowFailure: true });
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const startedAtMs = performance.now();
  const lab = await LabSession.open({ prefix: 'bench', logger, answer: 'allow' });
  const labUpMs = performance.now() - startedAtMs;
  try {
    await benchAddPortMapping(lab);
    await benchManualForward(lab);
  } finally {
    const teardownStartedAtMs = performance.now();
    await lab.close();
    rows.push({
      what: 'lab up with every component / torn down (ms)',
      ours: `${format(labUpMs)} / ${format(performance.now() - teardownStartedAtMs)}`,
      peer: '-',
      ratio: '-',
    });
  }
  await benchStun();

  const lines = [
    `Measured ${new Date().toISOString()} on ${process.arch}, Node ${process.version}.`,
    '',
    '| measurement | ours | peer (same run) | ours / peer |',
    '| --- | --- | --- | --- |',
    ...rows.map((row) => `| ${row.what} | ${row.ours} | ${row.peer} | ${row.ratio} |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
