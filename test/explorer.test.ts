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
import { after, type TestContext, test } from 'node:test'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import { type CallEntry, CallLog, type LogEntry, RPCServer, Verifier, VM } from '../src/index.js'
import { VMStorage } from '../src/ledger/vm-storage.js'
import { BIN, firstLine, nodevms, root, stop } from './cli-helpers.js'
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

/** A page that may only talk to 127.0.0.1: every request is recorded, any other is aborted and noted. */
async function openPage(t: TestContext, url: string): Promise<{ page: Page; requests: string[]; outside: string[] }> {
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
  t.after(() => {
    assert.deepEqual(dialogs, [], 'the page opened no dialog')
    assert.deepEqual(errors, [], 'the page threw nothing')
  })
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

/** Shows the files as of call `seq` and opens `path` (folders one click at a time), as a person would. */
async function openFileAsOf(page: Page, seq: number, path: string): Promise<string> {
  await page.$eval('#files-seq', (input, v) => ((input as HTMLInputElement).value = v), String(seq))
  await page.click('#files-show')
  await page.waitForFunction(
    (s: string) => document.getElementById('files-status')?.textContent?.startsWith(`as of call ${s} `),
    {},
    String(seq),
  )
  const parts = path.split('/').filter(Boolean)
  let at = ''
  for (const [i, part] of parts.entries()) {
    at += `/${part}`
    await (await page.waitForSelector(`#files-list button[data-path="${at}"]`))?.click()
    if (i < parts.length - 1) await page.waitForFunction((p: string) => document.getElementById('files-path')?.textContent === p, {}, at)
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
  // What the call changed, before and after.
  await page.click('#detail-changes button.compare')
  await page.waitForSelector('#detail-diff:not([hidden]) pre')
  assert.deepEqual(await page.$$eval('#detail-diff pre', (pres) => pres.map((p) => p.textContent)), ['first version', 'second version'])

  // The files as of call 1 hold the first version; as of call 4, the second.
  assert.equal(await openFileAsOf(page, 1, '/notes/alice/todo.txt'), 'first version')
  await page.click('#files-up')
  await page.waitForFunction(() => document.getElementById('files-path')?.textContent === '/notes')
  assert.deepEqual(
    await page.$$eval('#files-list button', (buttons) => buttons.map((b) => b.textContent)),
    ['alice/'],
    'bob had written nothing yet at call 1',
  )
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
  assert.match(await openFileAsOf(page, 1, '/page.html'), /^<img src="http:\/\/example\.com\/x\.png"/)
  assert.match(await openFileAsOf(page, 1, '/style.css'), /url\(http:\/\/example\.com\/bg\.png\)/)
  assert.match(await audit(page), /verified 1 call/)
  assert.equal(await page.$$eval('img, iframe, link[href^="http://example"], script[src^="http"]', (nodes) => nodes.length), 0)
  await screenshot(t, page, '6-hostile')

  assert.deepEqual(outside, [], 'no request left 127.0.0.1')
  assert.ok(requests.length >= 4, `the page's own requests were seen: ${requests.join(' ')}`)
  for (const request of requests) assert.equal(new URL(request).hostname, '127.0.0.1', request)
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
