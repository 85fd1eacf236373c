/**
 * A line diff for the explorer: the lines of a text file one call removed and added. The common head
 * and tail are set aside, and the lines between are matched by a longest common subsequence (a table
 * of at most MAX_DIFF_LINES² 16-bit cells: 8 MB, four million steps). Larger files are not diffed: the
 * caller says why and shows the file before and after instead.
 */

/** The most lines either side of a diff may have. */
export const MAX_DIFF_LINES = 2000
/** Lines of unchanged context shown around each change. */
export const DIFF_CONTEXT = 3

export interface DiffLine {
  op: 'same' | 'del' | 'add'
  /** The line without its line break. */
  text: string
  /** Its line number before the call (1-based), for 'same' and 'del'. */
  a: number | null
  /** Its line number after the call, for 'same' and 'add'. */
  b: number | null
  /** The file's last line, with no line break after it (said only when the other side's last line has one). */
  noNewline?: true
}

export interface DiffHunk {
  /** The first line of the hunk before and after (1-based; 0 when that side has no line in it), and how many. */
  aStart: number
  aLines: number
  bStart: number
  bLines: number
  lines: DiffLine[]
}

export interface LineDiff {
  added: number
  removed: number
  hunks: DiffHunk[]
}

/** The lines of `text`, each with its '\n' (the last one may have none); '' has no lines. */
export function splitLines(text: string): string[] {
  const lines: string[] = []
  let at = 0
  // One pass, at most text.length + 1 turns.
  while (at < text.length) {
    const end = text.indexOf('\n', at)
    if (end === -1) {
      lines.push(text.slice(at))
      break
    }
    lines.push(text.slice(at, end + 1))
    at = end + 1
  }
  return lines
}

type Op = 'same' | 'del' | 'add'

/** The edit script turning `a` into `b`, line by line: 'same' (both advance), 'del' (a), 'add' (b). */
function editScript(a: string[], b: string[]): Op[] {
  let head = 0
  while (head < a.length && head < b.length && a[head] === b[head]) head++
  let tail = 0
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++
  // Lines as numbers: comparing ids is cheaper than comparing strings in the table's inner loop.
  const ids = new Map<string, number>()
  const idOf = (line: string) => {
    let id = ids.get(line)
    if (id === undefined) {
      id = ids.size
      ids.set(line, id)
    }
    return id
  }
  const x = Int32Array.from(a.slice(head, a.length - tail), idOf)
  const y = Int32Array.from(b.slice(head, b.length - tail), idOf)
  const n = x.length
  const m = y.length
  const width = m + 1
  // lcs[i * width + j]: the longest common subsequence of x[i..] and y[j..].
  const lcs = new Uint16Array((n + 1) * width)
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      const here = i * width + j
      lcs[here] = x[i] === y[j] ? lcs[here + width + 1] + 1 : Math.max(lcs[here + width], lcs[here + 1])
    }
  }
  const ops: Op[] = new Array(head).fill('same')
  let i = 0
  let j = 0
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) {
      ops.push('same')
      i++
      j++
    } else if (i < n && (j === m || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])) {
      ops.push('del')
      i++
    } else {
      ops.push('add')
      j++
    }
  }
  for (let k = 0; k < tail; k++) ops.push('same')
  return ops
}

/**
 * What turned `before` into `after`, as hunks of removed and added lines with `context` unchanged
 * lines around each change. Throws a RangeError for a side of more than MAX_DIFF_LINES lines.
 */
export function diffLines(before: string, after: string, context = DIFF_CONTEXT): LineDiff {
  const a = splitLines(before)
  const b = splitLines(after)
  if (a.length > MAX_DIFF_LINES || b.length > MAX_DIFF_LINES)
    throw new RangeError(`a line diff is made for at most ${MAX_DIFF_LINES} lines`)
  const ops = editScript(a, b)
  // A last line without a line break is said so only when the other side's ends with one.
  const endsWithBreak = (side: string[]) => side.length === 0 || side[side.length - 1].endsWith('\n')
  const markEnd = endsWithBreak(a) !== endsWithBreak(b)
  const lines: DiffLine[] = []
  let ai = 0
  let bi = 0
  for (const op of ops) {
    const raw = op === 'add' ? b[bi] : a[ai]
    const line: DiffLine = {
      op,
      text: raw.endsWith('\n') ? raw.slice(0, -1) : raw,
      a: op === 'add' ? null : ai + 1,
      b: op === 'del' ? null : bi + 1,
    }
    if (markEnd && !raw.endsWith('\n')) line.noNewline = true
    lines.push(line)
    if (op !== 'add') ai++
    if (op !== 'del') bi++
  }
  // Hunks: each change with `context` lines either side; changes closer than 2 × context share one.
  const hunks: DiffHunk[] = []
  let added = 0
  let removed = 0
  let k = 0
  while (k < lines.length) {
    if (lines[k].op === 'same') {
      k++
      continue
    }
    const start = Math.max(0, k - context)
    let end = k
    // Extend over changes and short runs of unchanged lines.
    while (end < lines.length) {
      if (lines[end].op !== 'same') {
        if (lines[end].op === 'add') added++
        else removed++
        end++
        continue
      }
      let run = end
      while (run < lines.length && lines[run].op === 'same') run++
      if (run < lines.length && run - end <= 2 * context) end = run
      else {
        end = Math.min(run, end + context)
        break
      }
    }
    const part = lines.slice(start, end)
    const firstA = part.find((l) => l.a !== null)?.a ?? null
    const firstB = part.find((l) => l.b !== null)?.b ?? null
    const aLines = part.filter((l) => l.a !== null).length
    const bLines = part.filter((l) => l.b !== null).length
    hunks.push({
      // As unified diffs write it: a side with no lines in the hunk starts after the line before it.
      aStart: firstA ?? lineBefore(lines, start, 'a'),
      aLines,
      bStart: firstB ?? lineBefore(lines, start, 'b'),
      bLines,
      lines: part,
    })
    k = end
  }
  return { added, removed, hunks }
}

/** The number of the last `side` line before index `start` (0 if none). */
function lineBefore(lines: DiffLine[], start: number, side: 'a' | 'b'): number {
  for (let i = start - 1; i >= 0; i--) {
    const n = lines[i][side]
    if (n !== null) return n
  }
  return 0
}
