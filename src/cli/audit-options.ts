/** What the commands that fetch a target and audit it (`verify`, `explore`) take besides the target. */

import type { Command } from 'commander'
import { DEFAULT_AUDIT_CEILING } from '../sandbox/limits.js'
import { collectPeers, parseCount, parseTimeout } from './parse-options.js'

/** The options `addAuditOptions` adds, as commander parses them. */
export interface AuditFlags {
  dir?: string
  timeout?: number
  maxTicks?: number
  maxMemory?: number
  peer?: string[]
}

/**
 * The options of a command that fetches a target and audits it (`verify`, `explore`): where fetched
 * copies are kept, how long a host may take, and the ceilings above which the audit (`refuses`, the
 * words that say who refuses) refuses a log.
 */
export function addAuditOptions(command: Command, refuses: string): Command {
  return command
    .option('-d, --dir <dir>', 'keep the fetched copies here (later runs fetch only what is new); default: a temp dir')
    .option('--timeout <ms>', 'how long a host may take to answer', parseTimeout)
    .option(
      '--peer <url>',
      "also fetch from this host's RPC URL (ws://…; repeatable): e.g. a factory that serves a VM it shut down, for a hyper:// target",
      collectPeers,
    )
    .option(
      '--max-ticks <n>',
      `${refuses} a log whose calls may each use more compute ticks (default ${DEFAULT_AUDIT_CEILING.computeTicks})`,
      parseCount,
    )
    .option('--max-memory <bytes>', `${refuses} a log whose VM has more memory (default ${DEFAULT_AUDIT_CEILING.memoryBytes})`, parseCount)
}
