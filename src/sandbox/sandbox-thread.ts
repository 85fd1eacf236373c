/**
 * A sandbox thread (a worker): runs the scripts of the sandboxes its host assigns to it, so a VM busy
 * with a long call holds up only the VMs on its own thread, never the host's main thread (RPC,
 * storage) or VMs on other threads. The host side is remote-sandbox.ts. This module's state is
 * the thread's own (each thread loads it afresh).
 */
import { parentPort } from 'node:worker_threads'
import type { HostMeter } from './host-work.js'
import { type HostRequestHandler, Sandbox } from './sandbox.js'
import { type FromThread, fromCrossing, type ToThread, toCrossing } from './thread-messages.js'

const port = parentPort
if (!port) throw new Error('sandbox-thread runs as a worker thread')

const sandboxes = new Map<number, Sandbox>()
const answers = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void; meter: HostMeter }>()
let nextRequest = 1

const post = (message: FromThread, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer)

/** Answers request `id` with what `work` resolves to; `transfer` names the buffers of it that move rather than being copied. */
async function reply<T>(id: number, work: () => Promise<T>, transfer?: (value: T) => ArrayBuffer[]): Promise<void> {
  try {
    const value = await work()
    post({ t: 'reply', id, value }, transfer?.(value))
  } catch (err) {
    post({ t: 'reply', id, error: toCrossing(err) })
  }
}

function sandbox(sid: number): Sandbox {
  const found = sandboxes.get(sid)
  if (!found) throw new Error(`no sandbox ${sid} on this thread`)
  return found
}

port.on('message', (message: ToThread) => {
  switch (message.t) {
    case 'create':
      void reply(message.id, async () => {
        const { sid } = message
        const console = message.console ? (level: string, text: string) => post({ t: 'console', sid, level, message: text }) : undefined
        sandboxes.set(sid, await Sandbox.create({ ...message.options, console }))
      })
      break
    case 'adopt':
      void reply(message.id, async () => sandbox(message.sid).adoptState(message.state))
      break
    case 'capture':
      // The captured pages are a buffer of their own: moved, they cost the host no copy (up to the whole memory).
      void reply(
        message.id,
        () => sandbox(message.sid).captureState(),
        (state) => [state.bytes.buffer as ArrayBuffer],
      )
      break
    case 'load':
      void reply(message.id, async () => {
        const box = sandbox(message.sid)
        const { cost } = await box.loadScript(message.code, message.turn)
        return { cost, exports: box.exports }
      })
      break
    case 'call':
      void reply(message.id, () => {
        const onRequest: HostRequestHandler = (op, args, meter) => {
          const rid = nextRequest++
          return new Promise((resolve, reject) => {
            answers.set(rid, { resolve, reject, meter })
            post({ t: 'request', id: message.id, rid, op, args, schedule: meter.schedule.version, allowance: meter.allowance })
          })
        }
        const box = sandbox(message.sid)
        return message.previousJson === undefined
          ? box.runCall(message.method, message.argsJson, message.turn, onRequest)
          : box.runUpgradeHook(message.previousJson, message.turn, onRequest)
      })
      break
    case 'answer': {
      const waiting = answers.get(message.rid)
      answers.delete(message.rid)
      if (!waiting) break
      try {
        waiting.meter.absorb(message.charged)
        if (message.error) throw fromCrossing(message.error)
        waiting.resolve(message.value)
      } catch (err) {
        waiting.reject(err as Error)
      }
      break
    }
    case 'dispose':
      sandboxes.get(message.sid)?.dispose()
      sandboxes.delete(message.sid)
      break
  }
})
