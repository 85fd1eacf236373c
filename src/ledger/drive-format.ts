/**
 * The parts of Hyperdrive's storage format LibVMS writes directly: file entries live in the drive's
 * Hyperbee under the key `files\0<path>` with the value {executable, linkname, blob, metadata}, and
 * file contents in the blobs core (Hyperblobs). Writing them directly (instead of through Hyperdrive)
 * lets a call's changes go into an atomic storage batch together with its log entry. Any Hyperdrive
 * reads what is written here.
 */
import type { BlobId } from 'hyperblobs'

export const FILES_KEY_PREFIX = 'files\u0000'

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

/** The key range of everything inside `folder` ('' for the root) that sorts after `folder + prev`. */
export function folderRange(folder: string, prev = '/'): { gt: string; lt: string } {
  // '0' is the byte after '/'
  return { gt: FILES_KEY_PREFIX + folder + prev, lt: `${FILES_KEY_PREFIX}${folder}0` }
}
