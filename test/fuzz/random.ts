/**
 * Seeded randomness for the RPC fuzz tests: the seed, the PRNG, and random JSON values. A run is
 * reproducible from its seed (LIBVMS_FUZZ_SEED=<number> runs another one).
 */

export const SEED = Number(process.env.LIBVMS_FUZZ_SEED ?? 0x5eed1e55) >>> 0

/** sfc32: small, fast, good enough, and the same on every platform. */
export class Rng {
  private a = 0x9e3779b9
  private b = 0x243f6a88
  private c = 0xb7e15162
  private d: number

  constructor(seed: number) {
    this.d = seed >>> 0
    for (let i = 0; i < 16; i++) this.u32()
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0
    this.d = (this.d + 1) | 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) | 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.c = (this.c + t) | 0
    return t >>> 0
  }

  /** 0 ≤ n < max */
  int(max: number): number {
    return Math.floor((this.u32() / 2 ** 32) * max)
  }

  /** lo ≤ n ≤ hi */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1)
  }

  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n)
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff
    return out
  }

  hex(chars: number): string {
    let s = ''
    while (s.length < chars) s += (this.u32() >>> 0).toString(16).padStart(8, '0')
    return s.slice(0, chars)
  }

  ascii(n: number): string {
    let s = ''
    for (let i = 0; i < n; i++) s += String.fromCharCode(32 + this.int(95))
    return s
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1)
      ;[items[i], items[j]] = [items[j], items[i]]
    }
    return items
  }
}

// ---- values ----

const STRINGS = [
  '',
  'a',
  'ü',
  '😀',
  '\u0000',
  '\ud800',
  '\udc00\ud800',
  '"\\',
  '\n\r\t',
  '$bytes',
  '$esc',
  '__proto__',
  'constructor',
  '\u2028\u2029',
  '\ufeff',
]

export function randomString(rng: Rng): string {
  switch (rng.int(4)) {
    case 0:
      return rng.pick(STRINGS)
    case 1:
      return rng.ascii(rng.int(24))
    case 2:
      return rng.pick(STRINGS) + rng.ascii(rng.int(8)) + rng.pick(STRINGS)
    default:
      return 'x'.repeat(rng.int(3000))
  }
}

/**
 * A random JSON value (finite numbers only; objects without a prototype, so a "__proto__" key is an
 * ordinary key). `plain` leaves out "$bytes"/"$esc" keys (for signed calls, whose arguments must be
 * signed exactly as the server re-encodes them).
 */
export function randomValue(rng: Rng, depth = 0, plain = false): unknown {
  switch (rng.int(depth >= 3 ? 5 : 7)) {
    case 0:
      return null
    case 1:
      return rng.chance(0.5)
    case 2:
      return rng.pick([0, -1, 1.5, -0.25, 2 ** 53, -(2 ** 31), 1e308, -1e308, 5e-324, Number.MAX_SAFE_INTEGER])
    case 3:
      return randomString(rng)
    case 4:
      return rng.int(1_000_000) - 500_000
    case 5:
      return Array.from({ length: rng.int(5) }, () => randomValue(rng, depth + 1, plain))
    default: {
      const obj = Object.create(null) as Record<string, unknown>
      for (let i = rng.int(4); i > 0; i--) {
        let key = randomString(rng).slice(0, 40)
        if (plain && key.startsWith('$')) key = `_${key}`
        obj[key] = randomValue(rng, depth + 1, plain)
      }
      return obj
    }
  }
}

export function randomArgs(rng: Rng, plain = false): unknown[] {
  return Array.from({ length: rng.int(5) }, () => randomValue(rng, 0, plain))
}
