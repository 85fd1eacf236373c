(function (System, request) {
  'use strict'
  System.vms = Object.freeze({
    provisionVM (options) { return request('vms.provisionVM', options === undefined ? null : options) },
    shutdownVM (id) { return request('vms.shutdownVM', id === undefined ? null : id).then(function () {}) }
  })
})