/**
 * Helpers shared by the benchmarks that run child processes (rpc.bench.ts, production.bench.ts, reopen.bench.ts, ...):
 * timeouts, starting a child that announces itself with one JSON line, running one to completion,
 * ending children by pid, and reading a process's CPU time.
 *
 * Every child started here is in `children` until it exits, so a benchmark can end them all (by pid)
 * in its cleanup or from its watchdog (both set up by startBenchRun in bench-run.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { log } from './bench-stats.js'

/** The project root: children run there, so their `import 'libvms'` finds the built package. */
const PROJECT_DIR = fileURLToPath(new URL('..', import.meta.url))

/** Children started by the helpers below and not yet exited. */
export const children = new Set<ChildProcess>()

/** Rejects with a message naming `label` if `promise` takes longer than `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${label} took more than ${ms} ms`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

export interface Started<T> {
  child: ChildProcess
  pid: number
  info: T
}

/**
 * Starts `node ...nodeArgs script ...args` (stdin a pipe the child may watch to notice this process is
 * gone); resolves with its first stdout line, parsed as JSON, which must come within `readyTimeoutMs`
 * (default 30 s).
 */
export async function startChild<T>(
  script: string,
  args: string[],
  label: string,
  { readyTimeoutMs = 30_000, nodeArgs = [] }: { readyTimeoutMs?: number; nodeArgs?: string[] } = {},
): Promise<Started<T>> {
  const child = spawn(process.execPath, [...nodeArgs, script, ...args], { cwd: PROJECT_DIR, stdio: ['pipe', 'pipe', 'inherit'] })
  children.add(child)
  child.once('exit', () => children.delete(child))
  const pid = child.pid
  if (pid === undefined) throw new Error(`${label} did not start`)
  try {
    const info = await withTimeout(
      new Promise<T>((resolve, reject) => {
        const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
        lines.once('line', (line) => {
          lines.close()
          try {
            resolve(JSON.parse(line) as T)
          } catch {
            reject(new Error(`${label} printed ${JSON.stringify(line)}, not JSON`))
          }
        })
        child.once('exit', (code, signal) => reject(new Error(`${label} exited (${code ?? signal}) before it was ready`)))
      }),
      readyTimeoutMs,
      `starting ${label}`,
    )
    return { child, pid, info }
  } catch (err) {
    await stopChild(child)
    throw err
  }
}

/** Ends a child by its pid: SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 15_000): Promise<void> {
  const pid = child.pid
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  process.kill(pid, 'SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const killed = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), graceMs)
  })
  const outcome = await Promise.race([exited, killed])
  clearTimeout(timer)
  if (outcome === 'timeout') {
    log(`pid ${pid} did not exit within ${graceMs} ms of SIGTERM: SIGKILL`)
    if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL')
    await exited
  }
}

/** Ends every child still running, one by one, by pid (stopChild). */
export async function stopAllChildren(): Promise<void> {
  for (const child of [...children]) await stopChild(child)
}

/** Sends SIGKILL to every child still running, by pid, at once (for a watchdog that is about to exit). */
export function killChildrenNow(): void {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
}

/**
 * Runs `node ...nodeArgs script ...args` to completion (bounded by `timeoutMs`), with `env` if given
 * (else this process's); resolves with its stdout as JSON: the whole of it if that parses (a bench's
 * pretty-printed result), else its last line.
 */
export async function runChild<T>(
  script: string,
  args: string[],
  label: string,
  timeoutMs: number,
  { nodeArgs = [], env }: { nodeArgs?: string[]; env?: NodeJS.ProcessEnv } = {},
): Promise<T> {
  const child = spawn(process.execPath, [...nodeArgs, script, ...args], { cwd: PROJECT_DIR, env, stdio: ['ignore', 'pipe', 'inherit'] })
  children.add(child)
  let stdout = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (chunk: string) => {
    stdout += chunk
  })
  try {
    const code = await withTimeout(new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c))), timeoutMs, label)
    if (code !== 0) throw new Error(`${label} exited with code ${code}`)
    return parseJsonOutput<T>(stdout, label)
  } finally {
    if (child.exitCode === null && child.signalCode === null) await stopChild(child, 2000)
    children.delete(child)
  }
}

/** A child's stdout as JSON: the whole of it, or else its last line. */
function parseJsonOutput<T>(stdout: string, label: string): T {
  const text = stdout.trim()
  try {
    return JSON.parse(text) as T
  } catch {
    const line = text.split('\n').pop() ?? ''
    try {
      return JSON.parse(line) as T
    } catch {
      throw new Error(`${label} printed ${JSON.stringify(line.slice(0, 200))} last, not JSON`)
    }
  }
}

/**
 * CPU seconds (user + system) a process has used so far, from /proc (null where there is none); with
 * `thread`, those of that thread of the process alone (its main thread: `thread` = `pid`).
 */
export async function processCpuSeconds(pid: number, thread?: number): Promise<number | null> {
  try {
    const stat = await readFile(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return null
  }
}

export /** CPU seconds the whole machine has spent busy (all cores, all processes) so far, from /proc/stat. */
async function machineBusySeconds(): Promise<number | null> {
  try {
    const line = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0]
    // cpu user nice system idle iowait irq softirq steal ...
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number)
    return (user + nice + system + irq + softirq + steal) / 100
  } catch {
    return null
  }
}
