/**
 * `nodevms explore`, in a real headless browser: Debian's Chromium driven by puppeteer-core (which
 * downloads nothing). Each test runs the built CLI as a child process on a VM's data dir (or its
 * ws:// URL) and reads the page the way a person would: rows, filters, files as of a call, the
 * audit's verdict. Every request the page makes is intercepted: any to a host other than 127.0.0.1
 * is refused and fails the test.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, type TestContext, test } from 'node:test'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import { diffLines } from '../src/explorer/line-diff.js'
import { type CallEntry, CallLog, callerIdOf, generateKeyPair, type LogEntry, RPCClient, RPCServer, Verifier, VM } from '../src/index.js'
import { VMStorage } from '../src/ledger/vm-storage.js'
import { BIN, collect, exec, firstLine, nodevms, root, SCRIPTS, stop, waitFor } from './cli-helpers.js'
import { tempDir } from './helpers.js'

const NOTES = `
  exports.note = async (folder, name, text) => {
    await System.files.mkdir('/notes').catch(() => {})
    await System.files.mkdir('/notes/' + folder).catch(() => {})
    await System.files.writeFile('/notes/' + folder + '/' + name, text)
    return { saved: '/notes/' + folder + '/' + name, by: System.caller.id }
  }
  exports.boom = (text) => { throw new Error(text) }
  exports.echo = (value) => value
`

/** Markup a hostile script can return: the page must show it as text and fetch nothing it names. */
const HOSTILE = '<img src="http://example.com/x.png" onerror="window.pwned=1"><script src="http://example.com/x.js"></script>'

function chromiumPath(): string {
  const candidates = [process.env.PUPPETEER_EXECUTABLE_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser']
  for (const path of candidates) if (path && existsSync(path)) return path
  throw new Error('no Chromium found: apt-get install -y chromium, or set PUPPETEER_EXECUTABLE_PATH')
}

let browser: Browser | null = null

async function theBrowser(): Promise<Browser> {
  browser ??= await puppeteer.launch({
    executablePath: chromiumPath(),
    args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--no-first-run', '--disable-extensions'],
    headless: true,
  })
  return browser
}

/**
 * Screenshots of each state, kept for a person to look at: one folder in the OS temp dir, emptied at
 * the start of each run (so runs do not pile up), named in the test output.
 */
const shotsDir = join(tmpdir(), 'libvms-explorer-screenshots')
await rm(shotsDir, { recursive: true, force: true })
await mkdir(shotsDir, { recursive: true })

after(async () => {
  await browser?.close()
  browser = null
})

/**
 * What each page of a test must not have done (open a dialog, throw), checked when the test ends:
 * in afterEach, which runs before the test's own cleanups and, failing, still lets them all run (a
 * failing t.after hook would skip the cleanups after it, leaving servers running).
 */
const pageChecks: (() => void)[] = []
afterEach(() => {
  for (const check of pageChecks.splice(0)) check()
})

async function screenshot(t: TestContext, page: Page, name: string): Promise<void> {
  const file = join(shotsDir, `${name}.png`)
  await page.screenshot({ path: file as `${string}.png`, fullPage: true })
  t.diagnostic(`screenshot: ${file}`)
}

/** Deploys the notes VM into a temp dir: nested files by two users, one failing call (hostile text), then closes it. */
async function notesVM(t: TestContext): Promise<string> {
  const dir = join(await tempDir(t, 'libvms-explorer-'), 'vm')
  const vm = new VM(NOTES)
  await vm.deploy({ dir, title: 'Notes <b>VM</b>' })
  try {
    await vm.executeCall({ methodName: 'note', args: ['alice', 'todo.txt', 'first version'], userId: 'alice' })
    await vm.executeCall({ methodName: 'note', args: ['bob', 'idea.txt', 'bob was here'], userId: 'bob' })
    await assert.rejects(vm.executeCall({ methodName: 'boom', args: [HOSTILE], userId: 'bob' }))
    await vm.executeCall({ methodName: 'note', args: ['alice', 'todo.txt', 'second version'], userId: 'alice' })
    await vm.executeCall({ methodName: 'echo', args: [HOSTILE], userId: 'mallory' })
  } finally {
    await vm.close()
  }
  return dir
}

interface Explored {
  url: string
  target: string
  callLogUrl: string
}

/** `nodevms explore <target> --json --port 0` as a child process, ended (SIGTERM, by pid) when the test ends. */
async function explore(t: TestContext, target: string): Promise<{ child: ChildProcess; explored: Explored }> {
  const child = spawn(process.execPath, [BIN, 'explore', target, '--json', '--port', '0'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.after(() => stop(child))
  const explored = await firstLine<Explored>(child, `nodevms explore ${target}`, 30_000)
  return { child, explored }
}

/**
 * A page that may only talk to 127.0.0.1: every request is recorded, any other is aborted and noted.
 * `beforeLoad` runs once the page exists, before it loads (to add a script to every document).
 */
async function openPage(
  t: TestContext,
  url: string,
  beforeLoad?: (page: Page) => Promise<unknown>,
): Promise<{ page: Page; requests: string[]; outside: string[] }> {
  const page = await (await theBrowser()).newPage()
  t.after(() => page.close())
  page.setDefaultTimeout(20_000)
  await page.setViewport({ width: 1280, height: 900 })
  const requests: string[] = []
  const outside: string[] = []
  await page.setRequestInterception(true)
  page.on('request', (request) => {
    const where = request.url()
    requests.push(where)
    let host = ''
    try {
      host = new URL(where).hostname
    } catch {
      // not a URL: refused below
    }
    if (host === '127.0.0.1') request.continue()
    else {
      outside.push(where)
      request.abort()
    }
  })
  const dialogs: string[] = []
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message())
    dialog.dismiss()
  })
  const errors: string[] = []
  page.on('pageerror', (error) => errors.push(String(error)))
  pageChecks.push(() => {
    assert.deepEqual(dialogs, [], 'the page opened no dialog')
    assert.deepEqual(errors, [], 'the page threw nothing')
  })
  await beforeLoad?.(page)
  await page.goto(url)
  await page.waitForSelector('body[data-ready="true"]')
  return { page, requests, outside }
}

/** The seqs of the rows the table shows, top to bottom. */
function shownSeqs(page: Page): Promise<number[]> {
  return page.$$eval('#entries-body tr', (rows) => rows.map((row) => Number((row as HTMLElement).dataset.seq)))
}

async function waitForSeqs(page: Page, seqs: number[]): Promise<void> {
  await page.waitForFunction(
    (want: string) =>
      JSON.stringify([...document.querySelectorAll('#entries-body tr')].map((r) => Number((r as HTMLElement).dataset.seq))) === want,
    {},
    JSON.stringify(seqs),
  )
}

async function text(page: Page, selector: string): Promise<string> {
  return page.$eval(selector, (node) => node.textContent ?? '')
}

/** Submits the filter form with these values. */
async function filter(page: Page, values: { method?: string; caller?: string; failed?: boolean }): Promise<void> {
  await page.$eval('#filter-method', (input, v) => ((input as HTMLInputElement).value = v), values.method ?? '')
  await page.$eval('#filter-caller', (input, v) => ((input as HTMLInputElement).value = v), values.caller ?? '')
  await page.$eval('#filter-failed', (input, v) => ((input as HTMLInputElement).checked = v), !!values.failed)
  await page.click('#filter-apply')
}

/** Shows the files tree as of call `seq` (a new tree: the old one is marked, and waited away). */
async function showFilesAsOf(page: Page, seq: number): Promise<void> {
  await page.$eval('#files-tree', (tree) => {
    ;(tree as HTMLElement).dataset.stale = 'true'
  })
  await page.$eval('#files-seq', (input, v) => ((input as HTMLInputElement).value = v), String(seq))
  await page.click('#files-show')
  await page.waitForFunction(
    (s: string) =>
      !document.querySelector('#files-tree[data-stale]') &&
      document.getElementById('files-status')?.textContent?.startsWith(`as of call ${s} `),
    {},
    String(seq),
  )
}

/** Opens the folder at `path` in the files tree (a click, unless it is open already) and waits for its children. */
async function openFolder(page: Page, path: string): Promise<void> {
  const button = await page.waitForSelector(`#files-tree li[data-path="${path}"] > button`)
  if ((await button?.evaluate((b) => b.getAttribute('aria-expanded'))) !== 'true') await button?.click()
  await page.waitForSelector(`#files-tree li[data-path="${path}"] > ul[data-loaded]:not([hidden])`)
}

/** The names directly in the tree's folder `path` ('/' the root), as shown. */
function folderNames(page: Page, path: string): Promise<string[]> {
  const list = path === '/' ? '#files-tree' : `#files-tree li[data-path="${path}"] > ul`
  return page.$$eval(`${list} > li > button`, (buttons) => buttons.map((b) => b.textContent ?? ''))
}

/** Shows the files as of call `seq` and opens `path` in the tree (folder by folder), as a person would. */
async function openFileAsOf(page: Page, seq: number, path: string): Promise<string> {
  await showFilesAsOf(page, seq)
  const parts = path.split('/').filter(Boolean)
  let at = ''
  for (const [i, part] of parts.entries()) {
    at += `/${part}`
    if (i < parts.length - 1) await openFolder(page, at)
    else await (await page.waitForSelector(`#files-tree button[data-path="${at}"]`))?.click()
  }
  await page.waitForFunction(
    (p: string, s: string) =>
      document.getElementById('file-name')?.textContent === p &&
      document.getElementById('file-info')?.textContent?.includes(`as of call ${s},`),
    {},
    path,
    String(seq),
  )
  return text(page, '#file-content')
}

/** The diff's line rows as [line before, line after, sign, text]. */
function diffRows(page: Page): Promise<string[][]> {
  return page.$$eval('#diff-lines tr.diff-same, #diff-lines tr.diff-del, #diff-lines tr.diff-add', (rows) =>
    rows.map((row) => [...(row as HTMLTableRowElement).cells].map((cell) => cell.firstChild?.textContent ?? '')),
  )
}

async function audit(page: Page): Promise<string> {
  await page.click('#audit-start')
  await page.waitForSelector('#verdict-text')
  return text(page, '#verdict-text')
}

test('an honest VM: entries, filters, a file as of an earlier call, and the audit verifies', async (t) => {
  const dir = await notesVM(t)
  const { child, explored } = await explore(t, dir)
  assert.match(explored.url, /^http:\/\/127\.0\.0\.1:\d+\/$/)
  assert.match(explored.callLogUrl, /^hyper:\/\/[0-9a-f]{64}$/)
  const { page, outside } = await openPage(t, explored.url)

  // The header: hostile-looking text shown as text.
  assert.equal(await text(page, '#vm-title'), 'Notes <b>VM</b>')
  assert.match(await text(page, '#vm-mode'), /debug mode/)
  assert.match(await text(page, '#vm-facts'), /hyper:\/\/[0-9a-f]{64}/)
  assert.match(await text(page, '#vm-code'), /exports\.note = async/)

  // All six entries, newest first; the failed call's error is literal text.
  assert.deepEqual(await shownSeqs(page), [5, 4, 3, 2, 1, 0])
  const failed = await page.$eval('#entries-body tr[data-seq="3"]', (row) => ({
    outcome: row.querySelector('.outcome')?.textContent,
    failed: row.classList.contains('failed'),
  }))
  assert.ok(failed.failed)
  assert.equal(failed.outcome, `✗ Error: ${HOSTILE}`)
  assert.equal(await page.$$eval('#entries img, #entries script', (nodes) => nodes.length), 0, 'no markup from the log')
  assert.equal(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned), undefined)
  await screenshot(t, page, '1-entries')

  // Filters, answered by the server.
  await filter(page, { method: 'note' })
  await waitForSeqs(page, [4, 2, 1])
  await filter(page, { method: 'note', caller: 'alice' })
  await waitForSeqs(page, [4, 1])
  await filter(page, { failed: true })
  await waitForSeqs(page, [3])
  await screenshot(t, page, '2-failed-only')
  await page.click('#filter-clear')
  await waitForSeqs(page, [5, 4, 3, 2, 1, 0])

  // Keyboard: focus a row, Enter opens its detail, with what the call changed.
  await page.focus('#entries-body tr[data-seq="5"]')
  await page.keyboard.press('ArrowDown')
  assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.seq), '4')
  await page.keyboard.press('Enter')
  await page.waitForFunction(() => document.getElementById('detail-heading')?.textContent === 'Entry #4')
  await page.waitForFunction(() => document.getElementById('detail-changes')?.textContent?.includes('put /notes/alice/todo.txt'))
  assert.match(await text(page, '#detail-json'), /"method": "note"/)
  // What the call changed: the line it removed and the line it added; before and after stay a click away.
  await page.click('#detail-changes button.compare')
  await page.waitForSelector('#diff-lines')
  assert.deepEqual(await diffRows(page), [
    ['1', '', '−', 'first version'],
    ['', '1', '+', 'second version'],
  ])
  assert.match(await text(page, '#diff-summary'), /^1 line removed, 1 line added; archive version 6 → 7$/)
  assert.equal(await page.$eval('#diff-sides', (d) => (d as HTMLDetailsElement).open), false, 'before / after: folded')
  assert.deepEqual(await page.$$eval('#diff-sides pre', (pres) => pres.map((p) => p.textContent)), ['first version', 'second version'])

  // The files tree as of call 1 holds the first version; as of call 4, the second (the folders stay open).
  assert.equal(await openFileAsOf(page, 1, '/notes/alice/todo.txt'), 'first version')
  assert.deepEqual(await folderNames(page, '/notes'), ['alice/'], 'bob had written nothing yet at call 1')
  await showFilesAsOf(page, 4)
  assert.deepEqual(await folderNames(page, '/notes'), ['alice/', 'bob/'])
  assert.equal(await page.$eval('#files-tree li[data-path="/notes/alice"] > button', (b) => b.getAttribute('aria-expanded')), 'true')
  assert.equal(await text(page, '#file-content'), 'second version', 'the file shown is shown as of the new call')
  assert.equal(await openFileAsOf(page, 4, '/notes/alice/todo.txt'), 'second version')
  await screenshot(t, page, '3-file-as-of')

  // The audit.
  assert.match(await audit(page), /verified 5 calls \(1 failed inside the VM, as logged\)/)
  assert.equal(await page.$$eval('#entries-body tr.checked .checked-mark', (marks) => marks.length), 6, 'every row marked as verified')
  assert.equal(await page.$$eval('tr.divergent', (rows) => rows.length), 0)
  await screenshot(t, page, '4-verified')

  assert.deepEqual(outside, [], 'no request left 127.0.0.1')
  assert.equal(await stop(child), 0, 'explore exits 0 on SIGTERM')
})

test('an archive changed behind the VM: the audit names the divergent call, highlighted in the table', async (t) => {
  const dir = await notesVM(t)
  // The host edits the archive outside any call.
  const storage = await VMStorage.openExisting(dir)
  await storage.filesArchive.writeFile('/notes/alice/todo.txt', 'forged')
  await storage.close()
  const { explored } = await explore(t, dir)
  const { page, outside } = await openPage(t, explored.url)

  const verdict = await audit(page)
  assert.match(verdict, /divergence at seq 5: the archive has changes after seq 5 \(echo\) that no call made/)
  await page.waitForSelector('#entries-body tr.divergent')
  const marked = await page.$$eval('#entries-body tr.divergent', (rows) =>
    rows.map((row) => ({ seq: (row as HTMLElement).dataset.seq, invalid: row.getAttribute('aria-invalid'), note: row.textContent })),
  )
  assert.equal(marked.length, 1)
  assert.equal(marked[0].seq, '5')
  assert.equal(marked[0].invalid, 'true')
  // A verdict per call: every call before the divergent one replayed as logged.
  const checked = await page.$$eval('#entries-body tr.checked', (rows) => rows.map((row) => (row as HTMLElement).dataset.seq))
  assert.deepEqual(checked, ['4', '3', '2', '1', '0'])
  assert.match(marked[0].note ?? '', /divergent/)
  const sides = await page.$$eval('#divergence-values h3', (heads) => heads.map((h) => h.textContent))
  assert.deepEqual(sides, ['Logged (what the log records)', 'Found (what the replay or the archive gives)'])
  assert.match(await text(page, '#audit-verdict'), /path\/notes\/alice\/todo\.txt/)
  // The lie is in the archive alone: the log's entries replay, so they make no proof.
  assert.match(await text(page, '#proof-note'), /^No execution proof: the log's entries alone do not show it/)
  // The jump to the divergent entry opens it.
  await page.click('#audit-verdict button')
  await page.waitForFunction(() => document.getElementById('detail-heading')?.textContent === 'Entry #5 (divergent)')
  await screenshot(t, page, '5-divergence')
  // docs/explorer.png is this state: LIBVMS_EXPLORER_DOC_SHOT=docs/explorer.png remakes it.
  const docShot = process.env.LIBVMS_EXPLORER_DOC_SHOT
  if (docShot) {
    // From the audit's verdict down to the end of the table (the divergent row at its top).
    await page.setViewport({ width: 1100, height: 900 })
    const [top, bottom] = await page.evaluate(() => [
      (document.getElementById('audit')?.getBoundingClientRect().top ?? 0) + window.scrollY,
      (document.getElementById('entries')?.getBoundingClientRect().bottom ?? 0) + window.scrollY,
    ])
    await page.screenshot({
      path: docShot as `${string}.png`,
      clip: { x: 0, y: top, width: 1100, height: bottom - top + 8 },
      captureBeyondViewport: true,
    })
  }
  assert.deepEqual(outside, [], 'no request left 127.0.0.1')
})

test('a log its host rewrote: the audit names the call and offers the execution proof, which holds offline', async (t) => {
  const dir = await notesVM(t)
  // The host, stopped, rewrites call 2's result with its own key.
  const log = await CallLog.open(dir)
  const entries = (await log.list()) as LogEntry[]
  await log.core.truncate(2)
  await log.append([{ ...(entries[2] as CallEntry), result: { forged: true } } as LogEntry, ...entries.slice(3)])
  await log.close()
  const { explored } = await explore(t, dir)
  const { page, outside } = await openPage(t, explored.url)
  assert.match(await audit(page), /divergence at seq 2: call 2 \(note by caller bob\) diverges in result/)
  assert.match(await text(page, '#proof-link'), /^Download the execution proof \(\d+ bytes, 3 entries\)/)
  assert.equal(await page.$eval('#proof-link', (a) => a.getAttribute('href')), '/api/proof')
  await screenshot(t, page, '6-execution-proof')
  const response = await fetch(new URL('/api/proof', explored.url))
  assert.equal(response.status, 200)
  assert.match(response.headers.get('content-disposition') ?? '', /attachment/)
  const verdict = await Verifier.checkProof(await response.json())
  assert.ok(verdict.holds && verdict.seq === 2, verdict.holds ? verdict.what : verdict.why)
  assert.deepEqual(outside, [], 'no request left 127.0.0.1')
})

test('the page makes no request outside 127.0.0.1, whatever the log and files hold', async (t) => {
  const dir = join(await tempDir(t, 'libvms-explorer-'), 'vm')
  const vm = new VM(`
    exports.plant = async (text) => {
      await System.files.writeFile('/page.html', text)
      await System.files.writeFile('/style.css', 'body { background: url(http://example.com/bg.png) }')
      return text
    }
  `)
  await vm.deploy({ dir, title: '<link rel="stylesheet" href="http://example.com/x.css">' })
  await vm.executeCall({
    methodName: 'plant',
    args: [`${HOSTILE}<iframe src="https://example.com/"></iframe>`],
    userId: 'http://example.com/',
  })
  await vm.close()
  const { explored } = await explore(t, dir)
  const { page, requests, outside } = await openPage(t, explored.url)

  // Everything the page can show: the row, its detail, the files.
  await page.click('#entries-body tr[data-seq="1"]')
  await page.waitForFunction(() => document.getElementById('detail-heading')?.textContent === 'Entry #1')
  // The line diff of the planted page: its markup is lines of text.
  await (await page.waitForSelector('#detail-changes button.compare'))?.click()
  await page.waitForSelector('#diff-lines')
  assert.match((await diffRows(page))[0][3], /^<img src="http:\/\/example\.com\/x\.png"/)
  assert.match(await openFileAsOf(page, 1, '/page.html'), /^<img src="http:\/\/example\.com\/x\.png"/)
  assert.match(await openFileAsOf(page, 1, '/style.css'), /url\(http:\/\/example\.com\/bg\.png\)/)
  assert.match(await audit(page), /verified 1 call/)
  assert.equal(await page.$$eval('img, iframe, link[href^="http://example"], script[src^="http"]', (nodes) => nodes.length), 0)
  await screenshot(t, page, '6-hostile')

  assert.deepEqual(outside, [], 'no request left 127.0.0.1')
  assert.ok(requests.length >= 4, `the page's own requests were seen: ${requests.join(' ')}`)
  for (const request of requests) assert.equal(new URL(request).hostname, '127.0.0.1', request)
})

test('a file or folder whose name is markup is shown as text everywhere the page names it: no element is made of it', async (t) => {
  const dir = join(await tempDir(t, 'libvms-explorer-'), 'vm')
  const image = '/<img src=x onerror=window.__pwned=1>.txt'
  const vm = new VM(`
    exports.plant = async () => {
      await System.files.writeFile(${JSON.stringify(image)}, 'an image?')
      await System.files.mkdir('/<b>bold')
      await System.files.writeFile('/<b>bold/<i>italic.txt', 'inside')
    }
  `)
  await vm.deploy({ dir, title: 'names' })
  try {
    await vm.executeCall({ methodName: 'plant', userId: 'mallory' })
  } finally {
    await vm.close()
  }
  const { explored } = await explore(t, dir)
  const { page, outside } = await openPage(t, explored.url)
  /** The elements a name could have made, anywhere in the document (the page itself has none). */
  const made = () => page.$$eval('img, b, i', (nodes) => nodes.map((node) => node.outerHTML))

  // The tree: each name is a button's text, as written.
  assert.deepEqual(await folderNames(page, '/'), ['<b>bold/', image.slice(1)])
  await openFolder(page, '/<b>bold')
  assert.deepEqual(await folderNames(page, '/<b>bold'), ['<i>italic.txt'])
  // The file shown: its name above its contents.
  const showFile = async (path: string, contents: string) => {
    await page.click(`#files-tree button[data-path="${path}"]`)
    await page.waitForFunction((c: string) => document.getElementById('file-content')?.textContent === c, {}, contents)
    return text(page, '#file-name')
  }
  assert.equal(await showFile(image, 'an image?'), image)
  assert.equal(await showFile('/<b>bold/<i>italic.txt', 'inside'), '/<b>bold/<i>italic.txt')
  // The entry's changes, and the heading of what the call changed in the file.
  await page.click('#entries-body tr[data-seq="1"]')
  await page.waitForFunction(() => document.getElementById('detail-heading')?.textContent === 'Entry #1')
  const changes = await page.$$eval('#detail-changes li', (items) => items.map((li) => li.firstChild?.textContent?.trim()))
  assert.ok(changes.includes('put folder /<b>bold (v2)'), changes.join('\n'))
  assert.ok(changes.includes(`put ${image} (v4)`), changes.join('\n'))
  const item = await page.$$eval('#detail-changes li', (items, path) => items.findIndex((li) => li.textContent?.includes(path)), image)
  await page.click(`#detail-changes li:nth-child(${item + 1}) button.compare`)
  await page.waitForSelector('#diff-lines')
  assert.equal(await text(page, '#detail-diff h3'), `${image}: what call 1 changed`)
  await screenshot(t, page, '6-markup-names')

  assert.deepEqual(await made(), [], 'no element made of a name')
  assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined)
  assert.deepEqual(outside, [], 'no request left 127.0.0.1')
})

test('explore ws://…: calls made while the page is open appear as live rows', async (t) => {
  const dir = join(await tempDir(t, 'libvms-explorer-'), 'vm')
  const vm = new VM(NOTES)
  await vm.deploy({ dir, title: 'live' })
  const server = new RPCServer()
  server.mount('/', vm)
  const { url } = await server.listen({ port: 0, host: '127.0.0.1' })
  t.after(async () => {
    await server.close()
    await vm.close()
  })
  await vm.executeCall({ methodName: 'echo', args: ['before'], userId: 'alice' })
  const { explored } = await explore(t, `${url}/`)
  const { page, outside } = await openPage(t, explored.url)
  assert.deepEqual(await shownSeqs(page), [1, 0])

  await vm.executeCall({ methodName: 'echo', args: ['live one'], userId: 'bob' })
  await vm.executeCall({ methodName: 'note', args: ['bob', 'live.txt', 'x'], userId: 'bob' })
  await waitForSeqs(page, [3, 2, 1, 0])
  assert.equal(await page.$eval('#entries-body tr[data-seq="2"] .args', (cell) => cell.textContent), '"live one"')
  await screenshot(t, page, '7-live')
  assert.deepEqual(outside, [], 'no request left 127.0.0.1')
})

const COUNTER = join(SCRIPTS, 'persisted-counter.js')

/** Calls `increment` on the VM at `url` `times` times, over one RPC connection. */
async function increment(url: string, times: number): Promise<void> {
  const client = new RPCClient()
  await client.connect(url)
  try {
    for (let i = 0; i < times; i++) await client.call('increment')
  } finally {
    await client.close()
  }
}

/** Waits (at most 60 s) until the page's host status is in `state`; resolves with its text. */
async function hostStatus(page: Page, state: string): Promise<string> {
  await page.waitForSelector(`#host-status[data-state="${state}"]:not([hidden])`, { timeout: 60_000 })
  return text(page, '#host-status')
}

/** A counter VM served by `nodevms exec` (a child) that took `calls` calls, explored over ws:// (a child), its page open. */
async function exploredHost(t: TestContext, calls: number) {
  const hostDir = join(await tempDir(t, 'libvms-explorer-'), 'host')
  const first = await exec(t, COUNTER, ['--dir', hostDir])
  const port = new URL(first.served.rpcUrl).port
  await increment(first.served.rpcUrl, calls)
  const { child, explored } = await explore(t, first.served.rpcUrl)
  const stderr = collect(child.stderr)
  const { page, outside } = await openPage(t, explored.url)
  assert.deepEqual(await shownSeqs(page), [...Array(calls + 1).keys()].reverse())
  assert.equal(await page.$eval('#host-status', (node) => (node as HTMLElement).hidden), true, 'nothing to say while the host is there')
  return { hostDir, first, port, stderr, page, outside }
}

test('explore ws://…: a host that stops is told gone (page and stderr); restarted on its port, it is followed again and the page catches up', async (t) => {
  const { hostDir, first, port, stderr, page, outside } = await exploredHost(t, 2)
  const rpcUrl = first.served.rpcUrl

  assert.equal(await stop(first.child), 0, 'the host exits cleanly')
  assert.match(
    await hostStatus(page, 'gone'),
    new RegExp(`host ${rpcUrl} is gone; trying again \\(the page keeps the 3 entries fetched\\)`),
  )
  assert.ok(await waitFor(() => stderr.text.includes(`host ${rpcUrl} is gone; trying again`), 30_000), `stderr: ${stderr.text}`)
  assert.deepEqual(await shownSeqs(page), [2, 1, 0], 'the page keeps what it had')
  await screenshot(t, page, '12-host-gone')

  const second = await exec(t, COUNTER, ['--dir', hostDir, '--port', port])
  assert.equal(second.served.rpcUrl, rpcUrl)
  await increment(rpcUrl, 2)
  assert.equal(await hostStatus(page, 'back'), `host ${rpcUrl} is back: following from entry 3`)
  await page.waitForFunction(
    (want: string) =>
      JSON.stringify([...document.querySelectorAll('#entries-body tr')].map((r) => Number((r as HTMLElement).dataset.seq))) === want,
    { timeout: 60_000 },
    JSON.stringify([4, 3, 2, 1, 0]),
  )
  assert.equal(await page.$eval('#entries-body tr[data-seq="4"] .outcome', (cell) => cell.textContent), '4')
  assert.ok(await waitFor(() => stderr.text.includes(`host ${rpcUrl} is back: following from entry 3`), 30_000), `stderr: ${stderr.text}`)
  assert.equal(stderr.text.match(/is gone/g)?.length, 1, 'gone is said once')
  await screenshot(t, page, '13-host-back')
  assert.deepEqual(outside, [], 'no request left 127.0.0.1')
})

test('explore ws://…: a host that comes back with a rewritten log is not followed: page and stderr say so, with the fork proof', async (t) => {
  const { hostDir, first, port, stderr, page } = await exploredHost(t, 3)
  const rpcUrl = first.served.rpcUrl
  assert.equal(await stop(first.child), 0)
  await hostStatus(page, 'gone')

  // The host rewrites its last entry with its own key (truncate + append: fork 1); the new entry
  // names another caller, which the counter does not read, so the host's own reopen replays.
  const log = await CallLog.open(hostDir)
  const entries = (await log.list()) as LogEntry[]
  await log.core.truncate(3)
  await log.append({ ...(entries[3] as CallEntry), caller: 'mallory' })
  assert.equal(log.core.fork, 1)
  await log.close()

  await exec(t, COUNTER, ['--dir', hostDir, '--port', port])
  await increment(rpcUrl, 1)
  assert.ok(await waitFor(() => /rewrote the log's history/.test(stderr.text), 60_000), `stderr: ${stderr.text}`)
  assert.match(
    stderr.text,
    new RegExp(`host ${rpcUrl} says it is on fork 1 of the log, not this copy's 0; not following it: the page keeps this copy's 4 entries`),
  )
  assert.match(
    stderr.text,
    new RegExp(`host ${rpcUrl} rewrote the log's history \\(fork 1, \\d+ entries; this copy: fork 0\\): .+; not following it`),
  )
  assert.match(await hostStatus(page, 'forked'), /rewrote the log's history/)
  assert.deepEqual(await shownSeqs(page), [3, 2, 1, 0], "the page keeps the copy's history, none of the rewritten one")
  const shown = (await (await fetch(new URL('/api/entries/3', page.url()))).json()) as { entry: { caller: string | null } }
  assert.notEqual(shown.entry.caller, 'mallory')
  await screenshot(t, page, '14-host-forked')
})

test('explore --open without xdg-open still serves; a target that is not one is a usage error (exit 2)', async (t) => {
  const dir = await notesVM(t)
  // No xdg-open on this PATH: --open must not fail.
  const child = spawn(process.execPath, [BIN, 'explore', dir, '--json', '--port', '0', '--open'], {
    cwd: root,
    env: { ...process.env, PATH: '/nonexistent' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.after(() => stop(child))
  const explored = await firstLine<Explored>(child, 'nodevms explore --open', 30_000)
  const vm = (await (await fetch(new URL('/api/vm', explored.url))).json()) as { title: string; length: number }
  assert.equal(vm.title, 'Notes <b>VM</b>')
  assert.equal(vm.length, 6)
  // Another Host (a DNS name rebound to 127.0.0.1) is refused; an audit needs the page's header.
  const rebound = await new Promise<number>((resolve, reject) => {
    const address = new URL(explored.url)
    const req = request(
      { host: address.hostname, port: address.port, path: '/api/vm', headers: { host: `evil.example:${address.port}` } },
      (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      },
    )
    req.on('error', reject)
    req.end()
  })
  assert.equal(rebound, 403)
  assert.equal((await fetch(new URL('/api/audit', explored.url), { method: 'POST' })).status, 403)
  assert.equal((await fetch(new URL('/api/entries?limit=x', explored.url))).status, 400)
  assert.equal((await fetch(new URL('/api/entries/99', explored.url))).status, 404)
  assert.equal((await fetch(new URL('/api/file?seq=1&path=/../../etc/passwd', explored.url))).status, 400)
  assert.equal(await stop(child), 0)

  const missing = await nodevms(['explore', join(dir, 'no-such-dir'), '--json'])
  assert.equal(missing.code, 2)
  assert.match(missing.stderr, /UsageError: .* is not a ws:\/\/ URL, a hyper:\/\/ URL or a VM's data dir/)
  assert.equal((await nodevms(['explore', dir, '--port', 'x'])).code, 2)
})

test('the line diff: common head and tail kept aside, changes in hunks with context, line breaks at the end told apart', () => {
  const lines = (n: number) => Array.from({ length: n }, (_, i) => `line ${i}\n`)
  const before = lines(30)
  const after = [...before]
  after[3] = 'THREE\n'
  after[20] = 'TWENTY\n'
  after.splice(25, 0, 'inserted\n')
  const diff = diffLines(before.join(''), after.join(''))
  assert.equal(diff.removed, 2)
  assert.equal(diff.added, 3)
  assert.deepEqual(
    diff.hunks.map((h) => [h.aStart, h.aLines, h.bStart, h.bLines]),
    [
      [1, 7, 1, 7],
      [18, 11, 18, 12],
    ],
  )
  assert.deepEqual(
    diff.hunks[0].lines.filter((l) => l.op !== 'same').map((l) => [l.op, l.text, l.a, l.b]),
    [
      ['del', 'line 3', 4, null],
      ['add', 'THREE', null, 4],
    ],
  )
  assert.deepEqual(diffLines('same\n', 'same\n'), { added: 0, removed: 0, hunks: [] })
  assert.deepEqual(
    diffLines('', 'a\nb').hunks[0].lines.map((l) => [l.op, l.text, l.noNewline ?? false]),
    [
      ['add', 'a', false],
      ['add', 'b', true],
    ],
  )
  // Only the line break differs: the line is removed and added, and the side without one says so.
  assert.deepEqual(
    diffLines('a\nb', 'a\nb\n').hunks[0].lines.map((l) => [l.op, l.text, l.noNewline ?? false]),
    [
      ['same', 'a', false],
      ['del', 'b', true],
      ['add', 'b', false],
    ],
  )
  assert.throws(() => diffLines(lines(2001).join(''), ''), RangeError)
})

test('what a call changed: a line diff of a text file; a long, large or binary file shows before and after, saying why', async (t) => {
  const dir = join(await tempDir(t, 'libvms-explorer-'), 'vm')
  const vm = new VM(`
    exports.write = async (path, text) => { await System.files.writeFile(path, text) }
    exports.bytes = async (path) => { await System.files.writeFile(path, new Uint8Array([0, 1, 2, 255, 0])) }
    exports.remove = async (path) => { await System.files.unlink(path) }
  `)
  await vm.deploy({ dir, title: 'diffs' })
  const poem = Array.from({ length: 30 }, (_, i) => `line ${i}`)
  const edited = [...poem]
  edited[3] = 'THREE'
  edited[20] = '<b>TWENTY</b>'
  edited.splice(25, 0, 'inserted')
  try {
    await vm.executeCall({ methodName: 'write', args: ['/poem.txt', `${poem.join('\n')}\n`], userId: 'alice' })
    await vm.executeCall({ methodName: 'write', args: ['/poem.txt', `${edited.join('\n')}\n`], userId: 'alice' })
    await vm.executeCall({ methodName: 'write', args: ['/long.txt', 'x\n'.repeat(2500)], userId: 'alice' })
    await vm.executeCall({ methodName: 'bytes', args: ['/blob.bin'], userId: 'alice' })
    await vm.executeCall({ methodName: 'write', args: ['/big.txt', 'y'.repeat(300_000)], userId: 'alice' })
    await vm.executeCall({ methodName: 'remove', args: ['/poem.txt'], userId: 'alice' })
  } finally {
    await vm.close()
  }
  const { explored } = await explore(t, dir)
  const { page, outside } = await openPage(t, explored.url)

  /** Opens entry `seq` and what it did to its one changed path. */
  const showChange = async (seq: number) => {
    await page.click(`#entries-body tr[data-seq="${seq}"]`)
    await page.waitForFunction((s: string) => document.getElementById('detail-heading')?.textContent === `Entry #${s}`, {}, String(seq))
    await page.waitForSelector('#detail-changes button.compare')
    await page.click('#detail-changes button.compare')
    await page.waitForFunction(
      (s: string) => document.querySelector('#detail-diff h3')?.textContent?.endsWith(`what call ${s} changed`),
      {},
      String(seq),
    )
  }

  // Two changes far apart: two hunks, three lines of context around each; markup in a line is text.
  await showChange(2)
  assert.match(await text(page, '#diff-summary'), /^2 lines removed, 3 lines added; archive version \d+ → \d+$/)
  assert.deepEqual(await page.$$eval('#diff-lines tr.diff-hunk', (rows) => rows.map((r) => r.textContent)), [
    '@@ -1,7 +1,7 @@',
    '@@ -18,11 +18,12 @@',
  ])
  const changed = (await diffRows(page)).filter((row) => row[2] !== '')
  assert.deepEqual(changed, [
    ['4', '', '−', 'line 3'],
    ['', '4', '+', 'THREE'],
    ['21', '', '−', 'line 20'],
    ['', '21', '+', '<b>TWENTY</b>'],
    ['', '26', '+', 'inserted'],
  ])
  assert.equal(await page.$$eval('#diff-lines b', (nodes) => nodes.length), 0, 'no markup from the file')
  // Each hunk: its changes and three lines either side (the second's changes are 4 lines apart: one hunk).
  assert.equal((await diffRows(page)).length, 3 + 2 + 3 + (3 + 2 + 4 + 1 + 3))
  // Before and after stay available, folded.
  await page.click('#diff-sides summary')
  assert.match(
    (await page.$$eval('#diff-sides pre', (pres) => pres.map((p) => p.textContent ?? '')))[1],
    /^line 0\nline 1\nline 2\nTHREE\n/,
  )
  await screenshot(t, page, '8-line-diff')

  // Past 2,000 lines, binary, or past 256 KiB: no line diff, a line saying why, before and after open.
  await showChange(3)
  assert.equal(
    await text(page, '#diff-why'),
    'No line diff: /long.txt has 2500 lines after the call: line diffs are made for files up to 2000 lines. The file before and after the call is shown side by side.',
  )
  assert.equal(await page.$eval('#diff-sides', (d) => (d as HTMLDetailsElement).open), true)
  assert.equal(await page.$$eval('#diff-lines', (tables) => tables.length), 0)
  assert.deepEqual(
    (await page.$$eval('#diff-sides pre', (pres) => pres.map((p) => p.textContent ?? ''))).map((side) => side.slice(0, 9)),
    ['not there', 'x\nx\nx\nx\nx'],
  )
  await showChange(4)
  assert.match(
    await text(page, '#diff-why'),
    /^No line diff: \/blob\.bin is binary after the call \(not UTF-8 text\)\. The file before and after/,
  )
  assert.deepEqual(await page.$$eval('#diff-sides pre', (pres) => pres.map((p) => p.textContent)), [
    'not there',
    '(binary, base64) AAEC/wA=',
  ])
  await screenshot(t, page, '9-binary-no-line-diff')
  await showChange(5)
  assert.match(
    await text(page, '#diff-why'),
    /^No line diff: \/big\.txt has 300000 bytes after the call: line diffs are made for files up to 256 KiB\./,
  )

  // A deleted file: every line removed.
  await showChange(6)
  assert.match(await text(page, '#diff-summary'), /^31 lines removed, 0 lines added \(deleted by this call\)/)
  assert.deepEqual((await diffRows(page)).slice(0, 2), [
    ['1', '', '−', 'line 0'],
    ['2', '', '−', 'line 1'],
  ])

  // The API behind it, for scripts.
  const api = async (path: string) => {
    const response = await fetch(new URL(path, explored.url))
    return { status: response.status, body: (await response.json()) as Record<string, unknown> }
  }
  const one = await api('/api/diff?seq=2&path=/poem.txt')
  assert.equal(one.status, 200)
  assert.deepEqual(one.body.before, {
    exists: true,
    type: 'file',
    size: Buffer.byteLength(`${poem.join('\n')}\n`),
    lines: 30,
    binary: false,
  })
  assert.equal((one.body.diff as { added: number }).added, 3)
  assert.equal(one.body.why, null)
  assert.equal((await api('/api/diff?seq=2&path=/')).body.why, '/ is not a file before or after call 2')
  assert.equal((await api('/api/diff?seq=99&path=/poem.txt')).status, 404)
  assert.equal((await api('/api/diff?seq=1&path=/../x')).status, 400)
  assert.deepEqual(outside, [], 'no request left 127.0.0.1')
})

test('the files tree: folders open and close with a click or the keyboard, as of any call', async (t) => {
  const dir = await notesVM(t)
  const { explored } = await explore(t, dir)
  const { page, outside } = await openPage(t, explored.url)
  const expanded = (path: string) => page.$eval(`#files-tree li[data-path="${path}"] > button`, (b) => b.getAttribute('aria-expanded'))
  const focused = () => page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.path ?? null)
  const visible = () =>
    page.$$eval('#files-tree button', (buttons) => buttons.filter((b) => !b.closest('ul[hidden]')).map((b) => b.dataset.path))

  // As of the last call, folders closed: the root's one folder.
  assert.match(await text(page, '#files-status'), /^as of call 5 /)
  assert.deepEqual(await folderNames(page, '/'), ['notes/'])
  assert.equal(await expanded('/notes'), 'false')
  assert.equal(
    await page.$eval(
      '#files-tree li[data-path="/notes"] > button',
      (b) => document.getElementById(b.getAttribute('aria-controls') ?? '')?.hidden,
    ),
    true,
    'the folder button controls the list it opens',
  )

  // Keyboard: Enter opens, arrows move through what is shown, Right enters a folder, Left leaves it.
  await page.focus('#files-tree li[data-path="/notes"] > button')
  await page.keyboard.press('Enter')
  await page.waitForSelector('#files-tree li[data-path="/notes"] > ul[data-loaded]:not([hidden])')
  assert.equal(await expanded('/notes'), 'true')
  assert.deepEqual(await folderNames(page, '/notes'), ['alice/', 'bob/'])
  await page.keyboard.press('ArrowDown')
  assert.equal(await focused(), '/notes/alice')
  await page.keyboard.press('ArrowRight')
  await page.waitForFunction(
    () => document.querySelector('#files-tree li[data-path="/notes/alice"] > button')?.getAttribute('aria-expanded') === 'true',
  )
  await page.keyboard.press('ArrowRight')
  assert.equal(await focused(), '/notes/alice/todo.txt')
  await page.keyboard.press('Enter')
  await page.waitForFunction(() => document.getElementById('file-name')?.textContent === '/notes/alice/todo.txt')
  assert.equal(await text(page, '#file-content'), 'second version')
  assert.equal(await page.$eval('#files-tree button[data-path="/notes/alice/todo.txt"]', (b) => b.getAttribute('aria-current')), 'true')
  assert.deepEqual(await visible(), ['/notes', '/notes/alice', '/notes/alice/todo.txt', '/notes/bob'])
  await page.keyboard.press('ArrowDown')
  assert.equal(await focused(), '/notes/bob')
  await page.keyboard.press(' ')
  await page.waitForFunction(
    () => document.querySelector('#files-tree li[data-path="/notes/bob"] > button')?.getAttribute('aria-expanded') === 'true',
  )
  assert.deepEqual(await folderNames(page, '/notes/bob'), ['idea.txt'])
  await screenshot(t, page, '10-files-tree')
  await page.keyboard.press('ArrowUp')
  await page.keyboard.press('ArrowUp')
  assert.equal(await focused(), '/notes/alice')
  await page.keyboard.press('ArrowLeft')
  assert.equal(await expanded('/notes/alice'), 'false')
  assert.deepEqual(await visible(), ['/notes', '/notes/alice', '/notes/bob', '/notes/bob/idea.txt'])
  await page.keyboard.press('ArrowLeft')
  assert.equal(await focused(), '/notes')
  await page.keyboard.press('End')
  assert.equal(await focused(), '/notes/bob/idea.txt')
  await page.keyboard.press('Home')
  assert.equal(await focused(), '/notes')
  await page.keyboard.press('ArrowLeft')
  assert.equal(await expanded('/notes'), 'false')
  assert.deepEqual(await visible(), ['/notes'])
  // A click opens it again, with its folders as they were left.
  await page.click('#files-tree li[data-path="/notes"] > button')
  assert.deepEqual(await visible(), ['/notes', '/notes/alice', '/notes/bob', '/notes/bob/idea.txt'])

  // As of call 1 the open folders stay open, holding what they held then; a file not there yet says so.
  await showFilesAsOf(page, 1)
  assert.deepEqual(await visible(), ['/notes', '/notes/alice'])
  assert.deepEqual(await folderNames(page, '/notes'), ['alice/'])
  assert.equal(await expanded('/notes/alice'), 'false')
  await showFilesAsOf(page, 0)
  assert.deepEqual(await page.$$eval('#files-tree > li', (items) => items.map((li) => li.textContent)), ['(empty)'])
  assert.equal(await text(page, '#file-info'), 'not there as of call 0')
  assert.deepEqual(outside, [], 'no request left 127.0.0.1')
})

test('a production-mode VM: each entry shows its signer and signature, checked; a forged signature is named', async (t) => {
  const dir = join(await tempDir(t, 'libvms-explorer-'), 'vm')
  const vm = new VM(NOTES, { auth: 'production' })
  await vm.deploy({ dir, title: 'signed notes' })
  const alice = generateKeyPair()
  const bob = generateKeyPair()
  const server = new RPCServer()
  server.mount('/', vm)
  const { url } = await server.listen({ port: 0, host: '127.0.0.1' })
  try {
    for (const [keyPair, name] of [
      [alice, 'alice'],
      [bob, 'bob'],
    ] as const) {
      const client = new RPCClient()
      await client.connect(`${url}/`, { keyPair })
      try {
        await client.call('note', name, 'todo.txt', `signed by ${name}`)
      } finally {
        await client.close()
      }
    }
    // The host's own call: no caller, no signature.
    await vm.executeCall({ methodName: 'echo', args: ['from the host'] })
  } finally {
    await server.close()
    await vm.close()
  }
  const entries = (await (async () => {
    const log = await CallLog.open(dir)
    try {
      return await log.list()
    } finally {
      await log.close()
    }
  })()) as LogEntry[]
  const first = entries[1] as CallEntry
  assert.equal(first.caller, callerIdOf(alice))

  const honest = await explore(t, dir)
  const opened = await openPage(t, honest.explored.url)
  const page = opened.page
  assert.match(await text(page, '#vm-mode'), /^production mode/)
  assert.match(await text(page, '#entries-body tr[data-seq="1"] .caller'), /^[0-9a-f]{12}… \(signed\)$/)
  await page.click('#entries-body tr[data-seq="1"]')
  await page.waitForFunction(() => document.getElementById('detail-heading')?.textContent === 'Entry #1')
  assert.equal(await text(page, '#detail-signer'), callerIdOf(alice))
  assert.equal(await text(page, '#detail-signature'), first.signed?.signature)
  assert.match(await text(page, '#detail-signature'), /^[0-9a-f]{128}$/)
  const check = await page.$eval('#detail-signature-check', (dd) => ({ text: dd.textContent ?? '', ok: dd.classList.contains('check-ok') }))
  assert.ok(check.ok)
  assert.match(
    check.text,
    /^✓ the signature verifies with the signer's key, over a payload for this VM, method note and these arguments \(nonce [0-9a-f]{16}…, counter 1;/,
  )
  // What the call changed: two folders (nothing to diff) and a file.
  assert.deepEqual(
    await page.$$eval('#detail-changes li', (items) =>
      items.map((li) => [li.firstChild?.textContent?.trim(), !!li.querySelector('button')]),
    ),
    [
      ['put folder /notes (v2)', false],
      ['put folder /notes/alice (v3)', false],
      ['put /notes/alice/todo.txt (v4)', true],
    ],
  )
  await screenshot(t, page, '11-production-entry')
  await page.click('#entries-body tr[data-seq="3"]')
  await page.waitForFunction(() => document.getElementById('detail-heading')?.textContent === 'Entry #3')
  assert.equal(await page.$$eval('#detail-signer', (nodes) => nodes.length), 0)
  assert.equal(await text(page, '#detail-signature-check'), "no caller and no signature: the host's own call, attributed to no one")
  assert.match(await audit(page), /verified 3 calls/)
  assert.deepEqual(opened.outside, [], 'no request left 127.0.0.1')

  // The host, stopped, swaps bob's signature for one of its own making: the entry says so, and the audit stops there.
  assert.equal(await stop(honest.child), 0)
  const log = await CallLog.open(dir)
  const second = entries[2] as CallEntry
  const forged = `${second.signed?.signature.slice(0, -2)}${second.signed?.signature.endsWith('00') ? '11' : '00'}`
  await log.core.truncate(2)
  await log.append([{ ...second, signed: { payload: second.signed?.payload ?? '', signature: forged } } as LogEntry, entries[3]])
  await log.close()
  const again = await explore(t, dir)
  const reopened = await openPage(t, again.explored.url)
  await reopened.page.click('#entries-body tr[data-seq="2"]')
  await reopened.page.waitForFunction(() => document.getElementById('detail-heading')?.textContent === 'Entry #2')
  assert.equal(await text(reopened.page, '#detail-signer'), callerIdOf(bob))
  const bad = await reopened.page.$eval('#detail-signature-check', (dd) => ({
    text: dd.textContent ?? '',
    bad: dd.classList.contains('check-bad'),
  }))
  assert.ok(bad.bad)
  assert.match(bad.text, /^✗ ERR_BAD_SIGNATURE: the signature does not verify with the caller's key/)
  assert.match(
    await audit(reopened.page),
    /divergence at seq 2: call 2 \(note by caller [0-9a-f]{64}\) fails the production-mode caller check \(ERR_BAD_SIGNATURE\)/,
  )
  await screenshot(t, reopened.page, '12-production-forged')
  assert.deepEqual(reopened.outside, [], 'no request left 127.0.0.1')
})

test('a burst of events is drawn at once: many audit reports and many live rows in one go change the table in one pass', async (t) => {
  const dir = await notesVM(t)
  const { explored } = await explore(t, dir)
  // The page's event stream, reachable from the test: events are sent on it as the server would.
  const { page, outside } = await openPage(t, explored.url, (p) =>
    p.evaluateOnNewDocument(() => {
      const Original = window.EventSource
      window.EventSource = class extends Original {
        constructor(url: string | URL, init?: EventSourceInit) {
          super(url, init)
          ;(window as unknown as { stream: EventSource }).stream = this
        }
      }
    }),
  )
  // Every task that changes the table is one pass of MutationObserver records.
  await page.evaluate(() => {
    const w = window as unknown as { passes: number }
    w.passes = 0
    new MutationObserver(() => {
      w.passes++
    }).observe(document.getElementById('entries-body') as HTMLElement, {
      subtree: true,
      childList: true,
      attributes: true,
      characterData: true,
    })
  })
  const passes = () => page.evaluate(() => (window as unknown as { passes: number }).passes)
  const CALLS = 400

  // An audit reporting each of its calls: one pass draws the last report.
  await page.evaluate((calls: number) => {
    const stream = (window as unknown as { stream: EventSource }).stream
    for (let done = 1; done <= calls; done++) {
      const audit = { state: 'running', done, total: calls, rate: 1000, startedAt: 0 }
      stream.dispatchEvent(new MessageEvent('audit', { data: JSON.stringify(audit) }))
    }
  }, CALLS)
  await page.waitForFunction(
    (calls: number) => (document.getElementById('audit-progress') as HTMLProgressElement).value === calls,
    {},
    CALLS,
  )
  assert.equal(await passes(), 1)
  assert.match(await text(page, '#audit-status'), new RegExp(`^${CALLS} of ${CALLS} entries`))
  assert.equal(await page.$$eval('#entries-body tr.checked', (rows) => rows.length), 6)

  // Rows arriving one event each: one insertion, the newest page of them on top.
  await page.evaluate(() => {
    ;(window as unknown as { passes: number }).passes = 0
  })
  await page.evaluate((calls: number) => {
    const stream = (window as unknown as { stream: EventSource }).stream
    for (let i = 0; i < calls; i++) {
      const seq = 6 + i
      const row = { seq, type: 'call', time: '2026-01-01T00:00:00.000Z', caller: 'burst', signed: false, method: 'echo', args: String(i) }
      const data = { length: seq + 1, rows: [{ ...row, result: String(i), error: null, cost: 0, filesVersion: 7 }] }
      stream.dispatchEvent(new MessageEvent('entry', { data: JSON.stringify(data) }))
    }
  }, CALLS)
  await waitForSeqs(
    page,
    Array.from({ length: 50 }, (_, i) => 5 + CALLS - i),
  )
  assert.equal(await passes(), 1)
  assert.match(await text(page, '#page-status'), new RegExp(`^the log has ${6 + CALLS} entries`))
  assert.deepEqual(outside, [], 'no request left 127.0.0.1')
})
