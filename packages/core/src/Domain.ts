/**
 * The domain of a CAN store: assets named by the SHA-256 of their content, their metadata with
 * its last-writer-wins version, digests (what a peer knows without the content), and the change
 * events a store emits. Every other module speaks in these types.
 */
import * as Result from "effect/Result"
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

/**
 * Bounds on one asset's metadata, enforced wherever metadata enters a store (CLI, HTTP, the wire):
 * the whole of it always fits in one frame (an AssetHeader or MetaUpdate, 1 MiB by default) with
 * room to spare, and timestamps stay exact JavaScript numbers and valid dates.
 */
export const MetadataLimits = {
  /** UTF-8 bytes of the description. */
  maxDescriptionBytes: 32 * 1024,
  /** UTF-8 bytes of one tag. */
  maxTagBytes: 256,
  /** Tags on one asset. */
  maxTags: 128,
  /** UTF-8 bytes of the origin (a store id). */
  maxOriginBytes: 256,
  /** UTF-8 bytes of description, tags and origin together: a 16th of the default frame limit. */
  maxTotalBytes: 64 * 1024,
  /** Latest timestamp (ms since the epoch): the last instant a JavaScript Date can hold. */
  maxTimestamp: 8_640_000_000_000_000,
  /**
   * How far (ms) a version (`updatedAt`) may be ahead of the checking side's clock, when it
   * passes one: a version near `maxTimestamp` could never be overtaken by a later edit.
   */
  maxFutureSkew: 24 * 60 * 60 * 1000
} as const

/** Metadata outside `MetadataLimits`: `field` names the offending part, `detail` says how. */
export class MetadataInvalid extends Schema.TaggedError<MetadataInvalid>()("MetadataInvalid", {
  field: Schema.Literals(["description", "tags", "origin", "createdAt", "updatedAt", "total"]),
  detail: Schema.String
}) {
  override get message(): string {
    return `invalid metadata (${this.field}): ${this.detail}`
  }
}

/** UTF-8 bytes of `s` (as TextEncoder would write it), counted without encoding it. */
export const utf8Bytes = (s: string): number => {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4
      i++
    } else n += 3
  }
  return n
}

/** A timestamp is an integer number of ms in [0, MetadataLimits.maxTimestamp]. */
export const isValidTimestamp = (t: number): boolean =>
  Number.isSafeInteger(t) && t >= 0 && t <= MetadataLimits.maxTimestamp

/** UTF-8 bytes of description, tags and origin: what `maxTotalBytes` bounds. */
export const metadataBytes = (meta: Pick<AssetMeta, "description" | "tags" | "origin">): number =>
  utf8Bytes(meta.description) + meta.tags.reduce((n, tag) => n + utf8Bytes(tag), 0) + utf8Bytes(meta.origin)

const invalid = (field: MetadataInvalid["field"], detail: string) => Result.fail(new MetadataInvalid({ field, detail }))

const checkText = (
  description: string | undefined,
  tags: ReadonlyArray<string> | undefined
): Result.Result<void, MetadataInvalid> => {
  if (description !== undefined) {
    const bytes = utf8Bytes(description)
    if (bytes > MetadataLimits.maxDescriptionBytes) {
      return invalid("description", `${bytes} bytes, more than ${MetadataLimits.maxDescriptionBytes}`)
    }
  }
  if (tags !== undefined) {
    if (tags.length > MetadataLimits.maxTags) return invalid("tags", `${tags.length} tags, more than ${MetadataLimits.maxTags}`)
    for (const tag of tags) {
      const bytes = utf8Bytes(tag)
      if (bytes > MetadataLimits.maxTagBytes) return invalid("tags", `a tag of ${bytes} bytes, more than ${MetadataLimits.maxTagBytes}`)
    }
  }
  return Result.void
}

/**
 * Check a whole AssetMeta against `MetadataLimits` (sizes, total, timestamps): the one check
 * every entry point applies before metadata is stored or sent. With `now` (the checking side's
 * clock), `updatedAt` may also be at most `maxFutureSkew` ahead of it — the engine passes it for
 * a peer's metadata, so no peer can stamp a version that later edits cannot overtake.
 */
export const validateMeta = (meta: AssetMeta, options?: { readonly now?: number | undefined }): Result.Result<AssetMeta, MetadataInvalid> => {
  const text = checkText(meta.description, meta.tags)
  if (Result.isFailure(text)) return Result.fail(text.failure)
  const origin = utf8Bytes(meta.origin)
  if (origin > MetadataLimits.maxOriginBytes) return invalid("origin", `${origin} bytes, more than ${MetadataLimits.maxOriginBytes}`)
  const total = metadataBytes(meta)
  if (total > MetadataLimits.maxTotalBytes) return invalid("total", `${total} bytes, more than ${MetadataLimits.maxTotalBytes}`)
  if (!isValidTimestamp(meta.createdAt)) return invalid("createdAt", `${meta.createdAt} is not an integer in [0, ${MetadataLimits.maxTimestamp}]`)
  if (!isValidTimestamp(meta.updatedAt)) return invalid("updatedAt", `${meta.updatedAt} is not an integer in [0, ${MetadataLimits.maxTimestamp}]`)
  const now = options?.now
  if (now !== undefined && meta.updatedAt > now + MetadataLimits.maxFutureSkew) {
    return invalid("updatedAt", `${meta.updatedAt} is more than ${MetadataLimits.maxFutureSkew} ms ahead of this clock (${now})`)
  }
  return Result.succeed(meta)
}

/**
 * Check the fields a user edit sets (before it is applied). The merged result must still pass
 * `validateMeta` (its total counts the fields the patch keeps).
 */
export const validatePatch = (patch: MetaPatch): Result.Result<MetaPatch, MetadataInvalid> => {
  const text = checkText(patch.description, patch.tags)
  if (Result.isFailure(text)) return Result.fail(text.failure)
  return Result.succeed(patch)
}

/**
 * The `updatedAt` of a local edit: now, or one past the current version if that is later, and
 * never past `MetadataLimits.maxTimestamp` (so it stays an exact integer; a current version that
 * is out of range, e.g. 1.5e300 from an older store, is stepped from the ceiling instead).
 */
export const nextVersion = (currentUpdatedAt: number, now: number): number => {
  const current = Number.isNaN(currentUpdatedAt) ? 0 : Math.min(MetadataLimits.maxTimestamp, Math.floor(currentUpdatedAt))
  const clock = isValidTimestamp(now) ? now : Math.min(MetadataLimits.maxTimestamp, Math.max(0, Math.floor(now) || 0))
  return Math.min(MetadataLimits.maxTimestamp, Math.max(clock, current + 1))
}
