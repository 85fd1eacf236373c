/**
 * Reading a bundle's inline source map, just enough to say where a line of the bundle came from: the
 * source file and line of the first mapping on that line. The map is part of the logged code, so an
 * auditor maps a line the same way the host does.
 */

import { ScriptError } from '../errors.js'

const INLINE_MAP = /\n\/\/# sourceMappingURL=data:application\/json;base64,([A-Za-z0-9+/=]+)\s*$/
const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
/** Beyond this many bytes of map, no mapping is attempted (a line number is a nicety, not worth a huge decode). */
const MAX_MAP_BYTES = 16 * 1024 * 1024

interface RawSourceMap {
  version: number
  sources: string[]
  mappings: string
}

/** Where line `line` (1-based) of `code` came from, by its inline source map; null without one or a mapping. */
export function originalPosition(code: string, line: number): { file: string; line: number } | null {
  const match = INLINE_MAP.exec(code)
  if (!match || match[1].length > MAX_MAP_BYTES) return null
  let map: RawSourceMap
  try {
    map = JSON.parse(Buffer.from(match[1], 'base64').toString('utf8')) as RawSourceMap
  } catch {
    return null
  }
  if (map.version !== 3 || !Array.isArray(map.sources) || typeof map.mappings !== 'string') return null
  const lines = map.mappings.split(';')
  if (line < 1 || line > lines.length) return null
  // Source index and original line are deltas carried across every segment of every line before.
  let source = 0
  let originalLine = 0
  for (let i = 0; i < line; i++) {
    for (const segment of lines[i].split(',')) {
      if (segment === '') continue
      const fields = decodeVLQ(segment)
      if (fields === null) return null
      if (fields.length >= 4) {
        source += fields[1]
        originalLine += fields[2]
        if (i === line - 1) {
          const file = map.sources[source]
          return typeof file === 'string' ? { file, line: originalLine + 1 } : null
        }
      }
    }
  }
  return null
}

/** A segment's base64 VLQ fields, or null if it is not one. */
function decodeVLQ(segment: string): number[] | null {
  const fields: number[] = []
  let value = 0
  let shift = 0
  for (const char of segment) {
    const digit = BASE64.indexOf(char)
    if (digit < 0) return null
    value += (digit & 31) << shift
    if (digit & 32) {
      shift += 5
      if (shift > 30) return null
      continue
    }
    fields.push(value & 1 ? -(value >>> 1) : value >>> 1)
    value = 0
    shift = 0
  }
  return shift === 0 ? fields : null
}

/**
 * `error` pointing at the source file and line of a bundled script (by `code`'s source map), when it
 * is a ScriptError that names a line of the bundle; otherwise `error` itself.
 */
export function inScriptSources(error: unknown, code: string): unknown {
  if (!(error instanceof ScriptError) || error.line === undefined || error.file !== undefined) return error
  const at = originalPosition(code, error.line)
  if (!at) return error
  const message = error.message.replace(/ \(script line \d+\)$/, '')
  return new ScriptError(error.scriptErrorName, message, at.line, at.file)
}
