// The source document's "Run a VM" example. Usage: node examples/run-vm.mjs [port] [dir]
// Serves the VM until Ctrl-C; prints where.
import { RPCServer, VM } from 'libvms'

async function main() {
  const port = Number(process.argv[2] ?? 5555)
  const dir = process.argv[3] ?? './bobs-vm-data'
  const title = 'Bobs VM'

  // the script
  const scriptCode = `
    exports.foo = () => 'bar'
  `

  // initiate vm
  const vm = new VM(scriptCode)
  await vm.deploy({ dir, title })
  console.log('vm api exports:', Object.keys(vm.exports))

  // init rpc server
  const rpcServer = new RPCServer()
  rpcServer.mount('/bobs-vm', vm)
  await rpcServer.listen(port)
  console.log(`Serving at ${rpcServer.url}/bobs-vm`)
  console.log('Files URL:', vm.filesArchive.url)
  console.log('Call log URL:', vm.callLog.url)

  const stop = async () => {
    await rpcServer.close()
    await vm.close()
    process.exit(0)
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
