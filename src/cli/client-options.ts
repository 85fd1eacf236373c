/** How the commands that call a VM (`call`, `repl`) connect: as a debug user id, or with a key file. */

import type { Command } from 'commander'
import { loadKeyPair } from '../auth/key-pair.js'
import { UsageError } from '../errors.js'
import { RPCClient } from '../rpc/rpc-client.js'
import { parseTimeout } from './parse-options.js'

export interface ClientOptions {
  user?: string
  key?: string
  timeout?: number
  log?: string
}

export function addClientOptions(command: Command): Command {
  return command
    .option('-u, --user <id>', 'debug mode: the caller id the VM sees (not authenticated)')
    .option('-k, --key <file>', 'production mode: the key pair file to sign calls with (see nodevms keygen)')
    .option('--timeout <ms>', 'how long connecting may take', parseTimeout)
    .option('--log <url>', "the VM's call log (hyper:// URL): the host must serve it, so receipts bind answers to it")
}

export async function connectClient(url: string, options: ClientOptions): Promise<RPCClient> {
  if (!/^wss?:\/\//i.test(url)) throw new UsageError(`expected the VM's RPC URL (ws://host:port/path), got ${JSON.stringify(url)}`)
  if (options.user !== undefined && options.key !== undefined) {
    throw new UsageError('give --user (debug mode) or --key (production mode), not both')
  }
  const keyPair = options.key === undefined ? undefined : await loadKeyPair(options.key)
  const client = new RPCClient()
  await client.connect(url, { user: options.user, keyPair, timeout: options.timeout, callLog: options.log })
  return client
}
