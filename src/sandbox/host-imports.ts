/**
 * The engine's windows on the host, closed. The QuickJS build is an Emscripten program: its libc asks
 * the JavaScript around it for the time zone (`_tzset_js`, `_localtime_js`), the clock
 * (`_emscripten_date_now`), the environment (`environ_sizes_get`, `environ_get`: USER, LANG from the
 * host's locale, `_` = the host program's path) and interval timers (`_setitimer_js`). Left alone,
 * those answers differ between hosts: local-time Date paths read the host's zone, and the environment
 * is copied into the instance's memory at start-up, so how much memory a script has left depends on
 * the program path, the Node version (LANG) and the thread.
 *
 * Every one of them is replaced here, before the instance starts:
 * - the time zone is UTC, with no daylight saving (what a host in UTC answers), for every libc time
 *   path the engine has (localtime, mktime and the Date methods built on them);
 * - the clock reads 0: the VM's time comes from the log (prelude.ts), never from the host;
 * - the environment is empty;
 * - interval timers never fire.
 *
 * Emscripten minifies import names, so each is found by what its source does and must be found exactly
 * once; a build where one is missing or ambiguous is refused (HostFaultError) rather than run with a
 * window open. The engine version is pinned in package-lock.json and recorded in every init entry.
 */
import { HostFaultError } from '../errors.js'

type ImportFn = (...args: never[]) => unknown

/** How each replaced import is recognised in the glue's (minified) source. */
const FINGERPRINTS = {
  localtime: (src: string) => src.includes('getTimezoneOffset') && src.includes('getSeconds'),
  tzset: (src: string) => src.includes('getTimezoneOffset') && !src.includes('getSeconds') && src.includes('UTC'),
  dateNow: (src: string) => /^\(\)\s*=>\s*Date\.now\(\)$/.test(src.trim()),
  environGet: (src: string) => /for\s*\(\s*\w+\s+of\s+\w+\(\)\s*\)/.test(src),
  environSizesGet: (src: string) => /=\s*\w+\(\);\s*\w+\[\w+\s*>>\s*2\]\s*=\s*\w+\.length/.test(src),
  setitimer: (src: string) => src.includes('setTimeout') && src.includes('clearTimeout'),
} satisfies Record<string, (src: string) => boolean>

type ImportName = keyof typeof FINGERPRINTS

/** What a host in UTC writes for the zone names (tzname[0], tzname[1]). */
const UTC_ZONE_NAME = 'UTC-0000'

const DAYS_BEFORE_MONTH = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334]
const DAYS_BEFORE_MONTH_LEAP = [0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335]

function isLeap(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
}

function findImports(table: Record<string, unknown>): Record<ImportName, string> {
  const found = {} as Record<ImportName, string>
  for (const name of Object.keys(FINGERPRINTS) as ImportName[]) {
    const matches = Object.keys(table).filter((key) => typeof table[key] === 'function' && FINGERPRINTS[name](String(table[key])))
    if (matches.length !== 1) {
      throw new HostFaultError(
        `this QuickJS build's ${name} import was found ${matches.length} times (expected once): LibVMS cannot make this engine build deterministic; install the engine version package-lock.json pins`,
      )
    }
    found[name] = matches[0]
  }
  return found
}

/**
 * The glue's imports with the host-dependent ones replaced. `memory` is the instance's memory (fixed
 * size, so its buffer never changes).
 */
export function deterministicImports(imports: WebAssembly.Imports, memory: WebAssembly.Memory): WebAssembly.Imports {
  const moduleNames = Object.keys(imports)
  if (moduleNames.length !== 1) throw new HostFaultError(`the QuickJS build imports ${moduleNames.length} modules; expected one`)
  const table = imports[moduleNames[0]] as Record<string, unknown>
  const names = findImports(table)
  const heap32 = () => new Int32Array(memory.buffer)
  const writeString = (text: string, ptr: number, max: number) => {
    const bytes = new Uint8Array(memory.buffer)
    const encoded = Buffer.from(text, 'utf8').subarray(0, max - 1)
    bytes.set(encoded, ptr)
    bytes[ptr + encoded.length] = 0
  }
  const replaced: Record<ImportName, ImportFn> = {
    // (time: i64 seconds, tm: struct tm *): a UTC breakdown, as gmtime gives.
    localtime: (time: bigint | number, tm: number) => {
      const t = Number(time)
      const date = new Date(t >= -9007199254740992 && t <= 9007199254740992 ? t * 1000 : Number.NaN)
      const year = date.getUTCFullYear()
      const h = heap32()
      const at = tm >> 2
      h[at] = date.getUTCSeconds()
      h[at + 1] = date.getUTCMinutes()
      h[at + 2] = date.getUTCHours()
      h[at + 3] = date.getUTCDate()
      h[at + 4] = date.getUTCMonth()
      h[at + 5] = year - 1900
      h[at + 6] = date.getUTCDay()
      h[at + 7] = ((isLeap(year) ? DAYS_BEFORE_MONTH_LEAP : DAYS_BEFORE_MONTH)[date.getUTCMonth()] + date.getUTCDate() - 1) | 0
      h[at + 8] = 0 // tm_isdst
      h[at + 9] = 0 // tm_gmtoff
    },
    // (timezone: long *, daylight: int *, stdName: char[17], dstName: char[17])
    tzset: (timezone: number, daylight: number, stdName: number, dstName: number) => {
      const h = heap32()
      h[timezone >> 2] = 0
      h[daylight >> 2] = 0
      writeString(UTC_ZONE_NAME, stdName, 17)
      writeString(UTC_ZONE_NAME, dstName, 17)
    },
    dateNow: () => 0,
    // (environ: char **, buf: char *): nothing to copy.
    environGet: () => 0,
    // (count: size_t *, size: size_t *): no variables, no bytes.
    environSizesGet: (count: number, size: number) => {
      const h = heap32()
      h[count >> 2] = 0
      h[size >> 2] = 0
      return 0
    },
    setitimer: () => 0,
  }
  const patched: Record<string, unknown> = { ...table }
  for (const name of Object.keys(names) as ImportName[]) patched[names[name]] = replaced[name]
  return { ...imports, [moduleNames[0]]: patched as WebAssembly.ModuleImports }
}
