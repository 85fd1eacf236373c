/**
 * Default destination of a script's console.* output: Node's debug log, shown with NODE_DEBUG=libvms.
 * Console output is never logged: it is the host's own debug output.
 */
import { debuglog } from 'node:util'
import type { ConsoleSink } from '../sandbox/sandbox.js'

const log = debuglog('libvms')

export function debugConsole(vm: { title: string }): ConsoleSink {
  return (level, message) => log('[vm %s] %s: %s', vm.title || 'untitled', level, message)
}
