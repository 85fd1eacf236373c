/**
 * The builds compare-builds.ts measures. A build is a LibVMS checkout after its own `npm run build`:
 * either a git revision, checked out in a temporary worktree of this repository (its node_modules a
 * link to this checkout's; removed with `git worktree remove --force` at the end), or a checkout as
 * it is (this one by default, or a directory given), built in place as `npm run bench` builds.
 *
 * Bench programs run on a build through libvms-build.mjs (`libvms` → the build's dist/) and the
 * build's CLI (`dist/cli/nodevms.js`).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, realpathSync, statSync, symlinkSync, unlinkSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { join, relative, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { withTimeout } from './bench-children.js'
import { log } from './bench-stats.js'

/** How long one `npm run build` may take. */
const BUILD_TIME_LIMIT_MS = 5 * 60_000
/** How long a git command, or the check of where `libvms` resolves, may take. */
const GIT_TIME_LIMIT_MS = 60_000
const LOADER_URL = new URL('./libvms-build.mjs', import.meta.url).href

export interface Build {
  label: 'base' | 'head'
  /** What was asked for: a git revision, a directory, or null (this checkout). */
  asked: string | null
  commit: string
  subject: string
  tree: string
  /** A worktree this run made, removed at its end. */
  temporary: boolean
  /** The checkout had uncommitted changes to tracked files; the build includes them. */
  uncommitted: boolean
  buildMs: number
}

/** The build's CLI (run it with node). */
export function cliOf(build: Build): string {
  return join(build.tree, 'dist', 'cli', 'nodevms.js')
}

/**
 * The environment a bench program runs on `build` with: `libvms` resolves to its dist/ in this
 * process and in every node process it starts (NODE_OPTIONS carries the preload).
 */
export function envFor(build: Build, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const nodeOptions = [process.env.NODE_OPTIONS, `--import ${LOADER_URL}`].filter(Boolean).join(' ')
  return { ...process.env, ...extra, LIBVMS_BENCH_BUILD: build.tree, NODE_OPTIONS: nodeOptions }
}

/**
 * Whether two builds' dist/ trees hold the same files with the same bytes (files whose names start
 * with a dot, such as a build stamp, left out): then every difference between their figures is noise.
 */
export async function sameDist(a: Build, b: Build): Promise<boolean> {
  const [filesA, filesB] = await Promise.all([distDigests(a), distDigests(b)])
  return filesA.size === filesB.size && [...filesA].every(([path, digest]) => filesB.get(path) === digest)
}

/** Each file of the build's dist/ (by its path in it) and its SHA-256. */
async function distDigests(build: Build): Promise<Map<string, string>> {
  const dist = join(build.tree, 'dist')
  const digests = new Map<string, string>()
  for (const entry of await readdir(dist, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || entry.name.startsWith('.')) continue
    const path = join(entry.parentPath, entry.name)
    digests.set(
      relative(dist, path),
      createHash('sha256')
        .update(await readFile(path))
        .digest('hex'),
    )
  }
  return digests
}

/** The builds of one comparison, and the temporary worktrees made for them. */
export class BuildTrees {
  readonly #worktrees: string[] = []
  /** The commands (git, npm) running now, each the leader of a process group of its own. */
  readonly #running = new Set<ChildProcess>()

  readonly #repoDir: string
  readonly #rootDir: string

  /**
   * @param repoDir this checkout: the repository revisions are looked up in, whose node_modules the
   *   worktrees link to
   * @param rootDir where temporary worktrees go (the run's temp root)
   */
  constructor(repoDir: string, rootDir: string) {
    this.#repoDir = resolve(repoDir)
    this.#rootDir = rootDir
  }

  /**
   * Checks out (for a revision) and builds `asked`: a git revision of this repository, else a
   * checkout's directory, or undefined for this checkout.
   */
  async prepare(label: Build['label'], asked: string | undefined): Promise<Build> {
    const { tree, temporary } = await this.#treeOf(label, asked)
    const [commit, subject] = (await this.#run('git', ['log', '-1', '--format=%H%x00%s'], tree, GIT_TIME_LIMIT_MS)).trim().split('\0')
    const uncommitted = (await this.#run('git', ['status', '--porcelain', '--untracked-files=no'], tree, GIT_TIME_LIMIT_MS)).trim() !== ''
    log(`${label}: npm run build in ${tree}`)
    const started = performance.now()
    await this.#run('npm', ['run', 'build'], tree, BUILD_TIME_LIMIT_MS)
    const buildMs = Math.round(performance.now() - started)
    const build: Build = { label, asked: asked ?? null, commit, subject, tree, temporary, uncommitted, buildMs }
    await this.#checkResolution(build)
    return build
  }

  /** Where `asked` is checked out: this checkout, a directory given, or a new worktree of the revision. */
  async #treeOf(label: Build['label'], asked: string | undefined): Promise<{ tree: string; temporary: boolean }> {
    if (asked === undefined) return { tree: this.#repoDir, temporary: false }
    const commit = await this.#commitOf(asked)
    if (commit === null) {
      if (!existsSync(asked) || !statSync(asked).isDirectory()) {
        throw new Error(
          `--${label} ${asked}: neither a git revision of ${this.#repoDir} nor a directory (try a commit, a branch, HEAD~3 or a checkout's path)`,
        )
      }
      const tree = resolve(asked)
      const pkg = join(tree, 'package.json')
      if (!existsSync(pkg) || (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name !== 'libvms') {
        throw new Error(
          `--${label} ${asked}: not a LibVMS checkout (no package.json named libvms); give a git revision or a checkout's directory`,
        )
      }
      return { tree, temporary: false }
    }
    const tree = join(this.#rootDir, `${label}-tree`)
    log(`${label}: checking out ${asked} (${commit.slice(0, 12)}) in ${tree}`)
    await this.#run('git', ['-C', this.#repoDir, 'worktree', 'add', '--detach', tree, commit], this.#repoDir, GIT_TIME_LIMIT_MS)
    this.#worktrees.push(tree)
    symlinkSync(realpathSync(join(this.#repoDir, 'node_modules')), join(tree, 'node_modules'), 'dir')
    return { tree, temporary: true }
  }

  /** The commit `rev` names in this repository, or null if it names none. */
  async #commitOf(rev: string): Promise<string | null> {
    try {
      return (await this.#run('git', ['rev-parse', '--verify', '--quiet', `${rev}^{commit}`], this.#repoDir, GIT_TIME_LIMIT_MS)).trim()
    } catch {
      return null
    }
  }

  /** A bench program started with envFor(build) must import the build's own dist/: asks a node process where `libvms` resolves. */
  async #checkResolution(build: Build): Promise<void> {
    const script = "process.stdout.write(import.meta.resolve('libvms'))"
    const stdout = await this.#run(process.execPath, ['--input-type=module', '-e', script], this.#repoDir, GIT_TIME_LIMIT_MS, envFor(build))
    const expected = pathToFileURL(join(build.tree, 'dist', 'index.js')).href
    if (stdout !== expected) throw new Error(`on the ${build.label} build, libvms resolves to ${stdout}, not ${expected}`)
  }

  /**
   * Runs a command (git, npm) to completion within `timeoutMs`; resolves with its stdout. It leads a
   * process group of its own, so that ending it (on a time-out, or abandonSync) ends what it started
   * too (npm's shell and tsc).
   */
  async #run(command: string, args: string[], cwd: string, timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<string> {
    const label = `${command} ${args.join(' ')} (in ${cwd})`
    const child = spawn(command, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    this.#running.add(child)
    let output = ''
    let stdout = ''
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
      output += chunk
    })
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk
    })
    try {
      const ended = new Promise<number | string | null>((resolve, reject) => {
        child.once('error', reject)
        child.once('close', (code, signal) => resolve(code ?? signal))
      })
      const outcome = await withTimeout(ended, timeoutMs, label)
      if (outcome !== 0) throw new Error(`${label} ended with ${outcome}:\n${output.trim().split('\n').slice(-20).join('\n')}`)
      return stdout
    } finally {
      this.#endGroup(child)
      this.#running.delete(child)
    }
  }

  /** Ends the process group `child` leads, if it is still running. */
  #endGroup(child: ChildProcess): void {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }

  /** Removes the temporary worktrees (the link to node_modules first, so nothing follows it). */
  async removeAll(): Promise<void> {
    for (const tree of this.#worktrees.splice(0)) {
      this.#unlinkModules(tree)
      await this.#run('git', ['-C', this.#repoDir, 'worktree', 'remove', '--force', tree], this.#repoDir, GIT_TIME_LIMIT_MS)
    }
  }

  /** For a watchdog or a signal handler that is about to exit: ends the commands running, then removes the worktrees, synchronously. */
  abandonSync(): void {
    for (const child of this.#running) this.#endGroup(child)
    for (const tree of this.#worktrees.splice(0)) {
      this.#unlinkModules(tree)
      try {
        execFileSync('git', ['-C', this.#repoDir, 'worktree', 'remove', '--force', tree], { timeout: GIT_TIME_LIMIT_MS, stdio: 'ignore' })
      } catch {
        log(`could not remove the worktree ${tree}: remove it with git worktree remove --force ${tree}`)
      }
    }
  }

  #unlinkModules(tree: string): void {
    try {
      unlinkSync(join(tree, 'node_modules'))
    } catch {
      // not made yet, or already gone
    }
  }
}
