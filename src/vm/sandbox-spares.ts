/**
 * Sandboxes made ahead: a process that deploys many VMs (a VMHost, a factory) takes a sandbox made
 * while it was doing something else, instead of waiting for one to be built (the longest part of a
 * deploy). One spare is kept per kind of sandbox (its limits and options), for the few most recent
 * kinds, and made again once the last one is taken. A spare is a sandbox no turn has run in: taking
 * one is the same as making one, so nothing a VM logs depends on it.
 */

/** What a spare is: anything let go with dispose() (turn-runner.ts keeps engine sandboxes here). */
interface Spare {
  dispose(): void
}

/** How many kinds of sandbox are kept ahead at once (the oldest kind's spare is let go first). */
const MAX_KINDS = 4

const spares = new Map<string, Promise<Spare>>()

/** The spare of this kind (or a new sandbox, if there is none); another is made for the next taker. */
export function takeSpareSandbox<T extends Spare>(kind: string, make: () => Promise<T>): Promise<T> {
  // Spares of a kind are made only by this kind's `make`: a T.
  const spare = spares.get(kind) as Promise<T> | undefined
  spares.delete(kind)
  // A spare that failed to be made (its thread died) is made again, not handed on as a failure.
  const taken = spare ? spare.catch(() => make()) : make()
  taken.then(
    () => makeSpare(kind, make),
    () => {},
  )
  return taken
}

function makeSpare(kind: string, make: () => Promise<Spare>): void {
  if (spares.has(kind)) return
  if (spares.size >= MAX_KINDS) {
    const [oldest, spare] = spares.entries().next().value as [string, Promise<Spare>]
    spares.delete(oldest)
    spare.then(
      (sandbox) => sandbox.dispose(),
      () => {},
    )
  }
  const spare = make()
  spare.catch(() => {})
  spares.set(kind, spare)
}
