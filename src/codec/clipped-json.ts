/**
 * JSON text cut to a length without writing the rest: a row of the explorer or a line of `nodevms
 * log` shows the first few hundred characters of values that may each hold megabytes, and writing
 * them whole (JSON.stringify, then cutting) would hold a copy of every one.
 */

/** Text of at most `max` characters, written piece by piece; past `max` it only notes that it was cut. */
export class ClippedText {
  private readonly parts: string[] = []
  private length = 0
  /** True once something did not fit. */
  cut = false

  constructor(private readonly max: number) {}

  /** Appends `text` (as much as fits); false once full. */
  text(text: string): boolean {
    if (this.cut) return false
    const room = this.max - this.length
    if (text.length > room) {
      this.parts.push(text.slice(0, room))
      this.length = this.max
      this.cut = true
      return false
    }
    this.parts.push(text)
    this.length += text.length
    return true
  }

  /**
   * Appends the JSON text of `value`, a value as JSON.parse returns it, exactly as JSON.stringify
   * writes it (`undefined` as the word), as much as fits; false once full. A long string is escaped
   * only as far as it can be shown.
   */
  json(value: unknown): boolean {
    return value === undefined ? this.text('undefined') : this.value(value)
  }

  private value(value: unknown): boolean {
    if (typeof value === 'string') {
      const room = this.max - this.length
      return this.text(JSON.stringify(value.length > room ? value.slice(0, room) : value))
    }
    if (value === null || typeof value !== 'object') return this.text(JSON.stringify(value) ?? 'null')
    if (Array.isArray(value)) {
      if (!this.text('[')) return false
      for (let i = 0; i < value.length; i++) {
        if (i > 0 && !this.text(',')) return false
        if (!this.value(value[i] === undefined ? null : value[i])) return false
      }
      return this.text(']')
    }
    if (!this.text('{')) return false
    let first = true
    for (const [key, item] of Object.entries(value)) {
      if (item === undefined) continue
      if (!this.text(`${first ? '' : ','}${JSON.stringify(key)}:`)) return false
      first = false
      if (!this.value(item)) return false
    }
    return this.text('}')
  }

  /** The text, with '…' after it when it was cut. */
  toString(): string {
    const text = this.parts.join('')
    return this.cut ? `${text}…` : text
  }
}

/** `value`'s JSON text (JSON.stringify's; `undefined` as the word), cut after `max` characters with '…'. */
export function clippedJSON(value: unknown, max: number): string {
  const text = new ClippedText(max)
  text.json(value)
  return text.toString()
}

/** The JSON texts of `values` joined by `separator` (a call's arguments, say), cut after `max` characters with '…'. */
export function clippedList(values: readonly unknown[], max: number, separator = ', '): string {
  const text = new ClippedText(max)
  for (let i = 0; i < values.length; i++) if ((i > 0 && !text.text(separator)) || !text.json(values[i])) break
  return text.toString()
}
