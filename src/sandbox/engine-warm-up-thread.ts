/**
 * The engine's warm-up thread (engine.ts, compiledEngine): compiles the engine, runs a first sandbox
 * on it — its setup, a script's load and a few calls, so that the engine's functions they run are
 * compiled — and hands the compiled module, its code with it, to the main thread, which then ends it.
 * Nothing it runs reaches any VM: a module is immutable, and each sandbox has its own instance and memory.
 */
import { parentPort } from 'node:worker_threads'
import { compiledEngine, MIN_MEMORY_BYTES } from './engine.js'
import { resolveLimits } from './limits.js'
import { Sandbox } from './sandbox.js'

const port = parentPort
if (!port) throw new Error('engine-warm-up-thread runs as a worker thread')

/** A script that runs what VM scripts commonly do: objects, strings, JSON, closures, promises, errors. */
const WARM_UP_SCRIPT = `
const kept = []
exports.run = async (n) => {
  for (let i = 0; i < n; i++) kept.push({ i, text: String(i).padStart(8, '0'), at: Date.now(), luck: Math.random() })
  const text = JSON.stringify(kept.map((x) => ({ ...x, tags: [x.i % 3, 'a' + x.i] })))
  await Promise.all([1, 2].map(async (k) => k * 2))
  try {
    JSON.parse(text + ']')
  } catch (err) {
    kept.splice(0, kept.length / 2)
  }
  return { length: text.length, sum: kept.reduce((a, x) => a + x.i, 0) }
}
`

const turn = { timestamp: 1_700_000_000_000, seed: '0'.repeat(32), callerId: null }
const noRequests = async () => {
  throw new Error('the warm-up script makes no host request')
}
const sandbox = await Sandbox.create({ limits: resolveLimits({ memoryBytes: MIN_MEMORY_BYTES }) })
try {
  await sandbox.loadScript(WARM_UP_SCRIPT, turn)
  for (let i = 0; i < 3; i++) await sandbox.runCall('run', '[200]', turn, noRequests)
} finally {
  sandbox.dispose()
}
port.postMessage(await compiledEngine())
