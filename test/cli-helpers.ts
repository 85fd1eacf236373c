/** Running the built nodevms CLI as processes in tests: one-shot commands and long-running servers. */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'

export const root = fileURLToPath(new URL('..', import.meta.url))
export const BIN = join(root, 'dist/cli/nodevms.js')
export const SCRIPTS = join(root, 'examples/scripts')

interface Run {
  code: number
  stdout: string
  stderr: string
}

/** Runs `nodevms ...args` to completion (at most 60 s). */
export function nodevms(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: options.cwd ?? root, env: { ...process.env, ...options.env }, timeout: 150_000 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') reject(error)
        else resolve({ code: error ? (error.code as number) : 0, stdout, stderr })
      },
    )
  })
}

/** Resolves with the first stdout line of `child`, parsed as JSON (fails after 30 s or if it exits). */
export function firstLine<T>(child: ChildProcess, what: string, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    let stderr = ''
    child.stderr?.on('data', (chunk) => {
      stderr += chunk
    })
    const timer = setTimeout(() => reject(new Error(`${what} printed nothing within ${timeoutMs} ms: ${stderr}`)), timeoutMs)
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
    lines.once('line', (line) => {
      clearTimeout(timer)
      resolve(JSON.parse(line) as T)
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${what} exited with ${code}: ${stderr}`))
    })
  })
}

/** Resolves with the exit code once `child` has exited (SIGKILL after `ms`). */
export function exited(child: ChildProcess, ms = 30_000): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode)
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), ms)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
  })
}

export interface Served {
  rpcUrl: string
  callLogUrl: string
  filesArchiveUrl: string
  dir: string
  auth: string
  factory: boolean
  calls: number
  swarm: boolean
  pid: number
}

/** `nodevms exec <script> --port 0 --json ...`; the server is ended (SIGTERM, by pid) when the test ends. */
export async function exec(
  t: TestContext,
  script: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
): Promise<{ child: ChildProcess; served: Served }> {
  const child = spawn(process.execPath, [BIN, 'exec', script, '--port', '0', '--json', ...args], {
    cwd: root,
    env: env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      process.kill(child.pid, 'SIGTERM')
      await exited(child)
    }
  })
  const served = await firstLine<Served>(child, `nodevms exec ${script}`, 90_000)
  return { child, served }
}

/** SIGTERM (by pid), then the exit code; a child that already exited just gives its code. */
export async function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGTERM')
  return exited(child)
}

/** Everything `stream` writes, as it arrives. */
export function collect(stream: NodeJS.ReadableStream | null): { text: string } {
  const collected = { text: '' }
  stream?.on('data', (chunk) => {
    collected.text += chunk
  })
  return collected
}

/** Polls `done` every 250 ms for at most `ms`; resolves with whether it came true. */
export async function waitFor(done: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (!done()) {
    if (Date.now() >= deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  return true
}
