/**
 * The explorer on a big log: a 100,000-entry VM (trivial calls, 64 in flight), `nodevms explore` on its
 * dir, and a headless Chromium (puppeteer-core) opening the page. Reports the time from opening the
 * page to the first rows visible, to a filtered page (the server-side index over every entry), and
 * the explorer process's RSS (VmRSS from /proc/<pid>/status) after each.
 *
 *   npm run build && npx tsx bench/explorer.bench.ts                  (100,000 entries; takes a while)
 *   npm run build && BENCH_SCALE=0.05 npx tsx bench/explorer.bench.ts (a quick smoke run)
 *
 * Prints one JSON object to stdout; progress goes to stderr. Needs Chromium (/usr/bin/chromium, or
 * PUPPETEER_EXECUTABLE_PATH). Not run by npm test.
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import puppeteer from 'puppeteer-core'
import { VM } from '../src/index.js'
import { startChild } from './bench-children.js'
import { startBenchRun } from './bench-run.js'
import { log, readSizing, round2 } from './bench-stats.js'

const BIN = fileURLToPath(new URL('../dist/cli/nodevms.js', import.meta.url))
const CODE = "exports.inc = (i) => i + 1; exports.fail = () => { throw new Error('no') }"
const CONCURRENCY = 64

const { scale, scaled } = readSizing()
const CALLS = scaled(100_000, 1000, CONCURRENCY)

async function rssKiB(pid: number): Promise<number | null> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status)
  return match ? Number(match[1]) : null
}

function chromium(): string {
  for (const path of [process.env.PUPPETEER_EXECUTABLE_PATH, '/usr/bin/chromium']) if (path && existsSync(path)) return path
  throw new Error('no Chromium: apt-get install -y chromium, or set PUPPETEER_EXECUTABLE_PATH')
}

const run = await startBenchRun('libvms-bench-explorer-', 30 * 60_000)
try {
  const dir = join(await run.freshDir('vm'), 'vm')
  const vm = new VM(CODE)
  await vm.deploy({ dir, title: 'explorer bench' })
  log(`making ${CALLS} calls, ${CONCURRENCY} in flight`)
  const madeStart = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < CALLS; i = next++) {
        // One call in 100 fails (logged with its error), so "failed only" has something to find.
        if (i % 100 === 99) await vm.executeCall({ methodName: 'fail', userId: `user${i % 7}` }).catch(() => {})
        else await vm.executeCall({ methodName: 'inc', args: [i], userId: `user${i % 7}` })
        if (i % 10_000 === 0 && i > 0) log(`  ${i} calls`)
      }
    }),
  )
  const makeMs = performance.now() - madeStart
  const entries = vm.callLog.length
  await vm.close()

  log('starting nodevms explore')
  const startedAt = performance.now()
  const explorer = await startChild<{ url: string }>(BIN, ['explore', dir, '--json', '--port', '0'], 'nodevms explore')
  const listenMs = performance.now() - startedAt
  const rssAtStart = await rssKiB(explorer.pid)

  const browser = await puppeteer.launch({ executablePath: chromium(), args: ['--no-sandbox', '--headless=new'], headless: true })
  try {
    const page = await browser.newPage()
    page.setDefaultTimeout(120_000)
    const opened = performance.now()
    await page.goto(explorer.info.url)
    await page.waitForSelector('#entries-body tr')
    const firstRowsMs = performance.now() - opened
    await page.waitForSelector('body[data-ready="true"]')
    const readyMs = performance.now() - opened

    // A filter over the whole log: answered from the index once it covers every entry.
    const filtering = performance.now()
    await page.$eval('#filter-failed', (input) => {
      ;(input as HTMLInputElement).checked = true
    })
    await page.click('#filter-apply')
    await page.waitForFunction(() => {
      const rows = document.querySelectorAll('#entries-body tr')
      return rows.length > 0 && [...rows].every((row) => row.classList.contains('failed'))
    })
    const failedFilterMs = performance.now() - filtering
    const rssAfterFilter = await rssKiB(explorer.pid)

    const result = {
      benchmark: 'explorer',
      scale,
      entries,
      makeCallsMs: Math.round(makeMs),
      explorerListenMs: Math.round(listenMs),
      pageOpenToFirstRowsMs: round2(firstRowsMs),
      pageOpenToReadyMs: round2(readyMs),
      failedOnlyFilterMs: round2(failedFilterMs),
      explorerRssKiBAtStart: rssAtStart,
      explorerRssKiBAfterFilter: rssAfterFilter,
    }
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
  } finally {
    await browser.close()
  }
} finally {
  await run.end()
}
