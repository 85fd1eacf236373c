/**
 * Live updates: the page's server-sent event streams (GET /api/events). Each stream opens with a
 * `hello` event; then every event broadcast goes to every open stream: `entry` (the log grew: its
 * new rows), `audit` (the audit's progress and verdict), `host` (a fetched log's host is gone, back,
 * or rewrote history: host-watch.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'

export class EventStream {
  private readonly clients = new Set<ServerResponse>()

  /** Whether any page is listening (new rows are made only for one). */
  get listening(): boolean {
    return this.clients.size > 0
  }

  /** Answers `req` with an event stream, starting with `hello`; it stays open until the page leaves or close(). */
  open(req: IncomingMessage, res: ServerResponse, hello: unknown): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      connection: 'keep-alive',
    })
    res.write(`retry: 2000\n\n`)
    this.clients.add(res)
    res.write(`event: hello\ndata: ${JSON.stringify(hello)}\n\n`)
    req.on('close', () => this.clients.delete(res))
  }

  broadcast(event: string, data: unknown): void {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
    for (const client of this.clients) client.write(frame)
  }

  /** Ends every stream. */
  close(): void {
    for (const client of this.clients) client.end()
    this.clients.clear()
  }
}
