/**
 * CallQueue: a VM's live calls waiting for their turn, in one lane per caller — an RPC connection,
 * or, for `executeCall` used directly, the caller's user id. Calls of one lane leave in the order
 * they came; the lanes take turns (round-robin), so a caller with many calls waiting delays its own
 * calls and not the others'.
 *
 * A bounded queue is shared the same way (`room`): while fewer calls than the bound are waiting, any
 * call gets in; at the bound, a call gets in only by taking the place of the newest waiting call of
 * the lane holding the most, and only if that lane holds at least two more than the caller's own (so
 * the shares even out and never swap). The refusal goes to whoever holds the most.
 */

import { counted } from '../wording.js'

/** What a queue lane is keyed by: an RPC connection (an object) or a direct caller's user id (a string, or null). */
export type Lane = unknown

/** Whether one more call of a lane fits a queue bounded at some length, and at whose expense. */
export type QueueRoom =
  | { readonly fits: true; readonly giveWay: null }
  /** It fits once the newest waiting call of `giveWay` gives up its place (refused with `message`). */
  | { readonly fits: true; readonly giveWay: Lane; readonly message: string }
  | { readonly fits: false; readonly message: string }

export class CallQueue<T> {
  /** The calls waiting, per lane with any; the map's order is the order the lanes take their turns in. */
  private readonly lanes = new Map<Lane, T[]>()
  private waiting = 0

  /** Calls waiting for their turn. */
  get length(): number {
    return this.waiting
  }

  /** `lane`'s calls waiting. */
  queuedIn(lane: Lane): number {
    return this.lanes.get(lane)?.length ?? 0
  }

  /** Queues `call` at the end of its lane. */
  push(lane: Lane, call: T): void {
    const calls = this.lanes.get(lane)
    if (calls) calls.push(call)
    else this.lanes.set(lane, [call])
    this.waiting++
  }

  /** The lane whose call `take()` returns next, or undefined when none is waiting. */
  nextLane(): Lane | undefined {
    for (const lane of this.lanes.keys()) return lane
    return undefined
  }

  /** The oldest call of the lane whose turn it is; that lane then goes to the back of the turns. */
  take(): { lane: Lane; call: T } | undefined {
    for (const [lane, calls] of this.lanes) {
      const call = calls.shift() as T
      this.lanes.delete(lane)
      if (calls.length > 0) this.lanes.set(lane, calls)
      this.waiting--
      return { lane, call }
    }
    return undefined
  }

  /** Takes the newest waiting call of `lane` out of the queue. */
  withdrawNewest(lane: Lane): T | undefined {
    const calls = this.lanes.get(lane)
    if (!calls) return undefined
    const call = calls.pop() as T
    if (calls.length === 0) this.lanes.delete(lane)
    this.waiting--
    return call
  }

  /** Takes every waiting call out of the queue. */
  takeAll(): T[] {
    const calls = [...this.lanes.values()].flat()
    this.lanes.clear()
    this.waiting = 0
    return calls
  }

  /** Whether one more call of `lane` fits a queue bounded at `limit` waiting calls (see the top of this file). */
  room(lane: Lane, limit: number): QueueRoom {
    if (this.waiting < limit) return { fits: true, giveWay: null }
    const mine = this.queuedIn(lane)
    let heaviest: Lane = null
    let most = mine + 1
    for (const [other, calls] of this.lanes) {
      if (other !== lane && calls.length > most) {
        heaviest = other
        most = calls.length
      }
    }
    const full = `the VM's queue is full: ${this.waiting} calls waiting to run, at most ${limit} (maxQueuedCalls, --max-queued-calls)`
    if (most > mine + 1) {
      return {
        fits: true,
        giveWay: heaviest,
        message: `${full}, and this caller holds the most of them (${most}): this call gave its place to a caller holding fewer; it was not run, try again later`,
      }
    }
    return {
      fits: false,
      message: `${full}, shared among ${counted(this.lanes.size, 'caller')}; this caller holds ${mine} of them, none holds more than ${mine + 1}: the call was not run, try again later`,
    }
  }
}
