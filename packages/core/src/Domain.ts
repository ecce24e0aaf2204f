/**
 * The domain of a CAN store: assets named by the SHA-256 of their content, their metadata with
 * its last-writer-wins version, digests (what a peer knows without the content), and the change
 * events a store emits. Every other module speaks in these types.
 */
import * as Schema from "effect/Schema"

/** SHA-256 of an asset's content: 64 lowercase hex characters. */
export const AssetHash = Schema.String.check(Schema.isPattern(/^[0-9a-f]{64}$/)).pipe(Schema.brand("AssetHash"))
export type AssetHash = typeof AssetHash.Type

/** A peer's identity (derived from its public key by the transport; any non-empty string here). */
export const PeerId = Schema.String.check(Schema.isMinLength(1)).pipe(Schema.brand("PeerId"))
export type PeerId = typeof PeerId.Type

/** The origin of a change made in this store by its own user (CLI, HTTP ingest), not by a peer. */
export const LocalOrigin = "local"

export const AssetMeta = Schema.Struct({
  description: Schema.String,
  tags: Schema.Array(Schema.String),
  trashed: Schema.Boolean,
  /** ms since the epoch, when the asset was first ingested anywhere */
  createdAt: Schema.Number,
  /** ms since the epoch of the last metadata edit: version, part 1 */
  updatedAt: Schema.Number,
  /** id of the store where the last edit was made: version, part 2 (breaks ties) */
  origin: Schema.String
})
export type AssetMeta = typeof AssetMeta.Type

/** What a peer knows about one asset without its content; `seq` is the store-local change sequence. */
export const AssetDigest = Schema.Struct({
  hash: AssetHash,
  size: Schema.Number,
  createdAt: Schema.Number,
  updatedAt: Schema.Number,
  metaOrigin: Schema.String,
  seq: Schema.Number
})
export type AssetDigest = typeof AssetDigest.Type

/** An asset as the store knows it: its size, metadata and the sequence of its last change. */
export const AssetRecord = Schema.Struct({
  hash: AssetHash,
  size: Schema.Number,
  meta: AssetMeta,
  seq: Schema.Number
})
export type AssetRecord = typeof AssetRecord.Type

/** A metadata edit as a user asks for it: only the given fields change. */
export interface MetaPatch {
  readonly description?: string | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  readonly trashed?: boolean | undefined
}

/**
 * A change in a store. `origin` says who caused it: `LocalOrigin` for this store's own user, or
 * the id of the peer that delivered it (echo suppression keys on this). `seq` is strictly increasing.
 */
export const AssetAdded = Schema.TaggedStruct("AssetAdded", {
  hash: AssetHash,
  size: Schema.Number,
  seq: Schema.Number,
  origin: Schema.String,
  at: Schema.Number
})
export const MetaChanged = Schema.TaggedStruct("MetaChanged", {
  hash: AssetHash,
  meta: AssetMeta,
  seq: Schema.Number,
  origin: Schema.String,
  at: Schema.Number
})
export const StoreEvent = Schema.Union([AssetAdded, MetaChanged])
export type StoreEvent = typeof StoreEvent.Type

/** Last-writer-wins order of metadata versions: by update time, then by origin id. */
export const compareMetaVersion = (
  a: { readonly updatedAt: number; readonly origin: string },
  b: { readonly updatedAt: number; readonly origin: string }
): -1 | 0 | 1 =>
  a.updatedAt !== b.updatedAt
    ? (a.updatedAt < b.updatedAt ? -1 : 1)
    : a.origin === b.origin
    ? 0
    : a.origin < b.origin
    ? -1
    : 1

/** True when `candidate` should replace `current` under last-writer-wins. */
export const metaWins = (
  candidate: { readonly updatedAt: number; readonly origin: string },
  current: { readonly updatedAt: number; readonly origin: string }
): boolean => compareMetaVersion(candidate, current) > 0

export const isAssetHash = Schema.is(AssetHash)
