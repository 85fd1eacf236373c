/**
 * The DHT on the command line: off unless `--swarm` is given (the public DHT's bootstrap nodes are on
 * the internet). `--bootstrap host:port,…` (or LIBVMS_BOOTSTRAP) points it at other bootstrap nodes,
 * e.g. a private network or a local testnet.
 */

import type { Command } from 'commander'
import { UsageError } from '../errors.js'
import type { SwarmOptions } from '../ledger/remote-source.js'
import { parseBootstrap } from '../net/swarm.js'

export interface SwarmFlags {
  swarm?: boolean
  bootstrap?: string
}

export function addSwarmOptions(command: Command, what: string): Command {
  return command
    .option('--swarm', `${what} on the Hyperswarm DHT (off unless given)`)
    .option('--bootstrap <nodes>', 'DHT bootstrap nodes, host:port[,host:port…] (default: LIBVMS_BOOTSTRAP, else the public ones)')
}

/** The swarm options the flags ask for, or undefined when the DHT is off. */
export function swarmOf(flags: SwarmFlags, onStatus?: (message: string) => void, always = false): SwarmOptions | undefined {
  if (flags.bootstrap !== undefined) {
    try {
      parseBootstrap(flags.bootstrap)
    } catch (error) {
      throw new UsageError(`--bootstrap: ${(error as Error).message}`)
    }
    if (!flags.swarm && !always) throw new UsageError('--bootstrap applies to the DHT: add --swarm')
  }
  if (!flags.swarm && !always) return undefined
  return { bootstrap: flags.bootstrap, onStatus }
}
