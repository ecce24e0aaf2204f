/**
 * HttpStore: the CanStore contract over the CAN HTTP API, so the sync engine can use a remote CAN
 * service exactly as it uses the embedded store. Content streams both ways; failures come back as
 * the same tagged errors; `events` is SSE that reconnects with capped exponential backoff and
 * resumes after the last sequence it delivered, so a reconnect neither misses nor repeats a change.
 */
import {
  AssetHash,
  AssetMeta,
  AssetNotFound,
  AssetTooLarge,
  Backoff,
  HashMismatch,
  InvalidInput,
  StoreUnavailable
} from "@can-sync/core"
import type { CanStoreShape, DigestPage, IngestOptions, MetaPatch, StoreEvent } from "@can-sync/core"
import { dropBytes } from "@can-sync/core/CanStore"
import type { Fingerprint, RangeItem, RangeSource } from "@can-sync/core/Fingerprints"
import { NodeHttpClient } from "@effect/platform-node"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Sse } from "effect/encoding"
import { HttpClient, HttpClientRequest } from "effect/http"
import type { HttpClientError, HttpClientResponse } from "effect/http"
import * as Api from "./CanHttpApi.ts"

export interface HttpStoreOptions {
  /** The service's base URL, e.g. `http://127.0.0.1:7650`. */
  readonly baseUrl: string
  readonly token: string
  readonly reconnect?: {
    /** First delay before an SSE reconnect; default 100 ms. Doubles on each failed attempt. */
    readonly initial?: Duration.Input
    /** Longest delay between SSE reconnect attempts; default 5 seconds. */
    readonly max?: Duration.Input
    /** Reconnect when nothing, not even a keepalive, arrived for this long; default 45 seconds. */
    readonly idleTimeout?: Duration.Input
  }
}

/** Every error the service can answer with, rebuilt from its JSON error body. */
type RemoteError = AssetNotFound | HashMismatch | AssetTooLarge | InvalidInput | StoreUnavailable

/** An SSE connection ended or could not be made: retried, never seen by the caller. */
class Reconnect extends Data.TaggedError("Reconnect")<{ readonly reason: string; readonly cause?: unknown }> {
  override get message(): string {
    return `reconnecting (${this.reason})`
  }
}

/** Marks "connected" inside the SSE stream so the backoff resets on every successful connect. */
const Connected = { _tag: "Connected" } as const
/** The service replays from 0: the resume point was past its newest change (a recreated store). */
const Reset = { _tag: "Reset" } as const

const unavailable = (operation: string, message: string) => new StoreUnavailable({ operation, message })

const transportError = (operation: string) => (e: HttpClientError.HttpClientError) =>
  unavailable(operation, `service unreachable: ${e.message}`)

/** Rebuilds the tagged error from a non-2xx response's JSON body (or its status when it has none). */
const remoteError = (operation: string, response: HttpClientResponse.HttpClientResponse) =>
  response.json.pipe(
    Effect.flatMap(Schema.decodeUnknownEffect(Api.ErrorBody)),
    Effect.option,
    Effect.flatMap((body): Effect.Effect<never, RemoteError> => {
      if (Option.isNone(body)) {
        return Effect.fail(unavailable(operation, `unexpected HTTP ${response.status} from the service`))
      }
      const e = body.value.error
      switch (e.tag) {
        case "AssetNotFound":
          return Effect.fail(new AssetNotFound({ hash: e.hash ?? "" }))
        case "HashMismatch":
          return Effect.fail(new HashMismatch({ expected: e.expected ?? "", actual: e.actual ?? "" }))
        case "AssetTooLarge":
          return Effect.fail(new AssetTooLarge({ limit: e.limit ?? 0, size: e.size ?? 0 }))
        case "InvalidInput":
        case "MetadataInvalid":
          return Effect.fail(new InvalidInput({ message: e.message }))
        case "StoreUnavailable":
          return Effect.fail(unavailable(e.operation ?? operation, e.message))
        case "Unauthorized":
          return Effect.fail(unavailable(operation, `unauthorized: ${e.message}`))
        default:
          return Effect.fail(unavailable(operation, `HTTP ${response.status} ${e.tag}: ${e.message}`))
      }
    })
  )

type StoreErrorTag = "InvalidInput" | "StoreUnavailable"

/** The errors an operation may fail with: its own tags plus StoreError. */
type Kept<T extends RemoteError["_tag"]> = Extract<RemoteError, { readonly _tag: T | StoreErrorTag }>

/**
 * Keeps the errors an operation may fail with (its own tags plus StoreError); anything else the
 * service answered means the two sides disagree, which the caller sees as StoreUnavailable.
 */
const only = <T extends RemoteError["_tag"]>(operation: string, tags: ReadonlyArray<T>) => {
  const allowed = (e: RemoteError): e is Kept<T> =>
    e._tag === "InvalidInput" || e._tag === "StoreUnavailable" || (tags as ReadonlyArray<string>).includes(e._tag)
  return (e: RemoteError): Kept<T> | StoreUnavailable =>
    allowed(e) ? e : unavailable(operation, `unexpected ${e._tag} from the service`)
}

const decodeBody = <S extends Schema.ConstraintDecoder<unknown>>(operation: string, schema: S) =>
(response: HttpClientResponse.HttpClientResponse): Effect.Effect<S["Type"], StoreUnavailable, S["DecodingServices"]> =>
  response.json.pipe(
    Effect.mapError((e) => unavailable(operation, `unreadable response: ${e.message}`)),
    Effect.flatMap((json) =>
      Schema.decodeUnknownEffect(schema)(json).pipe(
        Effect.mapError((e) => unavailable(operation, `malformed response: ${e.message}`))
      )
    )
  )

const isOk = (response: HttpClientResponse.HttpClientResponse) => response.status >= 200 && response.status < 300

/** A client of one service: every request goes to its base URL and carries the token. */
interface Connection {
  readonly base: string
  readonly client: HttpClient.HttpClient
}

const connect = (options: HttpStoreOptions) =>
  Effect.gen(function*() {
    const services = yield* Layer.build(NodeHttpClient.layerUndiciOptions({ maxHeaderSize: Api.MaxHeaderBytes }))
    const base = options.baseUrl.replace(/\/+$/, "")
    const client = Context.get(services, HttpClient.HttpClient).pipe(
      HttpClient.mapRequest((request) =>
        request.pipe(HttpClientRequest.prependUrl(base), HttpClientRequest.bearerToken(options.token))
      )
    )
    const connection: Connection = { base, client }
    return connection
  })

/** Sends a request and answers the 2xx response, or fails with the error the service reported. */
const send = (c: Connection, operation: string, request: HttpClientRequest.HttpClientRequest) =>
  c.client.execute(request).pipe(
    Effect.mapError(transportError(operation)),
    Effect.flatMap((response) => isOk(response) ? Effect.succeed(response) : remoteError(operation, response))
  )

/**
 * Sends `content` as a streamed request body. When the content stream itself fails, that
 * failure (not the aborted request's) is what the caller sees, unchanged; the service stores nothing.
 */
const upload = <E, T extends RemoteError["_tag"]>(
  c: Connection,
  operation: string,
  request: HttpClientRequest.HttpClientRequest,
  content: Stream.Stream<Uint8Array, E>,
  tags: ReadonlyArray<T>
) =>
  Effect.gen(function*() {
    const contentFailure = yield* Ref.make(Option.none<E>())
    const body = content.pipe(Stream.tapError((e) => Ref.set(contentFailure, Option.some(e))))
    return yield* send(
      c,
      operation,
      request.pipe(HttpClientRequest.bodyStream(body, { contentType: "application/octet-stream" }))
    ).pipe(
      Effect.catch((e: RemoteError) =>
        Effect.flatMap(
          Ref.get(contentFailure),
          (failed): Effect.Effect<never, E | Kept<T> | StoreUnavailable> =>
            Option.isSome(failed) ? Effect.fail(failed.value) : Effect.fail(only(operation, tags)(e))
        )
      )
    )
  })

/** A request whose 2xx JSON body `schema` decodes; the service's errors are kept to `tags`. */
const call = <S extends Schema.ConstraintDecoder<unknown>, T extends RemoteError["_tag"]>(
  c: Connection,
  operation: string,
  request: HttpClientRequest.HttpClientRequest,
  schema: S,
  tags: ReadonlyArray<T>
) =>
  send(c, operation, request).pipe(
    Effect.flatMap(decodeBody(operation, schema)),
    Effect.mapError(only(operation, tags))
  )

const info = (c: Connection) => call(c, "info", HttpClientRequest.get(Api.Routes.info), Api.SyncInfo, [])

// ---------------------------------------------------------------------------------------------
// The CanStore operations, one request each
// ---------------------------------------------------------------------------------------------

const ingestRequest = (ingestOptions: IngestOptions | undefined) => {
  let request = HttpClientRequest.post(Api.Routes.assets)
  if (ingestOptions?.description !== undefined) {
    request = HttpClientRequest.setUrlParam(request, "description", ingestOptions.description)
  }
  for (const tag of ingestOptions?.tags ?? []) {
    request = HttpClientRequest.appendUrlParam(request, "tag", tag)
  }
  if (ingestOptions?.expectedHash !== undefined) {
    request = HttpClientRequest.setUrlParam(request, "hash", ingestOptions.expectedHash)
  }
  return request
}

const ingest = (c: Connection) =>
  Effect.fn("HttpStore.ingest")(function*<E>(content: Stream.Stream<Uint8Array, E>, ingestOptions?: IngestOptions) {
    const response = yield* upload(c, "ingest", ingestRequest(ingestOptions), content, ["HashMismatch", "AssetTooLarge"])
    const body = yield* decodeBody("ingest", Api.IngestResponse)(response)
    return { hash: body.hash, size: body.size, alreadyExisted: body.already_existed }
  })

const has = (c: Connection) =>
  Effect.fn("HttpStore.has")(function*(hash: AssetHash) {
    const response = yield* c.client.execute(HttpClientRequest.head(Api.paths.asset(hash))).pipe(
      Effect.mapError(transportError("has"))
    )
    switch (response.status) {
      case 200:
        return true
      case 404:
        return false
      case 400:
        return yield* new InvalidInput({ message: `not an asset hash: ${hash}` })
      default:
        return yield* unavailable("has", `unexpected HTTP ${response.status} from the service`)
    }
  })

const stat = (c: Connection) =>
  Effect.fn("HttpStore.stat")(function*(hash: AssetHash) {
    return yield* send(c, "stat", HttpClientRequest.get(Api.paths.assetMeta(hash))).pipe(
      Effect.flatMap(decodeBody("stat", Api.AssetRecordResponse)),
      Effect.map(Option.some),
      Effect.catchTag("AssetNotFound", () => Effect.succeed(Option.none())),
      Effect.mapError(only("stat", []))
    )
  })

/** GET the asset's content: the response, and its body as a stream of our errors. */
const pull = (c: Connection, hash: AssetHash, request: (r: HttpClientRequest.HttpClientRequest) => HttpClientRequest.HttpClientRequest = (r) => r) =>
  send(c, "read", request(HttpClientRequest.get(Api.paths.pull(hash)))).pipe(
    Effect.mapError(only("read", ["AssetNotFound"])),
    Effect.map((response) => ({ response, body: response.stream.pipe(Stream.mapError(transportError("read"))) }))
  )

const read = (c: Connection) =>
(hash: AssetHash): Stream.Stream<Uint8Array, AssetNotFound | InvalidInput | StoreUnavailable> =>
  Stream.unwrap(Effect.map(pull(c, hash), ({ body }) => body))

/**
 * The content from byte `offset` on, unchecked, through a `Range` request. A service that answers
 * with the whole asset (from 0, past the end, or one that does not serve ranges) has the bytes
 * before `offset` left out here; a 206 from anywhere else is refused.
 */
const readFrom = (c: Connection) =>
(hash: AssetHash, offset: number): Stream.Stream<Uint8Array, AssetNotFound | InvalidInput | StoreUnavailable> =>
  Stream.unwrap(
    pull(c, hash, HttpClientRequest.setHeader(Api.HeaderNames.range, `bytes=${offset}-`)).pipe(
      Effect.flatMap(({ response, body }) => {
        if (response.status === 200) return Effect.succeed(dropBytes(body, offset))
        const start = Api.contentRangeStart(response.headers[Api.HeaderNames.contentRange])
        return response.status === 206 && start === offset
          ? Effect.succeed(body)
          : Effect.fail(malformed("read", `asked for the bytes from ${offset} on, got ${response.status} ${response.headers[Api.HeaderNames.contentRange] ?? ""}`.trim()))
      })
    )
  )

const list = (c: Connection) =>
  Effect.fn("HttpStore.list")(function*(listOptions?: { readonly since?: number; readonly limit?: number }) {
    let request = HttpClientRequest.post(Api.Routes.hashes)
    if (listOptions?.since !== undefined) request = HttpClientRequest.setUrlParam(request, "since", String(listOptions.since))
    if (listOptions?.limit !== undefined) request = HttpClientRequest.setUrlParam(request, "limit", String(listOptions.limit))
    const body = yield* call(c, "list", request, Api.HashesResponse, [])
    const page: DigestPage = { digests: body.assets, next: body.next, done: body.done }
    return page
  })

const push = (c: Connection) =>
  Effect.fn("HttpStore.push")(function*<E>(
    hash: AssetHash,
    content: Stream.Stream<Uint8Array, E>,
    meta: AssetMeta,
    origin: string
  ) {
    const request = HttpClientRequest.post(Api.paths.push(hash)).pipe(
      HttpClientRequest.setHeader(Api.HeaderNames.meta, Api.headerJson(Schema.encodeSync(AssetMeta)(meta))),
      HttpClientRequest.setHeader(Api.HeaderNames.origin, origin)
    )
    const response = yield* upload(c, "push", request, content, ["HashMismatch", "AssetTooLarge"])
    const body = yield* decodeBody("push", Api.PushResponse)(response)
    return { alreadyExisted: body.already_existed }
  })

const editMeta = (c: Connection) =>
  Effect.fn("HttpStore.editMeta")(function*(hash: AssetHash, patch: MetaPatch) {
    const body = Schema.encodeSync(Api.EditMetaRequest)({
      ...(patch.description === undefined ? {} : { description: patch.description }),
      ...(patch.tags === undefined ? {} : { tags: patch.tags }),
      ...(patch.trashed === undefined ? {} : { trashed: patch.trashed })
    })
    const request = HttpClientRequest.post(Api.paths.assetMeta(hash)).pipe(HttpClientRequest.bodyJsonUnsafe(body))
    const result = yield* call(c, "editMeta", request, Api.EditMetaResponse, ["AssetNotFound"])
    return result.meta
  })

const mergeMeta = (c: Connection) =>
  Effect.fn("HttpStore.mergeMeta")(function*(hash: AssetHash, meta: AssetMeta, origin: string) {
    const body = Schema.encodeSync(Api.MergeMetaRequest)({ hash, meta, origin })
    const request = HttpClientRequest.post(Api.Routes.syncMeta).pipe(HttpClientRequest.bodyJsonUnsafe(body))
    return yield* call(c, "mergeMeta", request, Api.MergeMetaResponse, ["AssetNotFound"])
  })

// ---------------------------------------------------------------------------------------------
// Range reconciliation: the service's fingerprints and items, in requests within RangeLimits
// ---------------------------------------------------------------------------------------------

/** Consecutive runs of `prefixes` within one request's bounds (count and bucket span). */
const batches = (prefixes: ReadonlyArray<string>): Array<ReadonlyArray<string>> => {
  const out: Array<Array<string>> = []
  let current: Array<string> = []
  let span = 0
  for (const prefix of prefixes) {
    const cost = Api.bucketSpan(prefix)
    if (current.length > 0 && (current.length >= Api.RangeLimits.maxPrefixes || span + cost > Api.RangeLimits.maxBucketSpan)) {
      out.push(current)
      current = []
      span = 0
    }
    current.push(prefix)
    span += cost
  }
  if (current.length > 0) out.push(current)
  return out
}

const rangeRequest = (route: string, prefixes: ReadonlyArray<string>) =>
  HttpClientRequest.post(route).pipe(HttpClientRequest.bodyJsonUnsafe(Schema.encodeSync(Api.RangeRequest)({ prefixes })))

const malformed = (operation: string, detail: string) => unavailable(operation, `malformed response: ${detail}`)

const rangeFingerprints = (c: Connection) => (prefixes: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const out: Array<Fingerprint> = []
    for (const batch of batches(prefixes)) {
      const body = yield* call(c, "range fingerprints", rangeRequest(Api.Routes.rangeFingerprints, batch), Api.RangeFingerprintsResponse, [])
      if (body.fingerprints.length !== batch.length) {
        return yield* malformed("range fingerprints", `${body.fingerprints.length} fingerprints for ${batch.length} prefixes`)
      }
      for (const fp of body.fingerprints) out.push({ count: fp.count, sum: Uint8Array.from(Buffer.from(fp.sum, "hex")) })
    }
    return out
  })

/** A service's list for `prefix`: its hashes under the prefix, strictly increasing (else undefined). */
const checkedList = (prefix: string, items: ReadonlyArray<RangeItem>): string | undefined => {
  let previous = ""
  for (const item of items) {
    if (!item.hash.startsWith(prefix)) return `item ${item.hash} outside prefix "${prefix}"`
    if (item.hash <= previous) return `items of prefix "${prefix}" not in increasing hash order`
    previous = item.hash
  }
  return undefined
}

/**
 * Items of each prefix, in order: each request answers as many leading prefixes as fit one
 * response; a prefix too large for one response alone is asked as its 16 children, joined.
 */
const rangeItems = (c: Connection) => {
  const resolve = (prefixes: ReadonlyArray<string>): Effect.Effect<Array<ReadonlyArray<RangeItem>>, StoreUnavailable | InvalidInput> =>
    Effect.gen(function*() {
      const out: Array<ReadonlyArray<RangeItem>> = []
      let at = 0
      while (at < prefixes.length) {
        const batch = batches(prefixes.slice(at, at + Api.RangeLimits.maxPrefixes))[0]!
        const body = yield* call(c, "range items", rangeRequest(Api.Routes.rangeItems, batch), Api.RangeItemsResponse, [])
        if (body.lists.length > batch.length) {
          return yield* malformed("range items", `${body.lists.length} lists for ${batch.length} prefixes`)
        }
        let total = 0
        for (const [i, list] of body.lists.entries()) {
          total += list.length
          const bad = checkedList(batch[i]!, list)
          if (bad !== undefined) return yield* malformed("range items", bad)
        }
        if (total > Api.RangeLimits.maxItems) return yield* malformed("range items", `${total} items in one response`)
        if (body.lists.length > 0) {
          out.push(...body.lists)
          at += body.lists.length
          continue
        }
        // The first prefix alone holds more than one response: its children, one level down.
        const first = batch[0]!
        if (first.length >= 64) return yield* malformed("range items", `no list for the whole hash ${first}`)
        const children = yield* resolve(Array.from("0123456789abcdef", (d) => first + d))
        out.push(children.flat())
        at++
      }
      return out
    })
  return resolve
}

/**
 * Whether the service answers range requests: an empty fingerprint request is 200 where it does,
 * 404 from a service over a store without ranges or older than them.
 */
const offersRanges = (c: Connection) =>
  c.client.execute(rangeRequest(Api.Routes.rangeFingerprints, [])).pipe(
    Effect.mapError(transportError("connect")),
    Effect.map((response) => response.status === 200)
  )

/** The service's range source. */
const ranges = (c: Connection): RangeSource<StoreUnavailable | InvalidInput> => ({
  fingerprints: rangeFingerprints(c),
  items: rangeItems(c)
})

// ---------------------------------------------------------------------------------------------
// Events: SSE that reconnects and resumes
// ---------------------------------------------------------------------------------------------

const decodeEvent = Schema.decodeUnknownEffect(Api.EventData)

/**
 * One SSE connection, starting after `since`: `Connected`, then each event; it always ends in a
 * failure, Reconnect when the link dropped (retried) or a StoreError when retrying cannot help.
 */
const connectOnce = (c: Connection, since: number, idleTimeout: Duration.Duration) =>
  Stream.unwrap(Effect.gen(function*() {
    const request = HttpClientRequest.get(Api.Routes.events).pipe(
      HttpClientRequest.setUrlParam("since", String(since)),
      HttpClientRequest.setHeader(Api.HeaderNames.lastEventId, String(since)),
      HttpClientRequest.accept("text/event-stream")
    )
    const response = yield* c.client.execute(request).pipe(
      Effect.mapError((e) => new Reconnect({ reason: e.message, cause: e }))
    )
    if (response.status === 401 || response.status === 403 || response.status === 400) {
      return yield* remoteError("events", response).pipe(Effect.mapError(only("events", [])))
    }
    if (!isOk(response)) return yield* new Reconnect({ reason: `HTTP ${response.status}` })
    const events = response.stream.pipe(
      Stream.mapError((e) => new Reconnect({ reason: e.message, cause: e })),
      // Keepalive comments count: only a silent link times out.
      Stream.timeout(idleTimeout),
      Stream.decodeText,
      Stream.pipeThroughChannel(Sse.decode()),
      Stream.mapError((e) =>
        e._tag === "Reconnect" ? e : e._tag === "Retry" ? new Reconnect({ reason: "service asked to retry" }) : unavailable("events", e.message)
      ),
      Stream.mapEffect((event): Effect.Effect<StoreEvent | typeof Reset, StoreUnavailable> =>
        event.event === Api.SseResetEventName
          ? Effect.logWarning(`SSE ${c.base}: resuming after ${since} is past the store's newest change: replaying from 0`).pipe(
            Effect.as(Reset)
          )
          : decodeEvent(event.data).pipe(
            Effect.mapError((e) => unavailable("events", `malformed event: ${e.message}`))
          )
      ),
      Stream.concat(Stream.fail(new Reconnect({ reason: "stream ended" })))
    )
    return Stream.concat(Stream.succeed(Connected), events)
  }))

/**
 * The store's events from `since` (default: from now on), over as many connections as it takes:
 * a dropped one is retried with the shared backoff, and resumes after the last sequence delivered.
 */
const events = (c: Connection, options: HttpStoreOptions) => {
  const idleTimeout = Duration.fromInputUnsafe(options.reconnect?.idleTimeout ?? "45 seconds")
  const backoff = Backoff.exponential({
    base: options.reconnect?.initial ?? "100 millis",
    cap: options.reconnect?.max ?? "5 seconds"
  }).pipe(
    Schedule.setInputType<Reconnect | StoreUnavailable | InvalidInput>(),
    Schedule.while(({ input }) => input._tag === "Reconnect")
  )
  return (eventOptions?: { readonly since?: number }): Stream.Stream<StoreEvent, StoreUnavailable | InvalidInput> =>
    Stream.unwrap(Effect.gen(function*() {
      // "From now on" must not depend on when a connection happens to be made: fix it now.
      const start = eventOptions?.since ?? (yield* info(c)).seq
      const cursor = yield* Ref.make(start)
      return Stream.unwrap(Effect.map(Ref.get(cursor), (since) => connectOnce(c, since, idleTimeout))).pipe(
        Stream.tapError((e) => Effect.logDebug(`SSE ${c.base}: ${e.message}`)),
        Stream.retry(backoff),
        // Only what comes after the last delivered sequence passes: a replay never repeats a change.
        Stream.mapEffect((item) =>
          item._tag === "Connected"
            ? Effect.succeed(Option.none<StoreEvent>())
            : item._tag === "Reset"
            ? Ref.set(cursor, 0).pipe(Effect.as(Option.none<StoreEvent>()))
            : Ref.modify(cursor, (seen) => item.seq > seen ? [Option.some(item), item.seq] : [Option.none(), seen])
        ),
        Stream.filter(Option.isSome),
        Stream.map((item) => item.value),
        Stream.mapError((e) => e._tag === "Reconnect" ? unavailable("events", e.reason) : e)
      )
    }))
}

/** Connects to a CAN HTTP service; fails with StoreUnavailable when it cannot be reached or refuses the token. */
export const make = Effect.fn("HttpStore.make")(function*(
  options: HttpStoreOptions
): Effect.fn.Return<CanStoreShape, StoreUnavailable, Scope.Scope> {
  const c = yield* connect(options)
  const { storeId } = yield* info(c).pipe(
    Effect.mapError((e) => e._tag === "StoreUnavailable" ? e : unavailable("connect", e.message))
  )
  return {
    storeId,
    ingest: ingest(c),
    has: has(c),
    stat: stat(c),
    read: read(c),
    readFrom: readFrom(c),
    list: list(c),
    currentSeq: Effect.map(info(c), (i) => i.seq),
    push: push(c),
    editMeta: editMeta(c),
    mergeMeta: mergeMeta(c),
    events: events(c, options),
    // With a service that keeps no range fingerprints (or an older one), sessions list every digest.
    ranges: (yield* offersRanges(c)) ? ranges(c) : undefined
  } satisfies CanStoreShape
})
