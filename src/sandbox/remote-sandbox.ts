/**
 * Sandboxes that run on sandbox threads (sandbox-thread.ts), with the same interface as an in-thread
 * Sandbox. Threads come from a pool: each sandbox gets a thread of its own while the pool has fewer
 * than `maxThreads` (LIBVMS_SANDBOX_THREADS, default 8); beyond that, sandboxes share the threads
 * that run the fewest. A thread costs about 3 MB; sharing keeps many small VMs cheap, at the price
 * that VMs on one thread wait for each other.
 *
 * A thread that dies takes its sandboxes with it: their pending work fails with HostFaultError and
 * their VMs rebuild them from their logs, on a fresh thread. The pool is the process's on purpose:
 * the cap bounds the process's memory (per-owner pools would multiply it). It holds threads, not
 * VMs' data: sandbox ids and consoles are each thread's own.
 */
import type { Worker } from 'node:worker_threads'
import { HostFaultError } from '../errors.js'
import { moduleBeside, startModuleWorker } from '../threads.js'
import type { EngineState } from './engine-state.js'
import { costSchedule, HostMeter } from './host-work.js'
import type { CallOutcome, ConsoleSink, ExportInfo, HostRequestHandler, SandboxOptions, TurnContext } from './sandbox.js'
import { runInSlices, sharedCopySteps } from './slices.js'
import { type FromThread, fromCrossing, type LoadReply, type ToThread, toCrossing } from './thread-messages.js'

function maxThreads(): number {
  const configured = Number(process.env.LIBVMS_SANDBOX_THREADS)
  return Number.isSafeInteger(configured) && configured > 0 ? configured : 8
}

const THREAD_ENTRY = moduleBeside(import.meta.url, 'sandbox-thread')

interface Pending {
  resolve: (value: unknown) => void
  reject: (err: Error) => void
  onRequest?: HostRequestHandler
}

type Request = ToThread extends infer M ? (M extends { id: number } ? Omit<M, 'id'> : never) : never

class SandboxThread {
  readonly worker: Worker
  /** The thread's sandboxes, with their consoles. */
  readonly sandboxes = new Map<number, ConsoleSink | undefined>()
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  nextSandbox = 1
  dead: Error | null = null

  constructor(private readonly onDeath: (thread: SandboxThread) => void) {
    this.worker = startModuleWorker(THREAD_ENTRY)
    this.worker.unref()
    this.worker.on('message', (message: FromThread) => this.onMessage(message))
    this.worker.on('error', (err) => this.die(err))
    this.worker.on('exit', (code) => this.die(new Error(`the sandbox thread exited (code ${code})`)))
  }

  /** Sends a request; resolves with the thread's reply. While replies are awaited, the thread keeps the process alive. */
  send<T>(message: Request, onRequest?: HostRequestHandler): Promise<T> {
    if (this.dead) return Promise.reject(new HostFaultError(`the sandbox thread is gone: ${this.dead.message}`))
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref()
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject, onRequest })
      this.worker.postMessage({ ...message, id } as ToThread)
    })
  }

  post(message: ToThread): void {
    if (!this.dead) this.worker.postMessage(message)
  }

  private onMessage(message: FromThread): void {
    switch (message.t) {
      case 'reply': {
        const waiting = this.pending.get(message.id)
        this.pending.delete(message.id)
        if (this.pending.size === 0) this.worker.unref()
        if (message.error) waiting?.reject(fromCrossing(message.error))
        else waiting?.resolve(message.value)
        break
      }
      case 'request': {
        const handler = this.pending.get(message.id)?.onRequest
        const schedule = costSchedule(message.schedule)
        // The thread's meter is mirrored here: the host charges its work, the thread adds the charges.
        const meter = new HostMeter(schedule ?? costSchedule(0)!, message.allowance)
        const answer =
          handler && schedule
            ? handler(message.op, message.args, meter)
            : Promise.reject(new HostFaultError('a System request arrived for a call that is not running'))
        answer.then(
          (value) => this.post({ t: 'answer', rid: message.rid, value, charged: meter.charged }),
          (err) => this.post({ t: 'answer', rid: message.rid, error: toCrossing(err), charged: meter.charged }),
        )
        break
      }
      case 'console':
        this.sandboxes.get(message.sid)?.(message.level, message.message)
        break
    }
  }

  private die(err: Error): void {
    if (this.dead) return
    this.dead = err
    for (const waiting of this.pending.values()) waiting.reject(new HostFaultError(`the sandbox thread failed: ${err.message}`))
    this.pending.clear()
    this.onDeath(this)
    void this.worker.terminate()
  }
}

const threads: SandboxThread[] = []

function assignThread(): SandboxThread {
  const idle = threads.find((thread) => thread.sandboxes.size === 0)
  if (idle) return idle
  if (threads.length < maxThreads()) {
    const thread = new SandboxThread((dead) => threads.splice(threads.indexOf(dead), 1))
    threads.push(thread)
    return thread
  }
  return threads.reduce((least, thread) => (thread.sandboxes.size < least.sandboxes.size ? thread : least))
}

export class RemoteSandbox {
  private exportList: ExportInfo[] = []
  private disposed = false

  private constructor(
    private readonly thread: SandboxThread,
    private readonly sid: number,
  ) {}

  static async create(options: SandboxOptions): Promise<RemoteSandbox> {
    const thread = assignThread()
    const sid = thread.nextSandbox++
    const { console, ...rest } = options
    thread.sandboxes.set(sid, console)
    try {
      await thread.send({ t: 'create', sid, options: rest, console: !!console })
    } catch (err) {
      thread.sandboxes.delete(sid)
      throw err
    }
    return new RemoteSandbox(thread, sid)
  }

  get exports(): ExportInfo[] {
    return this.exportList
  }

  /**
   * Where the script's console lines go from now on (a sandbox made ahead gets its VM's here); the
   * thread forwards them only if the sandbox was created with a console.
   */
  setConsole(sink: ConsoleSink | undefined): void {
    if (!this.disposed) this.thread.sandboxes.set(this.sid, sink)
  }

  async loadScript(code: string, turn: TurnContext): Promise<{ cost: number }> {
    const reply = await this.thread.send<LoadReply>({ t: 'load', sid: this.sid, code, turn })
    this.exportList = reply.exports
    return { cost: reply.cost }
  }

  async adoptState(state: EngineState): Promise<void> {
    if (this.disposed) throw new HostFaultError('the sandbox is disposed')
    // Posted as they are, the pages (up to the whole memory) would be copied in one go as the message
    // is serialized: they cross in a shared buffer, filled in slices.
    const bytes = await runInSlices(sharedCopySteps(state.bytes))
    await this.thread.send({ t: 'adopt', sid: this.sid, state: { ...state, bytes } })
    this.exportList = state.exports
  }

  captureState(): Promise<EngineState> {
    if (this.disposed) return Promise.reject(new HostFaultError('the sandbox is disposed'))
    return this.thread.send<EngineState>({ t: 'capture', sid: this.sid })
  }

  runCall(method: string, argsJson: string, turn: TurnContext, onRequest: HostRequestHandler): Promise<CallOutcome> {
    if (this.disposed) return Promise.reject(new HostFaultError('the sandbox is disposed'))
    return this.thread.send<CallOutcome>({ t: 'call', sid: this.sid, method, argsJson, turn }, onRequest)
  }

  runUpgradeHook(previousJson: string, turn: TurnContext, onRequest: HostRequestHandler): Promise<CallOutcome> {
    if (this.disposed) return Promise.reject(new HostFaultError('the sandbox is disposed'))
    return this.thread.send<CallOutcome>({ t: 'call', sid: this.sid, method: 'upgrade', argsJson: '[]', turn, previousJson }, onRequest)
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    this.thread.post({ t: 'dispose', sid: this.sid })
    this.thread.sandboxes.delete(this.sid)
  }
}
