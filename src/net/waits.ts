/** Bounded waits for the network layer: a pause, and a promise waited on for at most a while. */

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** `promise`'s value, or 'timeout' if it has not settled within `ms` (it is not cancelled). */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)))])
  } finally {
    clearTimeout(timer)
  }
}
