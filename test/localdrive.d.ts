// Localdrive (a devDependency: the stock tests mirror archives into a folder with it) ships no types.
declare module 'localdrive' {
  class Localdrive {
    constructor(root: string, opts?: Record<string, unknown>)
    readonly root: string
    close(): Promise<void>
  }
  export default Localdrive
}
