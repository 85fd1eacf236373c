/**
 * The JavaScript that runs inside every QuickJS context before the VM script (prelude.vm.js). It makes the context
 * deterministic (seeded Math.random, logged time, virtual timers, no WeakRef/FinalizationRegistry,
 * UTC everywhere), holds the value encoding that crosses the boundary (codec/tagged-json.vm.js, put in
 * at its marker line: the one definition the host compiles too), and returns the driver that the host
 * uses to load the script and run calls.
 *
 * It evaluates to a function taking the host's functions as arguments, so nothing it needs from the host
 * is reachable from the script through a global. The script can tamper with its own globals; that only
 * affects itself, and replay reproduces it exactly.
 */
import { TAGGED_JSON_SOURCE } from '../codec/value-codec.js'
import { readVMSource } from './vm-source.js'

const ENCODING_MARKER = '  // <codec/tagged-json.vm.js>\n'
const UPGRADE_HOOK_MARKER = '    // <upgrade hook: sandbox/prelude.ts>\n'

const PRELUDE_TEMPLATE = readVMSource(import.meta.url, './prelude.vm.js').replace(ENCODING_MARKER, () => TAGGED_JSON_SOURCE)

/**
 * The driver's upgrade hook (log schema 4): runs the new code's `exports.upgrade(previous)`, where
 * each of `previous`'s functions asks the host to call the old code's export of that name
 * (`upgrade.previous`) and each of its values is the old code's exported value. Only sandboxes that
 * load code from an upgrade entry have it; it is part of their state format. Its text, like the
 * prelude's, is part of the determinism contract.
 */
const UPGRADE_HOOK_SOURCE = `    , beginUpgrade (previousJson, argsJson, caller, timestamp, seedHex) {
      beginTurn(timestamp, seedHex, caller)
      try {
        const ex = module.exports
        const fn = ex !== null && (typeof ex === 'object' || typeof ex === 'function') && ownDescriptor(ex, 'upgrade') !== undefined ? ex.upgrade : undefined
        if (typeof fn !== 'function') {
          const e = new Error('the new code has no function export named "upgrade"')
          e.name = 'MethodNotFound'
          throw e
        }
        const send = this.request
        const listed = parse(previousJson)
        const previous = {}
        for (let i = 0; i < listed.length; i++) {
          const name = listed[i][0]
          const value = listed[i][1]
            ? function (...args) { return send('upgrade.previous', name, args) }
            : (listed[i][2] === null ? undefined : decode(listed[i][2]))
          defineProperty(previous, name, { value, enumerable: true })
        }
        finishWith(fn.call(module.exports, previous))
      } catch (e) { settle(false, e) }
      return settled
    }
`

/** The prelude of every sandbox but those that load code from an upgrade entry: its text as it has always been. */
export const PRELUDE_SOURCE = PRELUDE_TEMPLATE.replace(UPGRADE_HOOK_MARKER, '')

/** The prelude of a sandbox that loads code from an upgrade entry: the driver has the upgrade hook. */
export const UPGRADE_PRELUDE_SOURCE = PRELUDE_TEMPLATE.replace(UPGRADE_HOOK_MARKER, () => UPGRADE_HOOK_SOURCE)
