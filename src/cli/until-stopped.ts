/** Long-running commands (exec, seed) end on SIGINT or SIGTERM, cleanly. */
import { err } from './output.js'

/**
 * Waits for SIGINT or SIGTERM, then runs `stop` (calls in flight are answered, storage closed) and
 * exits 0. A second signal while stopping exits at once (storage is crash-safe either way).
 */
export function untilStopped(stop: (signal: string) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let stopping = false
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        err.line(`${signal} again: exiting without waiting`)
        process.exit(130)
      }
      stopping = true
      stop(signal).then(() => {
        process.off('SIGINT', onSignal)
        process.off('SIGTERM', onSignal)
        resolve()
      }, reject)
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
}
