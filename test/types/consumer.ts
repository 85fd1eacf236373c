/**
 * A TypeScript consumer of the built package, compiled with `tsc --noEmit --strict` by
 * test/package.test.ts (after the build): the documented examples must type-check as a user writes
 * them, and misuses must not. Not part of the project's own tsconfig (it imports 'libvms' by name).
 */
import { type ErrorCode, type LibVMSError, RPCClient, RPCServer, Verifier, VM } from 'libvms'

interface CounterAPI {
  increment(by?: number): number
  get(): number
}

export async function documentedExamples(dir: string): Promise<void> {
  const vm = new VM('let n = 0; exports.increment = (by = 1) => (n += by); exports.get = () => n')
  await vm.deploy({ dir })
  const server = new RPCServer()
  server.mount('/', vm)
  const { url, port } = await server.listen(0)
  const portNumber: number = port

  // The untyped client of the source document: its methods are known only at run time.
  const client = new RPCClient()
  await client.connect(url, { user: 'bob' })
  await client.increment()
  const anything = await client.call('get')

  // A typed client: arguments and results checked.
  const typed = await RPCClient.connect<CounterAPI>(url)
  const n: number = await typed.increment(2)
  const m: number = await typed.get()
  // @ts-expect-error: increment takes a number
  await typed.increment('two')
  // @ts-expect-error: the result is a number, not a string
  const s: string = await typed.get()

  // Error codes are a typed union: a misspelt one does not compile.
  try {
    await Verifier.verify(vm.callLog, vm.filesArchive)
  } catch (err) {
    const code: ErrorCode = (err as LibVMSError).code
    if (code === 'ERR_DIVERGENCE') console.log('diverged')
    // @ts-expect-error: no such code
    if (code === 'ERR_DIVERGNCE') console.log('never')
  }
  console.log(portNumber, anything, n, m, s)
  await client.close()
  await typed.close()
  await server.close()
  await vm.close()
}
