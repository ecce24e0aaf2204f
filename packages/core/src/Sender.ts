/**
 * Sender: serves the peer's wants in order as AssetHeader + AssetChunk… + AssetEnd. Content is
 * streamed from the store unchecked (`readFrom`: the receiver checks the whole hash before it keeps
 * anything), a large asset never whole in memory, small ones (at most one chunk each) read a few
 * assets ahead; the checker looks at our copy of any asset the peer refuses. A hash it cannot
 * serve — absent, unreadable, or with metadata the peer would refuse — is answered with a
 * non-fatal Error naming it, so the peer's window moves on; content is never sent past the size
 * its header announced. A want with an offset (resume/1) is served from that byte: the header says
 * so, and the store reads from there (without `readFrom` the bytes before it are read, not sent).
 * Sends Done once the reconcile wants are served.
 */
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import * as CanStore from "./CanStore.ts"
import type { AssetHash, AssetRecord } from "./Domain.ts"
import * as Frame from "./Frame.ts"
import * as Metrics from "./Metrics.ts"
import type { Limits, SendJob, ActorWiring } from "./ActorWiring.ts"
import { bump, chunkMoved, metaSkipped } from "./ActorWiring.ts"
import { ErrorCode } from "./SyncErrors.ts"
import type * as Proto from "./proto/sync.ts"
import { toOutgoingMeta } from "./ProtoDomain.ts"

/** How many wanted assets are looked up (and, if small, read) ahead of the one being sent. */
const PREFETCH = 4

/** A want, looked up: what to send for it. */
type Prepared =
  | { readonly _tag: "Small"; readonly record: AssetRecord; readonly meta: Proto.AssetMeta; readonly offset: number; readonly data: Uint8Array }
  | { readonly _tag: "Large"; readonly record: AssetRecord; readonly meta: Proto.AssetMeta; readonly offset: number }
  | { readonly _tag: "Unavailable"; readonly hash: AssetHash; readonly code: ErrorCode; readonly message: string }
  | { readonly _tag: "ReconcileWantsEnd" }

export interface Served {
  readonly served: boolean
  readonly bytes: number
}


const prepare = (s: ActorWiring, limits: Limits, job: SendJob) =>
  Effect.gen(function*() {
    if (job._tag === "ReconcileWantsEnd") return job satisfies Prepared
    const hash = job.hash
    const record = yield* s.store.stat(hash)
    if (Option.isNone(record)) {
      return { _tag: "Unavailable", hash, code: ErrorCode.ASSET_NOT_FOUND, message: "not in this store" } satisfies Prepared
    }
    // Metadata the peer would refuse, or whose header would not fit its frames, is never sent:
    // that asset is answered as not served (ASSET_NOT_FOUND frees the peer's want) and the rest go on.
    const meta = toOutgoingMeta(record.value.meta, limits.peerMaxFrameBytes, yield* Clock.currentTimeMillis)
    if (Result.isFailure(meta)) {
      yield* metaSkipped(s.peer, hash, "sent", meta.failure)
      return { _tag: "Unavailable", hash, code: ErrorCode.ASSET_NOT_FOUND, message: `its metadata cannot be sent: ${meta.failure.message}` } satisfies Prepared
    }
    const offset = job.offset ?? 0
    if (offset > record.value.size) {
      return { _tag: "Unavailable", hash, code: ErrorCode.ASSET_NOT_FOUND, message: `asked from byte ${offset}, past its ${record.value.size} bytes` } satisfies Prepared
    }
    if (record.value.size > limits.chunkBytes) return { _tag: "Large", record: record.value, meta: meta.success, offset } satisfies Prepared
    const read = yield* CanStore.contentFrom(s.store, hash, 0).pipe(Stream.runCollect, Effect.result)
    if (read._tag === "Failure") {
      return { _tag: "Unavailable", hash, code: ErrorCode.STORE_FAILED, message: `read failed: ${read.failure._tag}` } satisfies Prepared
    }
    return { _tag: "Small", record: record.value, meta: meta.success, offset, data: Frame.join(read.success) } satisfies Prepared
  })

/**
 * The peer's want of `hash` is answered by the frame about to be queued: it leaves the window
 * first, so a Want the peer sends after seeing that frame always finds it gone.
 */
const answer = (s: ActorWiring, hash: AssetHash) => Effect.sync(() => s.windows.peerWants.delete(hash))

const notServed = (s: ActorWiring, hash: AssetHash, code: ErrorCode, message: string) =>
  answer(s, hash).pipe(
    Effect.andThen(Queue.offer(s.outbox, Frame.make("Error", { code, message, hash, fatal: false }))),
    Effect.as<Served>({ served: false, bytes: 0 })
  )

/** The store streamed other than the size it indexed (a damaged file): never sent past or short of the header's size. */
class SizeChanged extends Data.TaggedError("SizeChanged")<{ readonly size: number; readonly streamed: number }> {}

/** Send one asset (or the Error saying it cannot be served). */
export const sendAsset = Effect.fn("Sender.asset")(function*(s: ActorWiring, limits: Limits, asset: Exclude<Prepared, { readonly _tag: "ReconcileWantsEnd" }>) {
  if (asset._tag === "Unavailable") {
    yield* Effect.annotateCurrentSpan({ hash: asset.hash, direction: "sent", peer: s.peer, outcome: asset.code })
    return yield* notServed(s, asset.hash, asset.code, asset.message)
  }
  const { hash, size } = asset.record
  const { offset } = asset
  yield* Effect.annotateCurrentSpan({ hash, direction: "sent", peer: s.peer, offset })
  yield* Queue.offer(s.outbox, Frame.make("AssetHeader", { hash, size, meta: asset.meta, offset }))
  let bytes = 0
  const sendChunk = (chunk: Uint8Array) =>
    Effect.gen(function*() {
      if (offset + bytes + chunk.length > size) return yield* new SizeChanged({ size, streamed: offset + bytes + chunk.length })
      for (let offset = 0; offset < chunk.length; offset += limits.chunkBytes) {
        const data = chunk.subarray(offset, Math.min(chunk.length, offset + limits.chunkBytes))
        yield* Queue.offer(s.outbox, Frame.make("AssetChunk", { hash, data }))
        bytes += data.length
        yield* chunkMoved(s.stats, "sent", data.length)
      }
    })
  // From `offset` on: the bytes before it are the peer's already (a resumed transfer).
  const streamed = asset._tag === "Small"
    ? yield* sendChunk(asset.data.subarray(Math.min(offset, asset.data.length))).pipe(Effect.result)
    : yield* CanStore.contentFrom(s.store, hash, offset).pipe(Stream.runForEach(sendChunk), Effect.result)
  const failure = streamed._tag === "Failure"
    ? streamed.failure
    : offset + bytes !== size
    ? new SizeChanged({ size, streamed: offset + bytes })
    : undefined
  if (failure !== undefined) {
    // The peer drops the partial asset on this error; nothing half-written is ever stored.
    yield* Metrics.recordError("store_read")
    return yield* notServed(s, hash, ErrorCode.STORE_FAILED, `read failed: ${failure._tag}`)
  }
  yield* answer(s, hash)
  yield* Queue.offer(s.outbox, Frame.make("AssetEnd", { hash }))
  yield* Effect.annotateCurrentSpan({ bytes, outcome: "sent" })
  yield* Metrics.recordTransfer(s.peer, "sent", bytes)
  yield* bump(s.stats, { assetsSent: 1, bytesSent: bytes })
  return { served: true, bytes } satisfies Served
})

/** At most this many refused assets are looked at in one session (a peer may claim it of every hash). */
const MAX_CHECKED = 1024

/**
 * Looks at our copy of each asset the peer refused as not hashing to its name (content is sent
 * unchecked): a damaged copy is logged as an error naming `can-sync verify`, which sets it aside;
 * a whole one means the peer or the path is at fault. Each asset once a session, one at a time.
 */
export const checker = Effect.fn("Sender.checker")(function*(s: ActorWiring) {
  const checked = new Set<AssetHash>()
  while (true) {
    const hash = yield* Queue.take(s.refused)
    if (checked.has(hash) || checked.size >= MAX_CHECKED) continue
    checked.add(hash)
    const read = yield* s.store.read(hash).pipe(Stream.runDrain, Effect.result)
    if (read._tag === "Success") {
      yield* Effect.logWarning("the peer refused an asset we sent, and our copy is whole", { peer: s.peer, hash })
    } else if (read.failure._tag !== "AssetNotFound") {
      yield* Metrics.recordError("local_damaged")
      yield* Effect.logError("the peer refused an asset we sent, and our copy is damaged: run `can-sync verify` to set it aside", {
        peer: s.peer,
        hash,
        error: read.failure.message
      })
    }
  }
})

/** Serve wants until the session ends; sends Done once the reconcile's wants are served. */
export const run = Effect.fn("Sender")(function*(s: ActorWiring, limits: Limits) {
  let assets = 0
  let bytes = 0
  return yield* Stream.fromQueue(s.sendQueue).pipe(
    Stream.mapEffect((job) => prepare(s, limits, job), { concurrency: PREFETCH }),
    Stream.runForEach((prepared) =>
      Effect.gen(function*() {
        if (prepared._tag === "ReconcileWantsEnd") {
          yield* Queue.offer(s.outbox, Frame.make("Done", { assetsSent: assets, bytesSent: bytes }))
          return yield* Deferred.succeed(s.sentDone, undefined)
        }
        const sent = yield* sendAsset(s, limits, prepared)
        if (sent.served && !Deferred.isDoneUnsafe(s.sentDone)) {
          assets++
          bytes += sent.bytes
        }
      })
    )
  )
})
