/**
 * The builds compare-builds.ts measures. A build is a LibVMS checkout after its own `npm run build`:
 * either a git revision, checked out in a temporary worktree of this repository (its node_modules a
 * link to this checkout's; removed with `git worktree remove --force` at the end), or a checkout as
 * it is (this one by default, or a directory given), built in place as `npm run bench` builds.
 *
 * Bench programs run on a build through libvms-build.mjs (`libvms` → the build's dist/) and the
 * build's CLI (`dist/cli/nodevms.js`).
 */
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, readFileSync, realpathSync, statSync, symlinkSync, unlinkSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { log } from './bench-stats.js'

const execFileAsync = promisify(execFile)

/** How long one `npm run build` may take. */
const BUILD_TIME_LIMIT_MS = 5 * 60_000
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

async function run(command: string, args: string[], cwd: string, timeoutMs: number): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { cwd, timeout: timeoutMs, maxBuffer: 16 * 2 ** 20 })
    return stdout
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string }
    const output = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n')
    throw new Error(`${command} ${args.join(' ')} (in ${cwd}) failed: ${e.message.split('\n')[0]}\n${output}`)
  }
}

/** The builds of one comparison, and the temporary worktrees made for them. */
export class BuildTrees {
  readonly #worktrees: string[] = []

  /**
   * @param repoDir this checkout: the repository revisions are looked up in, whose node_modules the
   *   worktrees link to
   * @param rootDir where temporary worktrees go (the run's temp root)
   */
  constructor(
    private readonly repoDir: string,
    private readonly rootDir: string,
  ) {}

  /** Checks out (for a revision) and builds `asked`: a git revision, a directory, or undefined for this checkout. */
  async prepare(label: Build['label'], asked: string | undefined): Promise<Build> {
    let tree: string
    let temporary = false
    if (asked === undefined) {
      tree = this.repoDir
    } else if (existsSync(asked) && statSync(asked).isDirectory()) {
      tree = resolve(asked)
      const pkg = join(tree, 'package.json')
      if (!existsSync(pkg) || (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name !== 'libvms') {
        throw new Error(
          `--${label} ${asked}: not a LibVMS checkout (no package.json named libvms); give a git revision or a checkout's directory`,
        )
      }
    } else {
      const commit = await this.#commitOf(asked, label)
      tree = join(this.rootDir, `${label}-tree`)
      log(`${label}: checking out ${asked} (${commit.slice(0, 12)}) in ${tree}`)
      await run('git', ['-C', this.repoDir, 'worktree', 'add', '--detach', tree, commit], this.repoDir, GIT_TIME_LIMIT_MS)
      this.#worktrees.push(tree)
      temporary = true
      symlinkSync(realpathSync(join(this.repoDir, 'node_modules')), join(tree, 'node_modules'), 'dir')
    }
    const [commit, subject] = (await run('git', ['log', '-1', '--format=%H%x00%s'], tree, GIT_TIME_LIMIT_MS)).trim().split('\0')
    const uncommitted = (await run('git', ['status', '--porcelain', '--untracked-files=no'], tree, GIT_TIME_LIMIT_MS)).trim() !== ''
    log(`${label}: npm run build in ${tree}`)
    const started = performance.now()
    await run('npm', ['run', 'build'], tree, BUILD_TIME_LIMIT_MS)
    const buildMs = Math.round(performance.now() - started)
    const build: Build = { label, asked: asked ?? null, commit, subject, tree, temporary, uncommitted, buildMs }
    await this.#checkResolution(build)
    return build
  }

  async #commitOf(rev: string, label: string): Promise<string> {
    try {
      return (await run('git', ['rev-parse', '--verify', '--quiet', `${rev}^{commit}`], this.repoDir, GIT_TIME_LIMIT_MS)).trim()
    } catch {
      throw new Error(`--${label} ${rev}: neither a directory nor a git revision of ${this.repoDir} (try a commit, a branch, or HEAD~3)`)
    }
  }

  /** A bench program started with envFor(build) must import the build's own dist/: asks a node process where `libvms` resolves. */
  async #checkResolution(build: Build): Promise<void> {
    const { stdout } = await execFileAsync(
      process.execPath,
      ['--input-type=module', '-e', "process.stdout.write(import.meta.resolve('libvms'))"],
      { cwd: this.repoDir, env: envFor(build), timeout: GIT_TIME_LIMIT_MS },
    )
    const expected = pathToFileURL(join(build.tree, 'dist', 'index.js')).href
    if (stdout !== expected) throw new Error(`on the ${build.label} build, libvms resolves to ${stdout}, not ${expected}`)
  }

  /** Removes the temporary worktrees (the link to node_modules first, so nothing follows it). */
  async removeAll(): Promise<void> {
    for (const tree of this.#worktrees.splice(0)) {
      this.#unlinkModules(tree)
      await run('git', ['-C', this.repoDir, 'worktree', 'remove', '--force', tree], this.repoDir, GIT_TIME_LIMIT_MS)
    }
  }

  /** removeAll, synchronously: for a watchdog or a signal handler that is about to exit. */
  removeAllSync(): void {
    for (const tree of this.#worktrees.splice(0)) {
      this.#unlinkModules(tree)
      try {
        execFileSync('git', ['-C', this.repoDir, 'worktree', 'remove', '--force', tree], { timeout: GIT_TIME_LIMIT_MS, stdio: 'ignore' })
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
