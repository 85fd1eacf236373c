/**
 * A TypeScript consumer of the built package, compiled with `tsc --noEmit --strict` by
 * test/package.test.ts (after the build): the documented examples must type-check as a user writes
 * them, and misuses must not. Not part of the project's own tsconfig (it imports 'libvms' by name).
 */
import { CallLog, DatArchive, ERROR_CODES, type ErrorCode, type LibVMSError, openReplay, RPCClient, RPCServer, Verifier, VM } from 'libvms'

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
    // The same codes at run time.
    const known: boolean = ERROR_CODES.includes(code)
    console.log(known)
  }
  console.log(portNumber, anything, n, m, s)
  await client.close()
  await typed.close()
  await server.close()
  await vm.close()
}

/** README.md's "Use" section, as written there (only the listening port differs). */
export async function readmeUse(): Promise<void> {
  const vm = new VM(`
  let count = 0
  exports.increment = () => ++count
  exports.save = async (text) => { await System.files.writeFile('/note.txt', text) }
`)
  await vm.deploy({ dir: './counter-vm', title: 'Counter' })
  console.log(Object.keys(vm.exports))
  await vm.executeCall({ methodName: 'increment', userId: 'alice' })
  console.log(vm.callLog.url, vm.filesArchive.url)

  const replay = await VM.fromCallLog(vm.callLog, { filesArchiveUrl: vm.filesArchive.url })
  await Verifier.compareLogs(vm.callLog, replay.callLog)
  await Verifier.compareArchives(vm.filesArchive, replay.filesArchive)
  await Verifier.verify(vm.callLog, vm.filesArchive)
  const stream = await openReplay(vm.callLog, { filesArchiveUrl: vm.filesArchive.url })
  for await (const { seq, logged, replayed } of stream.entries()) console.log(seq, logged.type, replayed.type)
  await stream.close()

  const server = new RPCServer()
  server.mount('/counter', vm)
  await server.listen(5555)

  const client = new RPCClient()
  await client.connect('ws://127.0.0.1:5555/counter', { user: 'bob' })
  await client.increment()

  // An auditor's copies, found through the host the client connected to.
  const callLog = await CallLog.fetch(client.backendInfo.callLogUrl)
  const files = new DatArchive(client.backendInfo.filesArchiveUrl)
  await files.download('/')
  await Verifier.verify(callLog, files)
  const methods: string[] = client.backendInfo.methods
  console.log(methods)
}
