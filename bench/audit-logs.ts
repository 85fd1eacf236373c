/**
 * The logs the audit benches verify: a workload (a script, the method its calls make, how many, a
 * checkpoint interval) and the log it writes, built with `libvms` (the build a bench runs on: this
 * checkout's dist/, or the one libvms-build.mjs points at). `libvms` is imported only when a log is
 * built, so that compare-builds.ts, which reads the workloads, runs no build's code itself (it
 * builds its logs in audit-log-child.ts, on the base build).
 */
import { log, type Scaled } from './bench-stats.js'

export interface AuditWorkload {
  name: string
  script: string
  method: string
  calls: number
  /** A checkpoint every this many calls (their snapshots are what `verify --jobs` cuts segments at). */
  every: number
}

/** Calls kept in flight while a log is built, so group commit stores them in groups. */
const IN_FLIGHT = 256
/** The longest a log may take to build. */
const BUILD_TIME_LIMIT_MS = 20 * 60_000

/**
 * The two workloads, at `scaled` sizes (readSizing): `trivial`, 100,000 calls that each add to a
 * counter and keep a short list, with a checkpoint every 1,000 — where reading and checking entries
 * is most of an audit; `compute`, 5,000 calls that compute (4 ticks, about 0.8 ms each to replay),
 * with a checkpoint every 200 — where replay is.
 */
export function auditWorkloads(scaled: Scaled): {
  trivial: AuditWorkload
  compute: AuditWorkload
} {
  return {
    trivial: {
      name: 'trivial',
      script: `
let n = 0
const seen = []
exports.increment = (k) => { n += k; seen.push(n % 977); if (seen.length > 100) seen.shift(); return n }
`,
      method: 'increment',
      calls: scaled(100_000, 4_000, 1000),
      every: 1000,
    },
    compute: {
      name: 'compute',
      script: 'exports.work = (k) => { let x = 0; for (let i = 0; i < 20000; i++) x = (x + i * k) % 1000003; return x }',
      method: 'work',
      calls: scaled(5_000, 500, 100),
      every: 200,
    },
  }
}

/** Deploys `w.script` into `dir` and makes its calls (argument: the call's number); resolves with the ms it took. */
export async function buildAuditLog(dir: string, w: AuditWorkload): Promise<number> {
  const { VM } = await import('libvms')
  const started = performance.now()
  const vm = new VM(w.script, { checkpoints: { every: w.every } })
  await vm.deploy({ dir, title: `audit bench: ${w.name}` })
  try {
    const deadline = Date.now() + BUILD_TIME_LIMIT_MS
    for (let done = 0; done < w.calls; done += IN_FLIGHT) {
      if (Date.now() > deadline) throw new Error(`building the ${w.name} log took more than ${BUILD_TIME_LIMIT_MS / 60_000} min`)
      const batch = Math.min(IN_FLIGHT, w.calls - done)
      await Promise.all(Array.from({ length: batch }, (_, i) => vm.executeCall({ methodName: w.method, args: [done + i] })))
      if (done % 20_000 < IN_FLIGHT) log(`${w.name}: built ${done + batch}/${w.calls} calls`)
    }
  } finally {
    await vm.close()
  }
  return performance.now() - started
}
