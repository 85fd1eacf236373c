/**
 * Keys and URLs: a call log or files archive is named by its 32-byte public key, written
 * `hyper://<64 hex>`. `dat://<64 hex>` and the bare hex key are accepted too.
 */
import { InvalidArgumentError } from '../errors.js'

const KEY_URL = /^(?:(?:hyper|dat):\/\/)?([0-9a-f]{64})(?:\/.*)?$/i

export function keyToUrl(key: Uint8Array): string {
  return `hyper://${Buffer.from(key).toString('hex')}`
}

/** The key a `hyper://`, `dat://` or bare hex URL names. */
export function parseKeyUrl(url: unknown): Buffer {
  if (typeof url !== 'string') throw new InvalidArgumentError(`Expected a hyper:// URL, got ${typeof url}`)
  const m = KEY_URL.exec(url.trim())
  if (!m) throw new InvalidArgumentError(`Not a hyper:// URL: ${JSON.stringify(url)} (expected hyper://<64 hex digits>)`)
  return Buffer.from(m[1], 'hex')
}

export function toHex(key: Uint8Array): string {
  return Buffer.from(key).toString('hex')
}
