/**
 * The CAN HTTP API, this project's own, as both sides see it: route paths, header names, the
 * Schemas of every query, request and response body, and the JSON error envelope. `HttpService`
 * serves exactly this and `HttpStore` speaks exactly this, so neither side hard-codes a path, a
 * header or a field name.
 */
import { AssetDigest, AssetHash, AssetMeta, AssetRecord, StoreEvent } from "@can-sync/core"
import { MetadataLimits } from "@can-sync/core/Domain"
import { BUCKET_DIGITS, SUM_BYTES } from "@can-sync/core/Fingerprints"
import * as Schema from "effect/Schema"

/** The port the service listens on when none is given. */
export const DefaultPort = 7650

/** Route patterns as the router registers them (`:hash` is a path parameter). */
export const Routes = {
  healthz: "/healthz",
  info: "/sync/info",
  hashes: "/sync/hashes",
  pull: "/sync/pull/:hash",
  push: "/sync/push/:hash",
  syncMeta: "/sync/meta",
  events: "/sync/events",
  assets: "/assets",
  asset: "/assets/:hash",
  assetMeta: "/assets/:hash/meta",
  /**
   * Range reconciliation: fingerprints of hash prefixes. Served only over a store that keeps them;
   * a client asks for no prefix once to learn whether it is (200, else 404: list every digest).
   */
  rangeFingerprints: "/sync/ranges/fingerprints",
  /** Range reconciliation: the items of hash prefixes, as many leading prefixes as fit one response. */
  rangeItems: "/sync/ranges/items"
} as const

/** Concrete paths as a client requests them. */
export const paths = {
  pull: (hash: string): string => `/sync/pull/${encodeURIComponent(hash)}`,
  push: (hash: string): string => `/sync/push/${encodeURIComponent(hash)}`,
  asset: (hash: string): string => `/assets/${encodeURIComponent(hash)}`,
  assetMeta: (hash: string): string => `/assets/${encodeURIComponent(hash)}/meta`
} as const

/** Header names (lower case, as Node and Effect present them). */
export const HeaderNames = {
  authorization: "authorization",
  /** JSON `AssetMeta`: sent with a push, returned with a pull or a download. */
  meta: "x-can-meta",
  /** The peer id a pushed asset comes from (the `origin` of its events). */
  origin: "x-can-origin",
  /** The asset's size in bytes, on pull, download and HEAD responses. */
  size: "x-can-size",
  /** SSE resume point, sent by reconnecting clients (takes precedence over `?since=`). */
  lastEventId: "last-event-id",
  /** `bytes=N-` on a pull or a download: the content from byte N on (see `rangeStart`). */
  range: "range",
  /** `bytes START-END/SIZE` on a 206 answer to a range. */
  contentRange: "content-range",
  /** `bytes` on every pull, download and HEAD response: ranges are served. */
  acceptRanges: "accept-ranges"
} as const

/**
 * The first byte a `Range` header asks for when it has the one form the service answers, `bytes=N-`
 * with 0 < N < size. Any other (several ranges, an end, a suffix, from 0, past the end) is
 * ignored and the whole asset sent with 200, as HTTP allows.
 */
export const rangeStart = (header: string | undefined, size: number): number | undefined => {
  const match = header === undefined ? null : /^bytes=(\d{1,15})-$/.exec(header.trim())
  if (match === null) return undefined
  const start = Number(match[1])
  return start > 0 && start < size ? start : undefined
}

/** The `Content-Range` of the answer to `bytes=START-` for content of `size` bytes. */
export const contentRange = (start: number, size: number): string => `bytes ${start}-${size - 1}/${size}`

/** The first byte a `Content-Range` names (`bytes START-END/SIZE`), if it is one. */
export const contentRangeStart = (header: string | undefined): number | undefined => {
  const match = header === undefined ? null : /^bytes (\d{1,15})-\d{1,15}\/\d{1,15}$/.exec(header.trim())
  return match === null ? undefined : Number(match[1])
}

/**
 * The header size both sides accept: room for an `x-can-meta` with a long description (Node's and
 * undici's default is 16 KiB).
 */
export const MaxHeaderBytes = 256 * 1024

/** SSE event names, by StoreEvent tag. */
export const SseEventNames = { AssetAdded: "asset", MetaChanged: "meta" } as const

/**
 * The SSE event sent first when `since` (or Last-Event-ID) is past the store's newest change
 * (the store was recreated, or the client followed another one): the stream then replays from 0,
 * and a client resets its cursor to 0 on it.
 */
export const SseResetEventName = "reset"

/** The query parameter that may carry the token on `GET /sync/events` only (EventSource cannot set headers). */
export const TokenQueryParam = "token"

// ---------------------------------------------------------------------------------------------
// Queries (decoded from the parsed search parameters: each value a string or an array of them)
// ---------------------------------------------------------------------------------------------

/** A non-negative integer written in decimal, as in `?since=42`. */
export const SeqFromString = Schema.FiniteFromString.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0))

/** A positive integer written in decimal, as in `?limit=500`. */
export const LimitFromString = Schema.FiniteFromString.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(1))

/** `POST /sync/hashes?since=N&limit=M` */
export const HashesQuery = Schema.Struct({
  since: Schema.optionalKey(SeqFromString),
  limit: Schema.optionalKey(LimitFromString)
})

/** `GET /sync/events?since=N&token=T` */
export const EventsQuery = Schema.Struct({
  since: Schema.optionalKey(SeqFromString),
  token: Schema.optionalKey(Schema.String)
})

/** `POST /assets?description=..&tag=a&tag=b&hash=<expected>` */
export const IngestQuery = Schema.Struct({
  description: Schema.optionalKey(Schema.String),
  tag: Schema.optionalKey(Schema.ArrayEnsure(Schema.String)),
  /** When given, content whose SHA-256 differs is refused with 422 and nothing is stored. */
  hash: Schema.optionalKey(AssetHash)
})

/** `:hash` in a route path. */
export const HashParams = Schema.Struct({ hash: AssetHash })

// ---------------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------------

/** The `x-can-meta` header: AssetMeta as JSON. */
export const MetaHeader = Schema.fromJsonString(AssetMeta)

/**
 * JSON made safe for an HTTP header: every character outside printable ASCII is written as a
 * `\uXXXX` escape, which JSON.parse reads back unchanged (Node refuses other header bytes).
 */
export const headerJson = (value: unknown): string =>
  JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`
  )

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

/** `GET /sync/info` */
export const SyncInfo = Schema.Struct({ storeId: Schema.String, seq: Schema.Number })
export type SyncInfo = typeof SyncInfo.Type

// ---------------------------------------------------------------------------------------------
// Range reconciliation (`POST /sync/ranges/fingerprints`, `POST /sync/ranges/items`)
// ---------------------------------------------------------------------------------------------

/**
 * What one range request and its response may hold; the service refuses more (400 InvalidInput)
 * and the client splits its calls to stay within them.
 */
export const RangeLimits = {
  /** Prefixes in one request. */
  maxPrefixes: 4_096,
  /**
   * Buckets (4-hex-digit prefixes) the prefixes of one request cover together (`bucketSpan`):
   * the work a fingerprint request costs the service (16 one-digit prefixes cover 65,536).
   */
  maxBucketSpan: 1_048_576,
  /** Items in one `items` response: the service answers the leading prefixes that fit. */
  maxItems: 4_096
} as const

/** A hash prefix: 0 to 64 lowercase hex digits. */
export const HashPrefix = Schema.String.check(Schema.isPattern(/^[0-9a-f]{0,64}$/))

/** The buckets a prefix covers: 16^(4 - its length), 1 for deeper prefixes. */
export const bucketSpan = (prefix: string): number => 16 ** Math.max(0, BUCKET_DIGITS - prefix.length)

/** Both range requests' body: hash prefixes, at most `RangeLimits.maxPrefixes` covering at most `maxBucketSpan`. */
export const RangeRequest = Schema.Struct({
  prefixes: Schema.Array(HashPrefix).check(Schema.isMaxLength(RangeLimits.maxPrefixes)).check(
    Schema.makeFilter((prefixes: ReadonlyArray<string>) =>
      prefixes.reduce((n, p) => n + bucketSpan(p), 0) <= RangeLimits.maxBucketSpan ||
      `the prefixes cover more than ${RangeLimits.maxBucketSpan} buckets`
    )
  )
})

const Count = Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }))

/** A range's fingerprint on the wire: its item count and its 16-byte sum in hex. */
export const RangeFingerprint = Schema.Struct({
  count: Count,
  sum: Schema.String.check(Schema.isPattern(new RegExp(`^[0-9a-f]{${2 * SUM_BYTES}}$`)))
})

/** `POST /sync/ranges/fingerprints` response: one fingerprint per requested prefix, in order. */
export const RangeFingerprintsResponse = Schema.Struct({ fingerprints: Schema.Array(RangeFingerprint) })

/** An asset as range reconciliation sees it: hash, size and metadata version (as in its digest). */
export const RangeItem = Schema.Struct({
  hash: AssetHash,
  size: Count,
  updatedAt: Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: MetadataLimits.maxTimestamp })),
  origin: Schema.String.check(Schema.isMaxLength(MetadataLimits.maxOriginBytes))
})

/**
 * `POST /sync/ranges/items` response: the items of the first `lists.length` requested prefixes, each
 * in hash order, at most `RangeLimits.maxItems` in all; the client asks again for the rest. No list
 * at all means the first prefix alone holds more than `maxItems`: the client asks for its 16 children.
 */
export const RangeItemsResponse = Schema.Struct({
  lists: Schema.Array(Schema.Array(RangeItem))
})

/** `POST /sync/hashes` response: one page of digests in sequence order. */
export const HashesResponse = Schema.Struct({
  assets: Schema.Array(AssetDigest),
  next: Schema.Number,
  done: Schema.Boolean
})

/** `POST /sync/push/:hash` response. */
export const PushResponse = Schema.Struct({ hash: AssetHash, already_existed: Schema.Boolean })

/** `POST /assets` response. */
export const IngestResponse = Schema.Struct({
  hash: AssetHash,
  size: Schema.Number,
  already_existed: Schema.Boolean
})

/** `POST /sync/meta` body: a peer's versioned edit, merged by last-writer-wins. */
export const MergeMetaRequest = Schema.Struct({ hash: AssetHash, meta: AssetMeta, origin: Schema.String })

/** `POST /sync/meta` response. */
export const MergeMetaResponse = Schema.Struct({ applied: Schema.Boolean, meta: AssetMeta })

/** `POST /assets/:hash/meta` body: a local edit; only the given fields change. */
export const EditMetaRequest = Schema.Struct({
  description: Schema.optionalKey(Schema.String),
  tags: Schema.optionalKey(Schema.Array(Schema.String)),
  trashed: Schema.optionalKey(Schema.Boolean)
})

/** `POST /assets/:hash/meta` response: the asset's metadata after the edit. */
export const EditMetaResponse = Schema.Struct({ hash: AssetHash, meta: AssetMeta })

/** `GET /assets/:hash/meta` response. */
export const AssetRecordResponse = AssetRecord

/** `GET /healthz` response. */
export const HealthResponse = Schema.Struct({ ok: Schema.Boolean })

/** The `data:` of one SSE event. */
export const EventData = Schema.fromJsonString(StoreEvent)

/** The `data:` of the `reset` event: the resume point asked for, and the store's newest change. */
export const ResetData = Schema.fromJsonString(Schema.Struct({ since: Schema.Number, seq: Schema.Number }))

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/**
 * Every 4xx/5xx body: `{ "error": { "tag", "message", ...the tagged error's own fields } }`.
 * `tag` is a CanStore error tag (AssetNotFound, HashMismatch, AssetTooLarge, InvalidInput,
 * StoreUnavailable), MetadataInvalid (400, with the offending `field`: metadata outside core's
 * `MetadataLimits`) or one of the service's own: Unauthorized (401), RouteNotFound (404),
 * UploadTooSlow (408: an upload idle or below the minimum rate, cut), ServiceBusy (503 with
 * Retry-After and `limit`: too many uploads or connections at once).
 */
export const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    tag: Schema.String,
    message: Schema.String,
    hash: Schema.optionalKey(Schema.String),
    expected: Schema.optionalKey(Schema.String),
    actual: Schema.optionalKey(Schema.String),
    limit: Schema.optionalKey(Schema.Number),
    size: Schema.optionalKey(Schema.Number),
    operation: Schema.optionalKey(Schema.String),
    field: Schema.optionalKey(Schema.String)
  })
})
export type ErrorBody = typeof ErrorBody.Type
