/**
 * Fetcher: asks the peer for what this side lacks (the reconcile's missing list, then what live
 * Offers announce), keeping at most `wantWindow` hashes unanswered. Each hash is first claimed in
 * the shared InFlight registry, so an asset already arriving from another peer is not fetched
 * twice. `Want` with `last = true` closes a round: the reconcile's wants, then one per Offer.
 * Assets announced larger than `maxAssetBytes` are never asked for; propagation latency is
 * measured here, from the announcement to the asset stored. With "resume/1" negotiated, an asset
 * the store holds a partial of is asked from the partial's end (Want.offsets).
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Metric from "effect/Metric"
import type * as Pull from "effect/Pull"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as Backoff from "./Backoff.ts"
import type { AssetHash } from "./Domain.ts"
import * as Frame from "./Frame.ts"
import * as Metrics from "./Metrics.ts"
import type { Limits, ActorWiring, WantInput } from "./ActorWiring.ts"
import { bump } from "./ActorWiring.ts"
import { chunksOf } from "./ProtoDomain.ts"

/** A FIFO of distinct hashes with O(1) push, shift and membership. */
const hashQueue = () => {
  let items: Array<AssetHash> = []
  let head = 0
  const members = new Set<AssetHash>()
  return {
    push: (h: AssetHash) => {
      if (members.has(h)) return
      members.add(h)
      items.push(h)
    },
    shift: (): AssetHash | undefined => {
      if (head >= items.length) return undefined
      const h = items[head++]!
      members.delete(h)
      if (head > 4096 && head * 2 > items.length) {
        items = items.slice(head)
        head = 0
      }
      return h
    },
    has: (h: AssetHash) => members.has(h),
    size: () => items.length - head
  }
}

/** From the announcement to stored here, in seconds. */
const recordLatency = (announced: number) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => Metric.update(Metrics.propagationLatency, Math.max(0, now - announced) / 1000))

/** 1 + 2 + 4 + 8 + 16 + 30 × 5 s (jittered): about 3 minutes of asking. */
export const UNAVAILABLE_RETRIES = 10
const unavailableRetry = Backoff.exponential({ base: "1 second", cap: "30 seconds" }).pipe(
  Schedule.upTo({ times: UNAVAILABLE_RETRIES })
)

export const run = Effect.fn("Fetcher")(function*(s: ActorWiring, limits: Limits) {
  const pending = hashQueue()
  const outstanding = new Set<AssetHash>()
  /** Announced content sizes of pending and outstanding hashes (for the bytesWanted counter). */
  const sizeOf = new Map<AssetHash, number>()
  /**
   * When each pending or outstanding hash was announced to us (the reconcile diff or the Offer
   * that made us want it): propagation latency is measured from there to stored here.
   */
  const announcedAt = new Map<AssetHash, number>()
  const forget = (hash: AssetHash) => {
    sizeOf.delete(hash)
    announcedAt.delete(hash)
  }
  let reconcile: "waiting" | "open" | "closed" = "waiting"
  let answersOwed = 0
  const waiters = yield* FiberSet.make<void>()
  /** Hashes the peer holds but could not read: the retry schedule of each. */
  const unavailable = new Map<AssetHash, (now: number, input: unknown) => Pull.Pull<[Duration.Duration, Duration.Duration], never, Duration.Duration>>()

  /**
   * The peer's store failed reading it: ask again after a backoff (1 s, doubling, up to 30 s),
   * `UNAVAILABLE_RETRIES` times; after that only the next reconcile asks again.
   */
  const retryLater = (hash: AssetHash, size: number) =>
    Effect.gen(function*() {
      const first = !unavailable.has(hash)
      const step = unavailable.get(hash) ?? (yield* Schedule.toStep(unavailableRetry))
      unavailable.set(hash, step)
      const delay = yield* step(yield* Clock.currentTimeMillis, undefined).pipe(
        Effect.map(([, d]) => d),
        Effect.catchCause(() => Effect.succeed(undefined))
      )
      if (delay === undefined) {
        unavailable.delete(hash)
        return yield* Effect.logWarning(`the peer could not read ${hash} ${UNAVAILABLE_RETRIES + 1} times; not asking again until the next reconcile`, { peer: s.peer })
      }
      yield* FiberSet.run(waiters, Effect.sleep(delay).pipe(Effect.andThen(Queue.offer(s.retries, { hash, size }))))
      const log = first ? Effect.logInfo : Effect.logDebug
      yield* log(`the peer could not read ${hash}; asking again in ${Math.round(Duration.toMillis(delay))} ms`, { peer: s.peer })
    })

  /**
   * Queue what the peer announced, except assets larger than `maxAssetBytes` (by the size it
   * announced): those are never asked for, and one line says how many were left out.
   */
  const enqueue = (hashes: ReadonlyArray<AssetHash>, sizes: ReadonlyArray<number>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      let skipped = 0
      let example: { readonly hash: AssetHash; readonly size: number } | undefined
      hashes.forEach((h, i) => {
        const size = sizes[i] ?? 0
        if (size > s.config.maxAssetBytes) {
          skipped++
          example ??= { hash: h, size }
          return
        }
        if (outstanding.has(h)) return
        pending.push(h)
        sizeOf.set(h, size)
        if (!announcedAt.has(h)) announcedAt.set(h, now)
      })
      return example === undefined ? Effect.void : Effect.all([
        Metrics.recordError("asset_too_large"),
        Effect.logWarning(`not asking for ${skipped} asset(s) larger than the maximum asset size of ${s.config.maxAssetBytes} bytes`, {
          peer: s.peer,
          example: example.hash,
          size: example.size
        })
      ], { discard: true })
    })

  const handle = (input: WantInput): Effect.Effect<void> => {
    switch (input._tag) {
      case "Missing":
        return enqueue(input.hashes, input.sizes).pipe(Effect.andThen(Effect.sync(() => {
          reconcile = "open"
        })))
      case "Offered":
        return enqueue(input.hashes, input.sizes).pipe(Effect.andThen(Effect.sync(() => {
          answersOwed++
        })))
      case "Retry":
        return Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => {
          if (outstanding.has(input.hash)) return
          pending.push(input.hash)
          sizeOf.set(input.hash, input.size)
          if (!announcedAt.has(input.hash)) announcedAt.set(input.hash, now)
        }))
      case "Answered":
        return Effect.suspend(() => {
          const size = sizeOf.get(input.hash) ?? 0
          const announced = announcedAt.get(input.hash)
          outstanding.delete(input.hash)
          // A resumed transfer failed the hash check and its partial is gone: ask again, from byte 0, now.
          if (input.outcome === "restart") {
            pending.push(input.hash)
            return Effect.void
          }
          sizeOf.delete(input.hash)
          // A retry is still the same announcement: its latency counts the retries.
          if (input.outcome === "unavailable") return retryLater(input.hash, size)
          announcedAt.delete(input.hash)
          unavailable.delete(input.hash)
          if (input.outcome === "stored") return announced === undefined ? Effect.void : recordLatency(announced)
          // Tell the peer its content was refused (informational; the session goes on).
          return input.code === undefined
            ? Effect.void
            : Queue.offer(s.outbox, Frame.make("Error", { code: input.code, message: `refused ${input.hash}`, hash: input.hash, fatal: false })).pipe(Effect.asVoid)
        })
    }
  }

  /**
   * Whether `hash` should be asked of this peer now: not if another session is delivering it (then
   * ask ours only if that fails) or the store already holds it (checked after claiming, so an
   * asset stored by another session just now is not fetched again).
   */
  const shouldAsk = (hash: AssetHash, size: number) =>
    Effect.gen(function*() {
      const claim = yield* s.inFlight.claim(hash, s.owner)
      if (claim._tag === "Busy") {
        forget(hash)
        yield* FiberSet.run(waiters, claim.settled.pipe(
          Effect.flatMap((stored) => (stored ? Effect.void : Queue.offer(s.retries, { hash, size }).pipe(Effect.asVoid)))
        ))
        return false
      }
      if (yield* s.store.has(hash)) {
        forget(hash)
        yield* s.inFlight.settle(hash, s.owner, true)
        return false
      }
      return true
    })

  /** How many Want(last) frames are due: one closing the reconcile round, then one per Offer owed. */
  const roundsToClose = () => {
    let markers = 0
    if (reconcile === "open" && pending.size() === 0) {
      reconcile = "closed"
      markers++
    }
    if (reconcile === "closed") {
      markers += answersOwed
      s.windows.peerOffers -= answersOwed // answered by the Want(last) frames about to be queued
      answersOwed = 0
    }
    return markers
  }

  /**
   * Where to ask `hash` from: the end of the partial the store keeps of it, when both sides resume
   * (a partial as long as the asset is asked from its end: the header alone, then the hash check).
   */
  const partial = s.store.partial
  const askFrom = (hash: AssetHash, size: number): Effect.Effect<number> =>
    limits.resume !== true || partial === undefined
      ? Effect.succeed(0)
      : partial(hash, size).pipe(
        Effect.map((held) => (held <= size ? held : 0)),
        Effect.catch((error) =>
          Effect.logWarning(`could not read the partial of ${hash}; asking from byte 0: ${error.message}`).pipe(Effect.as(0))
        )
      )

  /**
   * Hashes are asked for in batches of at least this many (or all that are pending): once the
   * window is full, asking again as each answer frees one slot would send one Want per asset,
   * a message each way for every small asset (10,000 × 1 KiB: 10,000 Wants, now ~20).
   */
  const refillBatch = Math.max(1, Math.floor(s.config.wantWindow / 8))

  /** Request what fits in the window (once a batch fits), then close any rounds that are complete. */
  const flush = Effect.gen(function*() {
    const request: Array<AssetHash> = []
    const offsets: Array<number> = []
    let bytes = 0
    const batchFits = s.config.wantWindow - outstanding.size >= Math.min(refillBatch, pending.size())
    while (batchFits && outstanding.size < s.config.wantWindow && pending.size() > 0) {
      const hash = pending.shift()!
      if (outstanding.has(hash)) continue
      const size = sizeOf.get(hash) ?? 0
      if (!(yield* shouldAsk(hash, size))) continue
      const offset = yield* askFrom(hash, size)
      yield* s.inFlight.askFrom(hash, s.owner, offset)
      outstanding.add(hash)
      request.push(hash)
      offsets.push(offset)
      bytes += size - offset
    }
    let markers = roundsToClose()
    if (request.length === 0 && markers === 0) return
    const chunks = request.length > 0 ? chunksOf(request, limits.digestChunkSize) : []
    let at = 0
    for (let i = 0; i < chunks.length; i++) {
      const last = i === chunks.length - 1 && markers > 0
      if (last) markers--
      const hashes = chunks[i]!
      const from = offsets.slice(at, at + hashes.length)
      at += hashes.length
      // Offsets only when one is not 0: a Want without them means "all from the start", as before resume/1.
      yield* Queue.offer(s.outbox, Frame.make("Want", { hashes, last, offsets: from.some((o) => o > 0) ? from : [] }))
    }
    for (; markers > 0; markers--) yield* Queue.offer(s.outbox, Frame.make("Want", { hashes: [], last: true }))
    if (request.length > 0) yield* bump(s.stats, { hashesWanted: request.length, bytesWanted: bytes })
  })

  return yield* Stream.merge(
    Stream.fromQueue(s.wantInbox),
    Stream.fromQueue(s.retries).pipe(Stream.map((r): WantInput => ({ _tag: "Retry", ...r })))
  ).pipe(
    Stream.runForEachArray((batch) =>
      Effect.forEach(batch, handle, { discard: true }).pipe(Effect.andThen(flush))
    )
  )
})
