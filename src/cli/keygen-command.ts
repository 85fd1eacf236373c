/** `nodevms keygen`: a new Ed25519 key pair for production-mode calls. */
import type { Command } from 'commander'
import { saveKeyPair } from '../auth/key-file.js'
import { callerIdOf, generateKeyPair } from '../auth/key-pair.js'
import { err, out } from './output.js'

export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description('make a key pair for production-mode VMs (the public key is your caller id)')
    .option('-o, --out <file>', 'save it to this file, readable only by you (mode 0600)')
    .option('--force', 'replace the file if it exists')
    .option('--json', 'print {callerId, file} as JSON')
    .addHelpText('after', '\nWithout --out the key pair file is printed to stdout: keep it secret, and chmod 600 the file you keep it in.')
    .action(async (options: { out?: string; force?: boolean; json?: boolean }) => {
      const keyPair = generateKeyPair()
      const callerId = callerIdOf(keyPair)
      if (options.out === undefined) {
        out.json({ type: 'libvms-key-pair', publicKey: callerId, secretKey: Buffer.from(keyPair.secretKey).toString('hex') })
        err.line(`caller id ${callerId} (the secret key is in the output: keep it private)`)
        return
      }
      await saveKeyPair(options.out, keyPair, { overwrite: !!options.force })
      if (options.json) out.json({ callerId, file: options.out })
      else out.line(`${out.paint('green', '✓')} saved ${options.out} (mode 0600)\n  caller id ${callerId}`)
    })
}
