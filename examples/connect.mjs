// The source document's "Connect to run commands" example. Usage: node examples/connect.mjs [url]
import { RPCClient } from 'libvms'

async function main() {
  const url = process.argv[2] ?? 'ws://localhost:5555/bobs-vm'

  // connect to the server
  const client = new RPCClient()
  await client.connect(url)

  // run the command
  console.log(await client.foo()) // => 'bar'
  await client.close()
}

main().catch((err) => {
  console.error(err.message)
  process.exit(1)
})
