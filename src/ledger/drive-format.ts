/**
 * The parts of Hyperdrive's storage format LibVMS writes directly: file entries live in the drive's
 * Hyperbee under the key `files\0<path>` with the value {executable, linkname, blob, metadata}, and
 * file contents in the blobs core (Hyperblobs). Writing them directly (instead of through Hyperdrive)
 * lets a call's changes go into an atomic storage batch together with its log entry. Any Hyperdrive
 * reads what is written here.
 *
 * Folders are stored by *files format* (recorded per VM in its init entry as `filesFormat`):
 *
 * - Format 0 (logs without `filesFormat`): a folder is an entry `files\0<path>` with blob null and
 *   metadata {type: 'directory', mtime}. Stock Hyperdrive tools take it for an empty file, so a mirror
 *   of an archive with a nested file fails (the folder is written as a file, then mkdir'd).
 * - Format 1: the `files\0` range holds files only, exactly as Hyperdrive writes them; folders made
 *   by mkdir are recorded under `folders\0<path>` (same value shape), a range Hyperdrive never reads.
 *   Stock tools see the files (and the folders their paths imply); LibVMS also knows empty folders.
 *
 * A format is part of the determinism contract (the bytes written decide the files digests): a VM
 * keeps the format it was deployed with, and its log replays with it for ever.
 */
import type { BlobId } from 'hyperblobs'

export const FILES_KEY_PREFIX = 'files\u0000'
/**
 * Files format 1: where folders made by mkdir are recorded — the key range `db.sub('folders')` would
 * use, beside Hyperdrive's `files` sub; Hyperdrive 13 reads only `files\0` (list, readdir, entry,
 * mirror, diff, watch, download), and its blobs-length scan skips values without a blob.
 */
export const FOLDERS_KEY_PREFIX = 'folders\u0000'

export type FilesFormat = 0 | 1

/** The files format new VMs are deployed with. */
export const CURRENT_FILES_FORMAT: FilesFormat = 1

/** The format a log records (absent: 0), or null if this LibVMS does not know it. */
export function filesFormat(version: unknown): FilesFormat | null {
  if (version === undefined) return 0
  return version === 0 || version === 1 ? version : null
}

/** The options Hyperdrive gives its Hyperbee; a Hyperbee over the same core must use the same. */
export const DRIVE_BEE_OPTIONS = { keyEncoding: 'utf-8', valueEncoding: 'json', metadata: { contentFeed: null } }

export interface DriveEntryValue {
  executable: boolean
  linkname: string | null
  blob: BlobId | null
  metadata: Record<string, unknown> | null
}

export function fileKey(path: string): string {
  return FILES_KEY_PREFIX + path
}

/** Files format 1: the key of the folder record at `path`. */
export function folderKey(path: string): string {
  return FOLDERS_KEY_PREFIX + path
}

/**
 * The key range of everything inside `folder` ('' for the root) that sorts after `folder + prev`,
 * among the keys starting with `prefix` (the files, or format 1's folder records).
 */
export function folderRange(folder: string, prev = '/', prefix = FILES_KEY_PREFIX): { gt: string; lt: string } {
  // '0' is the byte after '/'
  return { gt: prefix + folder + prev, lt: `${prefix}${folder}0` }
}
