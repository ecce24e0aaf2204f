/**
 * The CanStore contract (`CanStoreShape`): the one interface the sync engine and the CLI use to reach a CAN store,
 * whether embedded (SQLite + files) or remote (the CAN HTTP service). Implementations live in
 * `@can-sync/store`; one contract test suite runs against all of them.
 */
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { Effect, Option } from "effect"
import type { AssetDigest, AssetHash, AssetMeta, AssetRecord, MetaPatch, StoreEvent } from "./Domain.ts"
import type { RangeSource } from "./RangeSource.ts"

/** The asset asked for is not in the store. */
export class AssetNotFound extends Schema.TaggedError<AssetNotFound>()("AssetNotFound", {
  hash: Schema.String
}) {}

/**
 * Content whose SHA-256 differs from the hash it was sent under: nothing was stored. After a
 * resumed push (`resumedFrom` > 0) the partial is gone too, and `sources` names the peers that sent
 * its bytes: the next try starts from byte 0.
 */
export class HashMismatch extends Schema.TaggedError<HashMismatch>()("HashMismatch", {
  expected: Schema.String,
  actual: Schema.String,
  resumedFrom: Schema.optional(Schema.Number),
  sources: Schema.optional(Schema.Array(Schema.String))
}) {}

/** Content larger than the store accepts (or than announced): nothing was stored. */
export class AssetTooLarge extends Schema.TaggedError<AssetTooLarge>()("AssetTooLarge", {
  limit: Schema.Number,
  size: Schema.Number
}) {}

/** The caller's input is unusable (a malformed hash, a bad page size, ...). */
export class InvalidInput extends Schema.TaggedError<InvalidInput>()("InvalidInput", {
  message: Schema.String
}) {}

/** The store itself failed: disk full, database locked, service unreachable, I/O error. */
export class StoreUnavailable extends Schema.TaggedError<StoreUnavailable>()("StoreUnavailable", {
  operation: Schema.String,
  message: Schema.String
}) {}

export type StoreError = StoreUnavailable | InvalidInput

/** What to record with newly ingested content. */
export interface IngestOptions {
  readonly description?: string | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  /** When given, content whose hash differs is refused with HashMismatch and nothing is stored. */
  readonly expectedHash?: AssetHash | undefined
}

export interface IngestResult {
  readonly hash: AssetHash
  readonly size: number
  readonly alreadyExisted: boolean
}

/** One page of digests, in change-sequence order. Pass `next` as `since` to get the next page. */
export interface DigestPage {
  readonly digests: ReadonlyArray<AssetDigest>
  /** The sequence to ask `since` for the next page (the last digest's seq, or `since` if empty). */
  readonly next: number
  /** True when no digest with a sequence above `next` existed when the page was read. */
  readonly done: boolean
}

/** How a peer's content arrives (`push`). */
export interface PushOptions {
  /**
   * A resumable push (stores with `partial`): what arrives is kept as a partial if the push is
   * interrupted, and `content` continues the partial's first `resumeFrom` bytes (0: from the
   * start), which the store re-hashes first. The whole-asset hash check still gates the store.
   */
  readonly resumeFrom?: number | undefined
  /** The size the sender announced: a store may keep no partial of an asset too small to be worth resuming. */
  readonly size?: number | undefined
}

export interface MetaUpdateResult {
  /** False when the store's version was newer (last writer wins) or the edit changed nothing. */
  readonly applied: boolean
  readonly meta: AssetMeta
}

export interface CanStoreShape {
  /** This store's id: the `origin` of metadata edits made here. Stable across restarts. */
  readonly storeId: string
  /** Stream new content in, hashing as it goes; idempotent for content already present. */
  readonly ingest: <E>(
    content: Stream.Stream<Uint8Array, E>,
    options?: IngestOptions
  ) => Effect.Effect<IngestResult, E | HashMismatch | AssetTooLarge | StoreError>
  readonly has: (hash: AssetHash) => Effect.Effect<boolean, StoreError>
  readonly stat: (hash: AssetHash) => Effect.Effect<Option.Option<AssetRecord>, StoreError>
  /** The content, in chunks; never the whole asset in memory. */
  readonly read: (hash: AssetHash) => Stream.Stream<Uint8Array, AssetNotFound | StoreError>
  /**
   * The content from byte `offset` on, not checked against the hash: what a sync sender reads (its
   * receiver checks the whole asset before keeping any of it). Without it a sender reads through
   * `read` (checked), from 0, and skips the bytes before `offset`.
   */
  readonly readFrom?: ((hash: AssetHash, offset: number) => Stream.Stream<Uint8Array, AssetNotFound | StoreError>) | undefined
  /** Digests of assets changed after `since` (0 = all), at most `limit` per page. */
  readonly list: (options?: { readonly since?: number; readonly limit?: number }) => Effect.Effect<DigestPage, StoreError>
  /** The newest change sequence of the store (0 when empty). */
  readonly currentSeq: Effect.Effect<number, StoreError>
  /**
   * Store an asset a peer sent: the content must hash to `hash` (else HashMismatch, nothing
   * stored); `meta` is merged by last-writer-wins. `origin` is the peer id, for its events.
   */
  readonly push: <E>(
    hash: AssetHash,
    content: Stream.Stream<Uint8Array, E>,
    meta: AssetMeta,
    origin: string,
    options?: PushOptions
  ) => Effect.Effect<{ readonly alreadyExisted: boolean }, E | HashMismatch | AssetTooLarge | StoreError>
  /**
   * Bytes kept of an interrupted resumable push of `hash` (0: none), as last checkpointed: a
   * transfer may resume from there. Stores without it never resume (every push starts at 0).
   * `size`, when known, is the asset's: a store that keeps no partial of assets that small
   * answers 0 without looking.
   */
  readonly partial?: ((hash: AssetHash, size?: number) => Effect.Effect<number, StoreError>) | undefined
  /** A local edit: stamps a new version (now, this store's id) and applies the patch. */
  readonly editMeta: (hash: AssetHash, patch: MetaPatch) => Effect.Effect<AssetMeta, AssetNotFound | StoreError>
  /** A peer's edit with its own version: applied only if it wins under last-writer-wins. */
  readonly mergeMeta: (
    hash: AssetHash,
    meta: AssetMeta,
    origin: string
  ) => Effect.Effect<MetaUpdateResult, AssetNotFound | StoreError>
  /**
   * Every change after `since` (default: from now on), in sequence order, then live; changes made
   * by other processes on the same store are included. Never ends on its own.
   */
  readonly events: (options?: { readonly since?: number }) => Stream.Stream<StoreEvent, StoreError>
  /**
   * Fingerprints and items of hash ranges, kept up to date by the store (`Fingerprints.Table`):
   * with it, sessions whose peer also has it reconcile by ranges instead of listing every digest.
   */
  readonly ranges?: RangeSource<StoreError> | undefined
}

/** `stream` without its first `count` bytes. */
export const dropBytes = <E>(stream: Stream.Stream<Uint8Array, E>, count: number): Stream.Stream<Uint8Array, E> =>
  count <= 0
    ? stream
    : Stream.suspend(() => {
      let skip = count
      return stream.pipe(
        Stream.map((chunk) => {
          const kept = chunk.subarray(Math.min(skip, chunk.length))
          skip -= chunk.length - kept.length
          return kept
        }),
        Stream.filter((chunk) => chunk.length > 0)
      )
    })

/**
 * The content of `hash` from byte `offset` on, as a sync sender reads it: the store's `readFrom`,
 * not checked against the hash (the receiver checks the whole asset before keeping any of it, so
 * checking here too would hash every byte twice), or, without it, `read` (checked) from byte 0
 * with the bytes before `offset` left out.
 */
export const contentFrom = (store: CanStoreShape, hash: AssetHash, offset: number): Stream.Stream<Uint8Array, AssetNotFound | StoreError> =>
  store.readFrom !== undefined ? store.readFrom(hash, offset) : dropBytes(store.read(hash), offset)
