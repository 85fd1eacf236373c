(function (hostRequest, hostConsole) {
  'use strict'
  const g = globalThis
  const stringify = JSON.stringify
  const parse = JSON.parse
  const ObjectProto = Object.prototype
  const getProto = Object.getPrototypeOf
  const ownDescriptor = Object.getOwnPropertyDescriptor
  const isArray = Array.isArray
  const defineProperty = Object.defineProperty
  const isFiniteNumber = Number.isFinite
  const U8 = Uint8Array
  const AB = ArrayBuffer
  const PromiseCtor = Promise
  const fromCharCode = String.fromCharCode

  delete g.WeakRef
  delete g.FinalizationRegistry

  // ---- randomness: sfc32, reseeded for every turn from a seed the host took from the log ----
  // Seeding is deferred to the turn's first Math.random() call: most calls never draw a number.
  let ra = 0, rb = 0, rc = 0, rd = 1
  let pendingSeed = null
  function next () {
    ra >>>= 0; rb >>>= 0; rc >>>= 0; rd >>>= 0
    let t = (ra + rb) | 0
    ra = rb ^ (rb >>> 9)
    rb = (rc + (rc << 3)) | 0
    rc = (rc << 21) | (rc >>> 11)
    rd = (rd + 1) | 0
    t = (t + rd) | 0
    rc = (rc + t) | 0
    return (t >>> 0) / 4294967296
  }
  function random () {
    if (pendingSeed !== null) {
      const hex = pendingSeed
      pendingSeed = null
      ra = parseInt(hex.slice(0, 8), 16); rb = parseInt(hex.slice(8, 16), 16)
      rc = parseInt(hex.slice(16, 24), 16); rd = parseInt(hex.slice(24, 32), 16)
      for (let i = 0; i < 12; i++) next()
    }
    return next()
  }
  function seedRandom (hex) {
    pendingSeed = hex
  }
  defineProperty(Math, 'random', { value: random, writable: true, configurable: true })

  // ---- time: the turn's logged timestamp, advanced only by virtual timers; UTC only ----
  const OrigDate = Date
  const origParse = OrigDate.parse
  const origUTC = OrigDate.UTC
  let virtualNow = 0
  function parseUTC (s) {
    // Strings without a zone would be read in the host's zone: read them as UTC instead.
    const z = origParse(String(s) + 'Z')
    return z === z ? z : origParse(s)
  }
  function VMDate (...args) {
    if (!new.target) return new OrigDate(virtualNow).toString()
    let d
    if (args.length === 0) d = new OrigDate(virtualNow)
    else if (args.length === 1) d = new OrigDate(typeof args[0] === 'string' ? parseUTC(args[0]) : args[0])
    else d = new OrigDate(origUTC(...args))
    Object.setPrototypeOf(d, new.target.prototype)
    return d
  }
  VMDate.prototype = OrigDate.prototype
  defineProperty(OrigDate.prototype, 'constructor', { value: VMDate, writable: true, configurable: true })
  VMDate.now = function now () { return virtualNow }
  VMDate.parse = function parse (s) { return parseUTC(s) }
  VMDate.UTC = origUTC
  const DP = OrigDate.prototype
  const localToUTC = ['FullYear', 'Month', 'Date', 'Day', 'Hours', 'Minutes', 'Seconds', 'Milliseconds']
  for (const name of localToUTC) {
    if (DP['getUTC' + name]) defineProperty(DP, 'get' + name, { value: DP['getUTC' + name], writable: true, configurable: true })
    if (DP['setUTC' + name]) defineProperty(DP, 'set' + name, { value: DP['setUTC' + name], writable: true, configurable: true })
  }
  const toISO = DP.toISOString
  const toUTCString = DP.toUTCString
  defineProperty(DP, 'getTimezoneOffset', { value: function getTimezoneOffset () { return 0 }, writable: true, configurable: true })
  defineProperty(DP, 'toString', { value: function toString () { return toUTCString.call(this) }, writable: true, configurable: true })
  defineProperty(DP, 'toDateString', { value: function toDateString () { return toUTCString.call(this).slice(0, 16) }, writable: true, configurable: true })
  defineProperty(DP, 'toTimeString', { value: function toTimeString () { return toUTCString.call(this).slice(17) }, writable: true, configurable: true })
  defineProperty(DP, 'toLocaleString', { value: function toLocaleString () { return toISO.call(this) }, writable: true, configurable: true })
  defineProperty(DP, 'toLocaleDateString', { value: function toLocaleDateString () { return toISO.call(this).slice(0, 10) }, writable: true, configurable: true })
  defineProperty(DP, 'toLocaleTimeString', { value: function toLocaleTimeString () { return toISO.call(this).slice(11, 19) }, writable: true, configurable: true })
  g.Date = VMDate

  // ---- virtual timers: fire in virtual-time order while the turn runs, cancelled when it ends ----
  let timers = []
  let timerSeq = 0
  let timersCreated = 0
  let maxTimers = 10000
  function addTimer (fn, delay, args, repeat) {
    if (typeof fn !== 'function') throw new TypeError('timer callback must be a function')
    if (++timersCreated > maxTimers) {
      const e = new Error('the call created more than ' + maxTimers + ' timers (limits.maxTimers)')
      e.name = 'TimerLimitExceeded'
      throw e
    }
    delay = Number(delay)
    if (!(delay >= 1)) delay = 1
    if (delay > 2147483647) delay = 1
    const id = ++timerSeq
    timers[timers.length] = { id, at: virtualNow + Math.floor(delay), fn, args, repeat: repeat ? Math.floor(delay) : 0 }
    return id
  }
  function clearTimer (id) {
    for (let i = 0; i < timers.length; i++) {
      if (timers[i].id === id) { timers.splice(i, 1); return }
    }
  }
  g.setTimeout = function setTimeout (fn, delay, ...args) { return addTimer(fn, delay, args, false) }
  g.setInterval = function setInterval (fn, delay, ...args) { return addTimer(fn, delay, args, true) }
  g.clearTimeout = function clearTimeout (id) { clearTimer(id) }
  g.clearInterval = function clearInterval (id) { clearTimer(id) }
  g.setImmediate = function setImmediate (fn, ...args) { return addTimer(fn, 0, args, false) }
  g.clearImmediate = g.clearTimeout
  g.queueMicrotask = function queueMicrotask (fn) { PromiseCtor.resolve().then(fn) }
  function fireNextTimer () {
    if (timers.length === 0) return false
    let next = 0
    for (let i = 1; i < timers.length; i++) {
      const t = timers[i]
      const n = timers[next]
      if (t.at < n.at || (t.at === n.at && t.id < n.id)) next = i
    }
    const timer = timers[next]
    if (timer.at > virtualNow) virtualNow = timer.at
    if (timer.repeat) timer.at = virtualNow + timer.repeat
    else timers.splice(next, 1)
    timer.fn(...timer.args)
    return true
  }

  // ---- console: to the host's debug output, never into the log ----
  function show (v) {
    if (v === '') return 'the top level'
    if (typeof v === 'string') return v
    try { const s = stringify(v); return s === undefined ? String(v) : s } catch (e) { return String(v) }
  }
  function makeConsoleMethod (level) {
    return function (...args) { hostConsole(level, args.map(show).join(' ')) }
  }
  g.console = { log: makeConsoleMethod('log'), info: makeConsoleMethod('info'), warn: makeConsoleMethod('warn'), error: makeConsoleMethod('error'), debug: makeConsoleMethod('debug') }

  // ---- the value encoding: JSON plus byte arrays as {"$bytes": base64} ----
  // <codec/tagged-json.vm.js>

  // ---- errors crossing the boundary: {name, message} only ----
  function errorInfo (err, withLine) {
    if (err !== null && typeof err === 'object') {
      let name = 'Error'
      let message = ''
      try { name = String(err.name === undefined ? 'Error' : err.name) } catch (e) {}
      try { message = String(err.message === undefined ? '' : err.message) } catch (e) {}
      if (withLine) {
        let line
        try { const m = /vm-script\.js:(\d+)/.exec(String(err.stack)); if (m) line = Number(m[1]) } catch (e) {}
        if (line !== undefined) return { name, message, line }
      }
      return { name, message }
    }
    let message
    try { message = String(err) } catch (e) { message = 'unprintable value' }
    return { name: 'Error', message: 'a non-Error value was thrown: ' + message }
  }

  // ---- System: filled in by the VM layer's system source ----
  const caller = {}
  defineProperty(caller, 'id', { get () { return callerId }, enumerable: true })
  let callerId = null
  const System = { caller }
  function request (op, ...args) {
    return hostRequest(op, encode(args, 'the arguments of System.' + op)).then(function (reply) {
      const r = decode(reply)
      if (r.e) {
        const e = new Error(r.e.message)
        e.name = r.e.name
        throw e
      }
      return r.v
    })
  }
  // Cost schedules from 1 on bound the requests one call has in flight: the rest wait here, in the
  // VM's own memory, and are sent in the order they were made as earlier ones are answered.
  let maxInFlight = 0
  let inFlight = 0
  let waiting = []
  function boundedRequest (op, ...args) {
    const json = encode(args, 'the arguments of System.' + op)
    if (inFlight < maxInFlight) return sendRequest(op, json)
    return new PromiseCtor(function (resolve) {
      waiting[waiting.length] = function () { resolve(sendRequest(op, json)) }
    })
  }
  function sendRequest (op, json) {
    inFlight++
    return hostRequest(op, json).then(function (reply) {
      inFlight--
      if (waiting.length > 0) waiting.shift()()
      const r = decode(reply)
      if (r.e) {
        const e = new Error(r.e.message)
        e.name = r.e.name
        throw e
      }
      return r.v
    })
  }

  // ---- the script ----
  const module = { exports: {} }
  function require (name) {
    throw new Error('require(' + show(name) + ') is not available inside a VM script: scripts are self-contained')
  }

  // ---- turns: the load, init and every call each run as one turn ----
  let settled = false
  let outcome = null
  function beginTurn (timestamp, seedHex, caller) {
    virtualNow = timestamp
    seedRandom(seedHex)
    callerId = caller
    timers = []
    timersCreated = 0
    settled = false
    outcome = null
  }
  let loading = false
  function canAllocate (bytes) {
    try { return 'x'.repeat(bytes).length === bytes } catch (e) { return false }
  }
  function settle (ok, value) {
    if (settled) return
    settled = true
    if (!ok && value === null) {
      // When memory runs out completely the engine cannot even build its error: it throws null.
      // (A script can throw null itself; the two cannot be told apart, and the message says so.)
      outcome = { ok: false, error: { name: 'MemoryLimitExceeded', message: 'the VM ran out of memory (limits.memoryBytes), or the script threw null' } }
      return
    }
    outcome = ok ? { ok: true, value } : { ok: false, error: errorInfo(value, loading) }
  }
  function finishWith (promiseOrValue) {
    if (promiseOrValue !== null && (typeof promiseOrValue === 'object' || typeof promiseOrValue === 'function') && typeof promiseOrValue.then === 'function') {
      PromiseCtor.resolve(promiseOrValue).then(function (v) { settle(true, v) }, function (e) { settle(false, e) })
    } else {
      settle(true, promiseOrValue)
    }
  }

  return {
    System,
    request,
    configure (limits, requestsInFlight) {
      maxTimers = limits.maxTimers
      if (requestsInFlight > 0) {
        maxInFlight = requestsInFlight
        this.request = boundedRequest
      }
    },
    resetRequests () {
      inFlight = 0
      waiting = []
    },
    load (scriptFn, timestamp, seedHex) {
      beginTurn(timestamp, seedHex, null)
      loading = true
      try {
        scriptFn.call(module.exports, module.exports, module, require, System)
        settle(true, undefined)
      } catch (e) { settle(false, e) }
      loading = false
      return settled
    },
    exportNames () {
      const ex = module.exports
      if (ex === null || (typeof ex !== 'object' && typeof ex !== 'function')) return stringify([])
      const names = []
      for (const k of Object.keys(ex)) {
        const v = ex[k]
        if (typeof v === 'function') { names[names.length] = [k, true]; continue }
        let encoded = null
        try { encoded = encode(v, 'export ' + k) } catch (e) {}
        names[names.length] = [k, false, encoded === undefined ? null : encoded]
      }
      return stringify(names)
    },
    beginCall (method, argsJson, caller, timestamp, seedHex) {
      beginTurn(timestamp, seedHex, caller)
      try {
        // Only the script's own exports: never an inherited name such as constructor or toString.
        const ex = module.exports
        const fn = ex !== null && (typeof ex === 'object' || typeof ex === 'function') && ownDescriptor(ex, method) !== undefined ? ex[method] : undefined
        if (typeof fn !== 'function') {
          const e = new Error('the VM has no function export named ' + show(method))
          e.name = 'MethodNotFound'
          throw e
        }
        const args = decode(argsJson)
        finishWith(fn.apply(module.exports, args))
      } catch (e) { settle(false, e) }
      return settled
    },
    isSettled () { return settled },
    fireNextTimer,
    endTurn (maxResultBytes) {
      timers = []
      callerId = null
      if (!settled) {
        // Memory running out inside the engine's promise jobs can drop the job that would have
        // settled the call: if memory is exhausted now, say so rather than blame the promise.
        if (!canAllocate(1 << 20)) return stringify({ ok: false, error: { name: 'MemoryLimitExceeded', message: 'the VM ran out of memory (limits.memoryBytes) before the call settled' } })
        return stringify({ ok: false, error: { name: 'CallNeverSettled', message: 'the call returned a promise that never settled, with no timers or host requests left to settle it' } })
      }
      const o = outcome
      outcome = null
      if (!o.ok) return stringify(o)
      try {
        const encoded = encode(o.value, 'the result')
        if (encoded !== undefined && encoded.length > maxResultBytes) {
          return stringify({ ok: false, error: { name: 'ResultTooLarge', message: 'the result encodes to ' + encoded.length + ' bytes, over the limit of ' + maxResultBytes + ' (limits.maxResultBytes)' } })
        }
        return encoded === undefined ? '{"ok":true}' : '{"ok":true,"value":' + encoded + '}'
      } catch (e) {
        // Encoding a result runs only our code and the value's own getters: a bare null thrown here
        // is the engine failing to allocate even its out-of-memory error.
        if (e === null) return stringify({ ok: false, error: { name: 'MemoryLimitExceeded', message: 'the VM ran out of memory (limits.memoryBytes) while encoding the result' } })
        return stringify({ ok: false, error: errorInfo(e) })
      }
    }
    // <upgrade hook: sandbox/prelude.ts>
  }
})