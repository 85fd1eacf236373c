/** Where a command that serves something (`exec`, `explore`) listens: `-p, --port` and `--host`. */

import type { Command } from 'commander'
import { parsePort } from './parse-options.js'

export interface ListenFlags {
  port?: number
  host?: string
}

/** Adds `-p, --port` (default `port`; 0 picks a free one) and `--host` (default 127.0.0.1) to serve `what` on. */
export function addListenOptions(command: Command, what: string, port: number): Command {
  return command
    .option('-p, --port <port>', `port to serve ${what} on (0 picks a free one)`, parsePort, port)
    .option('--host <host>', `address to serve ${what} on (serving beyond this machine is your decision)`, '127.0.0.1')
}
