/**
 * The CAN HTTP service: serves any CanStore over HTTP + Server-Sent Events (the API in `CanHttpApi`),
 * streaming asset bodies both ways and refusing pushed content whose hash differs from its name.
 * Every route but /healthz needs the bearer token (compared in constant time); every failure is
 * a JSON `{ error: { tag, message } }` with a 4xx/503 status, never a partial asset. Metadata
 * outside `MetadataLimits` is refused (400 MetadataInvalid) before a byte of content is read. What
 * one client can hold is bounded: uploads and connections are capped (503 ServiceBusy with
 * Retry-After past the cap), headers have a deadline, and a silent or trickling upload is cut.
 */
import { AssetMeta, AssetNotFound, InvalidInput, validateMeta, validatePatch } from "@can-sync/core"
import type {
  AssetHash,
  MetadataInvalid,
  AssetTooLarge,
  CanStoreShape,
  HashMismatch,
  StoreError,
  StoreEvent,
  StoreUnavailable
} from "@can-sync/core"
import { contentFrom } from "@can-sync/core/CanStore"
import { BUCKET_DIGITS } from "@can-sync/core/Fingerprints"
import type { RangeItem, RangeSource } from "@can-sync/core/Fingerprints"
import { NodeHttpServer, NodeHttpServerRequest } from "@effect/platform-node"
import * as ByteSize from "effect/ByteSize"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import { Sse } from "effect/encoding"
import {
  Headers,
  HttpIncomingMessage,
  HttpRouter,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "effect/http"
import { createHash, timingSafeEqual } from "node:crypto"
import { createServer } from "node:http"
import type { Socket } from "node:net"
import * as Api from "./CanHttpApi.ts"

export interface HttpServiceOptions {
  /** Interface to bind; default 127.0.0.1. */
  readonly host?: string
  /** Port to bind; default 7650; 0 picks any free port. */
  readonly port?: number
  /** The bearer token every route but /healthz requires. */
  readonly token: string
  /** Interval of SSE keepalive comments; default 15 seconds. */
  readonly keepAlive?: Duration.Input
  /** Largest JSON request body accepted; default 1 MiB. */
  readonly maxJsonBytes?: number
  /** How long in-flight requests may run on after the scope closes; default 2 seconds. */
  readonly shutdownGrace?: Duration.Input
  /** Uploads (push, ingest) received at once; past it, 503 ServiceBusy with Retry-After. Default 16. */
  readonly maxUploads?: number
  /**
   * Open connections (SSE streams included); a request on a connection past it is answered 503
   * ServiceBusy with Retry-After and the connection closed. Default 256.
   */
  readonly maxConnections?: number
  /** A client must send its request headers within this; default 30 seconds. */
  readonly headersTimeout?: Duration.Input
  /** An upload that sends no byte for this long is cut (408 UploadTooSlow); default 30 seconds. */
  readonly uploadIdleTimeout?: Duration.Input
  /**
   * An upload slower on average than this, once `uploadIdleTimeout` has passed since it started,
   * is cut (408 UploadTooSlow): a trickle cannot hold an upload slot. Default 8 KiB/s.
   */
  readonly minUploadBytesPerSecond?: number
}

/** What the service holds right now (for tests and monitoring). */
export interface ServiceLoad {
  readonly connections: number
  readonly uploads: number
}

export interface RunningService {
  readonly url: string
  readonly port: number
  readonly load: Effect.Effect<ServiceLoad>
}

/** The service could not start: port in use, address not available, no token. */
export class ServeError extends Schema.TaggedError<ServeError>()("ServeError", {
  host: Schema.String,
  port: Schema.Number,
  /** What went wrong, as the listener reported it. */
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return this.reason
  }
}

/** The request carried no token (`presented` false), or the wrong one. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  presented: Schema.Boolean
}) {
  override get message(): string {
    return this.presented ? "wrong token" : "missing bearer token"
  }
}

/** The service is at its cap of uploads or connections: retry after a moment. */
export class ServiceBusy extends Schema.TaggedError<ServiceBusy>()("ServiceBusy", {
  resource: Schema.Literals(["uploads", "connections"]),
  limit: Schema.Number
}) {
  override get message(): string {
    return `too many ${this.resource} at once (the limit is ${this.limit}); retry later`
  }
}

/** An upload sent nothing for too long, or too little on average: cut, nothing stored. */
export class UploadTooSlow extends Schema.TaggedError<UploadTooSlow>()("UploadTooSlow", {
  reason: Schema.Literals(["idle", "slow"]),
  received: Schema.Number,
  millis: Schema.Number
}) {
  override get message(): string {
    return this.reason === "idle"
      ? `upload cut: nothing received for ${this.millis} ms (after ${this.received} bytes); nothing was stored`
      : `upload cut: ${this.received} bytes in ${this.millis} ms is below the minimum rate; nothing was stored`
  }
}

/** Seconds a client is told to wait (Retry-After) when the service is busy. */
const RetryAfterSeconds = 1

/** Every typed failure a route can answer with. */
type RouteError =
  | AssetNotFound
  | HashMismatch
  | AssetTooLarge
  | InvalidInput
  | MetadataInvalid
  | StoreUnavailable
  | Unauthorized
  | ServiceBusy
  | UploadTooSlow
  | HttpServerError.HttpServerError

const jsonResponse = (status: number, body: unknown, headers?: Record<string, string>) =>
  HttpServerResponse.jsonUnsafe(body, headers === undefined ? { status } : { status, headers })

const errorResponse = (status: number, body: Api.ErrorBody["error"], headers?: Record<string, string>) =>
  jsonResponse(status, { error: body }, headers)

const busyResponse = (error: ServiceBusy) =>
  errorResponse(503, { tag: error._tag, message: error.message, limit: error.limit }, {
    "retry-after": String(RetryAfterSeconds),
    connection: "close"
  })

/** The one place a typed failure becomes a status code and a JSON error body. */
const failureResponse = (error: RouteError): HttpServerResponse.HttpServerResponse => {
  switch (error._tag) {
    case "AssetNotFound":
      return errorResponse(404, { tag: error._tag, message: `asset ${error.hash} not found`, hash: error.hash })
    case "HashMismatch":
      return errorResponse(422, {
        tag: error._tag,
        message: `content hashes to ${error.actual}, not ${error.expected}`,
        expected: error.expected,
        actual: error.actual
      })
    case "AssetTooLarge":
      return errorResponse(413, {
        tag: error._tag,
        message: `asset of ${error.size} bytes exceeds the limit of ${error.limit}`,
        limit: error.limit,
        size: error.size
      })
    case "InvalidInput":
      return errorResponse(400, { tag: error._tag, message: error.message })
    case "MetadataInvalid":
      return errorResponse(400, { tag: error._tag, message: error.message, field: error.field })
    case "StoreUnavailable":
      return errorResponse(503, {
        tag: error._tag,
        message: error.message,
        operation: error.operation
      })
    case "Unauthorized":
      return errorResponse(401, { tag: error._tag, message: error.message }, { "www-authenticate": "Bearer" })
    case "ServiceBusy":
      return busyResponse(error)
    case "UploadTooSlow":
      // The rest of the body is not read: the connection goes with the response.
      return errorResponse(408, { tag: error._tag, message: error.message }, { connection: "close" })
    case "HttpServerError":
      return errorResponse(400, { tag: "InvalidInput", message: `request could not be read: ${error.message}` })
  }
}

/** Decodes untrusted input; a Schema failure becomes InvalidInput (never the empty 400 of an uncaught SchemaError). */
const decode = <S extends Schema.ConstraintDecoder<unknown>>(schema: S, what: string) => (input: unknown) =>
  Schema.decodeUnknownEffect(schema)(input).pipe(
    Effect.mapError((e) => new InvalidInput({ message: `${what}: ${e.message}` }))
  )

const pathHash = Effect.flatMap(HttpRouter.params, decode(Api.HashParams, "path")).pipe(
  Effect.map(({ hash }): AssetHash => hash)
)

const searchParams = <S extends Schema.ConstraintDecoder<unknown>>(schema: S) =>
  Effect.flatMap(HttpServerRequest.ParsedSearchParams, decode(schema, "query"))

const header = (name: string) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (req) => Headers.get(req.headers, name))

const requiredHeader = (name: string) =>
  Effect.flatMap(header(name), (value) =>
    Option.isSome(value) && value.value.length > 0
      ? Effect.succeed(value.value)
      : Effect.fail(new InvalidInput({ message: `header ${name} is required` })))

/** A 200 response with `value` encoded by `schema`. */
const ok = <S extends Schema.ConstraintEncoder<unknown>>(schema: S, value: S["Type"]) =>
  jsonResponse(200, Schema.encodeSync(schema)(value))

const sha256 = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest()

/**
 * Checks the bearer token (also `?token=` when `allowQueryToken`). Comparing fixed-length
 * digests keeps the comparison's time independent of the token.
 */
const authorizer = (token: string) => {
  const expected = sha256(token)
  return (allowQueryToken: boolean) =>
    Effect.gen(function*() {
      const authorization = yield* header(Api.HeaderNames.authorization)
      let presented: string | undefined
      if (Option.isSome(authorization)) {
        const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization.value)
        presented = match?.[1]
      }
      if (presented === undefined && allowQueryToken) {
        const query = yield* HttpServerRequest.ParsedSearchParams
        const fromQuery = query[Api.TokenQueryParam]
        if (typeof fromQuery === "string") presented = fromQuery
      }
      if (presented === undefined) {
        return yield* new Unauthorized({ presented: false })
      }
      if (!timingSafeEqual(sha256(presented), expected)) {
        return yield* new Unauthorized({ presented: true })
      }
    })
}

/** The request body as JSON of at most `maxJsonBytes`, decoded by `schema`. */
const jsonBody = <S extends Schema.ConstraintDecoder<unknown>>(maxJsonBytes: number, schema: S) =>
  Effect.gen(function*() {
    const req = yield* HttpServerRequest.HttpServerRequest
    const json = yield* req.json.pipe(
      Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(maxJsonBytes)),
      Effect.mapError(() => new InvalidInput({ message: `body is not JSON (or is larger than ${maxJsonBytes} bytes)` }))
    )
    return yield* decode(schema, "body")(json)
  })

/** How uploads are bounded: how many at once, and how slow one may be before it is cut. */
interface UploadPolicy {
  readonly slots: Semaphore.Semaphore
  readonly maxUploads: number
  /** Uploads being received now. */
  active: number
  readonly idleTimeout: Duration.Duration
  readonly minBytesPerSecond: number
}

/**
 * An upload body that fails with UploadTooSlow when no byte arrives for `idleTimeout`, or when,
 * `idleTimeout` after it started, it has averaged less than `minBytesPerSecond`.
 */
const policed = <E>(body: Stream.Stream<Uint8Array, E>, policy: UploadPolicy): Stream.Stream<Uint8Array, E | UploadTooSlow> =>
  Stream.unwrap(Effect.gen(function*() {
    const started = yield* Clock.currentTimeMillis
    const grace = Duration.toMillis(policy.idleTimeout)
    let received = 0
    return body.pipe(
      Stream.timeoutOrElse({
        duration: policy.idleTimeout,
        orElse: () => Stream.fail(new UploadTooSlow({ reason: "idle", received, millis: grace }))
      }),
      Stream.mapEffect((chunk) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          received += chunk.byteLength
          const elapsed = now - started
          return elapsed > grace && received * 1000 < policy.minBytesPerSecond * elapsed
            ? Effect.fail(new UploadTooSlow({ reason: "slow", received, millis: elapsed }))
            : Effect.succeed(chunk)
        })
      )
    )
  }))

/** Runs `receive` (which reads the request body) in an upload slot, or fails with ServiceBusy when none is free. */
const inUploadSlot = <A, E, R>(policy: UploadPolicy, receive: Effect.Effect<A, E, R>): Effect.Effect<A, E | ServiceBusy, R> =>
  Effect.acquireUseRelease(
    Effect.sync(() => void policy.active++),
    () => receive,
    () => Effect.sync(() => void policy.active--)
  ).pipe(
    policy.slots.withPermitsIfAvailable(1),
    Effect.flatMap(Option.match({
      onNone: () => Effect.fail(new ServiceBusy({ resource: "uploads", limit: policy.maxUploads })),
      onSome: Effect.succeed
    }))
  )

interface RouteOptions {
  readonly token: string
  readonly keepAlive: Duration.Duration
  readonly maxJsonBytes: number
  readonly uploads: UploadPolicy
  /** Completes when the service shuts down (SSE streams end then). */
  readonly stopping: Deferred.Deferred<void>
}

// ---------------------------------------------------------------------------------------------
// Handlers, one per route (the token is checked before any of them runs)
// ---------------------------------------------------------------------------------------------

const info = (store: CanStoreShape) =>
  Effect.map(store.currentSeq, (seq) => ok(Api.SyncInfo, { storeId: store.storeId, seq }))

const sumHex = (sum: Uint8Array): string => Buffer.from(sum.buffer, sum.byteOffset, sum.byteLength).toString("hex")

/** Fingerprints of the requested prefixes (bounded in number and in the buckets they cover). */
const rangeFingerprints = (ranges: RangeSource<StoreError>, options: RouteOptions) =>
  Effect.gen(function*() {
    const { prefixes } = yield* jsonBody(options.maxJsonBytes, Api.RangeRequest)
    const fingerprints = yield* ranges.fingerprints(prefixes)
    return ok(Api.RangeFingerprintsResponse, {
      fingerprints: fingerprints.map((fp) => ({ count: fp.count, sum: sumHex(fp.sum) }))
    })
  })

/**
 * Items of the leading requested prefixes that fit `RangeLimits.maxItems` together. A prefix's
 * count is bounded from its bucket's fingerprint (the table: no listing) before anything is
 * listed; a deep prefix in a bucket too full for that bound is listed alone to learn its size.
 * Nothing at all when the first prefix alone holds more: the client then asks for its children.
 */
const rangeItems = (ranges: RangeSource<StoreError>, options: RouteOptions) =>
  Effect.gen(function*() {
    const { prefixes } = yield* jsonBody(options.maxJsonBytes, Api.RangeRequest)
    const bounds = yield* ranges.fingerprints(prefixes.map((p) => p.slice(0, BUCKET_DIGITS)))
    let budget: number = Api.RangeLimits.maxItems
    let fitting = 0
    let alone: ReadonlyArray<RangeItem> | undefined
    for (const [i, prefix] of prefixes.entries()) {
      const bound = bounds[i]?.count ?? 0
      if (bound <= budget) {
        budget -= bound
        fitting++
        continue
      }
      if (i === 0 && prefix.length > BUCKET_DIGITS) {
        // Its bucket is larger than one response, the prefix itself may not be: list it to know.
        const [items = []] = yield* ranges.items([prefix])
        if (items.length <= Api.RangeLimits.maxItems) alone = items
      }
      break
    }
    const lists = alone !== undefined ? [alone] : fitting === 0 ? [] : yield* ranges.items(prefixes.slice(0, fitting))
    // Writes between the bound and the listing may have grown a range: answer only what fits.
    const answered: Array<ReadonlyArray<RangeItem>> = []
    let total = 0
    for (const list of lists) {
      total += list.length
      if (total > Api.RangeLimits.maxItems) break
      answered.push(list)
    }
    return ok(Api.RangeItemsResponse, {
      lists: answered.map((list) =>
        list.map((item) => ({ hash: item.hash as AssetHash, size: item.size, updatedAt: item.updatedAt, origin: item.origin }))
      )
    })
  })

const hashes = (store: CanStoreShape) =>
  Effect.gen(function*() {
    const query = yield* searchParams(Api.HashesQuery)
    const page = yield* store.list({
      ...(query.since === undefined ? {} : { since: query.since }),
      ...(query.limit === undefined ? {} : { limit: query.limit })
    })
    return ok(Api.HashesResponse, { assets: page.digests, next: page.next, done: page.done })
  })

/**
 * An asset's bytes, with its metadata and size in headers (only the headers for HEAD). A `Range`
 * of `bytes=N-` gets the bytes from N on (206), read without checking the hash, as a sync sender
 * reads: whoever asks for a part checks the whole asset (its name) once it has all of it.
 */
const content = (store: CanStoreShape) =>
  Effect.gen(function*() {
    const hash = yield* pathHash
    const req = yield* HttpServerRequest.HttpServerRequest
    const record = yield* store.stat(hash)
    if (Option.isNone(record)) return yield* new AssetNotFound({ hash })
    const { meta, size } = record.value
    const headers = {
      [Api.HeaderNames.meta]: Api.headerJson(Schema.encodeSync(AssetMeta)(meta)),
      [Api.HeaderNames.size]: String(size),
      [Api.HeaderNames.acceptRanges]: "bytes"
    }
    if (req.method === "HEAD") return HttpServerResponse.empty({ status: 200, headers })
    const start = Api.rangeStart(req.headers[Api.HeaderNames.range], size)
    if (start !== undefined) {
      return HttpServerResponse.stream(contentFrom(store, hash, start), {
        status: 206,
        contentType: "application/octet-stream",
        contentLength: size - start,
        headers: { ...headers, [Api.HeaderNames.contentRange]: Api.contentRange(start, size) }
      })
    }
    return HttpServerResponse.stream(store.read(hash), {
      contentType: "application/octet-stream",
      contentLength: size,
      headers
    })
  })

/**
 * A version a peer hands us through the sync routes: within MetadataLimits and at most a day ahead
 * of this clock, as the engine checks a peer's over the wire (no version near the ceiling that no
 * later edit can overtake).
 */
const peerVersion = (meta: AssetMeta) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.fromResult(validateMeta(meta, { now })))

const push = (store: CanStoreShape, options: RouteOptions) =>
  Effect.gen(function*() {
    const hash = yield* pathHash
    // Everything about the request is checked before a byte of the body is read.
    const meta = yield* Effect.flatMap(requiredHeader(Api.HeaderNames.meta), decode(Api.MetaHeader, Api.HeaderNames.meta)).pipe(
      Effect.flatMap((meta) => peerVersion(meta))
    )
    const origin = yield* requiredHeader(Api.HeaderNames.origin)
    const req = yield* HttpServerRequest.HttpServerRequest
    const result = yield* inUploadSlot(options.uploads, store.push(hash, policed(req.stream, options.uploads), meta, origin))
    return ok(Api.PushResponse, { hash, already_existed: result.alreadyExisted })
  })

const mergeMeta = (store: CanStoreShape, options: RouteOptions) =>
  Effect.gen(function*() {
    const body = yield* jsonBody(options.maxJsonBytes, Api.MergeMetaRequest)
    yield* peerVersion(body.meta)
    const result = yield* store.mergeMeta(body.hash, body.meta, body.origin)
    return ok(Api.MergeMetaResponse, { applied: result.applied, meta: result.meta })
  })

const encodeEvent = (event: StoreEvent): string =>
  Sse.encoder.write({
    _tag: "Event",
    id: String(event.seq),
    event: Api.SseEventNames[event._tag],
    data: Schema.encodeSync(Api.EventData)(event)
  })

const encodeReset = (since: number, seq: number): string =>
  Sse.encoder.write({
    _tag: "Event",
    id: "0",
    event: Api.SseResetEventName,
    data: Schema.encodeSync(Api.ResetData)({ since, seq })
  })

/** The store's events as SSE, with keepalive comments, until the client leaves or the service stops. */
const events = (store: CanStoreShape, options: RouteOptions) =>
  Effect.gen(function*() {
    const query = yield* searchParams(Api.EventsQuery)
    // A reconnecting EventSource keeps its original URL but sends Last-Event-ID: that one is newer.
    const lastEventId = yield* header(Api.HeaderNames.lastEventId)
    const since = Option.isSome(lastEventId)
      ? yield* decode(Api.SeqFromString, Api.HeaderNames.lastEventId)(lastEventId.value)
      : query.since
    // A resume point past the store's newest change (a recreated store) would deliver nothing
    // until the store caught up, then skip what it missed: say so, and replay from 0.
    const seq = yield* store.currentSeq
    const ahead = since !== undefined && since > seq
    const start = ahead ? 0 : since
    if (ahead) yield* Effect.logWarning(`SSE since=${since} is past the store's newest change ${seq}: replaying from 0`)
    const changes = store.events(start === undefined ? {} : { since: start }).pipe(Stream.map(encodeEvent))
    const keepAlive = Stream.tick(options.keepAlive).pipe(Stream.map(() => ": keepalive\n\n"))
    const opening = ahead ? [": connected\n\n", encodeReset(since, seq)] : [": connected\n\n"]
    const body = Stream.fromIterable(opening).pipe(
      Stream.concat(Stream.merge(changes, keepAlive)),
      Stream.interruptWhen(Deferred.await(options.stopping)),
      Stream.tapError((e) => Effect.logWarning("SSE stream failed", e)),
      Stream.encodeText
    )
    return HttpServerResponse.stream(body, {
      contentType: "text/event-stream",
      headers: {
        "cache-control": "no-cache",
        // The connection is this stream's alone: when it ends, the socket goes with it.
        connection: "close",
        "x-accel-buffering": "no"
      }
    })
  })

const ingest = (store: CanStoreShape, options: RouteOptions) =>
  Effect.gen(function*() {
    const query = yield* searchParams(Api.IngestQuery)
    yield* Effect.fromResult(validatePatch({ description: query.description, tags: query.tag }))
    const req = yield* HttpServerRequest.HttpServerRequest
    const result = yield* inUploadSlot(options.uploads, store.ingest(policed(req.stream, options.uploads), {
      description: query.description,
      tags: query.tag,
      expectedHash: query.hash
    }))
    return ok(Api.IngestResponse, { hash: result.hash, size: result.size, already_existed: result.alreadyExisted })
  })

const stat = (store: CanStoreShape) =>
  Effect.gen(function*() {
    const hash = yield* pathHash
    const record = yield* store.stat(hash)
    if (Option.isNone(record)) return yield* new AssetNotFound({ hash })
    return ok(Api.AssetRecordResponse, record.value)
  })

const editMeta = (store: CanStoreShape, options: RouteOptions) =>
  Effect.gen(function*() {
    const hash = yield* pathHash
    const patch = yield* jsonBody(options.maxJsonBytes, Api.EditMetaRequest)
    yield* Effect.fromResult(validatePatch(patch))
    const meta = yield* store.editMeta(hash, patch)
    return ok(Api.EditMetaResponse, { hash, meta })
  })

/** The routes over one store: each checks the token, then runs its handler; typed failures become JSON errors. */
const makeRoutes = (store: CanStoreShape, options: RouteOptions) => {
  const authorize = authorizer(options.token)
  const route = <R>(
    method: "GET" | "POST",
    path: HttpRouter.PathInput,
    handler: Effect.Effect<HttpServerResponse.HttpServerResponse, RouteError, R>,
    allowQueryToken = false
  ) =>
    HttpRouter.route(
      method,
      path,
      Effect.andThen(authorize(allowQueryToken), handler).pipe(
        Effect.catch((e: RouteError) => Effect.succeed(failureResponse(e)))
      )
    )
  return [
    HttpRouter.route("GET", Api.Routes.healthz, Effect.succeed(ok(Api.HealthResponse, { ok: true }))),
    route("GET", Api.Routes.info, info(store)),
    route("POST", Api.Routes.hashes, hashes(store)),
    route("GET", Api.Routes.pull, content(store)),
    route("POST", Api.Routes.push, push(store, options)),
    route("POST", Api.Routes.syncMeta, mergeMeta(store, options)),
    // EventSource cannot set headers: the token may come in the query here.
    route("GET", Api.Routes.events, events(store, options), true),
    route("POST", Api.Routes.assets, ingest(store, options)),
    route("GET", Api.Routes.asset, content(store)),
    route("GET", Api.Routes.assetMeta, stat(store)),
    route("POST", Api.Routes.assetMeta, editMeta(store, options)),
    // Only over a store that keeps range fingerprints; else 404, which tells a client to list digests.
    ...(store.ranges === undefined ? [] : [
      route("POST", Api.Routes.rangeFingerprints, rangeFingerprints(store.ranges, options)),
      route("POST", Api.Routes.rangeItems, rangeItems(store.ranges, options))
    ])
  ]
}

const internalError = () => errorResponse(500, { tag: "InternalError", message: "internal error" })

/** Unmatched routes, and anything a route did not answer itself (a bug: logged). */
const fallbackResponse = (error: unknown): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  HttpServerError.isHttpServerError(error) && error.reason._tag === "RouteNotFound"
    ? Effect.succeed(errorResponse(404, { tag: "RouteNotFound", message: "no such route" }))
    : Effect.logError("HttpService: unhandled request failure", error).pipe(Effect.as(internalError()))

/** The routes as one HTTP app that answers everything in the API's JSON shape. */
const makeApp = (store: CanStoreShape, options: RouteOptions, connections: Connections) =>
  Effect.gen(function*() {
    const router = yield* HttpRouter.make
    yield* router.addAll(makeRoutes(store, options))
    const routed = router.asHttpEffect()
    // A request on a connection past the cap is answered at once, before any route runs.
    const guarded = Effect.flatMap(HttpServerRequest.HttpServerRequest, (req) =>
      connections.overCap.has(NodeHttpServerRequest.toIncomingMessage(req).socket)
        ? Effect.succeed(busyResponse(new ServiceBusy({ resource: "connections", limit: connections.max })))
        : routed)
    return guarded.pipe(
      Effect.catch(fallbackResponse),
      // A defect is a bug: log it, and still answer in the API's JSON error shape.
      Effect.catchDefect((defect) =>
        Effect.logError("HttpService: request failed with a defect", defect).pipe(Effect.as(internalError()))
      )
    )
  })

/** Open connections, and those past the cap (answered 503, then closed). */
interface Connections {
  readonly max: number
  open: number
  readonly overCap: WeakSet<Socket | object>
}

/** A connection past the cap that sends no request within this is dropped. */
const OverCapIdleMillis = 2_000

/**
 * The Node server, tuned for large uploads and a prompt close once `stopping` is done: headers
 * must come within `headersTimeout`; uploads are policed by rate instead of a total time.
 */
const makeNodeServer = (stopping: Deferred.Deferred<void>, connections: Connections, headersTimeout: number) => {
  // requestTimeout 0: a large upload on a slow link may take longer than Node's default 300 s
  // (a slow one is cut by `policed`); Node checks the headers deadline every checking interval.
  const nodeServer = createServer({
    maxHeaderSize: Api.MaxHeaderBytes,
    requestTimeout: 0,
    headersTimeout,
    connectionsCheckingInterval: Math.max(100, Math.min(5_000, Math.floor(headersTimeout / 4)))
  })
  nodeServer.on("connection", (socket: Socket) => {
    connections.open++
    socket.once("close", () => void connections.open--)
    if (connections.open > connections.max) {
      connections.overCap.add(socket)
      socket.setTimeout(OverCapIdleMillis, () => socket.destroy())
    }
  })
  // Node closes idle keep-alive sockets once, when closing starts; a socket whose response ends
  // after that would hold the close until the grace period ends. Close each as it goes idle.
  nodeServer.on("request", (_request, response) => {
    response.once("finish", () => {
      if (Deferred.isDoneUnsafe(stopping)) setImmediate(() => nodeServer.closeIdleConnections())
    })
  })
  return nodeServer
}

/**
 * Serves `store` until the enclosing scope closes. On close, SSE streams end first, in-flight
 * requests get `shutdownGrace` to finish, then the listener closes and frees the port.
 */
export const serve = Effect.fn("HttpService.serve")(function*(
  store: CanStoreShape,
  options: HttpServiceOptions
): Effect.fn.Return<RunningService, ServeError, Scope.Scope> {
  const host = options.host ?? "127.0.0.1"
  const port = options.port ?? Api.DefaultPort
  if (options.token.length === 0) {
    return yield* new ServeError({ host, port, reason: "refusing to serve without a token" })
  }
  const stopping = yield* Deferred.make<void>()
  const maxUploads = options.maxUploads ?? 16
  const uploads: UploadPolicy = {
    slots: yield* Semaphore.make(maxUploads),
    maxUploads,
    active: 0,
    idleTimeout: Duration.fromInputUnsafe(options.uploadIdleTimeout ?? "30 seconds"),
    minBytesPerSecond: options.minUploadBytesPerSecond ?? 8 * 1024
  }
  const connections: Connections = { max: options.maxConnections ?? 256, open: 0, overCap: new WeakSet() }
  const app = yield* makeApp(store, {
    token: options.token,
    keepAlive: Duration.fromInputUnsafe(options.keepAlive ?? "15 seconds"),
    maxJsonBytes: options.maxJsonBytes ?? 1024 * 1024,
    uploads,
    stopping
  }, connections)
  const headersTimeout = Duration.toMillis(Duration.fromInputUnsafe(options.headersTimeout ?? "30 seconds"))
  const server = yield* NodeHttpServer.make(
    () => makeNodeServer(stopping, connections, headersTimeout),
    { host, port, gracefulShutdownTimeout: options.shutdownGrace ?? "2 seconds" }
  ).pipe(
    Effect.mapError((e) =>
      new ServeError({
        host,
        port,
        reason: e.cause instanceof Error ? e.cause.message : String(e.cause),
        cause: e
      })
    )
  )
  yield* server.serve(app)
  // Registered last, so it runs first on close: long-lived SSE responses end before Node waits on them.
  yield* Effect.addFinalizer(() => Deferred.succeed(stopping, undefined))
  const bound = server.address._tag === "UnixPathAddress" ? port : server.address.port
  const urlHost = host.includes(":") ? `[${host}]` : host
  const load = Effect.sync((): ServiceLoad => ({ connections: connections.open, uploads: uploads.active }))
  return { url: `http://${urlHost}:${bound}`, port: bound, load }
})
