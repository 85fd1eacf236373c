/**
 * Module resolve hooks registered by libvms-build.mjs: `libvms` resolves to the given build's
 * dist/index.js; every other specifier resolves as it would without them.
 */
let indexUrl

/** @param {{ indexUrl: string }} data */
export function initialize(data) {
  indexUrl = data.indexUrl
}

/**
 * @param {string} specifier
 * @param {object} context
 * @param {(specifier: string, context: object) => Promise<object>} nextResolve
 */
export async function resolve(specifier, context, nextResolve) {
  if (specifier === 'libvms') return { url: indexUrl, format: 'module', shortCircuit: true }
  return nextResolve(specifier, context)
}
