/**
 * Following the hosts of a fetched log (explore ws://… or hyper://…): a host whose connection drops
 * is dialled again with a backoff (net/remote-cores.ts followHosts, i.e. Peering.follow) until the
 * explorer closes; the log indexer then catches up with what was appended meanwhile (log-indexer.ts).
 * Each change is told on stderr (`report`) and to the page (event-stream.ts, `host`):
 *
 *   gone    a host's connection closed: the page keeps the entries fetched so far
 *   back    it was dialled again: following from entry N (the copy's length then)
 *   forked  a peer says it is on another fork (the host rewrote history this copy holds): a fork
 *           proof is sought (seeder/fork-witness.ts); proven or not, the copy keeps its own history
 *           and never takes the other (it refuses forks)
 *
 * A VM's own log (explore <dir>) has no hosts: nothing is followed.
 */
import type { CallLog } from '../ledger/call-log.js'
import type { DatArchive } from '../ledger/files-archive.js'
import type { Backoff } from '../net/peering.js'
import { followHosts } from '../net/remote-cores.js'
import { witnessFork } from '../seeder/fork-witness.js'
import type { EventStream } from './event-stream.js'

/** How soon a host that went away is dialled again: after 0.5 s, doubling while it stays away, up to 5 s. */
export const HOST_BACKOFF: Backoff = { minMs: 500, maxMs: 5000 }
/** How long the hosts get to show the history they now serve, for a fork proof. */
const WITNESS_TIMEOUT_MS = 20_000

/** What the page shows about the hosts (sent as the `host` event, and in `hello`). */
export interface HostState {
  state: 'following' | 'gone' | 'back' | 'forked'
  /** The host it is about (absent while following from the start). */
  host?: string
  /** Entries the copy holds. */
  length: number
  /** A line for a person: what happened and what the explorer does about it. */
  text: string
}

export class HostWatch {
  private current: HostState
  /** Hosts seen, to ask for their history when a fork is claimed. */
  private readonly hosts = new Set<string>()
  /** Hosts told gone and not yet back. */
  private readonly away = new Set<string>()
  private witnessing = false
  private forkTold = false

  constructor(
    private readonly callLog: CallLog,
    private readonly events: EventStream,
    /** Where a line for the person running the explorer goes (stderr). */
    private readonly report: (line: string) => void,
    private readonly signal: AbortSignal,
    /** What was opened: a ws:// label is a host too. */
    label: string,
  ) {
    if (/^wss?:\/\//i.test(label)) this.hosts.add(label)
    this.current = { state: 'following', length: callLog.length, text: '' }
  }

  get state(): HostState {
    return this.current
  }

  /** Follows the log's hosts (and the archive's, silently: its views read the versions the log records); false for a local log. */
  start(archive: DatArchive): boolean {
    if (this.callLog.writable) return false
    const followed = followHosts(this.callLog.core, HOST_BACKOFF, {
      onHost: (host, connected) => (connected ? this.back(host) : this.gone(host)),
      onOtherFork: (fork) => this.otherFork(fork),
    })
    if (followed) followHosts(archive.drive, HOST_BACKOFF)
    return followed
  }

  private gone(host: string): void {
    this.hosts.add(host)
    this.away.add(host)
    const length = this.callLog.length
    this.tell({ state: 'gone', host, length, text: `host ${host} is gone; trying again (the page keeps the ${length} entries fetched)` })
  }

  /** A host dialled again; one that was never told gone (a --peer unreachable at first, say) is not "back". */
  private back(host: string): void {
    this.hosts.add(host)
    if (!this.away.delete(host)) return
    this.forkTold = false
    const length = this.callLog.length
    this.tell({ state: 'back', host, length, text: `host ${host} is back: following from entry ${length}` })
  }

  /** A peer's claim of another fork: said once per connection, then a proof is sought (one at a time). */
  private otherFork(fork: number): void {
    if (this.forkTold || this.signal.aborted) return
    this.forkTold = true
    const core = this.callLog.core
    const hosts = [...this.hosts]
    const host = hosts.join(', ') || 'a peer'
    const length = this.callLog.length
    const not = `not following it: the page keeps this copy's ${length} entries`
    this.tell({
      state: 'forked',
      host,
      length,
      text: `host ${host} says it is on fork ${fork} of the log, not this copy's ${core.fork}; ${not}`,
    })
    if (this.witnessing) return
    this.witnessing = true
    witnessFork(core, { hosts, swarm: null, timeoutMs: WITNESS_TIMEOUT_MS })
      .then((found) => {
        if (this.signal.aborted) return
        const text =
          'why' in found
            ? `no fork proof for that claim (${found.why}); ${not}`
            : `host ${host} rewrote the log's history (fork ${found.hostFork}, ${found.hostLength} entries; this copy: fork ${found.copyFork}): ${found.what}; ${not}`
        this.tell({ state: 'forked', host, length: this.callLog.length, text })
      })
      .catch(() => {})
      .finally(() => {
        this.witnessing = false
      })
  }

  private tell(state: HostState): void {
    if (this.signal.aborted) return
    this.current = state
    this.report(state.text)
    this.events.broadcast('host', state)
  }
}
