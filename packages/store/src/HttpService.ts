/**
 * The CAN HTTP service: serves any CanStore over HTTP + Server-Sent Events (the API in `CanHttpApi`),
 * streaming asset bodies both ways and refusing pushed content whose hash differs from its name.
 * Every route but /healthz needs the bearer token (compared in constant time); every failure is
 * a JSON `{ error: { tag, message } }` with a 4xx/503 status, never a partial asset.
 */
import { AssetMeta, AssetNotFound, InvalidInput } from "@can-sync/core"
import type {
  AssetHash,
  AssetTooLarge,
  CanStoreShape,
  HashMismatch,
  StoreEvent,
  StoreUnavailable
} from "@can-sync/core"
import { NodeHttpServer } from "@effect/platform-node"
import * as ByteSize from "effect/ByteSize"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
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
}

export interface RunningService {
  readonly url: string
  readonly port: number
}

/** The service could not start: port in use, address not available, no token. */
export class ServeError extends Schema.TaggedError<ServeError>()("ServeError", {
  host: Schema.String,
  port: Schema.Number,
  message: Schema.String
}) {}

/** The request carried no token, or the wrong one. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  message: Schema.String
}) {}

/** Every typed failure a route can answer with. */
type RouteError =
  | AssetNotFound
  | HashMismatch
  | AssetTooLarge
  | InvalidInput
  | StoreUnavailable
  | Unauthorized
  | HttpServerError.HttpServerError

/** Headers big enough for an `x-can-meta` with a long description (Node's default is 16 KiB). */
const maxHeaderSize = 256 * 1024

const jsonResponse = (status: number, body: unknown, headers?: Record<string, string>) =>
  HttpServerResponse.jsonUnsafe(body, headers === undefined ? { status } : { status, headers })

const errorResponse = (status: number, body: Api.ErrorBody["error"], headers?: Record<string, string>) =>
  jsonResponse(status, { error: body }, headers)

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
    case "StoreUnavailable":
      return errorResponse(503, {
        tag: error._tag,
        message: error.message,
        operation: error.operation
      })
    case "Unauthorized":
      return errorResponse(401, { tag: error._tag, message: error.message }, { "www-authenticate": "Bearer" })
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

const sha256 = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest()

/** Builds the routes over one store; `stopping` completes when the service shuts down (SSE ends then). */
const makeRoutes = (
  store: CanStoreShape,
  options: {
    readonly token: string
    readonly keepAlive: Duration.Duration
    readonly maxJsonBytes: number
    readonly stopping: Deferred.Deferred<void>
  }
) => {
  const expected = sha256(options.token)
  // Comparing fixed-length digests keeps the comparison's time independent of the token.
  const tokenMatches = (presented: string) => timingSafeEqual(sha256(presented), expected)

  const authorize = (allowQueryToken: boolean) =>
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
        return yield* new Unauthorized({ message: "missing bearer token" })
      }
      if (!tokenMatches(presented)) {
        return yield* new Unauthorized({ message: "wrong token" })
      }
    })

  const jsonBody = <S extends Schema.ConstraintDecoder<unknown>>(schema: S) =>
    Effect.gen(function*() {
      const req = yield* HttpServerRequest.HttpServerRequest
      const json = yield* req.json.pipe(
        Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(options.maxJsonBytes)),
        Effect.mapError(() =>
          new InvalidInput({ message: `body is not JSON (or is larger than ${options.maxJsonBytes} bytes)` })
        )
      )
      return yield* decode(schema, "body")(json)
    })

  /** A route whose typed failures all become JSON error responses. */
  const route = <R>(
    method: "GET" | "POST",
    path: HttpRouter.PathInput,
    handler: Effect.Effect<HttpServerResponse.HttpServerResponse, RouteError, R>
  ) => HttpRouter.route(method, path, handler.pipe(Effect.catch((e: RouteError) => Effect.succeed(failureResponse(e)))))

  const contentResponse = (hash: AssetHash, head: boolean) =>
    Effect.gen(function*() {
      const record = yield* store.stat(hash)
      if (Option.isNone(record)) return yield* new AssetNotFound({ hash })
      const { meta, size } = record.value
      const headers = {
        [Api.HeaderNames.meta]: Api.headerJson(Schema.encodeSync(AssetMeta)(meta)),
        [Api.HeaderNames.size]: String(size)
      }
      if (head) return HttpServerResponse.empty({ status: 200, headers })
      return HttpServerResponse.stream(store.read(hash), {
        contentType: "application/octet-stream",
        contentLength: size,
        headers
      })
    })

  const encodeEvent = (event: StoreEvent): string =>
    Sse.encoder.write({
      _tag: "Event",
      id: String(event.seq),
      event: Api.SseEventNames[event._tag],
      data: Schema.encodeSync(Api.EventData)(event)
    })

  return [
    HttpRouter.route("GET", Api.Routes.healthz, Effect.succeed(jsonResponse(200, { ok: true }))),

    route(
      "GET",
      Api.Routes.info,
      Effect.gen(function*() {
        yield* authorize(false)
        const seq = yield* store.currentSeq
        return jsonResponse(200, Schema.encodeSync(Api.SyncInfo)({ storeId: store.storeId, seq }))
      })
    ),

    route(
      "POST",
      Api.Routes.hashes,
      Effect.gen(function*() {
        yield* authorize(false)
        const query = yield* searchParams(Api.HashesQuery)
        const page = yield* store.list({
          ...(query.since === undefined ? {} : { since: query.since }),
          ...(query.limit === undefined ? {} : { limit: query.limit })
        })
        return jsonResponse(
          200,
          Schema.encodeSync(Api.HashesResponse)({ assets: page.digests, next: page.next, done: page.done })
        )
      })
    ),

    route(
      "GET",
      Api.Routes.pull,
      Effect.gen(function*() {
        yield* authorize(false)
        const req = yield* HttpServerRequest.HttpServerRequest
        return yield* contentResponse(yield* pathHash, req.method === "HEAD")
      })
    ),

    route(
      "POST",
      Api.Routes.push,
      Effect.gen(function*() {
        yield* authorize(false)
        const hash = yield* pathHash
        // Everything about the request is checked before a byte of the body is read.
        const meta = yield* Effect.flatMap(requiredHeader(Api.HeaderNames.meta), decode(Api.MetaHeader, Api.HeaderNames.meta))
        const origin = yield* requiredHeader(Api.HeaderNames.origin)
        const req = yield* HttpServerRequest.HttpServerRequest
        const result = yield* store.push(hash, req.stream, meta, origin)
        return jsonResponse(200, Schema.encodeSync(Api.PushResponse)({ hash, already_existed: result.alreadyExisted }))
      })
    ),

    route(
      "POST",
      Api.Routes.syncMeta,
      Effect.gen(function*() {
        yield* authorize(false)
        const body = yield* jsonBody(Api.MergeMetaRequest)
        const result = yield* store.mergeMeta(body.hash, body.meta, body.origin)
        return jsonResponse(200, Schema.encodeSync(Api.MergeMetaResponse)({ applied: result.applied, meta: result.meta }))
      })
    ),

    route(
      "GET",
      Api.Routes.events,
      Effect.gen(function*() {
        yield* authorize(true)
        const query = yield* searchParams(Api.EventsQuery)
        // A reconnecting EventSource keeps its original URL but sends Last-Event-ID: that one is newer.
        const lastEventId = yield* header(Api.HeaderNames.lastEventId)
        const since = Option.isSome(lastEventId)
          ? yield* decode(Api.SeqFromString, Api.HeaderNames.lastEventId)(lastEventId.value)
          : query.since
        const events = store.events(since === undefined ? {} : { since }).pipe(Stream.map(encodeEvent))
        const keepAlive = Stream.tick(options.keepAlive).pipe(Stream.map(() => ": keepalive\n\n"))
        const body = Stream.make(": connected\n\n").pipe(
          Stream.concat(Stream.merge(events, keepAlive)),
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
    ),

    route(
      "POST",
      Api.Routes.assets,
      Effect.gen(function*() {
        yield* authorize(false)
        const query = yield* searchParams(Api.IngestQuery)
        const req = yield* HttpServerRequest.HttpServerRequest
        const result = yield* store.ingest(req.stream, {
          description: query.description,
          tags: query.tag,
          expectedHash: query.hash
        })
        return jsonResponse(
          200,
          Schema.encodeSync(Api.IngestResponse)({
            hash: result.hash,
            size: result.size,
            already_existed: result.alreadyExisted
          })
        )
      })
    ),

    route(
      "GET",
      Api.Routes.asset,
      Effect.gen(function*() {
        yield* authorize(false)
        const req = yield* HttpServerRequest.HttpServerRequest
        return yield* contentResponse(yield* pathHash, req.method === "HEAD")
      })
    ),

    route(
      "GET",
      Api.Routes.assetMeta,
      Effect.gen(function*() {
        yield* authorize(false)
        const hash = yield* pathHash
        const record = yield* store.stat(hash)
        if (Option.isNone(record)) return yield* new AssetNotFound({ hash })
        return jsonResponse(200, Schema.encodeSync(Api.AssetRecordResponse)(record.value))
      })
    ),

    route(
      "POST",
      Api.Routes.assetMeta,
      Effect.gen(function*() {
        yield* authorize(false)
        const hash = yield* pathHash
        const patch = yield* jsonBody(Api.EditMetaRequest)
        const meta = yield* store.editMeta(hash, patch)
        return jsonResponse(200, Schema.encodeSync(Api.EditMetaResponse)({ hash, meta }))
      })
    )
  ] as const
}

/** Unmatched routes, and anything a route did not answer itself (a bug: logged). */
const fallbackResponse = (error: unknown): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  HttpServerError.isHttpServerError(error) && error.reason._tag === "RouteNotFound"
    ? Effect.succeed(errorResponse(404, { tag: "RouteNotFound", message: "no such route" }))
    : Effect.logError("HttpService: unhandled request failure", error).pipe(
      Effect.as(errorResponse(500, { tag: "InternalError", message: "internal error" }))
    )

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
    return yield* new ServeError({ host, port, message: "refusing to serve without a token" })
  }
  const stopping = yield* Deferred.make<void>()
  const router = yield* HttpRouter.make
  yield* router.addAll(makeRoutes(store, {
    token: options.token,
    keepAlive: Duration.fromInputUnsafe(options.keepAlive ?? "15 seconds"),
    maxJsonBytes: options.maxJsonBytes ?? 1024 * 1024,
    stopping
  }))
  const app = router.asHttpEffect().pipe(
    Effect.catch(fallbackResponse),
    // A defect is a bug: log it, and still answer in the API's JSON error shape.
    Effect.catchDefect((defect) =>
      Effect.logError("HttpService: request failed with a defect", defect).pipe(
        Effect.as(errorResponse(500, { tag: "InternalError", message: "internal error" }))
      )
    )
  )
  // requestTimeout 0: a large upload on a slow link may take longer than Node's default 300 s.
  const nodeServer = createServer({ maxHeaderSize, requestTimeout: 0, headersTimeout: 60_000 })
  // Node closes idle keep-alive sockets once, when closing starts; a socket whose response ends
  // after that would hold the close until the grace period ends. Close each as it goes idle.
  nodeServer.on("request", (_request, response) => {
    response.once("finish", () => {
      if (Deferred.isDoneUnsafe(stopping)) setImmediate(() => nodeServer.closeIdleConnections())
    })
  })
  const server = yield* NodeHttpServer.make(
    () => nodeServer,
    { host, port, gracefulShutdownTimeout: options.shutdownGrace ?? "2 seconds" }
  ).pipe(
    Effect.mapError((e) =>
      new ServeError({
        host,
        port,
        message: e.cause instanceof Error ? e.cause.message : String(e.cause)
      })
    )
  )
  yield* server.serve(app)
  // Registered last, so it runs first on close: long-lived SSE responses end before Node waits on them.
  yield* Effect.addFinalizer(() => Deferred.succeed(stopping, undefined))
  const bound = server.address._tag === "UnixPathAddress" ? port : server.address.port
  const urlHost = host.includes(":") ? `[${host}]` : host
  return { url: `http://${urlHost}:${bound}`, port: bound }
})
