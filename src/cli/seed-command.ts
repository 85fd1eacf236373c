/**
 * `nodevms seed <url…>`: keeps full replicas of VMs' call logs and files archives and serves them on
 * the DHT until Ctrl-C, so they stay available — and verifiable by URL — after their hosts go offline.
 * With `--port` it also serves them over WebSocket (`verify ws://…/<call log key hex>`).
 */

import { resolve } from 'node:path'
import type { Command } from 'commander'
import { UsageError } from '../errors.js'
import { type SeededFork, Seeder, type UnprovenFork } from '../seeder/seeder.js'
import { counted } from '../wording.js'
import { err, out } from './output.js'
import { parsePort, parseTimeout } from './parse-options.js'
import { type SwarmFlags, swarmOf } from './swarm-options.js'
import { handshake, targetKind } from './targets.js'
import { untilStopped } from './until-stopped.js'

interface SeedOptions extends SwarmFlags {
  dir: string
  json?: boolean
  timeout?: number
  port?: number
  host?: string
}

export function registerSeed(program: Command): void {
  program
    .command('seed')
    .description("keep full replicas of VMs' logs and files and serve them on the DHT, so they outlive their hosts (Ctrl-C stops)")
    .argument('[urls...]', 'VMs to seed: RPC URLs (ws://…) or call log URLs (hyper://…); none: the ones this dir seeded before')
    .option('-d, --dir <dir>', 'where the replicas live', 'nodevms-seeds')
    .option('--bootstrap <nodes>', 'DHT bootstrap nodes, host:port[,host:port…] (default: LIBVMS_BOOTSTRAP, else the public ones)')
    .option('--timeout <ms>', 'how long to wait for peers of each VM', parseTimeout)
    .option(
      '-p, --port <port>',
      'also serve auditors over WebSocket on this port (0 picks one): verify ws://…/<call log key hex>',
      parsePort,
    )
    .option('--host <host>', 'with --port: the address to listen on (default 127.0.0.1)')
    .option('--json', 'print one JSON line per VM seeded: {callLogUrl, filesArchiveUrl, length, rpcUrl (with --port)}')
    .addHelpText(
      'after',
      '\nA seeder joins the Hyperswarm DHT (that is what it is for): point it at your own bootstrap nodes with --bootstrap.',
    )
    .action(async (urls: string[], options: SeedOptions) => {
      if (options.host !== undefined && options.port === undefined) throw new UsageError('--host applies to --port: add --port')
      const swarm = swarmOf(options, (text) => err.note(text), true)
      const seeder = await Seeder.open({ dir: resolve(options.dir), swarm, timeout: options.timeout })
      // Always on stderr (not only on a terminal): a host caught rewriting history is the news a seeder exists for.
      seeder.on('fork', (fork: SeededFork) => {
        const when = fork.earlier ? `proven ${fork.seenAt}, before this run` : 'proven now'
        err.line(
          `${err.paint('red', '✗')} fork: the host of ${fork.callLogUrl} rewrote history this copy holds: ${fork.what} (${when}). ` +
            `The copy keeps the ${counted(fork.length, 'entry', 'entries')} it received (fork ${fork.copyFork}; the host is on fork ${fork.hostFork}) and no longer follows it. ` +
            `Fork proof: ${fork.proofFile} (nodevms check-proof checks it) [ERR_FORKED]`,
        )
      })
      seeder.on('fork-unproven', (claim: UnprovenFork) => {
        err.line(
          `note: a peer of ${claim.callLogUrl} ${claim.claim}; ` +
            `no fork proof could be made (${claim.why}): not reported as a fork, and that peer does not count as the host`,
        )
      })
      try {
        if (options.port !== undefined) {
          const url = await seeder.listen({ port: options.port, host: options.host })
          err.note(`serving auditors at ${url}/<call log key hex>`)
        }
        const targets = urls.length > 0 ? urls : seeder.previouslySeeded
        if (targets.length === 0) throw new UsageError('nothing to seed: give the URLs of VMs (ws://… or hyper://…)')
        for (const url of targets) {
          const kind = targetKind(url)
          if (kind === 'dir') throw new UsageError(`${url} is not a ws:// or hyper:// URL`)
          err.note(`seeding ${url}`)
          const info = kind === 'rpc' ? await handshake(url, options.timeout) : null
          const seeded = await seeder.seed(info ? info.callLogUrl : url, info ? { peers: [url] } : {})
          if (options.json) out.json(seeded)
          else {
            out.line(
              `${out.paint('green', '✓')} seeding ${seeded.callLogUrl} (${counted(seeded.length, 'entry', 'entries')}) and ${seeded.filesArchiveUrl}`,
            )
            if (seeded.rpcUrl) out.line(`  auditors: nodevms verify ${seeded.rpcUrl}`)
          }
        }
      } catch (error) {
        await seeder.close()
        throw error
      }
      if (!options.json) {
        const where = seeder.url ? `on the DHT and at ${seeder.url}` : 'on the DHT'
        out.line(out.paint('dim', `  serving ${where}; following the hosts; Ctrl-C stops`))
      }
      await untilStopped(async () => seeder.close())
    })
}
