/**
 * JavaScript that runs inside the VM (the prelude, the System API) lives in `*.vm.js` files beside
 * the modules that load it: real files the linter reads, shipped as they are (the build copies them
 * into dist). Their text is part of the determinism contract — line for line, since the stack of an
 * error thrown in them names their lines, and every engine tick they take is metered — so a change
 * to one changes what existing logs replay to. They are excluded from formatting for that reason.
 */
import { readFileSync } from 'node:fs'

/** The text of the VM source `name`, next to the module at `moduleUrl`. */
export function readVMSource(moduleUrl: string, name: string): string {
  return readFileSync(new URL(name, moduleUrl), 'utf8')
}
