/**
 * The text of the value encoding, tagged-json.vm.js, as it is on disk. Running from src/, Node reads
 * the file; the build puts the text itself in place of this module (dist/ and every bundle of the
 * client: scripts/inline-texts.mjs), so that a built client reads no file. The file stays the one
 * definition either way.
 */
import { readFileSync } from 'node:fs'

export const TAGGED_JSON_TEXT: string = readFileSync(new URL('./tagged-json.vm.js', import.meta.url), 'utf8')
