/**
 * LivePusher: after reconcile, pushes this store's changes to one peer as they happen — Offer (plus
 * metadata) for new assets, MetaUpdate for edits — from `store.events({ since })` (the seq noted
 * before listing, so nothing is missed), with a fallback poll every `pollInterval` for dropped
 * events. Never pushes a change whose origin is this peer, nor a hash received from it.
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import type { AssetHash, AssetRecord, StoreEvent } from "./Domain.ts"
import * as EchoFilter from "./EchoFilter.ts"
import * as Frame from "./Frame.ts"
import * as Metrics from "./Metrics.ts"
import type * as Proto from "./proto/sync.ts"
import type { Limits, ActorWiring } from "./ActorWiring.ts"
import { bump, sendMetaUpdate } from "./ActorWiring.ts"
import { chunksOf } from "./ProtoDomain.ts"

const digestOf = (r: AssetRecord): Proto.AssetDigest => ({
  hash: r.hash,
  size: r.size,
  createdAt: r.meta.createdAt,
  updatedAt: r.meta.updatedAt,
  metaOrigin: r.meta.origin
})

type Item = { readonly _tag: "Event"; readonly event: StoreEvent } | { readonly _tag: "Poll" }

export const run = Effect.fn("LivePusher")(function*(
  s: ActorWiring,
  limits: Limits,
  since: number,
  /** What the peer listed during reconcile: it has these, so a later edit needs no Offer. */
  listedByPeer: ReadonlyArray<AssetHash> = []
) {
  yield* Effect.annotateCurrentSpan({ peer: s.peer, since })
  /** Hashes the peer is known to have: listed or received from it, or already offered to it. */
  const peerHas = EchoFilter.make(s.config.echoCapacity)
  for (const hash of listedByPeer) peerHas.add(hash)
  /** Hashes received from this peer (the echo Queue): pushing one back would be an echo. */
  const fromPeer = EchoFilter.make(s.config.echoCapacity)
  let pollCursor = since

  const suppressed = (n: number) =>
    n === 0
      ? Effect.void
      : Effect.all([
        Metric.update(Metric.withAttributes(Metrics.echoesSuppressed, { peer: s.peer }), n),
        bump(s.stats, { echoesSuppressed: n })
      ], { discard: true })

  /**
   * Offer assets in frames of at most digestChunkSize, each within the peer's offer window, each
   * followed by the assets' metadata: a peer that already has an asset (ingested independently)
   * declines the content but still needs the newer metadata version, if this one is newer.
   */
  const offer = (records: ReadonlyArray<AssetRecord>) =>
    Effect.forEach(records.length === 0 ? [] : chunksOf(records, limits.digestChunkSize), (chunk) =>
      Effect.gen(function*() {
        yield* Semaphore.take(s.offerWindow, 1) // given back when the peer's answering Want arrives
        s.windows.ourOffers++ // before the Offer is queued, so its answer always finds it counted
        yield* Queue.offer(s.outbox, Frame.make("Offer", { digests: chunk.map(digestOf) }))
        let metaSent = 0
        for (const r of chunk) {
          peerHas.add(r.hash)
          if (yield* sendMetaUpdate(s, limits, r.hash, r.meta)) metaSent++
        }
        yield* bump(s.stats, { digestsOffered: chunk.length, metaSent })
      }), { discard: true })

  const records = (hashes: ReadonlyArray<AssetHash>) =>
    Effect.forEach(hashes, (hash) => s.store.stat(hash)).pipe(
      Effect.map((xs) => xs.flatMap((x) => (Option.isSome(x) ? [x.value] : [])))
    )

  const sendMeta = (hashes: ReadonlyArray<AssetHash>) =>
    records(hashes).pipe(Effect.flatMap((rs) =>
      Effect.forEach(rs, (r) => sendMetaUpdate(s, limits, r.hash, r.meta)).pipe(
        Effect.flatMap((sent) => bump(s.stats, { metaSent: sent.filter(Boolean).length }))
      )
    ))

  /** The fallback: everything changed since the last poll that the peer is not known to have. */
  const poll = Effect.gen(function*() {
    const fresh: Array<AssetHash> = []
    const edited: Array<AssetHash> = []
    while (true) {
      const page = yield* s.store.list({ since: pollCursor, limit: limits.digestChunkSize })
      for (const d of page.digests) {
        if (!peerHas.has(d.hash)) fresh.push(d.hash)
        else if (d.updatedAt !== d.createdAt) edited.push(d.hash) // an edit whose event may have been missed
      }
      const advanced = page.next > pollCursor
      pollCursor = Math.max(pollCursor, page.next)
      if (page.done || !advanced) break
    }
    yield* Effect.annotateCurrentSpan({ fresh: fresh.length, edited: edited.length })
    yield* offer(yield* records(fresh))
    yield* sendMeta(edited)
  }).pipe(Effect.withSpan("LivePusher.poll"))

  /**
   * Where one store event goes: nowhere (an echo of the peer's own change), into an Offer (an
   * asset the peer lacks), or into a MetaUpdate (the peer has the content, maybe not this version).
   */
  const route = (event: StoreEvent): "echo" | "echo-and-meta" | "offer" | "meta" => {
    if (event._tag === "MetaChanged") return event.origin === s.peer ? "echo" : "meta"
    const known = peerHas.has(event.hash)
    peerHas.add(event.hash)
    if (event.origin === s.peer) return "echo"
    // Added here too (e.g. ingested locally while it arrived from this peer): the peer has the
    // content, but this side's metadata may be the newer version.
    if (fromPeer.has(event.hash)) return "echo-and-meta"
    // The peer has the content (it listed it, or another path brought it) but maybe not this
    // metadata version, which arrived with the asset: send it (LWW makes it idempotent).
    return known ? "meta" : "offer"
  }

  const handle = (items: ReadonlyArray<Item>) =>
    Effect.gen(function*() {
      // Hashes the receiver got from this peer since the last batch: the peer has them.
      for (const hash of yield* Queue.clear(s.echo)) {
        fromPeer.add(hash)
        peerHas.add(hash)
      }
      const added: Array<AssetHash> = []
      const metas: Array<AssetHash> = []
      let echoes = 0
      const flush = Effect.gen(function*() {
        yield* offer(yield* records(added.splice(0)))
        const hashes = [...new Set(metas.splice(0))]
        if (hashes.length > 0) yield* sendMeta(hashes)
      })
      for (const item of items) {
        if (item._tag === "Poll") {
          yield* flush
          yield* poll
          continue
        }
        const hash = item.event.hash
        switch (route(item.event)) {
          case "echo":
            echoes++
            break
          case "echo-and-meta":
            echoes++
            metas.push(hash)
            break
          case "offer":
            added.push(hash)
            break
          case "meta":
            metas.push(hash)
            break
        }
      }
      yield* flush
      yield* suppressed(echoes)
    })

  const events = s.store.events({ since }).pipe(Stream.map((event): Item => ({ _tag: "Event", event })))
  const polls = Stream.tick(s.config.pollInterval).pipe(Stream.drop(1), Stream.as<Item>({ _tag: "Poll" }))
  return yield* Stream.merge(events, polls).pipe(Stream.runForEachArray(handle))
})
