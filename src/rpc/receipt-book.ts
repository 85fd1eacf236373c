/**
 * ReceiptBook: what a client has been shown of each VM's log, kept across connections (and, saved
 * as JSON, across processes). Per log it holds the checked receipt signed at the greatest length
 * seen, and with it what that receipt proves: the log's fork, its signed length and tree hash.
 *
 * Two rules follow from it, both checked by RPCClient on every answer (rpc-client.ts):
 * - A call sent once the book holds a receipt signed at length L is logged after the L entries that
 *   receipt proves, so its entry's seq is at least L. An answer of an earlier seq is an old entry
 *   passed off as the answer (whoever holds a copy of the log can make its receipt), not an answer.
 *   The bound is taken when the call is sent, not when its answer comes: answers to calls on other
 *   connections may arrive in another order than their calls were logged.
 * - Two receipts of one log that no append-only log signs both (another fork, or another tree at one
 *   length, or another entry at one seq) are a fork proof: the answer is refused and the proof kept.
 *
 * Invariant: every receipt in a book was checked (verifyReceipt) before it was taken, and a book
 * read from JSON checks every receipt again. A book holds one receipt per log.
 */
import { InvalidArgumentError, ReceiptError } from '../errors.js'
import { compareReceipts, type ForkProof, type ProvenEntry, type Receipt, verifyReceipt } from '../ledger/receipts.js'

export const RECEIPT_BOOK_TYPE = 'libvms-receipt-book'
export const RECEIPT_BOOK_VERSION = 1
/** The most logs a book read from JSON may hold (each costs one signature check to read). */
export const MAX_BOOK_LOGS = 10_000

/** A receipt book as JSON: the latest receipt of each log. */
export interface ReceiptBookJSON {
  type: typeof RECEIPT_BOOK_TYPE
  version: typeof RECEIPT_BOOK_VERSION
  receipts: Receipt[]
}

/** A held receipt and what it proves of its log. */
interface Held {
  receipt: Receipt
  seq: number
  length: number
  fork: number
  treeHash: string
  bytes: Buffer
}

export class ReceiptBook {
  private readonly logs = new Map<string, Held>()

  /** Reads a book saved with `toJSON()`, checking every receipt in it; throws ReceiptError or InvalidArgumentError. */
  static from(json: unknown): ReceiptBook {
    const j = json as Partial<ReceiptBookJSON> | null
    if (j === null || typeof j !== 'object' || j.type !== RECEIPT_BOOK_TYPE || !Array.isArray(j.receipts)) {
      throw new InvalidArgumentError(`not a receipt book: expected {type: "${RECEIPT_BOOK_TYPE}", version, receipts: [...]}`)
    }
    if (j.version !== RECEIPT_BOOK_VERSION) {
      throw new InvalidArgumentError(`receipt book version ${String(j.version)} is not one this LibVMS reads`)
    }
    if (j.receipts.length > MAX_BOOK_LOGS) throw new InvalidArgumentError(`a receipt book holds at most ${MAX_BOOK_LOGS} receipts`)
    const book = new ReceiptBook()
    for (const receipt of j.receipts) {
      const proof = book.note(receipt, verifyReceipt(receipt))
      if (proof) throw new ReceiptError(`the book holds two receipts of log ${receipt.log} that no append-only log signs both`)
    }
    return book
  }

  /** The logs the book holds a receipt of (call log keys, hex). */
  get logKeys(): string[] {
    return [...this.logs.keys()]
  }

  /** The receipt held for `log` (its key, hex): the one signed at the greatest length seen. */
  latest(log: string): Receipt | undefined {
    return this.logs.get(log)?.receipt
  }

  /** The length the held receipt of `log` was signed at (0 if none): a call sent now is logged at a seq at least this. */
  lengthOf(log: string): number {
    return this.logs.get(log)?.length ?? 0
  }

  /**
   * Takes note of a checked receipt (`proven`: what verifyReceipt proved of it). Keeps it if it is
   * signed at a greater length than the one held. Returns the fork proof it makes with the one held,
   * if no append-only log signs both (the held one is then kept), else null.
   */
  note(receipt: Receipt, proven: ProvenEntry): ForkProof | null {
    const held = this.logs.get(proven.log)
    if (held && contradicts(held, proven)) {
      const compared = compareReceipts(held.receipt, receipt)
      if (compared.holds) return compared.proof
    }
    if (!held || proven.length > held.length) {
      const { seq, length, fork, treeHash, bytes } = proven
      this.logs.set(proven.log, { receipt, seq, length, fork, treeHash, bytes })
    }
    return null
  }

  toJSON(): ReceiptBookJSON {
    return { type: RECEIPT_BOOK_TYPE, version: RECEIPT_BOOK_VERSION, receipts: [...this.logs.values()].map((h) => h.receipt) }
  }
}

/** Whether two proven statements of one log cannot both come from an append-only log (the cheap fields; compareReceipts decides). */
function contradicts(held: Held, proven: ProvenEntry): boolean {
  return (
    held.fork !== proven.fork ||
    (held.length === proven.length && held.treeHash !== proven.treeHash) ||
    (held.seq === proven.seq && !held.bytes.equals(proven.bytes))
  )
}
