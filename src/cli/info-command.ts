/** `nodevms info <url>`: what a host says about the VM it serves (its handshake). */
import type { Command } from 'commander'
import { CLIENT_NONCE_SCHEMA } from '../ledger/log-entry.js'
import { out } from './output.js'
import { parseTimeout } from './parse-options.js'
import { handshake } from './targets.js'

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('show what a VM is: title, auth mode, methods, call log and files URLs')
    .argument('<url>', "the VM's RPC URL (ws://host:port/path)")
    .option(
      '--json',
      'print it as one JSON object: {url, title, auth, methods, callLogUrl, filesArchiveUrl, schema, code}, plus bundle when the code is a bundle, codeHistory once the VM was upgraded, and replica from a seeder (with forked, and its fork proof, once it proved the host rewrote history)',
    )
    .option('--timeout <ms>', 'how long connecting may take', parseTimeout)
    .action(async (url: string, options: { json?: boolean; timeout?: number }) => {
      const info = await handshake(url, options.timeout)
      if (options.json) {
        out.json({
          url,
          title: info.title,
          auth: info.auth,
          methods: info.methods,
          callLogUrl: info.callLogUrl,
          filesArchiveUrl: info.filesArchiveUrl,
          ...(info.schema !== undefined ? { schema: info.schema } : {}),
          ...(info.code ? { code: info.code } : {}),
          ...(info.bundle ? { bundle: info.bundle } : {}),
          ...(info.codeHistory ? { codeHistory: info.codeHistory } : {}),
          ...(info.replica ? { replica: info.replica } : {}),
        })
        return
      }
      out.line(`${out.paint('bold', info.title || '(untitled VM)')}  ${url}`)
      out.line(`  auth      ${info.auth}${info.auth === 'debug' ? ' (caller ids are not authenticated)' : ' (callers sign every call)'}`)
      out.line(`  methods   ${info.methods.join(', ') || '(none)'}`)
      out.line(`  call log  ${info.callLogUrl}`)
      out.line(`  files     ${info.filesArchiveUrl}`)
      if (info.schema !== undefined) {
        const nonces = info.schema >= CLIENT_NONCE_SCHEMA ? "every call's entry holds its client's nonce" : 'entries hold no client nonces'
        out.line(`  schema    log schema ${info.schema} (${nonces})`)
      }
      if (info.code) {
        const since = info.code.seq === 0 ? 'since deploy' : `since the upgrade at entry ${info.code.seq}`
        const bundle = info.bundle ? `, bundled from ${info.bundle.entry} by ${info.bundle.bundler}` : ''
        out.line(`  code      ${info.code.hash} (${since}${bundle})`)
        for (const version of info.codeHistory ?? []) {
          if (version.seq === info.code.seq) continue
          out.line(`            ${out.paint('dim', `${version.hash} from entry ${version.seq}`)}`)
        }
      }
      if (info.replica) {
        const seen = info.replica.hostLastSeen ? `host last seen ${info.replica.hostLastSeen}` : 'host not seen since the seeder started'
        out.line(`  copy      a seeder's copy, not the host: ${info.replica.length} entries, ${seen}`)
        const forked = info.replica.forked
        if (forked) {
          const proof = forked.proof
            ? `its fork proof (${forked.proofBytes} bytes) is in the handshake: nodevms verify ${url} --proof <file> checks and writes it`
            : `its fork proof (${forked.proofBytes} bytes) is too large for the handshake: it is in the seeder's dir`
          out.line(
            `  ${out.paint('red', 'forked')}    the seeder says the host rewrote history this copy holds: ${forked.what} (host on fork ${forked.hostFork}, the copy on fork ${forked.copyFork}, seen ${forked.seenAt}); ${proof}`,
          )
        }
      }
    })
}
