/**
 * Parsers for option values: each refuses a bad value saying what is expected, with a UsageError
 * that names the option, or through commander (which names it: "option '--jobs <n>' argument 'x' is
 * invalid: …", printed as a UsageError too).
 */
import { InvalidArgumentError } from 'commander'
import { UsageError } from '../errors.js'
import type { AuthMode } from '../ledger/log-entry.js'

export function parsePort(value: string): number {
  const port = Number(value)
  if (!/^\d+$/.test(value) || port > 65535) throw new UsageError(`--port must be a number from 0 to 65535, got ${JSON.stringify(value)}`)
  return port
}

/** `value` as a whole number written in digits only, or null. */
function wholeNumber(value: string): number | null {
  return /^\d+$/.test(value) && Number.isSafeInteger(Number(value)) ? Number(value) : null
}

export function parseCount(value: string): number {
  const n = wholeNumber(value)
  if (n === null) throw new InvalidArgumentError('expected a whole number')
  return n
}

/** A whole number of at least 1. */
export function parsePositive(value: string): number {
  const n = parseCount(value)
  if (n === 0) throw new InvalidArgumentError('expected a whole number of at least 1')
  return n
}

/** `--checkpoints <n|off>`: a checkpoint every n calls, or none. */
export function parseCheckpoints(value: string): { every: number } | false {
  if (value === 'off') return false
  const every = wholeNumber(value)
  if (every === null || every === 0) {
    throw new UsageError(`--checkpoints takes a number of calls (at least 1) or 'off', got ${JSON.stringify(value)}`)
  }
  return { every }
}

export function parseAuth(value: string): AuthMode {
  if (value !== 'debug' && value !== 'production')
    throw new UsageError(`--auth must be 'debug' or 'production', got ${JSON.stringify(value)}`)
  return value
}

export function parseTimeout(value: string): number {
  const ms = parseCount(value)
  if (ms === 0) throw new UsageError('--timeout must be at least 1 ms')
  return ms
}

/** `--idle-timeout <ms|off>`: a number of milliseconds (at least 1), or off (0: never). */
export function parseIdleTimeout(value: string): number {
  if (value === 'off') return 0
  const n = wholeNumber(value)
  if (n === null || n === 0) throw new InvalidArgumentError("expected a number of milliseconds (at least 1) or 'off'")
  return n
}

/** `<n|off>` for a limit: a whole number (at least 1), or off (0: no limit). */
export function parseLimitOrOff(value: string): number {
  if (value === 'off') return 0
  const n = wholeNumber(value)
  if (n === null || n === 0) throw new InvalidArgumentError("expected a whole number of at least 1 or 'off'")
  return n
}

/** `--peer <url>`, repeatable: an RPC URL (ws:// or wss://) to fetch from; collected in order. */
export function collectPeers(value: string, previous: string[] = []): string[] {
  if (!/^wss?:\/\/[^/\s]+/.test(value)) throw new InvalidArgumentError("expected a host's RPC URL, such as ws://host:5555/")
  return [...previous, value]
}

/** `--allow-origin <origins|*>`, repeatable: each a comma list; collected in order. */
export function collectOrigins(value: string, previous: string[] = []): string[] {
  const origins = value
    .split(',')
    .map((o) => o.trim())
    .filter((o) => o !== '')
  if (origins.length === 0) throw new InvalidArgumentError("expected an origin (https://app.example), a comma list of them, or '*'")
  for (const origin of origins) {
    if (origin === '*' || origin === 'null') continue
    let parsed: URL | null = null
    try {
      parsed = new URL(origin)
    } catch {}
    if (!parsed || parsed.origin === 'null') {
      throw new InvalidArgumentError(
        `${JSON.stringify(origin)} is not an origin: give scheme://host[:port], e.g. https://app.example, or '*'`,
      )
    }
  }
  return [...previous, ...origins]
}

const BYTE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }

/** A size in bytes: digits, optionally with a binary unit (`512MiB`, `8GiB`, `64M`, `1073741824`). */
export function parseBytes(value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?$/i.exec(value.trim())
  const bytes = match ? Math.floor(Number(match[1]) * (BYTE_UNITS[(match[2] ?? '').toLowerCase()] ?? 1)) : Number.NaN
  if (!Number.isSafeInteger(bytes)) throw new InvalidArgumentError('expected a size in bytes, such as 8GiB, 512MiB or 1073741824')
  return bytes
}
