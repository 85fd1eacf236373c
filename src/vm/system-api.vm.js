(function (System, request) {
  'use strict'
  function orNull (v) { return v === undefined ? null : v }
  function toStat (s) {
    const mtime = new Date(s.mtime)
    return {
      type: s.type,
      size: s.size,
      mtime,
      ctime: new Date(s.mtime),
      isFile () { return s.type === 'file' },
      isDirectory () { return s.type === 'directory' }
    }
  }
  System.files = Object.freeze({
    getInfo () { return request('files.getInfo') },
    stat (path) { return request('files.stat', orNull(path)).then(toStat) },
    readFile (path, opts) { return request('files.readFile', orNull(path), orNull(opts)) },
    readdir (path, opts) { return request('files.readdir', orNull(path), orNull(opts)) },
    writeFile (path, data, opts) { return request('files.writeFile', orNull(path), orNull(data), orNull(opts)).then(function () {}) },
    mkdir (path) { return request('files.mkdir', orNull(path)).then(function () {}) },
    unlink (path) { return request('files.unlink', orNull(path)).then(function () {}) },
    rmdir (path, opts) { return request('files.rmdir', orNull(path), orNull(opts)).then(function () {}) },
    history (opts) { return request('files.history', orNull(opts)) }
  })
})