/**
 * How the command line talks: colours only on a terminal and never with NO_COLOR, errors as one line
 * on stderr (a stack trace only under --debug), progress on stderr only on a terminal, values as JSON.
 */
import { inspect } from 'node:util'
import { encodeValue } from '../codec/value-codec.js'
import { DivergenceError } from '../errors.js'

type Stream = NodeJS.WriteStream

function colourful(stream: Stream): boolean {
  const noColor = process.env.NO_COLOR
  if (noColor !== undefined && noColor !== '') return false
  if (process.env.TERM === 'dumb') return false
  return stream.isTTY === true
}

const CODES = { red: [31, 39], green: [32, 39], yellow: [33, 39], dim: [2, 22], bold: [1, 22], cyan: [36, 39] } as const
export type Colour = keyof typeof CODES

export function paint(stream: Stream, colour: Colour, text: string): string {
  if (!colourful(stream)) return text
  const [open, close] = CODES[colour]
  return `\u001b[${open}m${text}\u001b[${close}m`
}

export const out = {
  line(text = ''): void {
    process.stdout.write(`${text}\n`)
  },
  json(value: unknown): void {
    process.stdout.write(`${JSON.stringify(value)}\n`)
  },
  paint(colour: Colour, text: string): string {
    return paint(process.stdout, colour, text)
  },
}

export const err = {
  line(text: string): void {
    process.stderr.write(`${text}\n`)
  },
  /** A status message for a person watching: only on a terminal. */
  note(text: string): void {
    if (process.stderr.isTTY) process.stderr.write(`${paint(process.stderr, 'dim', text)}\n`)
  },
  paint(colour: Colour, text: string): string {
    return paint(process.stderr, colour, text)
  },
}

/** A value as JSON text (byte arrays as {"$bytes": base64}); what JSON cannot hold, as inspect shows it. */
export function formatValue(value: unknown, pretty = false): string {
  if (value === undefined) return 'undefined'
  try {
    const json = encodeValue(value, 'the value') ?? 'null'
    return pretty ? JSON.stringify(JSON.parse(json), null, 2) : json
  } catch {
    return inspect(value, { depth: 6 })
  }
}

/** A failure the user caused on the command line: bad arguments or options (exit code 2). */

/** The error's JSON form, for --json output. */
export function errorJSON(error: unknown): Record<string, unknown> {
  if (error instanceof DivergenceError) return error.toJSON()
  const e = error as { name?: string; code?: string; message?: string; seq?: number }
  const base: Record<string, unknown> = { name: e?.name ?? 'Error', code: e?.code ?? 'ERR_UNKNOWN', message: e?.message ?? String(error) }
  if (typeof e?.seq === 'number') base.seq = e.seq
  return base
}

/** Prints `error` as one line on stderr (with its stack under --debug). */
export function reportError(error: unknown, debug: boolean, hint?: string): void {
  const e = error as { name?: string; code?: string; message?: string; stack?: string }
  const code = typeof e?.code === 'string' && e.code.startsWith('ERR_') ? ` [${e.code}]` : ''
  const message = (e?.message ?? String(error)).replace(/\s*\n\s*/g, ' ')
  const then = hint ? ` — ${hint}` : ''
  // One format everywhere: ✗ <name>: <message> [<code>]
  err.line(`${err.paint('red', '✗')} ${e?.name || 'Error'}: ${message}${code}${then}`)
  if (debug && e?.stack) err.line(e.stack)
}

/**
 * A progress line on stderr — done/total, rate, ETA — redrawn at most 10 times a second, only on a
 * terminal. `clear()` removes it before other output.
 */
export class Progress {
  private readonly enabled = process.stderr.isTTY === true
  private readonly started = performance.now()
  private lastDraw = 0
  private drawn = false

  constructor(private readonly label: string) {}

  update(done: number, total: number): void {
    if (!this.enabled) return
    const now = performance.now()
    if (now - this.lastDraw < 100 && done < total) return
    this.lastDraw = now
    const secs = (now - this.started) / 1000
    const rate = secs > 0 ? done / secs : 0
    const eta = rate > 0 && total > done ? `, ETA ${formatSeconds((total - done) / rate)}` : ''
    const width = 24
    const filled = total > 0 ? Math.min(width, Math.round((done / total) * width)) : 0
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`
    process.stderr.write(`\r\u001b[2K${this.label} ${bar} ${done}/${total} (${Math.round(rate)}/s${eta})`)
    this.drawn = true
  }

  /** A one-line status in place of the bar (e.g. while waiting for new calls). */
  status(text: string): void {
    if (!this.enabled) return
    process.stderr.write(`\r\u001b[2K${paint(process.stderr, 'dim', text)}`)
    this.drawn = true
  }

  clear(): void {
    if (this.enabled && this.drawn) process.stderr.write('\r\u001b[2K')
    this.drawn = false
  }
}

function formatSeconds(secs: number): string {
  if (secs < 60) return `${Math.ceil(secs)}s`
  const m = Math.floor(secs / 60)
  return m < 60 ? `${m}m${Math.round(secs % 60)}s` : `${Math.floor(m / 60)}h${m % 60}m`
}
