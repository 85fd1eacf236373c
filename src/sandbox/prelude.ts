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

export const PRELUDE_SOURCE = readVMSource(import.meta.url, './prelude.vm.js').replace(ENCODING_MARKER, () => TAGGED_JSON_SOURCE)
