/**
 * The CAN HTTP API, this project's own, as both sides see it: route paths, header names, the
 * Schemas of every query, request and response body, and the JSON error envelope. `HttpService`
 * serves exactly this and `HttpStore` speaks exactly this, so neither side hard-codes a path, a
 * header or a field name.
 */
import { AssetDigest, AssetHash, AssetMeta, AssetRecord, StoreEvent } from "@can-sync/core"
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
  assetMeta: "/assets/:hash/meta"
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
  lastEventId: "last-event-id"
} as const

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
