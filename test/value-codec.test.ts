/**
 * The value codec in both realms: the host's (codec/value-codec.ts, the text of
 * codec/tagged-json.vm.js compiled on the host) and the same text as the prelude runs it inside a
 * real sandbox (a result is encoded by it, arguments are decoded by it). Over one corpus — bytes,
 * escapes, nesting at the depth bound, refusals — both must write the same text and read the same
 * values, but for the two differences the codec documents, each asserted here as it is.
 */
import assert from 'node:assert/strict'
import test, { type TestContext } from 'node:test'
import {
  decodeValue,
  type EncodedArgs,
  encodeArgs,
  encodeValue,
  MAX_VALUE_DEPTH,
  type TaggedValue,
  taggedArgs,
} from '../src/codec/value-codec.js'
import { EncodingError } from '../src/errors.js'
import { DEFAULT_LIMITS } from '../src/sandbox/limits.js'
import { type CallOutcome, Sandbox } from '../src/sandbox/sandbox.js'

/** Values as source text, evaluated in each realm: [label, expression]. */
const VALUES: [string, string][] = [
  ['zero', '0'],
  ['minus zero', '-0'],
  ['a fraction', '1.5'],
  ['a large number', '1e21'],
  ['a small negative number', '-1e-7'],
  ['the largest safe integer', '9007199254740991'],
  ['an empty string', "''"],
  ['quotes, backslashes and control characters', `'"\\\\ \\u0000 \\u001f \\n \\t'`],
  ['line and paragraph separators, accents and an astral character', `'\\u2028 \\u2029 é 𝄞'`],
  ['a lone surrogate', `'\\ud800 x \\udfff'`],
  ['true', 'true'],
  ['null', 'null'],
  ['an array of mixed values', `[1, 'a', null, false, [2, [3]]]`],
  ['an empty array', '[]'],
  ['an object', '({ a: 1, b: [2, { c: "d" }] })'],
  ['an empty object', '({})'],
  ['integer-like keys, in the order JSON writes them', `({ b: 1, 2: 'two', 1: 'one', a: 0 })`],
  ['an object without a prototype', '(() => { const o = Object.create(null); o.k = 1; return o })()'],
  ['a key named __proto__', `JSON.parse('{"__proto__": {"x": 1}}')`],
  ['no bytes', 'new Uint8Array(0)'],
  ['one byte', 'new Uint8Array([255])'],
  ['two bytes', 'new Uint8Array([0, 128])'],
  ['three bytes', 'new Uint8Array([1, 2, 3])'],
  ['every byte value', 'Uint8Array.from({ length: 256 }, (_, i) => i)'],
  ['a view into a larger buffer', 'new Uint8Array([9, 8, 7, 6, 5]).subarray(1, 4)'],
  ['an ArrayBuffer', 'new Uint8Array([4, 5]).buffer'],
  ['bytes inside objects and arrays', '({ list: [new Uint8Array([1]), { deep: new Uint8Array([2, 3]) }] })'],
  ['an object shaped like a bytes tag', `({ $bytes: 'AQID' })`],
  ['an object shaped like an escape', '({ $esc: 1 })'],
  ['a bytes-like key holding bytes', '({ $bytes: new Uint8Array([1]) })'],
  ['an escape of an escape', `({ $esc: ['$bytes', 'x'] })`],
  ['a tag key beside another key (not a tag)', `({ $bytes: 'AQ==', other: 1 })`],
  ['nested at the depth bound', `(() => { let v = 0; for (let i = 0; i < ${MAX_VALUE_DEPTH}; i++) v = [v]; return v })()`],
  ['objects nested at the depth bound', `(() => { let v = 0; for (let i = 0; i < ${MAX_VALUE_DEPTH}; i++) v = { v }; return v })()`],
  ['nothing (undefined)', 'undefined'],
]

/** Values the codec refuses: [label, expression, the key its message names, if any]. */
const REFUSED: [string, string, string | null][] = [
  ['a function', '({ f: () => 1 })', 'f'],
  ['a BigInt', '[1, 10n]', '1'],
  ['a Symbol', `({ s: Symbol('s') })`, 's'],
  ['NaN', '({ n: NaN })', 'n'],
  ['Infinity', '[Infinity]', '0'],
  ['minus Infinity at the top level', '-Infinity', null],
  ['undefined in an array', '[1, undefined]', null],
  ['a RegExp', '({ r: /x/ })', 'r'],
  ['a Map', '({ m: new Map() })', 'm'],
  ['an instance of a class', '({ p: new (class Point { constructor () { this.x = 1 } })() })', 'p'],
  ['nested one level past the bound', `(() => { let v = 0; for (let i = 0; i <= ${MAX_VALUE_DEPTH}; i++) v = [v]; return v })()`, null],
]

/**
 * A value's structure as plain data, the same function in both realms: types, prototypes, own keys in
 * order, bytes as numbers. (Recursive: used on the shallow values only.)
 */
const DESCRIBE = `function describe (v) {
  if (v === undefined) return ['undefined']
  if (v === null) return ['null']
  if (typeof v === 'number') return ['number', Object.is(v, -0) ? '-0' : String(v)]
  if (typeof v !== 'object') return [typeof v, v]
  if (v instanceof Uint8Array) return ['bytes', Array.from(v)]
  if (Array.isArray(v)) return ['array', v.map(describe)]
  const proto = Object.getPrototypeOf(v)
  const protoName = proto === Object.prototype ? 'Object' : proto === null ? 'null' : ['other', describe(proto)]
  return ['object', protoName, Object.keys(v).map((k) => [k, describe(v[k])])]
}`

const describe = new Function(`${DESCRIBE}; return describe`)() as (v: unknown) => unknown

/** A value made on the host from its source text (in this realm, so its Uint8Array is the codec's). */
function hostValue(expression: string): unknown {
  return new Function(`return (${expression})`)()
}

const SCRIPT = `${DESCRIBE}
const VALUES = [${[...VALUES, ...REFUSED].map(([, expression]) => `() => (${expression})`).join(',\n')}]
exports.make = (i) => VALUES[i]()
exports.describe = (...args) => args.map(describe)
exports.echo = (...args) => args`

const TURN = { timestamp: 0, seed: '0'.repeat(32), callerId: null }

async function withSandbox(t: TestContext): Promise<(method: string, argsJson: string) => Promise<CallOutcome>> {
  const sandbox = await Sandbox.create({ limits: { ...DEFAULT_LIMITS } })
  t.after(() => sandbox.dispose())
  await sandbox.loadScript(SCRIPT, TURN)
  return (method, argsJson) =>
    sandbox.runCall(method, argsJson, TURN, async () => {
      throw new Error('the codec corpus asks the host for nothing')
    })
}

/** What the host's encoder writes of a value, or the refusal it throws. */
function hostEncode(expression: string): { text: string | undefined } | { error: { name: string; message: string } } {
  try {
    return { text: encodeValue(hostValue(expression), 'the result') }
  } catch (err) {
    assert.ok(err instanceof EncodingError, String(err))
    return { error: { name: err.name, message: err.message } }
  }
}

test('a result: the VM writes the same text as the host, value by value', async (t) => {
  const run = await withSandbox(t)
  for (const [i, [label, expression]] of VALUES.entries()) {
    const vm = await run('make', `[${i}]`)
    const host = hostEncode(expression)
    assert.ok(vm.ok, `${label}: the VM refused it: ${JSON.stringify(vm)}`)
    assert.ok('text' in host, `${label}: the host refused it: ${JSON.stringify(host)}`)
    // The sandbox hands the host the VM's text parsed; written again it is the text itself.
    assert.equal(vm.value === undefined ? undefined : JSON.stringify(vm.value), host.text, label)
  }
})

test('a refusal: both realms refuse the same values as EncodingError, with the same message but for how a key is shown', async (t) => {
  const run = await withSandbox(t)
  for (const [j, [label, expression, key]] of REFUSED.entries()) {
    const vm = await run('make', `[${VALUES.length + j}]`)
    const host = hostEncode(expression)
    assert.ok(!vm.ok, `${label}: the VM wrote it: ${JSON.stringify(vm)}`)
    assert.ok('error' in host, `${label}: the host wrote it: ${JSON.stringify(host)}`)
    assert.equal(vm.error.name, 'EncodingError', `${label}: ${JSON.stringify(vm.error)}`)
    assert.equal(host.error.name, 'EncodingError', label)
    // The host quotes the key it names (JSON.stringify); the prelude writes it bare, as the logs
    // written so far hold it (the VM's text is part of the determinism contract).
    const expected = key === null ? host.error.message : host.error.message.replace(` at ${JSON.stringify(key)}`, ` at ${key}`)
    assert.equal(vm.error.message, expected, label)
  }
})

test('arguments: the VM reads the values the host reads from the same text, prototypes and bytes included', async (t) => {
  const run = await withSandbox(t)
  for (const [label, expression] of VALUES) {
    if (label.includes('depth bound') || expression === 'undefined') continue
    const text = encodeArgs([hostValue(expression)]).json
    const vm = await run('describe', text)
    assert.ok(vm.ok, `${label}: ${JSON.stringify(vm)}`)
    assert.deepEqual(vm.value, (decodeValue(text) as unknown[]).map(describe), label)
  }
})

test('an escaped "__proto__", the one text the realms read apart, never reaches a VM: the edge writes it plainly', async (t) => {
  const run = await withSandbox(t)
  const escaped = '[{"$esc":["__proto__",{"x":1}]}]'
  const ownKey = [['object', 'Object', [['__proto__', ['object', 'Object', [['x', ['number', '1']]]]]]]]
  // The documented difference (value-codec.ts, escapedProto): the VM's reviver assigns the escaped key,
  // which sets the decoded object's prototype, as it did when the logs so far were written; the host
  // keeps an own key, so no host value has a prototype a caller chose.
  assert.deepEqual((decodeValue(escaped) as unknown[]).map(describe), ownKey)
  const raw = await run('describe', escaped)
  assert.deepEqual(raw.ok && raw.value, [['object', ['other', ['object', 'Object', [['x', ['number', '1']]]]], []]])
  // No live VM logs the escape (admission rule 2 refuses it on replay): arriving over RPC it is written
  // as the plain own key, which both realms read alike.
  const args = taggedArgs(JSON.parse(escaped))
  assert.deepEqual([args.json, args.reencoded], ['[{"__proto__":{"x":1}}]', true])
  const plain = await run('describe', args.json)
  assert.deepEqual(plain.ok && plain.value, ownKey)
})

test('arguments nested at the depth bound: read and written back by the VM as the host does', async (t) => {
  const run = await withSandbox(t)
  for (const [label, expression] of VALUES.filter(([l]) => l.includes('depth bound'))) {
    // One level is the argument list itself: the argument nests one level less than a result may.
    const outer = hostValue(expression)
    const value = Array.isArray(outer) ? outer[0] : (outer as { v: unknown }).v
    const text = encodeArgs([value]).json
    const vm = await run('echo', text)
    assert.ok(vm.ok, `${label}: ${JSON.stringify(vm).slice(0, 300)}`)
    assert.equal(JSON.stringify(vm.value), encodeValue(decodeValue(text), 'the arguments'), label)
    assert.equal(JSON.stringify(vm.value), text, label)
  }
})

test('tagged arguments as they come over RPC: written once, a needless or malformed tag put in the form the encoder writes', () => {
  const cases: [string, TaggedValue[], string, boolean][] = [
    ['plain values', [1, 'a', { b: [null] }], '[1,"a",{"b":[null]}]', false],
    ['bytes', [{ $bytes: 'AQID' }], '[{"$bytes":"AQID"}]', false],
    ['an escaped tag', [{ $esc: ['$bytes', 'x'] }], '[{"$esc":["$bytes","x"]}]', false],
    ['a needless escape', [{ $esc: ['a', 1] }], '[{"a":1}]', true],
    ['bytes in base64 without padding', [{ $bytes: 'AQ' }], '[{"$bytes":"AQ=="}]', true],
    ['a bytes tag that is not a string', [{ $bytes: 5 }], '[{"$esc":["$bytes",5]}]', true],
  ]
  for (const [label, values, json, reencoded] of cases) {
    const args: EncodedArgs = taggedArgs(values)
    assert.equal(args.json, json, label)
    assert.equal(args.reencoded, reencoded, label)
    assert.equal(JSON.stringify(args.values), args.json, label)
    // What the edge makes of tagged values is what a direct caller's host values encode to.
    assert.equal(encodeArgs(decodeValue(JSON.stringify(values)) as unknown[]).json, args.json, label)
    if (!reencoded) assert.equal(args.values, values, `${label}: kept as they came, not copied`)
  }
  assert.throws(() => taggedArgs([JSON.parse('1e999')]), { name: 'EncodingError', message: /Infinity/ })
  let deep: TaggedValue = 0
  for (let i = 0; i < MAX_VALUE_DEPTH; i++) deep = [deep]
  assert.equal(taggedArgs([(deep as TaggedValue[])[0]]).json.length, 2 * MAX_VALUE_DEPTH + 1, 'the list and its argument at the bound')
  assert.throws(() => taggedArgs([deep]), { name: 'EncodingError', message: /nested deeper than 1000 levels/ })
  assert.throws(() => encodeArgs([deep]), { name: 'EncodingError', message: /nested deeper than 1000 levels/ })
})
