/**
 * Random 128-bit values, as 32 hex digits, for what a log records as chosen at random: the seed of
 * each call (the host's choice) and the nonce of each call (its client's choice, log schema 3). Each
 * source draws from a pool of its own, refilled 256 values at a time: about 0.2 µs a value, where
 * randomBytes(16) alone takes 3 to 5. The pool comes from WebCrypto's getRandomValues (Node's and a
 * browser's: the client draws its nonces here).
 */

/** A source of random 32-hex-digit values. */
export function randomHexSource(): () => string {
  let [pool, offset] = [Buffer.alloc(0), 0]
  return () => {
    if (offset + 16 > pool.length) [pool, offset] = [Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(16 * 256)).buffer), 0]
    offset += 16
    return pool.toString('hex', offset - 16, offset)
  }
}
