/** Words for messages: a count with its noun in the right number ("1 entry", "2 entries"), a size in bytes. */
export function counted(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`
}

/** A size in bytes, in MiB (or GiB from 10 GiB up), for messages: "64 MiB", "12.5 GiB". */
export function formatBytes(bytes: number): string {
  const mib = bytes / 2 ** 20
  if (mib >= 10 * 1024) return `${Number((mib / 1024).toFixed(1))} GiB`
  return `${Number(mib.toFixed(1))} MiB`
}
