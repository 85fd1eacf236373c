/**
 * RPC benchmark: LibVMS served over WebSocket (RPCServer / RPCClient), each figure next to a bare
 * `ws` echo server measured with the same load generator in the same round, and the audit path
 * (fetch + download, then replay + verify) in a separate auditor process.
 *
 *   npm run build && npx tsx bench/rpc.bench.ts                  (full size)
 *   npm run build && BENCH_SCALE=0.1 npx tsx bench/rpc.bench.ts  (quick smoke run)
 *
 * Processes (all on 127.0.0.1, all started and ended by this process, by pid):
 *   bench/rpc-server.mjs   a LibVMS server: one VM (`inc`) mounted at '/', a fresh one per round
 *   bench/echo-server.mjs  a plain `ws` server answering every JSON-RPC request with result 1
 *   bench/auditor.mjs      the auditor: CallLog.fetch + DatArchive.download, then replay + verify
 * The load generators run in this process (a separate process from the servers): RPCClient for the
 * LibVMS figures, a raw `ws` + JSON client for the echo baseline, and the same raw client against the
 * LibVMS server to show what RPCClient itself costs.
 *
 * Prints one JSON object to stdout; progress goes to stderr. Every figure is the median of 3 runs,
 * taken in rounds (round r measures everything once, baselines included).
 */
import { fileURLToPath } from 'node:url'
import Corestore from 'corestore'
import WebSocket from 'ws'
import { type BackendInfo, RPCClient } from '../src/index.js'
import { processCpuSeconds, runChild, type Started, startChild, stopChild, withTimeout } from './bench-children.js'
import { startBenchRun } from './bench-run.js'
import { type Figure, figure, log, machine, median, percentile, readSizing, round2, round3, type Target } from './bench-stats.js'

const ROUNDS = 3
const CLIENTS = 16
const FILL_CONCURRENCY = 64
const RAW_ENTRY = { type: 'call', method: 'inc', args: [], result: 1 }
const SCRIPTS = {
  server: fileURLToPath(new URL('./rpc-server.mjs', import.meta.url)),
  echo: fileURLToPath(new URL('./echo-server.mjs', import.meta.url)),
  auditor: fileURLToPath(new URL('./auditor.mjs', import.meta.url)),
}
/** Longest any one timed phase may take. */
const PHASE_TIMEOUT_MS = 60_000

// ---- sizes ----

const { scale: SCALE, scaled } = readSizing()

const SIZES = {
  concurrentCalls: scaled(20_000, 800, CLIENTS),
  clients: CLIENTS,
  sequentialCalls: scaled(2000, 100),
  rawAwaitedAppends: scaled(2000, 100),
  auditLogCalls: scaled(10_000, 500),
  fillConcurrency: FILL_CONCURRENCY,
  warmupCalls: scaled(2000, 320, CLIENTS),
}

// ---- helpers ----

/**
 * This run: its temp root dir (run.rootDir, fresh subdirs from run.freshDir), a watchdog that gives up
 * (children ended, temp dir removed, exit 1) after 6 minutes, and the cleanup (run.end(), in main).
 */
const run = await startBenchRun('libvms-rpc-bench-', 6 * 60_000)

// ---- load generators ----

interface Caller {
  call(): Promise<unknown>
  close(): Promise<void>
}

/** A raw `ws` JSON-RPC client: one request per frame, answers matched by id, JSON.parse on each answer. */
class RawClient implements Caller {
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()

  private constructor(
    private readonly ws: WebSocket,
    private readonly method: string,
  ) {
    ws.on('message', (data: WebSocket.RawData) => {
      const answer = JSON.parse(data.toString()) as { id: number; result?: unknown; error?: { message: string } }
      const waiting = this.pending.get(answer.id)
      if (!waiting) return
      this.pending.delete(answer.id)
      if (answer.error) waiting.reject(new Error(answer.error.message))
      else waiting.resolve(answer.result)
    })
    ws.on('close', () => {
      for (const w of this.pending.values()) w.reject(new Error('the connection closed'))
      this.pending.clear()
    })
  }

  /** Connects; with `handshake`, first sends rpc.handshake (which the LibVMS server requires). */
  static async connect(url: string, method: string, handshake: boolean): Promise<RawClient> {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    ws.on('error', () => {})
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve())
        ws.once('error', reject)
      }),
      10_000,
      `connecting to ${url}`,
    )
    const client = new RawClient(ws, method)
    if (handshake) await withTimeout(client.send('rpc.handshake', '{}'), 10_000, 'the handshake')
    return client
  }

  private send(method: string, params: string): Promise<unknown> {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.ws.send(`{"jsonrpc":"2.0","id":${id},"method":${JSON.stringify(method)},"params":${params}}`)
    })
  }

  call(): Promise<unknown> {
    return this.send(this.method, '[]')
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.ws.terminate()
        resolve()
      }, 2000)
      this.ws.once('close', () => {
        clearTimeout(timer)
        resolve()
      })
      this.ws.close(1000)
    })
  }
}

/**
 * RPCClient as a Caller of `method`. Against LibVMS it checks a receipt with every answer, as it does
 * by default; the echo server has no log, so against it receipts are off.
 */
async function rpcCaller(url: string, method: string, libvms = true): Promise<Caller & { info: BackendInfo | null }> {
  const client = new RPCClient()
  await client.connect(url, { receipts: libvms })
  return { call: () => client.call(method), close: () => client.close(), info: client.backendInfo }
}

type Kind = 'raw' | 'rpc'

async function openCallers(kind: Kind, url: string, count: number, libvms: boolean): Promise<Caller[]> {
  return Promise.all(
    Array.from({ length: count }, () => (kind === 'rpc' ? rpcCaller(url, 'inc', libvms) : RawClient.connect(url, 'inc', libvms))),
  )
}

async function closeCallers(callers: Caller[]): Promise<void> {
  await Promise.all(callers.map((c) => c.close()))
}

interface Throughput {
  perSec: number
  /** CPU used by this (load generator) process and by the server, as % of one core over the run. */
  clientCpuPct: number
  serverCpuPct: number | null
}

/** Each caller awaits one call at a time until `total` calls have been made across all of them. */
async function concurrentRun(callers: Caller[], total: number, serverPid: number): Promise<Throughput> {
  let issued = 0
  const worker = async (caller: Caller): Promise<void> => {
    while (issued < total) {
      issued++
      await caller.call()
    }
  }
  const serverCpu0 = await processCpuSeconds(serverPid)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await withTimeout(Promise.all(callers.map(worker)), PHASE_TIMEOUT_MS, `${total} calls from ${callers.length} clients`)
  const secs = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  const serverCpu1 = await processCpuSeconds(serverPid)
  return {
    perSec: total / secs,
    clientCpuPct: ((cpu.user + cpu.system) / 1e6 / secs) * 100,
    serverCpuPct: serverCpu0 === null || serverCpu1 === null ? null : ((serverCpu1 - serverCpu0) / secs) * 100,
  }
}

interface Latency {
  perSec: number
  p50: number
  p99: number
}

/** One caller, `n` calls awaited one at a time. */
async function sequentialRun(caller: Caller, n: number): Promise<Latency> {
  const latencies = new Array<number>(n)
  const run = async (): Promise<number> => {
    const t0 = performance.now()
    for (let i = 0; i < n; i++) {
      const s = performance.now()
      await caller.call()
      latencies[i] = performance.now() - s
    }
    return (performance.now() - t0) / 1000
  }
  const secs = await withTimeout(run(), PHASE_TIMEOUT_MS, `${n} sequential calls`)
  return { perSec: n / secs, p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
}

/** Opens `count` callers, runs `total` calls across them, closes them. */
async function measureConcurrent(kind: Kind, url: string, libvms: boolean, total: number, serverPid: number): Promise<Throughput> {
  const callers = await openCallers(kind, url, CLIENTS, libvms)
  try {
    return await concurrentRun(callers, total, serverPid)
  } finally {
    await closeCallers(callers)
  }
}

async function measureSequential(kind: Kind, url: string, libvms: boolean, n: number): Promise<Latency> {
  const [caller] = await openCallers(kind, url, 1, libvms)
  try {
    return await sequentialRun(caller, n)
  } finally {
    await caller.close()
  }
}

// ---- raw Hypercore baseline ----

/** `n` awaited appends of a small JSON entry to a Corestore core in a fresh dir; per-append latencies in ms. */
async function rawAwaitedAppends(n: number): Promise<{ p50: number; perSec: number }> {
  const store = new Corestore(await run.freshDir('raw-awaited'))
  try {
    const core = store.get<typeof RAW_ENTRY>({ name: 'x', valueEncoding: 'json' })
    await core.ready()
    const latencies = new Array<number>(n)
    const t0 = performance.now()
    for (let i = 0; i < n; i++) {
      const s = performance.now()
      await core.append(RAW_ENTRY)
      latencies[i] = performance.now() - s
    }
    const secs = (performance.now() - t0) / 1000
    if (core.length !== n) throw new Error(`raw core has ${core.length} entries, expected ${n}`)
    await core.close()
    return { p50: percentile(latencies, 50), perSec: n / secs }
  } finally {
    await store.close()
  }
}

// ---- LibVMS server lifecycle ----

interface ServerInfo {
  url: string
  pid: number
  callLogUrl: string
  filesArchiveUrl: string
  deployMs: number
}

interface LibVMSServer extends Started<ServerInfo> {
  /** RPC URL of the VM (mounted at '/'). */
  url: string
  /** `inc` calls made so far (the VM's counter). */
  calls: number
}

async function startLibVMS(): Promise<LibVMSServer> {
  const started = await startChild<ServerInfo>(SCRIPTS.server, [run.rootDir], 'the LibVMS server')
  return { ...started, url: `${started.info.url}/`, calls: 0 }
}

/** Checks the VM's counter: one more `inc` must return calls + 1 (so no call was lost or doubled). */
async function checkCounter(server: LibVMSServer): Promise<void> {
  const caller = await rpcCaller(server.url, 'inc')
  try {
    const n = await caller.call()
    server.calls++
    if (n !== server.calls) throw new Error(`inc returned ${String(n)}, expected ${server.calls}: calls were lost or doubled`)
  } finally {
    await caller.close()
  }
}

// ---- one round ----

interface RoundFigures {
  echoConc: Throughput
  libvmsConc: Throughput
  rawOnLibvmsConc: Throughput
  rpcOnEchoConc: Throughput
  libvmsSeq: Latency
  echoSeq: Latency
  rawOnLibvmsSeq: Latency
  rawAppend: { p50: number; perSec: number }
  audit: AuditReport
}

interface AuditReport {
  downloadMs: number
  fetchLogMs: number
  downloadArchiveMs: number
  replayMs: number
  compareLogsMs: number
  compareArchivesMs: number
  replayVerifyMs: number
  totalMs: number
  entries: number
  filesVersion: number
}

const fmtConc = (t: Throughput): string =>
  `${t.perSec.toFixed(0)} calls/s (generator CPU ${t.clientCpuPct.toFixed(0)}%, server CPU ${t.serverCpuPct?.toFixed(0) ?? '?'}%)`
const fmtSeq = (l: Latency): string => `p50 ${l.p50.toFixed(3)} ms, p99 ${l.p99.toFixed(3)} ms, ${l.perSec.toFixed(0)} calls/s`

async function warmUp(server: LibVMSServer, echoUrl: string, echoPid: number): Promise<void> {
  const n = SIZES.warmupCalls
  await measureConcurrent('raw', echoUrl, false, n, echoPid)
  await measureConcurrent('rpc', echoUrl, false, n, echoPid)
  await measureConcurrent('rpc', server.url, true, n, server.pid)
  await measureConcurrent('raw', server.url, true, n, server.pid)
  server.calls += 2 * n
  const seqN = Math.ceil(n / 4)
  await measureSequential('raw', echoUrl, false, seqN)
  await measureSequential('rpc', server.url, true, seqN)
  await measureSequential('raw', server.url, true, seqN)
  server.calls += 2 * seqN
  await checkCounter(server)
}

async function throughputAndLatency(tag: string, echoUrl: string, echoPid: number): Promise<Omit<RoundFigures, 'audit'>> {
  const server = await startLibVMS()
  try {
    log(`${tag} LibVMS server pid ${server.pid} at ${server.url} (deploy ${server.info.deployMs.toFixed(1)} ms); warming up`)
    await warmUp(server, echoUrl, echoPid)
    const total = SIZES.concurrentCalls

    const echoConc = await measureConcurrent('raw', echoUrl, false, total, echoPid)
    log(`${tag} echo server, raw ws x${CLIENTS}: ${fmtConc(echoConc)}`)
    const libvmsConc = await measureConcurrent('rpc', server.url, true, total, server.pid)
    server.calls += total
    log(`${tag} LibVMS, RPCClient x${CLIENTS}: ${fmtConc(libvmsConc)}`)
    const rawOnLibvmsConc = await measureConcurrent('raw', server.url, true, total, server.pid)
    server.calls += total
    log(`${tag} LibVMS, raw ws x${CLIENTS}: ${fmtConc(rawOnLibvmsConc)}`)
    const rpcOnEchoConc = await measureConcurrent('rpc', echoUrl, false, total, echoPid)
    log(`${tag} echo server, RPCClient x${CLIENTS}: ${fmtConc(rpcOnEchoConc)}`)
    await checkCounter(server)

    const n = SIZES.sequentialCalls
    const libvmsSeq = await measureSequential('rpc', server.url, true, n)
    server.calls += n
    log(`${tag} sequential LibVMS, RPCClient: ${fmtSeq(libvmsSeq)}`)
    const echoSeq = await measureSequential('raw', echoUrl, false, n)
    log(`${tag} sequential echo server, raw ws: ${fmtSeq(echoSeq)}`)
    const rawOnLibvmsSeq = await measureSequential('raw', server.url, true, n)
    server.calls += n
    log(`${tag} sequential LibVMS, raw ws: ${fmtSeq(rawOnLibvmsSeq)}`)
    await checkCounter(server)

    const rawAppend = await withTimeout(rawAwaitedAppends(SIZES.rawAwaitedAppends), PHASE_TIMEOUT_MS, 'raw appends')
    log(`${tag} raw awaited Hypercore append: p50 ${rawAppend.p50.toFixed(3)} ms, ${rawAppend.perSec.toFixed(0)} appends/s`)
    return { echoConc, libvmsConc, rawOnLibvmsConc, rpcOnEchoConc, libvmsSeq, echoSeq, rawOnLibvmsSeq, rawAppend }
  } finally {
    await stopChild(server.child)
  }
}

/** A fresh server with a log of SIZES.auditLogCalls calls (made over RPC, not timed), audited from a child process. */
async function audit(tag: string): Promise<AuditReport> {
  const server = await startLibVMS()
  try {
    const client = new RPCClient()
    await client.connect(server.url)
    let info: BackendInfo
    try {
      info = client.backendInfo as BackendInfo
      const total = SIZES.auditLogCalls
      let issued = 0
      let highest = 0
      const worker = async (): Promise<void> => {
        while (issued < total) {
          issued++
          highest = Math.max(highest, (await client.call('inc')) as number)
        }
      }
      const t0 = performance.now()
      await withTimeout(
        Promise.all(Array.from({ length: FILL_CONCURRENCY }, worker)),
        PHASE_TIMEOUT_MS,
        `filling the log with ${total} calls`,
      )
      if (highest !== total) throw new Error(`after ${total} calls inc reached ${highest}`)
      log(
        `${tag} audit: ${total} calls logged (${FILL_CONCURRENCY} in flight, ${((total / (performance.now() - t0)) * 1000).toFixed(0)} calls/s)`,
      )
    } finally {
      await client.close()
    }
    const expectedEntries = SIZES.auditLogCalls + 1 // + the init entry
    const report = await runChild<AuditReport>(
      SCRIPTS.auditor,
      [server.url, JSON.stringify(info), String(expectedEntries), await run.freshDir('auditor')],
      'the auditor',
      120_000,
    )
    log(
      `${tag} audit: download ${report.downloadMs.toFixed(0)} ms (log ${report.fetchLogMs.toFixed(0)}, archive ${report.downloadArchiveMs.toFixed(0)}), replay+verify ${report.replayVerifyMs.toFixed(0)} ms (replay ${report.replayMs.toFixed(0)}, compareLogs ${report.compareLogsMs.toFixed(0)}, compareArchives ${report.compareArchivesMs.toFixed(0)}), total ${report.totalMs.toFixed(0)} ms, ratio ${(report.totalMs / report.downloadMs).toFixed(2)}`,
    )
    return report
  } finally {
    await stopChild(server.child)
  }
}

// ---- results ----

interface Result extends Figure {
  target: Target | null
  ratio_to_baseline?: number
  baseline?: string
  meets_target: boolean | null
  [extra: string]: unknown
}

function result(
  runs: number[],
  unit: string,
  target: Target | null,
  baseline?: { name: string; value: number },
  extra: Record<string, unknown> = {},
  digits: (x: number) => number = round2,
): Result {
  const f = figure(runs, unit, digits)
  const value = median(runs)
  const ratio = baseline ? value / baseline.value : undefined
  let meets: boolean | null = null
  if (target) {
    const checked = target.of === 'ratio_to_baseline' ? (ratio ?? Number.NaN) : value
    meets = target.op === '>=' ? checked >= target.value : checked <= target.value
  }
  return {
    ...f,
    target,
    ...(baseline ? { baseline: baseline.name, ratio_to_baseline: round3(ratio as number) } : {}),
    meets_target: meets,
    ...extra,
  }
}

// ---- main ----

async function main(): Promise<void> {
  log(`scale ${SCALE}, sizes ${JSON.stringify(SIZES)}, temp dir ${run.rootDir}`)
  let echo: Started<{ url: string; pid: number }> | null = null
  try {
    echo = await startChild<{ url: string; pid: number }>(SCRIPTS.echo, [], 'the echo server')
    log(`echo server pid ${echo.pid} at ${echo.info.url}`)

    const rounds: RoundFigures[] = []
    for (let r = 0; r < ROUNDS; r++) {
      const tag = `round ${r + 1}/${ROUNDS}`
      const tl = await throughputAndLatency(tag, echo.info.url, echo.pid)
      const auditReport = await audit(tag)
      rounds.push({ ...tl, audit: auditReport })
    }

    const pick = <T>(f: (r: RoundFigures) => T): T[] => rounds.map(f)
    const conc = (f: (r: RoundFigures) => Throughput) => ({
      ...figure(
        pick((r) => f(r).perSec),
        'calls/s',
      ),
      generator_cpu_pct: figure(
        pick((r) => f(r).clientCpuPct),
        '% of one core',
      ),
      server_cpu_pct: figure(
        pick((r) => f(r).serverCpuPct ?? Number.NaN),
        '% of one core',
      ),
    })

    /** A sequential run's figures: p50, p99 and calls/s, each over the rounds. */
    const seq = (f: (r: RoundFigures) => Latency) => ({
      p50_ms: figure(
        pick((r) => f(r).p50),
        'ms',
        round3,
      ),
      p99_ms: figure(
        pick((r) => f(r).p99),
        'ms',
        round3,
      ),
      calls_per_sec: figure(
        pick((r) => f(r).perSec),
        'calls/s',
      ),
    })

    const echoSeqFigures = seq((r) => r.echoSeq)
    const echoConc = median(pick((r) => r.echoConc.perSec))
    const echoSeqP50 = median(pick((r) => r.echoSeq.p50))
    const rawAppendP50 = median(pick((r) => r.rawAppend.p50))
    const downloadMs = median(pick((r) => r.audit.downloadMs))
    const p50Target = round3(0.25 + rawAppendP50)

    const baseline = {
      echoConcurrent16CallsPerSec: {
        ...conc((r) => r.echoConc),
        note: `bench/echo-server.mjs (plain ws, JSON.parse, answers result 1) driven by the raw ws + JSON generator, ${CLIENTS} clients each awaiting one call at a time`,
      },
      echoSequentialP50Ms: {
        ...echoSeqFigures.p50_ms,
        p99_ms: echoSeqFigures.p99_ms,
        calls_per_sec: echoSeqFigures.calls_per_sec,
        note: 'the echo server, one raw ws client awaiting one call at a time (the same loop as the LibVMS figure)',
      },
      rawAwaitedAppendP50Ms: {
        ...figure(
          pick((r) => r.rawAppend.p50),
          'ms',
          round3,
        ),
        appends: SIZES.rawAwaitedAppends,
        appends_per_sec: figure(
          pick((r) => r.rawAppend.perSec),
          'appends/s',
        ),
        note: 'awaited core.append of a small JSON entry to a Corestore core in a temp dir, in the bench process, median per-append time',
      },
      auditDownloadMs: {
        ...figure(
          pick((r) => r.audit.downloadMs),
          'ms',
        ),
        note: 'auditor child: CallLog.fetch(callLogUrl, {peers: [url]}) + new DatArchive(filesArchiveUrl, {peers: [url]}).download("/")',
      },
    }

    const results = {
      concurrentClients16CallsPerSec: result(
        pick((r) => r.libvmsConc.perSec),
        'calls/s',
        { op: '>=', value: 12_000, of: 'value' },
        { name: 'echoConcurrent16CallsPerSec', value: echoConc },
        {
          calls: SIZES.concurrentCalls,
          clients: CLIENTS,
          generator: `RPCClient x${CLIENTS} in the bench process, each awaiting one inc at a time; server: bench/rpc-server.mjs (a fresh VM each round)`,
          generator_cpu_pct: figure(
            pick((r) => r.libvmsConc.clientCpuPct),
            '% of one core',
          ),
          server_cpu_pct: figure(
            pick((r) => r.libvmsConc.serverCpuPct ?? Number.NaN),
            '% of one core',
          ),
          raw_ws_client_on_libvms: {
            ...conc((r) => r.rawOnLibvmsConc),
            note: 'the raw ws + JSON generator (as for the echo baseline) against the LibVMS server: RPCClient cost = the difference',
          },
          rpcclient_on_echo: {
            ...conc((r) => r.rpcOnEchoConc),
            note: 'RPCClient against the echo server: the generator with RPCClient alone, no VM',
          },
        },
      ),
      sequentialP50Ms: result(
        pick((r) => r.libvmsSeq.p50),
        'ms',
        { op: '<=', value: p50Target, of: 'value' },
        { name: 'echoSequentialP50Ms', value: echoSeqP50 },
        {
          target_expr: `0.25 ms + rawAwaitedAppendP50Ms (${round3(rawAppendP50)} ms)`,
          calls: SIZES.sequentialCalls,
          calls_per_sec: figure(
            pick((r) => r.libvmsSeq.perSec),
            'calls/s',
          ),
          raw_awaited_append_p50_ms: round3(rawAppendP50),
          // Issue 14's bar: the 2017 original's one-client RPC rate against its raw awaited appends, 1,927/s against 4,931/s.
          calls_per_sec_to_raw_appends: round3(median(pick((r) => r.libvmsSeq.perSec)) / median(pick((r) => r.rawAppend.perSec))),
          original_2017_calls_per_sec_to_raw_appends: 0.39,
          echo_p50_ms: round3(echoSeqP50),
          raw_ws_client_on_libvms: seq((r) => r.rawOnLibvmsSeq),
        },
        round3,
      ),
      sequentialP99Ms: result(
        pick((r) => r.libvmsSeq.p99),
        'ms',
        null,
        { name: 'echoSequentialP50Ms.p99_ms', value: median(pick((r) => r.echoSeq.p99)) },
        { calls: SIZES.sequentialCalls, note: 'no target set; baseline is the echo server p99 with the same loop' },
        round3,
      ),
      auditDownloadReplayVerify: result(
        pick((r) => r.audit.totalMs),
        'ms',
        { op: '<=', value: 2, of: 'ratio_to_baseline' },
        { name: 'auditDownloadMs', value: downloadMs },
        {
          log_entries: SIZES.auditLogCalls + 1,
          timed:
            'auditor child process: (a) CallLog.fetch + DatArchive.download, then (b) VM.fromCallLog + Verifier.compareLogs + Verifier.compareArchives',
          download_ms: figure(
            pick((r) => r.audit.downloadMs),
            'ms',
          ),
          replay_verify_ms: figure(
            pick((r) => r.audit.replayVerifyMs),
            'ms',
          ),
          total_ms: figure(
            pick((r) => r.audit.totalMs),
            'ms',
          ),
          ratio_total_to_download_runs: pick((r) => round3(r.audit.totalMs / r.audit.downloadMs)),
          parts_ms: {
            fetch_log: figure(
              pick((r) => r.audit.fetchLogMs),
              'ms',
            ),
            download_archive: figure(
              pick((r) => r.audit.downloadArchiveMs),
              'ms',
            ),
            replay: figure(
              pick((r) => r.audit.replayMs),
              'ms',
            ),
            compare_logs: figure(
              pick((r) => r.audit.compareLogsMs),
              'ms',
            ),
            compare_archives: figure(
              pick((r) => r.audit.compareArchivesMs),
              'ms',
            ),
          },
          files_version: rounds[0].audit.filesVersion,
        },
      ),
    }

    const out = { ...machine(), bench_scale: SCALE, sizes: SIZES, baseline, results }
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
  } finally {
    if (echo) await stopChild(echo.child)
    await run.end()
  }
}

await main()
