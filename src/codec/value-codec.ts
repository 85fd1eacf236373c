/**
 * The encoding of values that cross the VM boundary and go into the log: JSON values, plus byte arrays
 * written as {"$bytes": "<base64>"}. A plain object whose only key is "$bytes" or "$esc" is written
 * {"$esc": [key, value]} so it cannot be mistaken for a tag. Anything else (functions, cycles, BigInt, NaN,
 * class instances, undefined inside arrays) is an EncodingError rather than a silent null.
 *
 * The VM side of the same encoding lives in prelude.ts; both must agree.
 *
 * Depth is bounded: no value nested deeper than MAX_VALUE_DEPTH levels crosses the boundary, in either
 * direction, nor goes into the log. The host's JSON functions recurse, and a value deep enough to
 * exhaust the host's stack would otherwise fail in a different place on every host (or crash it);
 * the bound is checked without recursion, before anything recursive touches the value, so a value
 * too deep is the same EncodingError everywhere.
 */
import { EncodingError } from '../errors.js'

/** A JSON value in the tagged form stored in the log. */
export type TaggedValue = null | boolean | number | string | TaggedValue[] | { [key: string]: TaggedValue }

/**
 * The deepest nesting a value may have (an array or object directly inside an argument list or a
 * result is level 1). Part of the determinism contract: a result nested deeper fails the same way on
 * every host and on replay.
 */
export const MAX_VALUE_DEPTH = 1000

function tooDeep(what: string): EncodingError {
  return new EncodingError(`${what} is nested deeper than ${MAX_VALUE_DEPTH} levels, the most a value may have; flatten it`)
}

/** True if `value` (a host value) has arrays or objects nested more than `max` deep. Never recurses. */
export function valueDeeperThan(value: unknown, max: number = MAX_VALUE_DEPTH): boolean {
  if (value === null || typeof value !== 'object') return false
  const stack: [object, number][] = [[value, 1]]
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [object, number]
    if (depth > max) return true
    if (ArrayBuffer.isView(node) || node instanceof ArrayBuffer) continue
    const children = Array.isArray(node) ? node : Object.values(node)
    for (const child of children) if (child !== null && typeof child === 'object') stack.push([child, depth + 1])
  }
  return false
}

/** True if the JSON text `json` nests arrays or objects more than `max` deep. Never recurses. */
export function jsonDeeperThan(json: string, max: number = MAX_VALUE_DEPTH): boolean {
  // Fast path: nesting needs an opening bracket per level.
  let opening = 0
  for (const bracket of ['[', '{']) {
    for (let i = json.indexOf(bracket); i !== -1 && opening <= max; i = json.indexOf(bracket, i + 1)) opening++
  }
  if (opening <= max) return false
  let depth = 0
  let inString = false
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i)
    if (inString) {
      if (c === 92)
        i++ // backslash: skip the escaped character
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 91 || c === 123) {
      if (++depth > max) return true
    } else if (c === 93 || c === 125) depth--
  }
  return false
}

/**
 * Whether JSON text (already known to parse) names one key twice in an object, anywhere in it. JSON.parse
 * keeps the last; another reader may keep the first, so a signed text with such a key says two things.
 * Keys are compared as decoded ("\u006d" is "m").
 */
export function jsonHasDuplicateKeys(json: string): boolean {
  if (json.indexOf('{') === -1) return false
  const stack: (Set<string> | null)[] = []
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i)
    if (c === 34) {
      const start = i
      for (i++; i < json.length; i++) {
        const d = json.charCodeAt(i)
        if (d === 92) i++
        else if (d === 34) break
      }
      const keys = stack[stack.length - 1]
      if (!keys) continue
      let j = i + 1
      while (j < json.length && (json[j] === ' ' || json[j] === '\t' || json[j] === '\n' || json[j] === '\r')) j++
      if (json[j] !== ':') continue
      const key = JSON.parse(json.slice(start, i + 1)) as string
      if (keys.has(key)) return true
      keys.add(key)
    } else if (c === 123) stack.push(new Set())
    else if (c === 91) stack.push(null)
    else if (c === 93 || c === 125) stack.pop()
  }
  return false
}

function isTagLike(obj: object): boolean {
  let n = 0
  let tag = false
  for (const k in obj) {
    if (++n > 1) return false
    tag = k === '$bytes' || k === '$esc'
  }
  return tag
}

function describe(key: string): string {
  return key === '' ? 'the top level' : JSON.stringify(key)
}

/** Encodes a host value as tagged JSON text; `undefined` stays undefined (a call that returns nothing). */
export function encodeValue(value: unknown, what: string): string | undefined {
  if (value === undefined) return undefined
  if (valueDeeperThan(value)) throw tooDeep(what)
  function replacer(this: Record<string, unknown>, key: string): unknown {
    const raw = this[key]
    switch (typeof raw) {
      case 'string':
      case 'boolean':
        return raw
      case 'number':
        if (!Number.isFinite(raw)) throw new EncodingError(`${what} contains ${raw} at ${describe(key)}, which JSON cannot carry`)
        return raw
      case 'undefined':
        if (Array.isArray(this)) throw new EncodingError(`${what} contains undefined in an array; use null`)
        return undefined
      case 'function':
        throw new EncodingError(`${what} contains a function at ${describe(key)}; only JSON values and byte arrays can be sent`)
      case 'bigint':
        throw new EncodingError(`${what} contains a BigInt at ${describe(key)}; convert it to a string first`)
      case 'symbol':
        throw new EncodingError(`${what} contains a Symbol at ${describe(key)}`)
    }
    if (raw === null) return null
    if (raw instanceof Uint8Array) return { $bytes: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') }
    if (raw instanceof ArrayBuffer) return { $bytes: Buffer.from(raw).toString('base64') }
    if (Array.isArray(raw)) return raw
    const proto = Object.getPrototypeOf(raw)
    if (proto !== Object.prototype && proto !== null) {
      const name = (raw as { constructor?: { name?: string } }).constructor?.name ?? 'non-plain object'
      throw new EncodingError(`${what} contains a ${name} at ${describe(key)}; only plain objects, arrays and Uint8Array can be sent`)
    }
    if (isTagLike(raw as object)) {
      const [key] = Object.keys(raw as object)
      return { $esc: [key, (raw as Record<string, unknown>)[key]] }
    }
    return raw
  }
  try {
    return JSON.stringify(value, replacer)
  } catch (err) {
    if (err instanceof EncodingError) throw err
    throw new EncodingError(`${what} cannot be encoded: ${(err as Error).message}`)
  }
}

function reviver(_key: string, v: unknown): unknown {
  if (v !== null && typeof v === 'object' && !Array.isArray(v) && isTagLike(v)) {
    const tagged = v as { $bytes?: unknown; $esc?: unknown }
    if (typeof tagged.$bytes === 'string') return new Uint8Array(Buffer.from(tagged.$bytes, 'base64'))
    const esc = tagged.$esc
    if (Array.isArray(esc) && esc.length === 2 && typeof esc[0] === 'string') return { [esc[0]]: esc[1] }
  }
  return v
}

/** Decodes tagged JSON text into host values (byte arrays become Uint8Array). */
export function decodeValue(json: string | undefined, what = 'the value'): unknown {
  if (json === undefined) return undefined
  if (jsonDeeperThan(json)) throw tooDeep(what)
  return json.includes('"$') ? JSON.parse(json, reviver) : JSON.parse(json)
}

function finiteOnly(_key: string, v: unknown): unknown {
  if (typeof v === 'number' && !Number.isFinite(v)) throw new EncodingError(`the value contains ${v}, which JSON cannot carry`)
  return v
}

/**
 * Turns a tagged value (from the log, or parsed from a request) back into a host value. A number
 * JSON.parse made infinite (1e999) is refused, never turned into null.
 */
export function fromTagged(value: TaggedValue | undefined, what = 'the value'): unknown {
  if (value === undefined) return undefined
  if (value === null || typeof value !== 'object') return value
  if (valueDeeperThan(value)) throw tooDeep(what)
  return decodeValue(JSON.stringify(value, finiteOnly))
}
