/**
 * How the commands that call a VM (`call`, `repl`) connect: as a debug user id, or with a key file;
 * and where they keep what they were shown of each log (a receipt book file).
 */

import { rename, stat, writeFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { loadKeyPair } from '../auth/key-file.js'
import { RPCClient } from '../client/rpc-client.js'
import { type LibVMSError, UsageError } from '../errors.js'
import { ReceiptBook } from '../rpc/receipt-book.js'
import { err } from './output.js'
import { parseTimeout } from './parse-options.js'
import { readJSON } from './receipt-commands.js'
import { swarmOf } from './swarm-options.js'

export interface ClientOptions {
  user?: string
  bootstrap?: string
  key?: string
  timeout?: number
  log?: string
  receiptBook?: string
}

export function addClientOptions(command: Command): Command {
  return command
    .option('-u, --user <id>', 'debug mode: the caller id the VM sees (not authenticated)')
    .option('-k, --key <file>', 'production mode: the key pair file to sign calls with (see nodevms keygen)')
    .option('--timeout <ms>', 'how long connecting may take', parseTimeout)
    .option('--log <url>', "the VM's call log (hyper:// URL): the host must serve it, so receipts bind answers to it")
    .option(
      '--receipt-book <file>',
      'keep the latest receipt of each VM log in this file (read first, written after): an answer older than it, or one contradicting it (a fork), is refused',
    )
    .option(
      '--bootstrap <nodes>',
      'calling by key (hyper://…): DHT bootstrap nodes, host:port[,…] (default: LIBVMS_BOOTSTRAP, else the public ones)',
    )
}

/** The receipt book `--receipt-book` names (a new one if the file does not exist yet), or undefined without the option. */
export async function openReceiptBook(options: ClientOptions): Promise<ReceiptBook | undefined> {
  const file = options.receiptBook
  if (file === undefined) return undefined
  const exists = await stat(file).then(
    () => true,
    (e: NodeJS.ErrnoException) => e.code !== 'ENOENT',
  )
  if (!exists) return new ReceiptBook()
  try {
    return ReceiptBook.from(await readJSON(file, 'receipt book'))
  } catch (e) {
    if (e instanceof UsageError) throw e
    throw new UsageError(`--receipt-book ${file}: ${(e as LibVMSError).message}`)
  }
}

/** Writes the book back to `--receipt-book`'s file (whole, or not at all). */
export async function saveReceiptBook(options: ClientOptions, book: ReceiptBook | undefined): Promise<void> {
  if (options.receiptBook === undefined || book === undefined) return
  const tmp = `${options.receiptBook}.tmp`
  await writeFile(tmp, `${JSON.stringify(book.toJSON(), null, 1)}\n`)
  await rename(tmp, options.receiptBook)
}

export async function connectClient(url: string, options: ClientOptions, book?: ReceiptBook): Promise<RPCClient> {
  const byKey = /^hyper:\/\//i.test(url)
  if (!byKey && !/^wss?:\/\//i.test(url)) {
    throw new UsageError(
      `expected the VM's RPC URL (ws://host:port/path) or its call log URL (hyper://<key>, found on the DHT), got ${JSON.stringify(url)}`,
    )
  }
  if (!byKey && options.bootstrap !== undefined) throw new UsageError('--bootstrap applies to calling by key: give the hyper:// URL')
  // By key: the host is found on the DHT (that is what a hyper:// URL asks for).
  const swarm = byKey ? swarmOf({ swarm: true, bootstrap: options.bootstrap }, (text) => err.note(text)) : undefined
  if (options.user !== undefined && options.key !== undefined) {
    throw new UsageError('give --user (debug mode) or --key (production mode), not both')
  }
  const keyPair = options.key === undefined ? undefined : await loadKeyPair(options.key)
  const client = new RPCClient()
  await client.connect(url, { user: options.user, keyPair, timeout: options.timeout, callLog: options.log, swarm, receipts: book ?? true })
  return client
}
