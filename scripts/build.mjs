// The package's build (`npm run build`, and `prepare` when the package is installed from its folder).
//
// dist/ is never left missing or half-written, because another process may be running from it (a
// host, a test, an npm install of this folder). So the build compiles into a staging dir beside it.
// Then each file that differs replaces its copy in dist/ by a rename, which is atomic, and the
// files the build no longer makes are removed. The bin keeps its run bit.
//
// When nothing the build reads has changed since the last build (dist/.build-stamp holds a hash of
// its inputs), it does nothing at all: a second `npm install` of the folder, or `npm test` after
// `npm ci`, costs no compile. `--force` builds anyway.
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { inlineTexts } from './inline-texts.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const DIST = join(root, 'dist')
const STAMP = join(DIST, '.build-stamp')
const BIN = join(DIST, 'cli/nodevms.js')
const force = process.argv.includes('--force')

/** Every file below `dir` (relative to root), sorted. */
function filesUnder(dir) {
  const full = join(root, dir)
  if (!existsSync(full)) return []
  return readdirSync(full, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(root, join(entry.parentPath ?? entry.path, entry.name)))
    .sort()
}

/** A hash of everything the build reads: sources, type shims, configs, these scripts, the compiler's version. */
function inputsHash() {
  const hash = createHash('sha256')
  const tsc = createRequire(import.meta.url)('typescript/package.json').version
  hash.update(`typescript ${tsc}\n`)
  const inputs = [
    ...filesUnder('src'),
    ...filesUnder('types'),
    'tsconfig.json',
    'tsconfig.build.json',
    'scripts/build.mjs',
    'scripts/ship-type-shims.mjs',
    'scripts/inline-texts.mjs',
  ]
  for (const file of inputs) {
    hash.update(`${file}\n`)
    hash.update(readFileSync(join(root, file)))
  }
  return hash.digest('hex')
}

const stamp = inputsHash()
if (!force && existsSync(STAMP) && readFileSync(STAMP, 'utf8') === stamp && existsSync(BIN)) {
  process.exit(0)
}

const staging = join(root, `.dist-build-${process.pid}`)
rmSync(staging, { recursive: true, force: true })
try {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', staging], { cwd: root, stdio: 'inherit' })
  execFileSync(process.execPath, [join(root, 'scripts/ship-type-shims.mjs'), staging], { cwd: root, stdio: 'inherit' })
  inlineTexts(staging)
  chmodSync(join(staging, 'cli/nodevms.js'), 0o755)
  writeFileSync(join(staging, '.build-stamp'), stamp)
  install(staging)
} finally {
  rmSync(staging, { recursive: true, force: true })
}

/** Moves the staged build into dist/: changed files one rename each, the stamp last, then stale files go. */
function install(from) {
  const made = new Set(
    readdirSync(from, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map((entry) => relative(from, join(entry.parentPath ?? entry.path, entry.name))),
  )
  const ordered = [...made].filter((file) => file !== '.build-stamp').sort()
  for (const file of [...ordered, '.build-stamp']) {
    const target = join(DIST, file)
    const source = join(from, file)
    if (existsSync(target) && sameFile(source, target)) continue
    mkdirSync(dirname(target), { recursive: true })
    renameSync(source, target)
  }
  if (!existsSync(DIST)) return
  for (const entry of readdirSync(DIST, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const file = relative(DIST, join(entry.parentPath ?? entry.path, entry.name))
    if (!made.has(file)) rmSync(join(DIST, file), { force: true })
  }
}

/** Whether two files hold the same bytes and mode (a changed run bit counts as a change). */
function sameFile(a, b) {
  const [sa, sb] = [statSync(a), statSync(b)]
  if (sa.size !== sb.size || (sa.mode & 0o777) !== (sb.mode & 0o777)) return false
  return readFileSync(a).equals(readFileSync(b))
}
