// The source document's VM factory script: provisions VMs over RPC, records each one's owner, and
// lets only the owner shut a VM down.
exports.init = async () => {
  await System.files.mkdir('/vms')
}

// vm api

exports.provisionVM = async (args) => {
  const vm = await System.vms.provisionVM(args)
  await writeRecord(vm.id, { vm, args, owner: System.caller.id })
  return vm
}

exports.shutdownVM = async (id) => {
  const record = await readRecord(id)
  await assertVMPermission(record)
  await System.vms.shutdownVM(id)
  await deleteRecord(id)
}

// record helpers

async function writeRecord(id, record) {
  await System.files.writeFile('/vms/' + id + '.json', JSON.stringify(record))
}

async function deleteRecord(id) {
  await System.files.unlink('/vms/' + id + '.json')
}

async function readRecord(id) {
  try {
    return JSON.parse(await System.files.readFile('/vms/' + id + '.json'))
  } catch {
    throw new Error('VM record not found')
  }
}

// asserts

async function assertVMPermission(record) {
  const callerId = System.caller.id
  if (callerId !== record.owner) {
    throw new Error('You are not authorized to shut down this vm')
  }
}
