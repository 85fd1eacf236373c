/**
 * The SHA-256 values a log holds or is replayed with: a code's version hash, and the seeds of turns
 * derived from a logged seed. On Node's crypto (synchronous); the client, which runs in browsers too,
 * checks a code hash with WebCrypto (client/rpc-client.ts), and needs nothing else of this module.
 */
import { createHash } from 'node:crypto'

/** A code's version hash: SHA-256 (hex) of its text, as UTF-8. */
export function codeHash(code: string): string {
  return createHash('sha256').update(code, 'utf8').digest('hex')
}

/** A turn's seed derived from a logged one, for the turn `label` names: each draws its own numbers. */
export function derivedSeed(seed: string, label: string): string {
  return createHash('sha256').update(`${seed}:${label}`).digest('hex').slice(0, 32)
}

/** The init turn's seed, derived from the logged one so top level and init draw different numbers. */
export function initSeed(seed: string): string {
  return derivedSeed(seed, 'init')
}
