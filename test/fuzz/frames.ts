/**
 * The fuzzer's frames: malformed and hostile JSON-RPC frames (and valid calls among them), made from the
 * seeded PRNG, in categories weighted by the table CATEGORIES. `generate` makes the next frame for a
 * connection in its current state.
 */

import { encodeCallPayload, signCallPayload } from '../../src/auth/signed-call.js'
import type { generateKeyPair } from '../../src/index.js'
import { type Rng, randomArgs, randomString, randomValue } from './random.js'
import { CLOSE_ABOVE, HANDSHAKE, MAX_MESSAGE_BYTES, METHODS, type Mode, type Session } from './sessions.js'

/** A raw JSON object from [key, raw JSON value] pairs (a value left undefined leaves its key out). */
function rawObject(rng: Rng, pairs: [string, string | undefined][], shuffle = true): string {
  const parts = pairs.filter(([, v]) => v !== undefined).map(([k, v]) => `${JSON.stringify(k)}:${v}`)
  if (shuffle && rng.chance(0.3)) rng.shuffle(parts)
  return `{${parts.join(',')}}`
}

export interface Frame {
  category: string
  data: string | Buffer
  binary: boolean
  /** What the generator knows the server must do, on top of the oracle's rules. */
  intent?: 'run' | 'refuse'
}

function byteLength(data: string | Buffer): number {
  return typeof data === 'string' ? Buffer.byteLength(data) : data.length
}

export function describeFrame(frame: Frame): string {
  const text = typeof frame.data === 'string' ? frame.data : frame.data.toString('latin1')
  const head = text.length > 160 ? `${text.slice(0, 120)}…${text.slice(-30)}` : text
  return `[${frame.category}] ${JSON.stringify(head)} (${byteLength(frame.data)} bytes${frame.binary ? ', binary' : ''}${typeof frame.data === 'string' ? '' : ', raw bytes'})`
}

// ---- the generator ----

export interface Gen {
  rng: Rng
  session: Session
  nextId: () => number
  keyPair: ReturnType<typeof generateKeyPair>
  publicKeyHex: string
  prodCallLogKey: string
  /** Honest signed params from an earlier (closed) connection: its nonce is stale. */
  staleSigned: string | null
}

function req(g: Gen, method: string, params?: string, id: string = String(g.nextId()), clientNonce?: string): string {
  return rawObject(g.rng, [
    ['jsonrpc', '"2.0"'],
    ['id', id],
    ['method', JSON.stringify(method)],
    ['params', params],
    ['clientNonce', clientNonce],
  ])
}

function text(category: string, data: string, intent?: Frame['intent']): Frame {
  return intent ? { category, data, binary: false, intent } : { category, data, binary: false }
}

/**
 * A call the VM must run: debug mode any echo/count, production mode signed with the test's key.
 * `sent`: false when the text is only material for another frame (cut, wrapped), never sent as is.
 */
function validCall(g: Gen, category = 'valid-call', sent = true): Frame {
  const { rng, session } = g
  const method = rng.chance(0.6) ? 'echo' : 'count'
  if (session.mode === 'debug') {
    const params = method === 'count' && rng.chance(0.5) ? undefined : JSON.stringify(randomArgs(rng))
    // A client nonce beside the call, as RPCClient sends one (or none, as a hand-written client).
    const clientNonce = rng.chance(0.5) ? JSON.stringify(rng.hex(32)) : undefined
    return text(category, req(g, method, params, undefined, clientNonce), session.handshaken ? 'run' : undefined)
  }
  const params = signedParams(g, method, JSON.stringify(randomArgs(rng, true)))
  const honest = session.handshaken && session.publicKey === g.publicKeyHex
  if (honest && sent) {
    session.lastSigned = params
    session.lastCounter = session.counter
  }
  return text(category, req(g, method, params), honest && sent ? 'run' : undefined)
}

/** Signed-call params for the current connection (signed with the test's key). */
function signedParams(g: Gen, method: string, argsJson: string, counter = ++g.session.counter): string {
  const payload = encodeCallPayload({
    callLog: g.prodCallLogKey,
    method,
    argsJson,
    nonce: g.session.nonce ?? g.rng.hex(32),
    counter,
    clientNonce: g.rng.hex(32),
  })
  return JSON.stringify(signCallPayload(payload, g.keyPair.secretKey))
}

function handshakeFrame(g: Gen): Frame {
  const { rng, session } = g
  let params: string | undefined
  if (session.mode === 'debug') {
    params = rng.pick([
      () => undefined,
      () => '{}',
      () => JSON.stringify({ user: randomString(rng).slice(0, 1024) || 'u' }),
      () => '{"user":null}',
      () => '{"publicKey":null}',
      () => JSON.stringify({ user: 'x'.repeat(1024) }),
      () => JSON.stringify({ user: '😀'.repeat(512) }),
      () => JSON.stringify({ user: '\ud800' }),
      () => JSON.stringify({ user: 'fuzz', extra: randomValue(rng) }),
    ])()
  } else {
    params = rng.pick([
      () => JSON.stringify({ publicKey: g.publicKeyHex }),
      () => JSON.stringify({ publicKey: g.publicKeyHex }),
      () => JSON.stringify({ publicKey: g.publicKeyHex }),
      () => JSON.stringify({ publicKey: g.publicKeyHex }),
      () => JSON.stringify({ publicKey: g.publicKeyHex, extra: randomValue(rng) }),
      () => '{}',
      () => undefined,
      () => JSON.stringify({ publicKey: rng.hex(64) }),
      () => '{"publicKey":null,"user":null}',
    ])()
  }
  return text(session.handshaken ? 'handshake-again' : 'handshake', req(g, HANDSHAKE, params))
}

function handshakeWrongTypes(g: Gen): Frame {
  const { rng, session } = g
  const userValues = [
    '1',
    '-1',
    '1e308',
    '0',
    '{}',
    '{"id":"alice"}',
    '[]',
    '["alice"]',
    'true',
    'false',
    '""',
    JSON.stringify('x'.repeat(1025)),
    JSON.stringify('😀'.repeat(513)),
    JSON.stringify('y'.repeat(rng.range(1025, 60_000))),
    `${'['.repeat(500)}${']'.repeat(500)}`,
  ]
  const keyValues = [
    JSON.stringify(rng.hex(64).toUpperCase()),
    JSON.stringify(rng.hex(63)),
    JSON.stringify(rng.hex(65)),
    JSON.stringify(rng.hex(128)),
    JSON.stringify('g'.repeat(64)),
    JSON.stringify(` ${rng.hex(64)}`),
    '1',
    '{}',
    '[]',
    '""',
    'true',
    JSON.stringify(g.publicKeyHex),
  ]
  const params = rng.pick([
    () => rawObject(rng, [['user', rng.pick(userValues)]]),
    () => rawObject(rng, [['publicKey', rng.pick(keyValues)]]),
    () =>
      rawObject(rng, [
        ['user', rng.pick(userValues)],
        ['publicKey', rng.pick(keyValues)],
      ]),
    () => rng.pick(['[]', '["alice"]', '"alice"', '5', 'null', 'true', '1e999', '[{"user":"alice"}]']),
    () => (session.mode === 'debug' ? rawObject(rng, [['publicKey', rng.pick(keyValues)]]) : rawObject(rng, [['user', '"alice"']])),
  ])()
  return text('handshake-wrong-types', req(g, HANDSHAKE, params))
}

const NOT_JSON = [
  '',
  ' ',
  '\n',
  'this is not json',
  'undefined',
  'NaN',
  'Infinity',
  '-Infinity',
  '{',
  '}',
  '[',
  "{'jsonrpc':'2.0'}",
  '{jsonrpc:"2.0",id:1,method:"echo"}',
  '{"jsonrpc":"2.0",}',
  '[1,]',
  '01',
  '+1',
  '.5',
  '1.',
  '0x10',
  '1e',
  '--1',
  '"unterminated',
  '"\\x41"',
  '"\\u12"',
  '// comment\n{}',
  '/* c */ {}',
  '{"a":1}{"b":2}',
  '{"a":1} x',
  '\u0000',
  'true false',
  'nul',
  'tru',
  '{"jsonrpc":"2.0","id":1,"method":"echo","params":[1,2,]}',
  '{"jsonrpc":"2.0","id":1,"method":"echo","params":["a\nb"]}',
  '{"jsonrpc":"2.0","id":1,"method":"echo","params":["\t"]}',
  '\u00a0{}',
]

function notJson(g: Gen): Frame {
  const { rng } = g
  if (rng.chance(0.6)) return text('not-json', rng.pick(NOT_JSON))
  // Random printable text: a "{" prefix makes sure it is no JSON scalar.
  return text('not-json', `{${rng.ascii(rng.int(200))}`)
}

function truncatedJson(g: Gen): Frame {
  const full = validCall(g, 'truncated-json', false).data as string
  return text('truncated-json', full.slice(0, g.rng.int(full.length)))
}

const BAD_UTF8 = [
  [0xff],
  [0xfe, 0xff],
  [0x80],
  [0xbf],
  [0xc0, 0xaf],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf5, 0x80, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xe2, 0x82],
  [0xf0, 0x9f, 0x98],
  [0xc3],
]

function invalidUtf8(g: Gen): Frame {
  const { rng } = g
  const bad = Buffer.from(rng.pick(BAD_UTF8))
  let data: Buffer
  switch (rng.int(4)) {
    case 0:
      data = bad
      break
    case 1: {
      // Inside an otherwise valid call, in a string argument.
      const [head, tail] = req(g, 'echo', '["@@"]').split('@@')
      data = Buffer.concat([Buffer.from(head), bad, Buffer.from(tail)])
      break
    }
    case 2: {
      // In the method name of a handshake.
      const [head, tail] = req(g, 'rpc.handshake@@', '{}').split('@@')
      data = Buffer.concat([Buffer.from(head), bad, Buffer.from(tail)])
      break
    }
    default:
      data = Buffer.concat([rng.bytes(rng.int(64)), bad, rng.bytes(rng.int(64))])
  }
  return { category: 'invalid-utf8', data, binary: false }
}

function binaryFrame(g: Gen): Frame {
  const { rng } = g
  const data = rng.pick([
    () => Buffer.from(validCall(g, 'binary', false).data as string),
    () => Buffer.from(handshakeFrame(g).data as string),
    () => rng.bytes(rng.int(512)),
    () => Buffer.alloc(0),
    () => Buffer.from([0xff, 0xfe]),
  ])()
  return { category: 'binary', data, binary: true }
}

function nonObject(g: Gen): Frame {
  const { rng } = g
  const one = () => validCall(g, 'non-object', false).data as string
  return text(
    'non-object',
    rng.pick([
      () => '[]',
      () => `[${one()}]`,
      () => `[${one()},${one()},${one()}]`,
      () => `[${handshakeFrame(g).data as string}]`,
      () => 'null',
      () => 'true',
      () => 'false',
      () => '0',
      () => '-1',
      () => '1e999',
      () => '1e308',
      () => JSON.stringify(randomString(rng)),
      () => JSON.stringify(one()),
      () => `${'['.repeat(rng.range(1, 20_000))}${']'.repeat(0)}`,
      () => {
        const d = rng.range(1, 20_000)
        return `${'['.repeat(d)}${']'.repeat(d)}`
      },
      () => JSON.stringify(randomArgs(rng)),
    ])(),
  )
}

function badJsonrpc(g: Gen): Frame {
  const { rng } = g
  const version = rng.pick([
    undefined,
    '"1.0"',
    '"2"',
    '2',
    '2.0',
    '"2.0 "',
    '" 2.0"',
    '"2.0\\u0000"',
    'null',
    '["2.0"]',
    '{"v":"2.0"}',
    '"２.０"',
    '""',
    'true',
  ])
  const method = rng.pick(['echo', 'count', HANDSHAKE, 'nope'])
  return text(
    'bad-jsonrpc',
    rawObject(rng, [
      ['jsonrpc', version],
      ['id', String(g.nextId())],
      ['method', JSON.stringify(method)],
      ['params', method === HANDSHAKE ? '{}' : '[]'],
    ]),
  )
}

function badId(g: Gen): Frame {
  const { rng } = g
  const n = g.nextId()
  const id = rng.pick([
    // Not usable ids: answered with id null.
    '{}',
    '{"id":1}',
    '[]',
    `[${n}]`,
    'true',
    'false',
    'null',
    JSON.stringify('x'.repeat(257)),
    JSON.stringify('😀'.repeat(129)),
    JSON.stringify('y'.repeat(rng.range(257, 30_000))),
    '1e999',
    '-1e999',
    'NaN',
    'Infinity',
    'undefined',
    `${'['.repeat(2000)}${']'.repeat(2000)}`,
    // Odd but valid ids: echoed back.
    `${n}.5`,
    `-${n}`,
    `${n}e0`,
    `${n}00000000000000000000000`,
    '1e308',
    '-1.7976931348623157e308',
    '5e-324',
    '-0',
    '0',
    '""',
    JSON.stringify('z'.repeat(256)),
    JSON.stringify('😀'.repeat(128)),
    JSON.stringify(`\ud800${n}`),
    JSON.stringify(`id-${n}-${randomString(rng).slice(0, 100)}`),
    '9007199254740993',
    `1e-${rng.range(300, 400)}`,
    `"NaN-${n}"`,
    `"Infinity-${n}"`,
  ])
  const [method, params] = rng.pick([
    ['echo', JSON.stringify(randomArgs(rng))],
    ['count', '[]'],
    ['nope', '[]'],
    ['echo', '{}'],
  ] as const)
  return text('bad-id', req(g, method, params, id))
}

function notification(g: Gen): Frame {
  const { rng } = g
  const method = rng.pick(['echo', 'count', HANDSHAKE, 'nope'])
  return text(
    'notification',
    rawObject(rng, [
      ['jsonrpc', '"2.0"'],
      ['id', rng.chance(0.3) ? 'null' : undefined],
      ['method', JSON.stringify(method)],
      ['params', method === HANDSHAKE ? '{}' : '[]'],
    ]),
  )
}

/** Names an object has through its prototype (or that a careless dispatcher might look up). */
const PROTOTYPE_NAMES = [
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'valueOf',
  'isPrototypeOf',
  '__defineGetter__',
  '__lookupGetter__',
  'prototype',
  'then',
  'call',
  'apply',
  'bind',
  'length',
  'exports',
  'System',
  'eval',
]

const UNKNOWN_METHODS = [
  'rpc.',
  'rpc.handshake ',
  ' rpc.handshake',
  'RPC.HANDSHAKE',
  'rpc.handShake',
  'rpc.handshake\u0000',
  'Echo',
  'echo ',
  'echo\u0000',
  'count\n',
  'echo.call',
  '../echo',
  '',
  '\ud800',
  '😀',
]

function unknownMethod(g: Gen): Frame {
  const { rng } = g
  const [category, method] = rng.pick([
    () => ['init', 'init'],
    () => ['prototype-method', rng.pick(PROTOTYPE_NAMES)],
    () => ['prototype-method', rng.pick(PROTOTYPE_NAMES)],
    () => ['unknown-method', rng.pick(UNKNOWN_METHODS)],
    () => ['unknown-method', rng.pick(UNKNOWN_METHODS)],
    () => ['unknown-method', rng.ascii(rng.range(1, 5000))],
    () => ['unknown-method', `x${randomString(rng)}`],
  ])()
  const params = rng.pick([undefined, '[]', JSON.stringify(randomArgs(rng)), '{}'])
  return text(category, req(g, method, params))
}

function methodType(g: Gen): Frame {
  const { rng } = g
  const method = rng.pick([
    undefined,
    '1',
    'null',
    'true',
    '{}',
    '["echo"]',
    '{"name":"echo"}',
    '1e999',
    `${'['.repeat(1000)}${']'.repeat(1000)}`,
  ])
  return text(
    'method-type',
    rawObject(rng, [
      ['jsonrpc', '"2.0"'],
      ['id', String(g.nextId())],
      ['method', method],
      ['params', '[]'],
    ]),
  )
}

function badParams(g: Gen): Frame {
  const { rng } = g
  const params = rng.pick([
    '{}',
    '{"0":1,"length":1}',
    '"echo"',
    '""',
    '1',
    '-1',
    '1e308',
    'null',
    'true',
    'false',
    '{"__proto__":[]}',
    '{"args":[1]}',
    '{"payload":"x","signature":"y"}',
    JSON.stringify(randomString(rng)),
    JSON.stringify(Object.fromEntries([[randomString(rng).slice(0, 10), randomValue(rng)]])),
  ])
  return text('bad-params', req(g, rng.pick(METHODS), params))
}

function nested(rng: Rng, depth: number): string {
  switch (rng.int(3)) {
    case 0:
      return `${'['.repeat(depth)}${']'.repeat(depth)}`
    case 1:
      return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`
    default: {
      const half = depth >> 1
      return `${'[{"a":'.repeat(half)}null${'}]'.repeat(half)}`
    }
  }
}

function deepNesting(g: Gen): Frame {
  const { rng } = g
  const depth = rng.pick([10, 50, 64, 65, 100, 500, 1000, 5000, 10_000, 20_000, 30_000])
  const deep = nested(rng, depth)
  const where = rng.int(6)
  const data =
    where === 0
      ? req(g, HANDSHAKE, rawObject(rng, [['user', deep]]))
      : where === 1
        ? rawObject(rng, [
            ['jsonrpc', '"2.0"'],
            ['id', String(g.nextId())],
            ['method', '"echo"'],
            ['params', '[]'],
            ['extra', deep],
          ])
        : req(g, rng.pick(METHODS), rng.chance(0.3) ? deep : `[${deep}]`)
  return text('deep-nesting', data)
}

/** Numbers JSON can write that a double cannot hold, or barely can. Non-finite ones only at the top level. */
function hugeNumber(g: Gen): Frame {
  const { rng } = g
  const finite = [
    '1e308',
    '-1e308',
    '1.7976931348623157e308',
    '5e-324',
    '-5e-324',
    '-0',
    '1e-999',
    '123456789012345678901234567890',
    '9007199254740993',
    `0.${'1'.repeat(rng.range(100, 5000))}`,
    `-${'9'.repeat(rng.range(20, 300))}`,
    '0.1e-400',
  ]
  const infinite = ['1e999', '-1e999', '1E+400', `1${'0'.repeat(rng.range(309, 5000))}`]
  const args: string[] = []
  for (let i = rng.range(1, 4); i > 0; i--) {
    switch (rng.int(4)) {
      case 0:
        args.push(rng.pick(infinite))
        break
      case 1:
        args.push(`[${rng.pick(rng.int(4) === 0 ? infinite : finite)}]`)
        break
      case 2:
        args.push(`{"n":${rng.pick(rng.int(4) === 0 ? infinite : finite)}}`)
        break
      default:
        args.push(rng.pick(finite))
    }
  }
  return text('huge-number', req(g, rng.pick(METHODS), `[${args.join(',')}]`))
}

function loneSurrogates(g: Gen): Frame {
  const { rng } = g
  const s = rng.pick(['\\ud800', '\\udfff', '\\udc00\\ud800', '\\ud83d', 'a\\ud800b', '\\ud83d\\ude00', '\\ude00\\ud83d', '\\ud800\\ud800'])
  return text(
    'lone-surrogate',
    rng.pick([
      () => req(g, 'echo', `["${s}"]`),
      () => req(g, 'echo', `[{"${s}":"${s}"}]`),
      () => req(g, 'echo', `[["${s}",{"k${s}":["${s}"]}]]`),
      () => req(g, `echo${s}`, '[]'),
      () => req(g, 'echo', '[]', `"${s}-${g.nextId()}"`),
      () => req(g, HANDSHAKE, `{"user":"${s}"}`),
      () =>
        rawObject(rng, [
          ['jsonrpc', `"2.0${s}"`],
          ['id', String(g.nextId())],
          ['method', '"echo"'],
        ]),
    ])(),
  )
}

function bytesTag(g: Gen): Frame {
  const { rng } = g
  const big = Buffer.from(rng.bytes(rng.range(1000, 40_000))).toString('base64')
  const tag = rng.pick([
    '{"$bytes":5}',
    '{"$bytes":null}',
    '{"$bytes":""}',
    '{"$bytes":"!!!!"}',
    '{"$bytes":"AAAA","x":1}',
    '{"$bytes":["AA=="]}',
    '{"$bytes":{"$bytes":"AA=="}}',
    '{"$bytes":"AA==","$esc":1}',
    '{"$bytes":"\\ud800"}',
    '{"$bytes":"====="}',
    '{"$BYTES":"AA=="}',
    '{"$esc":1}',
    '{"$esc":[]}',
    '{"$esc":["$bytes"]}',
    '{"$esc":["$bytes","AA=="]}',
    '{"$esc":[1,2]}',
    '{"$esc":["__proto__",{"polluted":true}]}',
    '{"$esc":["constructor",{"prototype":{"polluted":true}}]}',
    '{"$esc":["$esc",{"$esc":["$bytes",{"$bytes":"AA=="}]}]}',
    `{"$bytes":"${big}"}`,
    `[{"$bytes":"${big.slice(0, 1000)}"},{"$bytes":"AA=="}]`,
  ])
  return text('bytes-tag', req(g, 'echo', rng.chance(0.5) ? `[${tag}]` : `[1,${tag},[${tag}]]`))
}

function prototypeKeys(g: Gen): Frame {
  const { rng } = g
  const n = g.nextId()
  return text(
    'prototype-keys',
    rng.pick([
      `{"__proto__":{"jsonrpc":"2.0","id":${n},"method":"echo","params":[]}}`,
      `{"jsonrpc":"2.0","__proto__":{"id":${n}},"method":"echo","params":[]}`,
      `{"jsonrpc":"2.0","id":${n},"__proto__":{"method":"echo"}}`,
      `{"jsonrpc":"2.0","id":${n},"method":"echo","params":[{"__proto__":{"polluted":true}}]}`,
      `{"jsonrpc":"2.0","id":${n},"method":"echo","params":{"__proto__":[],"length":0}}`,
      `{"jsonrpc":"2.0","id":${n},"method":"rpc.handshake","params":{"__proto__":{"user":1}}}`,
      `{"constructor":{"prototype":{"polluted":true}},"jsonrpc":"2.0","id":${n},"method":"count","params":[]}`,
      `{"jsonrpc":"2.0","id":${n},"method":"echo","params":[{"constructor":{"prototype":{"polluted":true}}}]}`,
      `{"jsonrpc":"2.0","id":${n},"method":"hasOwnProperty","params":["echo"]}`,
      `{"jsonrpc":"2.0","id":${n},"id":"${n}-dup","method":"echo","params":[]}`,
      `{"jsonrpc":"2.0","id":${n},"method":"nope","method":"echo","params":[]}`,
      `{"jsonrpc":"1.0","jsonrpc":"2.0","id":${n},"method":"count"}`,
    ]),
  )
}

/** A frame of exactly `size` bytes (ASCII padding), of one of several kinds. */
function sized(g: Gen, size: number): { data: string | Buffer; binary: boolean } {
  const { rng } = g
  const kind = rng.int(5)
  if (kind === 0) return { data: rng.bytes(size), binary: true }
  if (kind === 1) return { data: Buffer.concat([Buffer.from([0xff]), Buffer.alloc(size - 1, 0x20)]), binary: false }
  if (kind === 2) return { data: `{${'x'.repeat(size - 1)}`, binary: false }
  const call = kind === 3 ? req(g, 'echo', `["@@"]`) : req(g, 'count', '[]')
  const room = size - Buffer.byteLength(call) + (kind === 3 ? 2 : 0)
  if (room < 0) return { data: 'x'.repeat(size), binary: false }
  return { data: kind === 3 ? call.replace('@@', 'p'.repeat(room)) : call + ' '.repeat(room), binary: false }
}

function oversized(g: Gen): Frame {
  const { rng } = g
  const size = rng.pick([
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_BYTES - 1,
    MAX_MESSAGE_BYTES + 1,
    rng.range(MAX_MESSAGE_BYTES + 1, 2 * MAX_MESSAGE_BYTES),
    rng.range(MAX_MESSAGE_BYTES + 1, 2 * MAX_MESSAGE_BYTES),
    2 * MAX_MESSAGE_BYTES,
    rng.range(2 * MAX_MESSAGE_BYTES, CLOSE_ABOVE),
    CLOSE_ABOVE,
  ])
  return { category: 'oversized', ...sized(g, size) }
}

function tooBigToRead(g: Gen): Frame {
  const size = g.rng.pick([CLOSE_ABOVE + 1, g.rng.range(CLOSE_ABOVE + 1, CLOSE_ABOVE + 200_000)])
  return { category: 'over-max-payload', ...sized(g, size) }
}

/** Production mode: signed calls that are not what they claim. */
function forgedSigned(g: Gen): Frame {
  const { rng, session } = g
  const method = rng.pick(METHODS)
  const args = JSON.stringify(randomArgs(rng, true))
  const nonce = session.nonce ?? rng.hex(32)
  const payloadOf = (fields: Partial<{ callLog: string; method: string; argsJson: string; nonce: string; counter: number }>) =>
    encodeCallPayload({
      callLog: g.prodCallLogKey,
      method,
      argsJson: args,
      nonce,
      counter: ++session.counter,
      clientNonce: rng.hex(32),
      ...fields,
    })
  const sign = (payload: string) => signCallPayload(payload, g.keyPair.secretKey).signature
  /** Params carrying `payload`, signed with the test's key. */
  const signed = (payload: string) => JSON.stringify({ payload, signature: sign(payload) })
  let params: string
  switch (rng.int(12)) {
    case 0:
      params = rng.pick(['[]', '[1]', '"x"', '1', 'null', '{}', '{"payload":1,"signature":"x"}', '{"payload":"x"}', '{"signature":"x"}'])
      break
    case 1:
      params = JSON.stringify({ payload: randomString(rng), signature: rng.hex(128) })
      break
    case 2: {
      const shape = rng.pick([
        { type: 'other' },
        { callLog: 'AB'.repeat(32) },
        { nonce: 'zz' },
        { counter: 0 },
        { counter: -1 },
        { counter: 1.5 },
        { counter: 2 ** 53 },
        { args: { a: 1 } },
        { clientNonce: 'zz' },
        { clientNonce: undefined },
      ])
      const fields = { type: 'libvms-call', callLog: g.prodCallLogKey, method, args: [], nonce, counter: 1, clientNonce: rng.hex(32) }
      params = signed(JSON.stringify({ ...fields, ...shape }))
      break
    }
    case 3:
      // Another connection's nonce.
      params = signed(payloadOf({ nonce: rng.hex(32) }))
      break
    case 4:
      // Signed for another method.
      params = signed(payloadOf({ method: method === 'echo' ? 'count' : 'echo' }))
      break
    case 5:
      params = JSON.stringify({ payload: payloadOf({}), signature: rng.hex(128) })
      break
    case 6:
      params = JSON.stringify({
        payload: payloadOf({}),
        signature: rng.pick(['', 'x', rng.hex(127), rng.hex(128).toUpperCase(), rng.hex(256)]),
      })
      break
    case 7:
      // Signed for another VM.
      params = signed(payloadOf({ callLog: rng.hex(64) }))
      break
    case 8: {
      // Tampered after signing.
      const payload = payloadOf({ argsJson: '[1]' })
      params = JSON.stringify({ payload: payload.replace('"args":[1]', '"args":[2]'), signature: sign(payload) })
      break
    }
    case 9:
      // The same signed call again on this connection.
      params = session.lastSigned ?? JSON.stringify({ payload: payloadOf({}), signature: rng.hex(128) })
      break
    case 10:
      // A signed call from an earlier connection.
      params = g.staleSigned ?? JSON.stringify({ payload: payloadOf({ nonce: rng.hex(32) }), signature: rng.hex(128) })
      break
    default:
      // Honestly signed, with a counter an honest call on this connection already used.
      params =
        session.lastCounter > 0
          ? signedParams(g, method, args, Math.max(1, session.lastCounter - rng.int(2)))
          : JSON.stringify({ payload: payloadOf({}), signature: rng.hex(128) })
  }
  return text('forged-signed', req(g, method, params), 'refuse')
}

/** A request with one field replaced by a random value, dropped, duplicated, or an extra field. */
function mutation(g: Gen): Frame {
  const { rng } = g
  const fields: [string, string | undefined][] = [
    ['jsonrpc', '"2.0"'],
    ['id', String(g.nextId())],
    ['method', JSON.stringify(rng.pick([...METHODS, HANDSHAKE]))],
    ['params', JSON.stringify(randomArgs(rng))],
  ]
  const field = rng.int(fields.length)
  const raw = () =>
    rng.chance(0.7)
      ? JSON.stringify(randomValue(rng))
      : rng.pick(['1e999', '-0', '[]', '{}', '""', 'null', `"${'\\ud800'}"`, `${'['.repeat(300)}${']'.repeat(300)}`])
  switch (rng.int(4)) {
    case 0:
      fields[field][1] = raw()
      break
    case 1:
      fields[field][1] = undefined
      break
    case 2:
      fields.push([fields[field][0], raw()])
      break
    default:
      fields.push([randomString(rng).slice(0, 30), raw()])
  }
  return text('mutation', rawObject(rng, fields))
}

/** Debug mode: a call whose client nonce (beside it) is not 32 to 64 lowercase hex digits: refused, not run. */
function badClientNonce(g: Gen): Frame {
  const { rng } = g
  const clientNonce = rng.pick([
    '1',
    'null',
    'true',
    '[]',
    '{}',
    '""',
    JSON.stringify(rng.hex(30)),
    JSON.stringify(rng.hex(66)),
    JSON.stringify(
      rng
        .hex(32)
        .toUpperCase()
        .replace(/^[0-9]/, 'A'),
    ),
    JSON.stringify(`${rng.hex(31)}g`),
    JSON.stringify(randomString(rng)),
  ])
  return text('bad-client-nonce', req(g, 'echo', JSON.stringify(randomArgs(rng)), undefined, clientNonce))
}

type Maker = (g: Gen) => Frame

const CATEGORIES: [Maker, number, Mode | 'both'][] = [
  [validCall, 12, 'both'],
  [notJson, 5, 'both'],
  [truncatedJson, 4, 'both'],
  [invalidUtf8, 5, 'both'],
  [binaryFrame, 3, 'both'],
  [nonObject, 4, 'both'],
  [badJsonrpc, 4, 'both'],
  [badId, 7, 'both'],
  [notification, 3, 'both'],
  [unknownMethod, 6, 'both'],
  [methodType, 2, 'both'],
  [badParams, 5, 'both'],
  [deepNesting, 4, 'both'],
  [hugeNumber, 5, 'both'],
  [loneSurrogates, 4, 'both'],
  [bytesTag, 4, 'both'],
  [prototypeKeys, 4, 'both'],
  [oversized, 2, 'both'],
  [tooBigToRead, 0.25, 'both'],
  [handshakeFrame, 4, 'both'],
  [handshakeWrongTypes, 5, 'both'],
  [forgedSigned, 10, 'production'],
  [badClientNonce, 3, 'debug'],
  [mutation, 8, 'both'],
]

export function generate(g: Gen): Frame {
  // A connection that has not shaken hands tries to, now and then (else most frames would be refused for
  // that alone), often with params of the wrong types (after the handshake they are refused for being late).
  if (!g.session.handshaken && g.rng.chance(0.15)) return g.rng.chance(0.5) ? handshakeWrongTypes(g) : handshakeFrame(g)
  const usable = CATEGORIES.filter(([, , mode]) => mode === 'both' || mode === g.session.mode)
  let r = (g.rng.u32() / 2 ** 32) * usable.reduce((sum, [, w]) => sum + w, 0)
  for (const [make, weight] of usable) {
    r -= weight
    if (r < 0) return make(g)
  }
  return usable[0][0](g)
}
