/**
 * The encoding of values that cross the VM boundary and go into the log: JSON values, plus byte arrays
 * written as {"$bytes": "<base64>"}. A plain object whose only key is "$bytes" or "$esc" is written
 * {"$esc": [key, value]} so it cannot be mistaken for a tag. Anything else (functions, cycles, BigInt, NaN,
 * class instances, undefined inside arrays) is an EncodingError rather than a silent null.
 *
 * The encoding is defined once, in tagged-json.vm.js: the prelude runs that text inside the VM, and this
 * module compiles the same text for the host, with Buffer's base64 (the same bytes, faster) and the
 * host's EncodingError.
 *
 * Depth is bounded: no value nested deeper than MAX_VALUE_DEPTH levels crosses the boundary, in either
 * direction, nor goes into the log. The host's JSON functions recurse, and a value deep enough to
 * exhaust the host's stack would otherwise fail in a different place on every host (or crash it);
 * the bound is checked without recursion, before anything recursive touches the value, so a value
 * too deep is the same EncodingError everywhere.
 */
import { EncodingError } from '../errors.js'
import { TAGGED_JSON_TEXT } from './tagged-json-text.js'

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

/**
 * The text of the value encoding as the prelude holds it: tagged-json.vm.js after its opening comment.
 * It leaves free the names the prelude binds before it (ENCODING_FREE_NAMES).
 */
export const TAGGED_JSON_SOURCE: string = TAGGED_JSON_TEXT.slice(TAGGED_JSON_TEXT.indexOf('*/\n') + 3)

const ENCODING_FREE_NAMES = ['stringify', 'parse', 'isArray', 'isFiniteNumber', 'U8', 'AB', 'getProto', 'ObjectProto', 'show']

interface TaggedJson {
  encode(value: unknown, what: string): string | undefined
  decode(json: string): unknown
}

/**
 * An escaped "__proto__" key. The VM's reviver assigns an escaped key to a new object, so there it sets
 * the value's prototype (as it did when existing logs were written); on the host it is an own key, and
 * no decoded value has a prototype its sender chose.
 */
function escapedProto(v: unknown): TaggedValue | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined
  const esc = (v as { $esc?: unknown }).$esc
  if (!Array.isArray(esc) || esc.length !== 2 || esc[0] !== '__proto__' || Object.keys(v).length !== 1) return undefined
  return { ['__proto__']: esc[1] }
}

/** The shared text compiled for the host, with the host's base64, error and handling of an escaped "__proto__". */
// A function made from text (no node:vm, so that the client runs in a browser; a page's CSP must allow it).
const hostEncoding = new Function(
  ...ENCODING_FREE_NAMES,
  'hostToBase64',
  'hostFromBase64',
  'hostEncodingError',
  'hostEscapedProto',
  `'use strict'
${TAGGED_JSON_SOURCE}
toBase64 = hostToBase64
fromBase64 = hostFromBase64
encodingError = hostEncodingError
const vmReviver = reviver
reviver = function (key, v) { return hostEscapedProto(v) ?? vmReviver(key, v) }
return { encode, decode }`,
)(
  JSON.stringify,
  JSON.parse,
  Array.isArray,
  Number.isFinite,
  Uint8Array,
  ArrayBuffer,
  Object.getPrototypeOf,
  Object.prototype,
  (key: string) => (key === '' ? 'the top level' : JSON.stringify(key)),
  (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'),
  (base64: string) => new Uint8Array(Buffer.from(base64, 'base64')),
  (message: string) => new EncodingError(message),
  escapedProto,
) as TaggedJson

/** Encodes a host value as tagged JSON text; `undefined` stays undefined (a call that returns nothing). */
export function encodeValue(value: unknown, what: string): string | undefined {
  if (value === undefined) return undefined
  if (valueDeeperThan(value)) throw tooDeep(what)
  try {
    return hostEncoding.encode(value, what)
  } catch (err) {
    if (err instanceof EncodingError) throw err
    throw new EncodingError(`${what} cannot be encoded: ${(err as Error).message}`)
  }
}

/** Decodes tagged JSON text into host values (byte arrays become Uint8Array). */
export function decodeValue(json: string | undefined, what = 'the value'): unknown {
  if (json === undefined) return undefined
  if (jsonDeeperThan(json)) throw tooDeep(what)
  return hostEncoding.decode(json)
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

/**
 * A call's arguments in the tagged form a VM logs, with their text: what the sandbox decodes, what
 * counts against maxArgsBytes and what the call's entry logs. Made once, where the arguments arrive
 * (`encodeArgs` from host values, `taggedArgs` from tagged JSON already parsed); nothing after
 * encodes or decodes them again on the host.
 */
export interface EncodedArgs {
  readonly values: TaggedValue[]
  /** JSON.stringify(values). */
  readonly json: string
  /** They arrived in another tagged form (a needless or malformed tag) and were put in this one. */
  readonly reencoded: boolean
}

/** Host values as a call's arguments (an argument list nests at most MAX_VALUE_DEPTH levels, the list included); throws EncodingError. */
export function encodeArgs(args: unknown[]): EncodedArgs {
  const json = encodeValue(args, 'the argument list') ?? '[]'
  return { values: JSON.parse(json) as TaggedValue[], json, reencoded: false }
}

/**
 * Arguments that arrived as tagged JSON, already parsed (a request's params, a signed payload's args),
 * as a call's arguments: bounded in depth like `encodeArgs`, every number finite (JSON.parse makes 1e999
 * infinite), written once; only when the text holds a tag is it decoded and encoded again, so that a
 * needless or malformed tag takes the one form the encoder writes (then `reencoded`). Throws EncodingError.
 */
export function taggedArgs(values: TaggedValue[]): EncodedArgs {
  if (valueDeeperThan(values)) throw tooDeep('the argument list')
  const json = JSON.stringify(values, finiteOnly)
  if (!json.includes('"$')) return { values, json, reencoded: false }
  const written = encodeValue(decodeValue(json, 'the argument list'), 'the argument list') ?? '[]'
  if (written === json) return { values, json, reencoded: false }
  return { values: JSON.parse(written) as TaggedValue[], json: written, reencoded: true }
}
