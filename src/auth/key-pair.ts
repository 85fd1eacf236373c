/**
 * Callers' key pairs for production mode (Ed25519): generate one, check one. The public key, in
 * hex, is the caller id a VM sees. Saving and loading them (files) is Node's: key-file.ts.
 */
import crypto from 'hypercore-crypto'

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
  return Buffer.from(keyPair.publicKey).toString('hex')
}
