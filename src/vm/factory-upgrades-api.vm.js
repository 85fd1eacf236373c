(function (System, request) {
  'use strict'
  // Log schema 4 on: a factory can upgrade the VMs it provisioned. System.vms is made again with
  // the one more function (the object the factory API made is frozen).
  const vms = System.vms
  System.vms = Object.freeze({
    provisionVM: vms.provisionVM,
    shutdownVM: vms.shutdownVM,
    upgradeVM (id, code) {
      return request('vms.upgradeVM', { id: id === undefined ? null : id, code: code === undefined ? null : code })
    }
  })
})
