/**
 * The execution proof of a divergence an audit found: made from the log's own entries
 * (Verifier.proveDivergence) when they show the lie, and sent as a download (GET /api/proof) for
 * `nodevms check-proof`. A lie in the archive alone has none: the verdict then says why.
 */
import type { ServerResponse } from 'node:http'
import { Verifier } from '../audit/verifier.js'
import { HttpError } from '../errors.js'
import type { CallLog } from '../ledger/call-log.js'
import type { VMLimits } from '../sandbox/limits.js'

export interface MadeProof {
  /** The proof as JSON text, null when there is none. */
  text: string | null
  /** What the verdict says of it: its size, or why there is none. */
  summary: { bytes: number; entries: number } | { why: string }
}

/** The execution proof of the divergence at `seq`, if the log's entries alone show it. */
export async function proveDivergence(callLog: CallLog, seq: number, maxLimits: Partial<VMLimits> | undefined): Promise<MadeProof> {
  try {
    const { proof, verdict } = await Verifier.proveDivergence(callLog, seq, { maxLimits })
    if (!verdict.holds) return { text: null, summary: { why: `the log's entries alone do not show it (${verdict.why})` } }
    const text = `${JSON.stringify(proof, null, 1)}\n`
    return { text, summary: { bytes: Buffer.byteLength(text), entries: proof.seq + 1 } }
  } catch (err) {
    return { text: null, summary: { why: (err as Error).message } }
  }
}

/** Sends the last audit's proof as a file to save; 404 when it made none. */
export function sendProof(res: ServerResponse, proof: string | null): void {
  if (proof === null) throw new HttpError(404, 'no execution proof: the last audit found none to make (run one, or it verified)')
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-disposition': 'attachment; filename="execution-proof.json"',
    'content-length': Buffer.byteLength(proof),
  })
  res.end(proof)
}
