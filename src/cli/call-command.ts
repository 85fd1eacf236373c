/** `nodevms call <url> <method> [args…]`: one call, its result printed as JSON. */
import { writeFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { addClientOptions, type ClientOptions, connectClient } from './client-options.js'
import { formatValue } from './output.js'

export function registerCall(program: Command): void {
  addClientOptions(
    program
      .command('call')
      .description('call a method of a VM and print its result as JSON')
      .argument('<url>', "the VM's RPC URL (ws://host:port/path)")
      .argument('<method>', 'the method to call')
      .argument('[args...]', 'arguments, each as JSON (an argument that is not JSON is taken as a string)')
      .option('--receipt <file>', "also write the call's receipt (checked) to this file"),
  )
    .addHelpText('after', '\nExit codes: 0 the call returned, 1 the call failed inside the VM (logged), 2 anything else.')
    .action(async (url: string, method: string, args: string[], options: ClientOptions & { receipt?: string }) => {
      const client = await connectClient(url, options)
      try {
        // Every answer's receipt is checked (ERR_BAD_RECEIPT if it does not hold); a logged failure has one too.
        const result = await client.call(method, ...args.map(parseArg)).finally(async () => {
          const receipt = client.receipts.at(-1)
          if (options.receipt && receipt) await writeFile(options.receipt, `${JSON.stringify(receipt)}\n`)
        })
        process.stdout.write(`${formatValue(result === undefined ? null : result, true)}\n`)
      } finally {
        await client.close()
      }
    })
}

/** JSON if it parses (`42`, `"42"`, `{"a":1}`, `true`), else the text itself. */
export function parseArg(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}
