/**
 * Key pair files (Node): save a key pair to a file only its owner can read, load it. The file is
 * JSON: {"type": "libvms-key-pair", "publicKey": hex, "secretKey": hex}.
 */
import { randomBytes } from 'node:crypto'
import { chmod, open, readFile, rename, rm, stat } from 'node:fs/promises'
import { InvalidArgumentError, KeyFileError } from '../errors.js'
import { exportKeyPair, importKeyPair, isKeyPair, type KeyPair } from './key-pair.js'

/**
 * Writes `keyPair` to `path` with file mode 0600. Refuses to replace an existing file unless
 * `overwrite` is set (then the old file is replaced atomically).
 */
export async function saveKeyPair(path: string, keyPair: KeyPair, options: { overwrite?: boolean } = {}): Promise<void> {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError('saveKeyPair(path, keyPair): path must be a file path')
  if (!isKeyPair(keyPair))
    throw new InvalidArgumentError('saveKeyPair(path, keyPair): keyPair must be {publicKey, secretKey} from generateKeyPair()')
  const text = `${exportKeyPair(keyPair)}\n`
  const target = options.overwrite ? `${path}.${randomBytes(6).toString('hex')}.tmp` : path
  let file: Awaited<ReturnType<typeof open>>
  try {
    file = await open(target, 'wx', 0o600)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') {
      throw new KeyFileError('ERR_KEY_FILE_EXISTS', `${path} already exists; choose another path, or pass {overwrite: true} to replace it`)
    }
    throw new KeyFileError('ERR_KEY_FILE_WRITE', `could not write the key pair to ${path}: ${(err as Error).message}`, { cause: err })
  }
  try {
    await file.writeFile(text)
    await file.sync()
    // The umask can only take bits away, but be explicit.
    await chmod(target, 0o600)
  } catch (err) {
    await file.close().catch(() => {})
    await rm(target, { force: true })
    throw new KeyFileError('ERR_KEY_FILE_WRITE', `could not write the key pair to ${path}: ${(err as Error).message}`, { cause: err })
  }
  await file.close()
  if (target !== path) await rename(target, path)
}

/**
 * Reads a key pair saved by saveKeyPair. Refuses a file that others can read or write (as ssh does):
 * a secret key anyone can read identifies nobody.
 */
export async function loadKeyPair(path: string): Promise<KeyPair> {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidArgumentError('loadKeyPair(path): path must be a file path')
  let text: string
  try {
    const info = await stat(path)
    if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) {
      throw new KeyFileError(
        'ERR_KEY_FILE_PERMISSIONS',
        `${path} can be read or written by other users (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 ${path}`,
      )
    }
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (err instanceof KeyFileError) throw err
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT')
      throw new KeyFileError(
        'ERR_KEY_FILE_MISSING',
        `there is no key pair file at ${path}; create one with generateKeyPair() and saveKeyPair() (or nodevms keygen)`,
      )
    throw new KeyFileError('ERR_KEY_FILE_READ', `could not read ${path}: ${(err as Error).message}`, { cause: err })
  }
  const { publicKey, secretKey } = importKeyPair(text, path)
  // As Buffers, as a loaded key pair has always been.
  return { publicKey: Buffer.from(publicKey), secretKey: Buffer.from(secretKey) }
}
