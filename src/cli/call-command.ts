/** `nodevms call <url> <method> [args…]`: one call, its result printed as JSON. */
import { readFile, writeFile } from 'node:fs/promises'
import { text as streamText } from 'node:stream/consumers'
import type { Command } from 'commander'
import { UsageError } from '../errors.js'
import type { ForkProof } from '../ledger/receipts.js'
import { addClientOptions, type ClientOptions, connectClient, openReceiptBook, saveReceiptBook } from './client-options.js'
import { formatValue } from './output.js'
import { writeProof } from './receipt-commands.js'

interface CallOptions extends ClientOptions {
  receipt?: string
  proof?: string
  strings?: boolean
  argsFile?: string
}

export function registerCall(program: Command): void {
  addClientOptions(
    program
      .command('call')
      .description('call a method of a VM and print its result as JSON')
      .argument('<url>', "the VM's RPC URL (ws://host:port/path), or its call log URL (hyper://<key>: the host is found on the DHT)")
      .argument('<method>', 'the method to call')
      .argument('[args...]', 'arguments, each as JSON (a bare word that is not JSON is taken as a string)')
      .option('--strings', 'send every argument as a string, as typed')
      .option(
        '--args-file <file|->',
        "read the arguments from a file ('-': standard input) holding a JSON array of them, instead of the command line",
      )
      .option('--receipt <file>', "also write the call's receipt (checked) to this file")
      .option('--proof <file>', 'when the answer shows the host rewrote its log (ERR_FORKED), write the fork proof here'),
  )
    .addHelpText('after', '\nExit codes: 0 the call returned, 1 the call failed inside the VM (logged), 2 anything else.')
    .action(async (url: string, method: string, args: string[], options: CallOptions) => {
      // Arguments are parsed before anything is sent: a malformed one is refused, and nothing is logged.
      const values =
        options.argsFile !== undefined
          ? await argsFromFile(options, args)
          : options.strings
            ? args
            : args.map((text, i) => parseArg(text, i + 1))
      const book = await openReceiptBook(options)
      const client = await connectClient(url, options, book)
      try {
        // Every answer's receipt is checked (ERR_BAD_RECEIPT if it does not hold); a logged failure has one too.
        const result = await client.call(method, ...values).finally(async () => {
          const receipt = client.receipts.at(-1)
          if (options.receipt && receipt) await writeFile(options.receipt, `${JSON.stringify(receipt)}\n`)
        })
        process.stdout.write(`${formatValue(result === undefined ? null : result, true)}\n`)
      } catch (e) {
        const proof = (e as { proof?: ForkProof }).proof
        if (options.proof && proof) {
          await writeProof(options.proof, proof)
          ;(e as Error).message += `; fork proof written to ${options.proof}`
        }
        throw e
      } finally {
        await client.close()
        await saveReceiptBook(options, book)
      }
    })
}

/** `--args-file <file|->`: a JSON array of the call's arguments, from a file or standard input. */
async function argsFromFile(options: CallOptions, args: string[]): Promise<unknown[]> {
  const from = options.argsFile as string
  if (args.length > 0) throw new UsageError('give the arguments on the command line or in --args-file, not both')
  if (options.strings)
    throw new UsageError('--strings applies to arguments on the command line; in --args-file, write strings as JSON strings')
  let text: string
  try {
    text = from === '-' ? await streamText(process.stdin) : await readFile(from, 'utf8')
  } catch (error) {
    throw new UsageError(`cannot read --args-file ${from}: ${(error as Error).message}`)
  }
  let values: unknown
  try {
    values = JSON.parse(text)
  } catch (error) {
    throw new UsageError(
      `--args-file ${from} is not JSON (${(error as Error).message}): write the arguments as a JSON array, e.g. [1, "two", {"three": 3}]`,
    )
  }
  if (!Array.isArray(values)) {
    throw new UsageError(
      `--args-file ${from} must hold a JSON array of the arguments (e.g. [1, "two"]), got ${values === null ? 'null' : typeof values}`,
    )
  }
  return values
}

/**
 * JSON if it parses (`42`, `"42"`, `{"a":1}`, `true`); a bare word that is not JSON is the text
 * itself (`hello`). Text that starts as JSON does (`{`, `[`, `"`) but does not parse is refused: it
 * is a typo far more often than a string.
 */
export function parseArg(text: string, position: number): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    if (/^\s*[[{"]/.test(text)) {
      throw new UsageError(
        `argument ${position} (${JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text)}) looks like JSON but does not parse (${(err as Error).message}): fix it, or give --strings to send every argument as typed`,
      )
    }
    return text
  }
}
