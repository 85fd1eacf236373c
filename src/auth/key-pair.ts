/**
 * Callers' key pairs for production mode (Ed25519): generate one, check one, and move one as text —
 * the text of a key pair file, so a key made by `nodevms keygen` goes into a page and back. The
 * public key, in hex, is the caller id a VM sees. Saving and loading files is Node's: key-file.ts.
 */
import crypto from 'hypercore-crypto'
import { InvalidArgumentError, KeyFileError } from '../errors.js'

/** What a key pair file (and exportKeyPair's text) says it is. */
export const KEY_FILE_TYPE = 'libvms-key-pair'

export interface KeyPair {
  publicKey: Uint8Array
  secretKey: Uint8Array
}

export function generateKeyPair(): KeyPair {
  return crypto.keyPair()
}

/** True if `keyPair` is an Ed25519 key pair whose secret key belongs to its public key. */
export function isKeyPair(keyPair: unknown): keyPair is KeyPair {
  if (keyPair === null || typeof keyPair !== 'object') return false
  const { publicKey, secretKey } = keyPair as Partial<KeyPair>
  return (
    publicKey instanceof Uint8Array &&
    secretKey instanceof Uint8Array &&
    publicKey.byteLength === 32 &&
    secretKey.byteLength === 64 &&
    crypto.validateKeyPair({ publicKey, secretKey })
  )
}

/** The caller id of a key pair: its public key in hex. */
export function callerIdOf(keyPair: KeyPair): string {
  return hexOf(keyPair.publicKey)
}

/**
 * A key pair as text, the text of a key pair file: `{"type": "libvms-key-pair", "publicKey": hex,
 * "secretKey": hex}`. It holds the secret key: keep it as secret as the key.
 */
export function exportKeyPair(keyPair: KeyPair): string {
  if (!isKeyPair(keyPair))
    throw new InvalidArgumentError('exportKeyPair(keyPair): keyPair must be {publicKey, secretKey} from generateKeyPair()')
  return JSON.stringify({ type: KEY_FILE_TYPE, publicKey: hexOf(keyPair.publicKey), secretKey: hexOf(keyPair.secretKey) })
}

/**
 * The key pair `text` holds (exportKeyPair's text, a key pair file's). Throws KeyFileError
 * (ERR_KEY_FILE_INVALID) naming `what` if it is not one, or its keys do not belong together.
 */
export function importKeyPair(text: string, what = 'the text'): KeyPair {
  let parsed: { type?: unknown; publicKey?: unknown; secretKey?: unknown }
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new KeyFileError('ERR_KEY_FILE_INVALID', `${what} is not a LibVMS key pair file (not JSON)`)
  }
  const hex = (v: unknown, length: number) => typeof v === 'string' && v.length === length && /^[0-9a-f]+$/.test(v)
  if (parsed?.type !== KEY_FILE_TYPE || !hex(parsed.publicKey, 64) || !hex(parsed.secretKey, 128)) {
    throw new KeyFileError(
      'ERR_KEY_FILE_INVALID',
      `${what} is not a LibVMS key pair file: expected {type: "${KEY_FILE_TYPE}", publicKey, secretKey}`,
    )
  }
  const keyPair = { publicKey: bytesOf(parsed.publicKey as string), secretKey: bytesOf(parsed.secretKey as string) }
  if (!isKeyPair(keyPair)) throw new KeyFileError('ERR_KEY_FILE_INVALID', `${what}: its secret key does not belong to its public key`)
  return keyPair
}

function hexOf(bytes: Uint8Array): string {
  let hex = ''
  for (const byte of bytes) hex += byte.toString(16).padStart(2, '0')
  return hex
}

/** Bytes of lowercase hex (checked by the caller). */
function bytesOf(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2)
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16)
  return bytes
}
