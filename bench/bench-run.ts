/**
 * The scaffolding of one benchmark run, shared by vm-core.bench.ts, rpc.bench.ts and production.bench.ts:
 * a temp root dir (fresh subdirs in it on request), an optional watchdog that ends the whole run, and
 * the cleanup at the end (children ended by pid, temp root removed).
 */
import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { killChildrenNow, stopAllChildren } from './bench-children.js'
import { log } from './bench-stats.js'

export interface BenchRun {
  /** The run's temp root dir (removed by end() or by the watchdog). */
  readonly rootDir: string
  /** Creates and returns a new dir `<label>-<n>` in the temp root. */
  freshDir(label: string): Promise<string>
  /** Ends every child still running (by pid), removes the temp root and stops the watchdog. */
  end(): Promise<void>
}

/**
 * Starts a run: creates a temp root dir named `prefix` + random suffix in the OS temp dir and, if
 * `watchdogMs` is given, a watchdog that, should the run take longer, logs, kills every child by pid,
 * calls `onGiveUp` (synchronous cleanup of what the run made outside its temp root, e.g. a git
 * worktree's registration), removes the temp root and exits with code 1. The watchdog does not keep
 * the process alive.
 */
export async function startBenchRun(prefix: string, watchdogMs?: number, onGiveUp?: () => void): Promise<BenchRun> {
  const rootDir = await mkdtemp(join(tmpdir(), prefix))
  let watchdog: NodeJS.Timeout | undefined
  if (watchdogMs !== undefined) {
    watchdog = setTimeout(() => {
      log(`the run took more than ${watchdogMs / 1000} s: giving up`)
      killChildrenNow()
      try {
        onGiveUp?.()
      } finally {
        rmSync(rootDir, { recursive: true, force: true })
      }
      process.exit(1)
    }, watchdogMs)
    watchdog.unref()
  }
  let dirCounter = 0
  return {
    rootDir,
    async freshDir(label: string): Promise<string> {
      const dir = join(rootDir, `${label}-${dirCounter++}`)
      await mkdir(dir, { recursive: true })
      return dir
    },
    async end(): Promise<void> {
      try {
        await stopAllChildren()
      } finally {
        await rm(rootDir, { recursive: true, force: true })
        clearTimeout(watchdog)
      }
    },
  }
}
