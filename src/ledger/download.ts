/**
 * Downloading whole cores from their hosts, with progress-based timeouts: a download fails when no
 * block arrives for a while, not after a fixed total time (a big log takes as long as it takes).
 */
import type Hypercore from 'hypercore'
import { LibVMSError } from '../errors.js'

/** Fetching from other hosts failed: no host known or reachable, a timeout, an incomplete copy. */
export class FetchError extends LibVMSError {
  constructor(code: string, message: string) {
    super('FetchError', code, message)
  }
}

/** Downloads blocks [0, length) of `core`; fails if no block arrives for `stallMs`. */
export async function downloadAll(core: Hypercore, url: string, stallMs: number): Promise<void> {
  const length = core.length
  if (length === 0 || core.contiguousLength >= length) return
  const download = core.download({ start: 0, end: length })
  let last = core.contiguousLength
  let watch: NodeJS.Timeout | undefined
  const stalled = new Promise<never>((_, reject) => {
    watch = setInterval(() => {
      if (core.contiguousLength === last) {
        download.destroy()
        reject(new FetchError('ERR_FETCH_TIMEOUT', `downloading ${url} stalled at block ${last} of ${length} for ${stallMs} ms`))
      }
      last = core.contiguousLength
    }, stallMs)
  })
  try {
    await Promise.race([download.done(), stalled])
  } finally {
    clearInterval(watch)
  }
  if (core.contiguousLength < length) {
    throw new FetchError('ERR_FETCH_INCOMPLETE', `${url}: only ${core.contiguousLength} of ${length} blocks arrived`)
  }
}
