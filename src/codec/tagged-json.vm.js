/*
 * The value encoding, once for both sides of the VM boundary: JSON plus byte arrays as
 * {"$bytes": base64}, a one-key object whose key is "$bytes" or "$esc" escaped as {"$esc": [key, value]}.
 *
 * Everything after this comment is the text of the prelude from its "the value encoding" line
 * (sandbox/prelude.ts puts it there), byte for byte: its ticks are metered and its lines numbered,
 * so it is part of the determinism contract. The host compiles the same text (codec/value-codec.ts)
 * with its own bindings for the names it leaves free: stringify, parse, isArray, isFiniteNumber, U8,
 * AB, getProto, ObjectProto and show.
 */
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  const B64I = {}
  for (let i = 0; i < 64; i++) B64I[B64[i]] = i
  function toBase64 (bytes) {
    let out = ''
    let i = 0
    for (; i + 2 < bytes.length; i += 3) {
      const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2]
      out += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + B64[n & 63]
    }
    if (i < bytes.length) {
      const n = (bytes[i] << 16) | (i + 1 < bytes.length ? bytes[i + 1] << 8 : 0)
      out += B64[n >> 18] + B64[(n >> 12) & 63] + (i + 1 < bytes.length ? B64[(n >> 6) & 63] : '=') + '='
    }
    return out
  }
  function fromBase64 (s) {
    const clean = s.replace(/=+$/, '')
    const out = new U8(Math.floor(clean.length * 3 / 4))
    let o = 0
    for (let i = 0; i < clean.length; i += 4) {
      const n = (B64I[clean[i]] << 18) | (B64I[clean[i + 1]] << 12) | ((B64I[clean[i + 2]] || 0) << 6) | (B64I[clean[i + 3]] || 0)
      out[o++] = n >> 16
      if (o < out.length) out[o++] = (n >> 8) & 255
      if (o < out.length) out[o++] = n & 255
    }
    return out
  }
  function encodingError (message) {
    const e = new Error(message)
    e.name = 'EncodingError'
    return e
  }
  function isTagLike (obj) {
    let n = 0
    let tag = false
    for (const k in obj) {
      if (++n > 1) return false
      tag = k === '$bytes' || k === '$esc'
    }
    return tag
  }
  function encode (value, what) {
    if (value === undefined) return undefined
    function replacer (key, v) {
      const raw = this[key]
      switch (typeof raw) {
        case 'string': case 'boolean': return raw
        case 'number':
          if (!isFiniteNumber(raw)) throw encodingError(what + ' contains ' + raw + ' at ' + show(key) + ', which JSON cannot carry')
          return raw
        case 'undefined':
          if (isArray(this)) throw encodingError(what + ' contains undefined in an array; use null')
          return undefined
        case 'function': throw encodingError(what + ' contains a function at ' + show(key) + '; only JSON values and byte arrays cross the VM boundary')
        case 'bigint': throw encodingError(what + ' contains a BigInt at ' + show(key) + '; convert it to a string first')
        case 'symbol': throw encodingError(what + ' contains a Symbol at ' + show(key))
      }
      if (raw === null) return null
      if (raw instanceof U8) return { $bytes: toBase64(raw) }
      if (raw instanceof AB) return { $bytes: toBase64(new U8(raw)) }
      if (isArray(raw)) return raw
      const proto = getProto(raw)
      if (proto !== ObjectProto && proto !== null) {
        throw encodingError(what + ' contains a ' + ((raw.constructor && raw.constructor.name) || 'non-plain object') + ' at ' + show(key) + '; only plain objects, arrays and Uint8Array cross the VM boundary')
      }
      if (isTagLike(raw)) {
        const k = Object.keys(raw)[0]
        return { $esc: [k, raw[k]] }
      }
      return raw
    }
    try {
      return stringify(value, replacer)
    } catch (err) {
      if (err && err.name === 'EncodingError') throw err
      if (err instanceof TypeError) throw encodingError(what + ' cannot be encoded: ' + err.message)
      throw err
    }
  }
  function reviver (key, v) {
    if (v !== null && typeof v === 'object' && !isArray(v)) {
      if (typeof v.$bytes === 'string' && isTagLike(v)) return fromBase64(v.$bytes)
      if (isArray(v.$esc) && v.$esc.length === 2 && typeof v.$esc[0] === 'string' && isTagLike(v)) {
        const o = {}
        o[v.$esc[0]] = v.$esc[1]
        return o
      }
    }
    return v
  }
  function decode (json) {
    if (json === undefined) return undefined
    return json.indexOf('"$') === -1 ? parse(json) : parse(json, reviver)
  }
