/**
 * ENGINE_INFO: this build, as an init entry records it (`engine`), and as replay compares a log's
 * record against it (replay.ts, checkEngine). It lives in vm/, the first layer that holds both things
 * a call's outcome depends on besides the script: the engine that runs it (sandbox/, QuickJS) and the
 * libraries that lay out its files (ledger/, Hyperdrive and Hyperbee). Neither of those layers may name
 * the other, and the log's schema (ledger/log-entry.ts) only says what the record holds, not which
 * build this is: its builders take the record as given, so reading or writing entries loads no engine.
 */
import { createRequire } from 'node:module'
import type { EngineInfo } from '../ledger/log-entry.js'
import { ENGINE_NAME, ENGINE_VARIANT, ENGINE_VERSION } from '../sandbox/engine.js'

const require = createRequire(import.meta.url)

export const ENGINE_INFO: EngineInfo = {
  name: ENGINE_NAME,
  variant: ENGINE_VARIANT,
  version: ENGINE_VERSION,
  hyperdrive: require('hyperdrive/package.json').version,
  hyperbee: require('hyperbee/package.json').version,
  libvms: require('../../package.json').version,
}
