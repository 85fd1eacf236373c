/**
 * Where an upgrade's time goes (bench/upgrade.bench.ts --profile): a CPU profile of this process
 * (node:inspector) taken around the upgrades, each sample put in the part of the upgrade named by the
 * innermost frame on its stack that belongs to one (PARTS), its time summed per part.
 */
import { Session } from 'node:inspector/promises'
import { round2 } from './bench-stats.js'

/** The parts of an upgrade, by the functions that do them (src/), innermost first wins. */
const PARTS: [part: string, frames: string[]][] = [
  // The old engine's memory copied before the hook runs, to put it back if the hook fails (call-executor.ts, upgradeLive).
  ['old_engine_state_capture', ['captureSteps', 'captureState']],
  // Host side of a previous.* answer: the old engine's JSON checked and decoded, encoded for the new engine (value-codec.ts).
  ['host_value_codec', ['decodeValue', 'encodeValue', 'jsonDeeperThan']],
  // The answer's text copied into the new engine (quickjs-emscripten newString).
  ['into_new_engine', ['newString', 'newHeapCharPointer']],
  // The old code's export running, and its answer encoded and read out of the old engine (sandbox.ts runCall).
  ['old_engine_call', ['runCall']],
  // The new code loading (its top level).
  ['new_code_load', ['loadScript']],
  // The hook itself in the new engine (split, rebuild), between requests.
  ['new_engine_hook', ['runUpgradeHook']],
  // Storing the entry.
  ['log_append', ['flush', 'stage']],
  ['garbage_collector', ['(garbage collector)']],
  ['idle', ['(idle)']],
]

interface ProfileNode {
  id: number
  callFrame: { functionName: string }
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

export async function startProfile(): Promise<{ stop(): Promise<Profile> }> {
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', { interval: 200 })
  await session.post('Profiler.start')
  return {
    async stop() {
      const { profile } = (await session.post('Profiler.stop')) as unknown as { profile: Profile }
      session.disconnect()
      return profile
    },
  }
}

/** The profile's time per part of the upgrade, in ms (`other`: samples in none of them), and the top frames of `other` (each with the JavaScript function that called it). */
export function profileSplit(profile: Profile): Record<string, number | Record<string, number>> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const partOfFrame = new Map<string, string>()
  for (const [part, frames] of PARTS) for (const f of frames) partOfFrame.set(f, part)
  const partOfNode = new Map<number, string>()
  const partOf = (id: number): string => {
    const known = partOfNode.get(id)
    if (known) return known
    let part = 'other'
    for (let x: number | undefined = id, depth = 0; x !== undefined && depth < 10_000; x = parent.get(x), depth++) {
      const found = partOfFrame.get((byId.get(x) as ProfileNode).callFrame.functionName)
      if (found) {
        part = found
        break
      }
    }
    partOfNode.set(id, part)
    return part
  }
  const nameOf = (id: number): string => (byId.get(id) as ProfileNode).callFrame.functionName || '(anonymous)'
  /** The nearest JavaScript function that called into `id` (the engine's frames and the JS-to-wasm wrappers skipped). */
  const callerOf = (id: number): string => {
    for (let x = parent.get(id), depth = 0; x !== undefined && depth < 10_000; x = parent.get(x), depth++) {
      const name = nameOf(x)
      if (!/^(wasm-function|js-to-wasm|wasm-to-js|GenericJSToWasm)/.test(name) && name !== nameOf(id)) return name
    }
    return '(root)'
  }
  const ms: Record<string, number> = {}
  const otherSelf: Record<string, number> = {}
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]
    const dt = (profile.timeDeltas[i] ?? 0) / 1000
    const part = partOf(id)
    ms[part] = (ms[part] ?? 0) + dt
    if (part === 'other') {
      const name = `${nameOf(id)} < ${callerOf(id)}`
      otherSelf[name] = (otherSelf[name] ?? 0) + dt
    }
  }
  const sorted = (o: Record<string, number>, n: number) =>
    Object.fromEntries(
      Object.entries(o)
        .sort((a, b) => b[1] - a[1])
        .slice(0, n)
        .map(([k, v]) => [k, round2(v)]),
    )
  return { ...sorted(ms, PARTS.length + 1), other_top: sorted(otherSelf, 12) }
}
