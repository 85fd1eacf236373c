/**
 * The explorer's HTTP answers: JSON (never cached, never sniffed), a failure as JSON with its status,
 * and the page's own files (src/explorer/page/) under a content security policy that lets the page
 * load nothing but what this server sends.
 */
import { readFile } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HttpError } from '../errors.js'

const PAGE_DIR = fileURLToPath(new URL('./page/', import.meta.url))
const PAGE_FILES: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/explorer.css': 'explorer.css',
  '/explorer.js': 'explorer.js',
}
const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
}
/** Nothing but this server: no outside script, style, font, frame or connection. */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

export function sendJson(res: ServerResponse, value: unknown, status = 200): void {
  const body = JSON.stringify(value)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
  })
  res.end(body)
}

/** A failed request: its HttpError's status (else 500) and the error as JSON; a half-sent answer is cut off. */
export function sendFailure(res: ServerResponse, error: unknown): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const status = error instanceof HttpError ? error.status : 500
  const e = error as { name?: string; code?: string; message?: string }
  sendJson(res, { error: { name: e?.name ?? 'Error', code: e?.code ?? null, message: e?.message ?? String(error) } }, status)
}

/** One of the page's files, by its path on this server; 404 for any other path. */
export async function sendPageFile(path: string, res: ServerResponse): Promise<void> {
  const name = PAGE_FILES[path]
  if (!name) throw new HttpError(404, 'not found')
  const body = await readFile(join(PAGE_DIR, name))
  res.writeHead(200, {
    'content-type': TYPES[name.slice(name.lastIndexOf('.') + 1)],
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  })
  res.end(body)
}
