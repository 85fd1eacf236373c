// Minimal type shims for the Holepunch packages LibVMS uses. None of them ships types and no @types
// packages exist; these declare only the parts the project calls.

declare module 'hypercore' {
  import type { EventEmitter } from 'node:events'

  interface HypercoreGetOptions {
    wait?: boolean
    timeout?: number
    valueEncoding?: unknown
  }

  /** One peer replicating a core: what it said it holds, and on which connection. */
  interface HypercorePeer {
    readonly remoteLength: number
    /** The fork the peer says its core is on (0 until it has said). */
    readonly remoteFork: number
    /** Whether the peer has sent its state (length, fork) yet. */
    readonly remoteSynced: boolean
    /** The encrypted connection; `isInitiator` is true when this side opened it. */
    readonly stream: { readonly isInitiator: boolean }
  }

  class Hypercore<T = unknown> extends EventEmitter {
    readonly key: Buffer
    readonly discoveryKey: Buffer
    readonly length: number
    readonly contiguousLength: number
    readonly fork: number
    readonly writable: boolean
    readonly readable: boolean
    readonly opened: boolean
    readonly closed: boolean
    /** Set (a promise) once close() has been called. */
    readonly closing: Promise<void> | null
    readonly peers: HypercorePeer[]
    readonly manifest: unknown
    ready(): Promise<void>
    close(): Promise<void>
    get(index: number, opts?: HypercoreGetOptions): Promise<T | null>
    has(start: number, end?: number): Promise<boolean>
    append(block: T | T[]): Promise<{ length: number; byteLength: number }>
    truncate(length: number, opts?: unknown): Promise<void>
    treeHash(length?: number): Promise<Buffer>
    update(opts?: { wait?: boolean }): Promise<boolean>
    download(range?: { start?: number; end?: number; blocks?: number[]; linear?: boolean }): { done(): Promise<void>; destroy(): void }
    session(opts?: Record<string, unknown>): Hypercore<T>
    snapshot(opts?: Record<string, unknown>): Hypercore<T>
    createReadStream(opts?: { start?: number; end?: number; live?: boolean }): AsyncIterable<T>
    static key(manifest: unknown): Buffer
  }
  export default Hypercore
}

declare module 'corestore' {
  import type Hypercore from 'hypercore'

  class Corestore {
    constructor(storage: string, opts?: Record<string, unknown>)
    ready(): Promise<void>
    close(): Promise<void>
    get<T = unknown>(opts: { name?: string; key?: Buffer | Uint8Array; valueEncoding?: unknown; [k: string]: unknown }): Hypercore<T>
    namespace(name: string): Corestore
    session(opts?: Record<string, unknown>): Corestore
    replicate(isInitiator: boolean | unknown, opts?: Record<string, unknown>): NodeJS.ReadWriteStream
    findingPeers(): () => void
    readonly closed: boolean
    /** The hypercore-storage instance; `createAtom()` starts an atomic batch across its cores. */
    readonly storage: { createAtom(): { flush(): Promise<void> } }
  }
  export default Corestore
}

declare module 'hyperdrive' {
  import type Corestore from 'corestore'
  import type Hypercore from 'hypercore'

  interface DriveEntry {
    seq: number
    key: string
    value: {
      executable: boolean
      linkname: string | null
      blob: { blockOffset: number; byteOffset: number; blockLength: number; byteLength: number } | null
      metadata: Record<string, unknown> | null
    }
  }

  interface HistoryNode {
    seq: number
    type: 'put' | 'del'
    key: string
    value: unknown
  }

  class Hyperdrive {
    constructor(store: Corestore, key?: Buffer | Uint8Array | null, opts?: Record<string, unknown>)
    readonly key: Buffer
    readonly discoveryKey: Buffer
    readonly core: Hypercore
    readonly version: number
    readonly writable: boolean
    readonly corestore: Corestore
    readonly db: import('hyperbee').default
    ready(): Promise<void>
    close(): Promise<void>
    getBlobs(): Promise<import('hyperblobs').default>
    getBlobsLength(checkout?: number): Promise<number>
    entry(path: string, opts?: Record<string, unknown>): Promise<DriveEntry | null>
    get(path: string, opts?: Record<string, unknown>): Promise<Buffer | null>
    put(path: string, data: Buffer | Uint8Array, opts?: { metadata?: unknown; executable?: boolean }): Promise<void>
    putEntry(path: string, entry: { metadata?: unknown; blob?: unknown; executable?: boolean }): Promise<void>
    del(path: string): Promise<void>
    /** Frees the blocks of a file's contents on this machine (its entry stays until del). */
    clear(path: string, opts?: { diff?: boolean }): Promise<{ blocks: number } | null>
    readdir(path: string): AsyncIterable<string>
    list(path: string, opts?: { recursive?: boolean }): AsyncIterable<DriveEntry>
    batch(): Hyperdrive
    flush(): Promise<void>
    checkout(version: number): Hyperdrive
    /** Copies this drive's files into `out` (another Hyperdrive, or a Localdrive). */
    mirror(out: unknown, opts?: Record<string, unknown>): { done(): Promise<unknown> }
    truncate(version: number, opts?: { blobs?: number }): Promise<void>
    download(path?: string, opts?: Record<string, unknown>): { done(): Promise<void> }
    findingPeers(): () => void
    update(opts?: { wait?: boolean }): Promise<boolean>
    static getContentKey(core: Hypercore | unknown, key?: Buffer): Buffer | null
  }
  export default Hyperdrive
}

declare module 'hyperbee' {
  import type Hypercore from 'hypercore'

  interface BeeNode<T = unknown> {
    seq: number
    key: string
    value: T
  }

  interface BeeRange {
    gt?: string
    gte?: string
    lt?: string
    lte?: string
    reverse?: boolean
    limit?: number
  }

  class HyperbeeBatch {
    put(key: string, value: unknown): Promise<void>
    del(key: string): Promise<void>
    get<T = unknown>(key: string): Promise<BeeNode<T> | null>
    flush(): Promise<void>
    close(): Promise<void>
  }

  class Hyperbee {
    constructor(core: Hypercore, opts?: { keyEncoding?: string; valueEncoding?: string; metadata?: unknown; sessions?: boolean })
    readonly core: Hypercore
    readonly version: number
    ready(): Promise<void>
    close(): Promise<void>
    get<T = unknown>(key: string): Promise<BeeNode<T> | null>
    put(key: string, value: unknown): Promise<void>
    peek<T = unknown>(range: BeeRange): Promise<BeeNode<T> | null>
    createReadStream<T = unknown>(range?: BeeRange): AsyncIterable<BeeNode<T>>
    createHistoryStream(opts?: { gte?: number; lt?: number; reverse?: boolean }): AsyncIterable<BeeNode & { type: 'put' | 'del' }>
    batch(): HyperbeeBatch
    checkout(version: number): Hyperbee
  }
  export default Hyperbee
}

declare module 'hyperblobs' {
  import type Hypercore from 'hypercore'

  export interface BlobId {
    blockOffset: number
    blockLength: number
    byteOffset: number
    byteLength: number
  }

  class HyperblobsBatch {
    put(data: Buffer): Promise<BlobId>
    flush(): Promise<void>
  }

  class Hyperblobs {
    constructor(core: Hypercore)
    readonly core: Hypercore
    get(id: BlobId): Promise<Buffer | null>
    put(data: Buffer): Promise<BlobId>
    batch(): HyperblobsBatch
  }
  export default Hyperblobs
}

declare module 'hypercore-crypto' {
  const crypto: {
    /** The Merkle tree hash of a list of root nodes (what Hypercore's treeHash returns). */
    tree(roots: unknown[]): Buffer
    /** A new Ed25519 key pair (secretKey is 64 bytes: seed then public key). */
    keyPair(seed?: Uint8Array): { publicKey: Buffer; secretKey: Buffer }
    /** A detached Ed25519 signature (64 bytes). */
    sign(message: Uint8Array, secretKey: Uint8Array): Buffer
    verify(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean
    /** Whether secretKey belongs to publicKey. */
    validateKeyPair(keyPair: { publicKey: Uint8Array; secretKey: Uint8Array }): boolean
    randomBytes(n: number): Buffer
    /** The discovery key of a core's public key: the topic peers look it up under. */
    discoveryKey(publicKey: Uint8Array): Buffer
    /** The Merkle leaf hash of a block. */
    data(block: Uint8Array): Buffer
    /** The Merkle hash of two sibling nodes (left first). */
    parent(left: { index: number; size: number; hash: Uint8Array }, right: { index: number; size: number; hash: Uint8Array }): Buffer
  }
  export default crypto
}

declare module 'hyperswarm' {
  import type { EventEmitter } from 'node:events'
  import type { Duplex } from 'node:stream'

  export interface PeerDiscovery {
    flushed(): Promise<void>
    refresh(opts?: { client?: boolean; server?: boolean }): Promise<void>
    destroy(): Promise<void>
  }

  interface PeerInfo {
    publicKey: Buffer
    topics: Buffer[]
  }

  class Hyperswarm extends EventEmitter {
    constructor(opts?: { bootstrap?: { host: string; port: number }[]; maxPeers?: number })
    readonly connections: Set<Duplex & { remotePublicKey: Buffer }>
    readonly connecting: number
    join(topic: Buffer, opts?: { server?: boolean; client?: boolean }): PeerDiscovery
    leave(topic: Buffer): Promise<void>
    flush(): Promise<void>
    listen(): Promise<void>
    destroy(): Promise<void>
    on(event: 'connection', listener: (socket: Duplex & { remotePublicKey: Buffer }, info: PeerInfo) => void): this
    on(event: string, listener: (...args: unknown[]) => void): this
  }
  export default Hyperswarm
}

declare module '@hyperswarm/testnet' {
  interface Testnet {
    bootstrap: { host: string; port: number }[]
    destroy(): Promise<void>
  }
  export default function createTestnet(size?: number, opts?: { host?: string; port?: number }): Promise<Testnet>
}

declare module 'protomux' {
  import type { Duplex } from 'node:stream'

  interface Encoding<T> {
    preencode(state: unknown, value: T): void
    encode(state: unknown, value: T): void
    decode(state: unknown): T
  }

  export interface Message<T> {
    send(value: T): boolean
  }

  export interface Channel {
    readonly opened: boolean
    readonly closed: boolean
    addMessage<T>(opts: { encoding: Encoding<T>; onmessage?: (value: T) => void }): Message<T>
    open(handshake?: unknown): void
    close(): void
  }

  class Protomux {
    static from(stream: Duplex): Protomux
    createChannel(opts: {
      protocol: string
      id?: Buffer | null
      unique?: boolean
      onopen?: () => void
      onclose?: () => void
    }): Channel | null
  }
  export default Protomux
}

declare module 'compact-encoding' {
  interface Encoding<T> {
    preencode(state: unknown, value: T): void
    encode(state: unknown, value: T): void
    decode(state: unknown): T
  }
  const c: { string: Encoding<string>; json: Encoding<unknown>; fixed32: Encoding<Buffer> }
  export default c
}

// Hypercore's proof helpers (receipts: ledger/receipts.ts), typed as LibVMS uses them.
declare module 'hypercore/lib/fully-remote-proof.js' {
  const fullyRemoteProof: {
    proof(core: unknown, options: { index: number; block: Buffer; upgrade: { start: number; length: number } }): Promise<Buffer>
  }
  export default fullyRemoteProof
}

declare module 'hypercore/lib/merkle-tree.js' {
  const merkleTree: {
    MerkleTree: {
      verifyFullyRemote(session: unknown, proof: unknown): unknown
      get(session: unknown, index: number): Promise<{ index: number; size: number; hash: Buffer } | null>
    }
  }
  export default merkleTree
}

declare module 'hypercore/lib/messages.js' {
  const messages: { wire: { data: { decode(state: { buffer: Buffer; start: number; end: number }): unknown } } }
  export default messages
}

declare module 'hypercore/lib/verifier.js' {
  const Verifier: { manifestHash(manifest: unknown): Buffer }
  export default Verifier
}

declare module 'flat-tree' {
  /** Hypercore's flat-tree numbering: leaf i is 2i; a node's parent, sibling, depth, offset and span. */
  const flat: {
    fullRoots(index: number): number[]
    sibling(index: number): number
    parent(index: number): number
    depth(index: number): number
    index(depth: number, offset: number): number
    /** The leftmost and rightmost leaf (flat indices) under `index`. */
    spans(index: number): [number, number]
    /** The two children of `index`; null for a leaf. */
    children(index: number): [number, number] | null
  }
  export default flat
}
