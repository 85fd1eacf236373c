/**
 * A worker thread that checks call signatures in batches for replay (signature-checks.ts), so an
 * auditor's main thread re-runs calls while this one checks the next calls' signatures.
 */
import { parentPort } from 'node:worker_threads'
import { type SignedCall, signatureVerifies } from './signed-call.js'

export interface SignatureBatch {
  id: number
  items: ({ signed: SignedCall; caller: string } | null)[]
}

parentPort?.on('message', ({ id, items }: SignatureBatch) => {
  parentPort?.postMessage({ id, results: items.map((item) => (item ? signatureVerifies(item.signed, item.caller) : null)) })
})
