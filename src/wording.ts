/** Words for messages: a count with its noun in the right number ("1 entry", "2 entries"). */
export function counted(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`
}
