/**
 * `nodevms repl <url>`: an interactive Node REPL with `client` connected to the VM (one method per
 * export, tab-completed as `client.<Tab>`); answers are awaited and printed. `--exec expr` evaluates
 * one expression (or statements) with `client` in scope, prints the result as JSON and exits.
 */
import { homedir } from 'node:os'
import { join } from 'node:path'
import repl from 'node:repl'
import vm from 'node:vm'
import type { Command } from 'commander'
import type { RPCClient } from '../client/rpc-client.js'
import { UsageError } from '../errors.js'
import { addClientOptions, type ClientOptions, connectClient, openReceiptBook, saveReceiptBook } from './client-options.js'
import { err, formatValue, out } from './output.js'

interface ReplOptions extends ClientOptions {
  exec?: string
}

export function registerRepl(program: Command): void {
  addClientOptions(
    program
      .command('repl')
      .description('an interactive shell with the VM as `client` (await client.method(args))')
      .argument('<url>', "the VM's RPC URL (ws://host:port/path), or its call log URL (hyper://<key>: the host is found on the DHT)")
      .option('-e, --exec <expr>', 'evaluate an expression (client in scope), print the result as JSON, and exit'),
  )
    .addHelpText('after', '\nHistory is kept in ~/.nodevms_repl_history (NODEVMS_REPL_HISTORY sets another file; empty turns it off).')
    .action(async (url: string, options: ReplOptions) => {
      const book = await openReceiptBook(options)
      const client = withNamedMisses(await connectClient(url, options, book))
      try {
        if (options.exec !== undefined) {
          const result = await evaluate(options.exec, client)
          out.line(formatValue(result === undefined ? null : result, true))
        } else {
          await interactive(url, client)
        }
      } finally {
        await client.close()
        await saveReceiptBook(options, book)
      }
    })
}

/**
 * The client as the shell shows it: a method the VM does not have is a named error listing the ones
 * it has (MethodNotFound, ERR_METHOD_NOT_FOUND), not JavaScript's "is not a function".
 */
function withNamedMisses(client: RPCClient): RPCClient {
  const methods = client.backendInfo.methods ?? []
  return new Proxy(client, {
    get(target, name, receiver) {
      if (typeof name !== 'string' || name in target || name === 'then') return Reflect.get(target, name, receiver)
      return () =>
        Promise.reject(
          new UsageError(
            `the VM has no method ${JSON.stringify(name)}; its methods: ${methods.join(', ') || 'none'} (nodevms info lists them)`,
          ),
        )
    },
  })
}

/** Evaluates `source` as an expression, or failing that as statements, in an async function with `client`. */
async function evaluate(source: string, client: RPCClient): Promise<unknown> {
  const context = vm.createContext({ client, console })
  let script: vm.Script
  try {
    script = new vm.Script(`(async () => (${source}\n))()`, { filename: 'exec' })
  } catch {
    script = new vm.Script(`(async () => { ${source}\n })()`, { filename: 'exec' })
  }
  return script.runInContext(context)
}

async function interactive(url: string, client: RPCClient): Promise<void> {
  const info = client.backendInfo
  out.line(
    `${out.paint('green', '✓')} connected to ${info.title || url} (${info.auth} mode). Methods: ${(info.methods ?? []).map((m) => `client.${m}()`).join(', ') || 'none'}`,
  )
  out.line(out.paint('dim', 'Answers are awaited. .exit or Ctrl-D leaves.'))
  const server = repl.start({ prompt: `${info?.title || 'vm'}> `, useGlobal: false })
  server.context.client = client
  // Await what a line evaluates to, so `client.foo()` prints its answer rather than a Promise.
  // (The REPL reads its eval function from the instance for each line, so it can be wrapped after start.)
  const evalLine = server.eval
  const awaitingEval: repl.REPLEval = (cmd, context, file, callback) => {
    evalLine.call(server, cmd, context, file, (error, result) => {
      if (error || !(result instanceof Promise)) {
        callback(error, result)
        return
      }
      result.then(
        (value) => callback(null, value),
        (failure) => callback(failure, undefined),
      )
    })
  }
  ;(server as unknown as { eval: repl.REPLEval }).eval = awaitingEval
  const historyFile = process.env.NODEVMS_REPL_HISTORY ?? join(homedir(), '.nodevms_repl_history')
  if (historyFile !== '') {
    server.setupHistory(historyFile, (error) => {
      if (error) err.note(`no history: ${error.message}`)
    })
  }
  await new Promise<void>((resolve) => server.on('exit', () => resolve()))
}
