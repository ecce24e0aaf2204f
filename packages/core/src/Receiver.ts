/**
 * Receiver: streams the peer's asset frames into `store.push` through a small bounded Queue, so
 * content goes straight to disk — never past the size the header announced nor `maxAssetBytes` —
 * and the store verifies its hash (a mismatch stores nothing and is answered with a non-fatal
 * Error). A resumed transfer (resume/1) continues the store's partial from the offset asked; if
 * the whole asset then fails the hash check, the partial is gone, the peers that sent it are logged,
 * and the asset is asked again from byte 0. Merges the peer's metadata once it passes
 * MetadataLimits (last writer wins, read repair when ours is newer) and feeds received hashes to
 * the pusher's echo Queue.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import type { Result } from "effect"
import type { AssetTooLarge, HashMismatch, StoreError } from "./CanStore.ts"
import type { AssetHash, AssetMeta } from "./Domain.ts"
import { compareMetaVersion } from "./Domain.ts"
import type { StashedMeta } from "./InFlight.ts"
import * as Metrics from "./Metrics.ts"
import type * as Proto from "./proto/sync.ts"
import type { ActorWiring, Limits, Outcome } from "./ActorWiring.ts"
import { bump, chunkMoved, metaSkipped, sendMetaUpdate } from "./ActorWiring.ts"
import { codeName, ErrorCode, ProtocolViolation, refusalCode } from "./SyncErrors.ts"
import { asHash, peerMeta } from "./ProtoDomain.ts"

/** The sender gave up on an asset mid-stream (its store failed reading it). */
class TransferAborted extends Data.TaggedError("TransferAborted")<{ readonly hash: string; readonly code: ErrorCode }> {
  override get message(): string {
    return `the sender aborted ${this.hash}: ${codeName(this.code)}`
  }
}

const violation = (s: ActorWiring, frame: string, detail: string) =>
  Effect.fail(new ProtocolViolation({ peer: s.peer, frame, detail }))

const answered = (s: ActorWiring, hash: AssetHash, outcome: Outcome, code?: ErrorCode) =>
  Queue.offer(s.wantInbox, { _tag: "Answered", hash, outcome, code })

/** Merge a peer's metadata edit; an edit for an asset still in transit is kept until it lands. */
export const applyMeta = Effect.fn("Receiver.meta")(function*(s: ActorWiring, message: Proto.MetaUpdate) {
  const hash = asHash(message.hash)
  if (hash === undefined || message.meta === undefined) return yield* violation(s, "MetaUpdate", "malformed hash or missing meta")
  const decoded = peerMeta(message.meta, yield* Clock.currentTimeMillis)
  // Out of bounds: this edit is skipped (never stored, so never passed on); the session goes on.
  if (decoded._tag === "Failure") return yield* metaSkipped(s.peer, hash, "received", decoded.failure)
  const meta = decoded.success
  const merge = s.store.mergeMeta(hash, meta, s.peer).pipe(
    Effect.catchTag("AssetNotFound", () => Effect.succeed(undefined))
  )
  let merged = yield* merge
  // Not here yet: stash it with the transfer, or — if that transfer has just finished — merge again.
  if (merged === undefined && !(yield* s.inFlight.stashMeta(hash, meta, s.peer))) merged = yield* merge
  if (merged === undefined) return
  if (merged.applied) return yield* bump(s.stats, { metaApplied: 1 })
  yield* repairIfNewer(s, hash, merged.meta, meta)
})

/**
 * Read repair: the peer showed us an older version than ours (it got the asset elsewhere, or
 * ingested the same content itself), so send it ours. Versions only grow, so this terminates.
 */
const repairIfNewer = (s: ActorWiring, hash: AssetHash, ours: AssetMeta, theirs: AssetMeta) =>
  compareMetaVersion(ours, theirs) > 0 ? Effect.sync(() => Queue.offerUnsafe(s.repairs, hash)) : Effect.void

/** Sends our metadata for every asset the receiver found the peer behind on. */
export const repairer = Effect.fn("Receiver.repairer")(function*(s: ActorWiring, limits: Limits) {
  while (true) {
    const hash = yield* Queue.take(s.repairs)
    const record = yield* s.store.stat(hash)
    if (Option.isSome(record) && (yield* sendMetaUpdate(s, limits, hash, record.value.meta))) yield* bump(s.stats, { metaSent: 1 })
  }
})

/**
 * A metadata edit that arrived (from whichever peer) while its asset was in transit, merged once
 * the asset is stored, under the origin of the peer that sent the edit.
 */
const mergeStashed = (s: ActorWiring, hash: AssetHash, stashed: StashedMeta | undefined) =>
  stashed === undefined
    ? Effect.void
    : s.store.mergeMeta(hash, stashed.meta, stashed.from).pipe(Effect.catchTag("AssetNotFound", () => Effect.void), Effect.asVoid)

/** A non-fatal Error frame from the peer. */
const peerError = Effect.fn("Receiver.peerError")(function*(s: ActorWiring, error: Proto.Error) {
  const hash = asHash(error.hash)
  if ((error.code === ErrorCode.ASSET_NOT_FOUND || error.code === ErrorCode.STORE_FAILED) && hash !== undefined) {
    if (yield* s.inFlight.isOwner(hash, s.owner)) {
      yield* s.inFlight.settle(hash, s.owner, false)
      yield* answered(s, hash, error.code === ErrorCode.STORE_FAILED ? "unavailable" : "not-found")
    }
    return
  }
  yield* Metrics.recordError(error.code === ErrorCode.HASH_MISMATCH ? "peer_refused" : "peer_error")
  yield* Effect.logWarning("peer reported an error", { peer: s.peer, code: error.code, hash: error.hash, message: error.message })
  // Content we sent did not hash to its name there: the sender's checker looks at our copy.
  if (error.code === ErrorCode.HASH_MISMATCH && hash !== undefined) yield* Queue.offer(s.refused, hash)
})

interface Received {
  readonly hash: AssetHash
  readonly meta: AssetMeta
  readonly bytes: number
  readonly push: Fiber.Fiber<Result.Result<{ readonly alreadyExisted: boolean }, TransferAborted | HashMismatch | AssetTooLarge | StoreError>>
}

/** How one asset's frames ended: its AssetEnd, the sender's Error naming it, or a byte past its announced size. */
type AssetEnding =
  | { readonly _tag: "End"; readonly bytes: number }
  | { readonly _tag: "Aborted"; readonly code: ErrorCode }
  | { readonly _tag: "Overrun"; readonly bytes: number }

/**
 * The frames of one asset, from after its header to its end, each chunk handed to `onChunk`;
 * stops at the first chunk that would take it past the `size` its header announced.
 */
const assetFrames = (s: ActorWiring, hash: AssetHash, size: number, onChunk: (data: Uint8Array) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    let bytes = 0
    while (true) {
      const frame = yield* Queue.take(s.inbound)
      switch (frame._tag) {
        case "AssetChunk":
          if (frame.message.hash !== hash) return yield* violation(s, "AssetChunk", `chunk of ${frame.message.hash} inside ${hash}`)
          bytes += frame.message.data.length
          if (bytes > size) return { _tag: "Overrun", bytes } satisfies AssetEnding
          yield* onChunk(frame.message.data)
          yield* chunkMoved(s.stats, "received", frame.message.data.length)
          break
        case "AssetEnd":
          if (frame.message.hash !== hash) return yield* violation(s, "AssetEnd", `end of ${frame.message.hash} inside ${hash}`)
          return { _tag: "End", bytes } satisfies AssetEnding
        case "MetaUpdate":
          yield* applyMeta(s, frame.message)
          break
        case "Error":
          if (frame.message.hash === hash) return { _tag: "Aborted", code: frame.message.code } satisfies AssetEnding
          yield* peerError(s, frame.message)
          break
        case "AssetHeader":
          return yield* violation(s, "AssetHeader", `header of ${frame.message.hash} inside ${hash}`)
      }
    }
  })

const overrun = (s: ActorWiring, hash: AssetHash, size: number) =>
  violation(s, "AssetChunk", `${hash} streamed past the ${size} bytes its header announced`)

/**
 * Receive one asset's frames, from its header to its end, streaming them into a store push
 * (which verifies the hash before anything is kept); returns the push still committing, or
 * undefined when the asset was skipped (its metadata is out of bounds: nothing is written).
 * A header announcing more than `maxAssetBytes`, or content past the announced size, is a
 * protocol violation; the partial content is discarded before the session ends.
 */
export const receiveAsset = Effect.fn("Receiver.asset")(function*(s: ActorWiring, header: Proto.AssetHeader) {
  const hash = asHash(header.hash)
  if (hash === undefined || header.meta === undefined) return yield* violation(s, "AssetHeader", "malformed hash or missing meta")
  if (!(yield* s.inFlight.isOwner(hash, s.owner))) return yield* violation(s, "AssetHeader", `unsolicited asset ${hash}`)
  if (header.size > s.config.maxAssetBytes) {
    return yield* violation(s, "AssetHeader", `${hash} announced as ${header.size} bytes, more than the maximum asset size of ${s.config.maxAssetBytes}`)
  }
  // Content starts at 0 or at the byte asked (resume/1); 0 while a resume was asked means from scratch.
  const { offset } = header
  const asked = yield* s.inFlight.askedFrom(hash, s.owner)
  if ((offset !== 0 && offset !== asked) || offset > header.size) {
    return yield* violation(s, "AssetHeader", `${hash} sent from byte ${offset}, but asked from byte ${asked} (of ${header.size})`)
  }
  const size = header.size - offset // the bytes that follow
  yield* Effect.annotateCurrentSpan({ hash, direction: "received", peer: s.peer, announcedBytes: header.size, offset })
  const decoded = peerMeta(header.meta, yield* Clock.currentTimeMillis)
  if (decoded._tag === "Failure") {
    // Skip this asset only: read its frames without writing them, and tell the peer (via the fetcher).
    yield* metaSkipped(s.peer, hash, "received", decoded.failure)
    const ending = yield* assetFrames(s, hash, size, () => Effect.void)
    if (ending._tag === "Overrun") return yield* overrun(s, hash, size)
    yield* s.inFlight.settle(hash, s.owner, false)
    yield* answered(s, hash, "refused", ErrorCode.METADATA_INVALID)
    return undefined
  }
  const meta = decoded.success
  yield* Queue.offer(s.echo, hash) // sliding queue: never waits
  const chunks = yield* Queue.bounded<Uint8Array, Cause.Done | TransferAborted>(4)
  // The push ends early on a store-side refusal (too large); shutting the queue then drops later chunks.
  // A store that keeps partials gets every push as resumable (what arrives is kept if it is cut).
  const resumable = s.store.partial === undefined ? undefined : { resumeFrom: offset, size }
  const push = yield* s.store.push(hash, Stream.fromQueue(chunks), meta, s.peer, resumable).pipe(
    Effect.result,
    Effect.ensuring(Queue.shutdown(chunks)),
    Effect.forkChild
  )
  const ending = yield* assetFrames(s, hash, size, (data) => Queue.offer(chunks, data).pipe(Effect.asVoid))
  switch (ending._tag) {
    case "End":
      yield* Queue.end(chunks)
      return { hash, meta, bytes: ending.bytes, push }
    case "Aborted":
      yield* Queue.failCause(chunks, Cause.fail(new TransferAborted({ hash, code: ending.code })))
      return { hash, meta, bytes: 0, push }
    case "Overrun":
      // Not one byte past the announced size reaches the store (what came before may stay as a partial: the whole hash still gates it).
      yield* Queue.failCause(chunks, Cause.fail(new TransferAborted({ hash, code: ErrorCode.PROTOCOL_VIOLATION })))
      yield* Fiber.join(push)
      return yield* overrun(s, hash, size)
  }
})

/**
 * The end of one asset's transfer: wait for the store to verify and commit it, then settle its
 * claim, record it and tell the fetcher. Runs beside the next asset's frames (pipelined).
 */
const finishAsset = Effect.fn("Receiver.commit")(function*(s: ActorWiring, received: Received) {
  const { bytes, hash, meta } = received
  yield* Effect.annotateCurrentSpan({ hash, direction: "received", peer: s.peer, bytes })
  const result = yield* Fiber.join(received.push)
  if (result._tag === "Success") {
    const stashed = yield* s.inFlight.settle(hash, s.owner, true)
    yield* mergeStashed(s, hash, stashed)
    yield* Metrics.recordTransfer(s.peer, "received", bytes)
    yield* bump(s.stats, { assetsReceived: 1, bytesReceived: bytes, redundantReceives: result.success.alreadyExisted ? 1 : 0 })
    if (result.success.alreadyExisted) {
      // It was here already (a local ingest raced the transfer): ours may be the newer version.
      const current = yield* s.store.stat(hash)
      if (Option.isSome(current)) yield* repairIfNewer(s, hash, current.value.meta, meta)
    }
    yield* Effect.annotateCurrentSpan({ outcome: result.success.alreadyExisted ? "already-present" : "stored" })
    return yield* answered(s, hash, "stored")
  }
  const error = result.failure
  yield* s.inFlight.settle(hash, s.owner, false)
  if (error._tag === "HashMismatch" && (error.resumedFrom ?? 0) > 0) {
    // The bytes kept from before may be the bad ones: the partial is gone; say who sent them, start again from 0.
    yield* Metrics.recordError("resume_mismatch")
    yield* bump(s.stats, { verificationFailures: 1 })
    yield* Effect.logWarning("a resumed asset failed the hash check: its partial is discarded and it is fetched again from byte 0", {
      peer: s.peer,
      hash,
      resumedFrom: error.resumedFrom,
      sources: (error.sources ?? []).join(", "),
      actual: error.actual
    })
    yield* Effect.annotateCurrentSpan({ outcome: "restart" })
    return yield* answered(s, hash, "restart")
  }
  switch (error._tag) {
    case "HashMismatch":
    case "AssetTooLarge":
      if (error._tag === "HashMismatch") {
        yield* Metric.update(Metrics.verificationFailures, 1)
        yield* bump(s.stats, { verificationFailures: 1 })
      }
      yield* Effect.logWarning("refused an asset from peer", { peer: s.peer, hash, reason: error._tag })
      yield* Effect.annotateCurrentSpan({ outcome: error._tag })
      return yield* answered(s, hash, "refused", refusalCode(error))
    case "TransferAborted":
      yield* Effect.annotateCurrentSpan({ outcome: "aborted" })
      return yield* answered(s, hash, error.code === ErrorCode.STORE_FAILED ? "unavailable" : "not-found")
    default:
      return yield* Effect.fail(error)
  }
})

/** How many received assets may be committing (hash check, fsync, index) while the next streams in. */
const COMMIT_PIPELINE = 4

/** Handle the peer's asset frames, metadata and non-fatal errors until the session ends. */
export const run = Effect.fn("Receiver")(function*(s: ActorWiring) {
  const commits = yield* FiberSet.make<void, StoreError>()
  const permits = yield* Semaphore.make(COMMIT_PIPELINE)
  const loop = Effect.gen(function*() {
    while (true) {
      const frame = yield* Queue.take(s.inbound)
      switch (frame._tag) {
        case "AssetHeader": {
          const received = yield* receiveAsset(s, frame.message)
          if (received === undefined) break
          yield* Semaphore.take(permits, 1)
          yield* FiberSet.run(commits, finishAsset(s, received).pipe(Effect.ensuring(Semaphore.release(permits, 1))))
          break
        }
        case "MetaUpdate":
          yield* applyMeta(s, frame.message)
          break
        case "Error":
          yield* peerError(s, frame.message)
          break
        case "AssetChunk":
        case "AssetEnd":
          return yield* violation(s, frame._tag, "outside an asset")
      }
    }
  })
  // A commit that fails on a store error fails the receiver (and so the session).
  return yield* Effect.raceFirst(loop, FiberSet.join(commits).pipe(Effect.andThen(Effect.never)))
})
