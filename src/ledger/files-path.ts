/**
 * Paths inside a files archive: absolute, normalized, and confined to the archive. A path that would
 * climb above the root, or holds a NUL character, is refused rather than clamped.
 */
import { posix } from 'node:path'
import { FilesError } from '../errors.js'

const MAX_PATH_LENGTH = 4096
const MAX_NAME_LENGTH = 255

export const filesErrors = {
  notFound: (path: string) => new FilesError('NotFound', `No file or directory at ${path}`),
  alreadyExists: (path: string) => new FilesError('AlreadyExists', `Something already exists at ${path}`),
  parentNotFound: (path: string) => new FilesError('ParentNotFound', `The parent directory of ${path} does not exist; mkdir it first`),
  notADirectory: (path: string) => new FilesError('NotADirectory', `${path} is not a directory`),
  isADirectory: (path: string) => new FilesError('IsADirectory', `${path} is a directory; use rmdir or readdir`),
  notAFile: (path: string) => new FilesError('NotAFile', `${path} is not a file`),
  directoryNotEmpty: (path: string) =>
    new FilesError('DirectoryNotEmpty', `${path} is not empty; pass {recursive: true} to remove it and its contents`),
  invalidPath: (path: unknown, why: string) =>
    new FilesError('InvalidPath', `Invalid path ${JSON.stringify(String(path)).slice(0, 200)}: ${why}`),
  invalidEncoding: (encoding: unknown) =>
    new FilesError('InvalidEncoding', `Unknown encoding ${JSON.stringify(encoding)}; use 'utf8', 'binary', 'base64' or 'hex'`),
  storageLimit: (limit: string, what: string) =>
    new FilesError('StorageLimitExceeded', `${what} (limits.${limit}); delete files first, or deploy with a larger quota`),
  rootIsImmutable: () => new FilesError('InvalidPath', 'The root directory / cannot be created, written or removed'),
}

/** Normalizes a path to `/a/b` form; relative paths are taken from the root. */
export function normalizePath(path: unknown): string {
  if (typeof path !== 'string') throw filesErrors.invalidPath(path, 'a path must be a string')
  if (path.length === 0) throw filesErrors.invalidPath(path, 'a path cannot be empty')
  if (path.length > MAX_PATH_LENGTH) throw filesErrors.invalidPath(path, `longer than ${MAX_PATH_LENGTH} characters`)
  if (path.includes('\0')) throw filesErrors.invalidPath(path, 'contains a NUL character')
  const segments: string[] = []
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue
    if (segment === '..') {
      if (segments.length === 0) throw filesErrors.invalidPath(path, 'climbs above the archive root')
      segments.pop()
      continue
    }
    if (segment.length > MAX_NAME_LENGTH) throw filesErrors.invalidPath(path, `a name is longer than ${MAX_NAME_LENGTH} characters`)
    segments.push(segment)
  }
  return `/${segments.join('/')}`
}

export function parentOf(path: string): string {
  return posix.dirname(path)
}

export function baseName(path: string): string {
  return posix.basename(path)
}

/** True if `path` is `dir` itself or inside it. */
export function isWithin(path: string, dir: string): boolean {
  return dir === '/' || path === dir || path.startsWith(`${dir}/`)
}
