/**
 * Reconcile: the digest exchange at the start of every session. Two fibers run at once — one
 * pages the local store's digests out as bounded DigestChunk frames, one collects the peer's —
 * so neither side waits for the other to finish talking. Then `diff` says what this side lacks
 * (handed to the fetcher as its first want list) and which shared assets carry newer metadata
 * here (sent as MetaUpdate). Memory is one small version record per digest, never content.
 * When both Hellos announce "ranges/1", range reconciliation (RangeReconcile over RangeRound
 * frames) finds the same two lists at a cost that follows the difference instead.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type { AssetHash } from "./Domain.ts"
import { compareMetaVersion } from "./Domain.ts"
import * as Frame from "./Frame.ts"
import type { Limits, ActorWiring } from "./ActorWiring.ts"
import { bump, sendMetaUpdate } from "./ActorWiring.ts"
import type { StoreError } from "./CanStore.ts"
import type { RangeSource } from "./RangeSource.ts"
import * as RangeFrames from "./RangeFrames.ts"
import * as RangeReconcile from "./RangeReconcile.ts"
import { ProtocolViolation } from "./SyncErrors.ts"
import { asHash, chunksOf, toWireDigest } from "./ProtoDomain.ts"

/** A digest's metadata version: what last-writer-wins compares. */
export interface Version {
  readonly updatedAt: number
  readonly origin: string
}

/** hash → version (and content size); a Map keeps the order digests were listed in. */
export type DigestIndex = Map<AssetHash, Version & { readonly size: number }>

export interface Diff {
  /** Hashes the peer has and this side lacks, in the peer's order. */
  readonly missing: Array<AssetHash>
  /** Hashes both have, whose metadata is newer on this side. */
  readonly newerHere: Array<AssetHash>
}

/** What each side lacks and where metadata is newer: linear in the two set sizes. */
export const diff = (local: ReadonlyMap<AssetHash, Version>, remote: ReadonlyMap<AssetHash, Version>): Diff => {
  const missing: Array<AssetHash> = []
  const newerHere: Array<AssetHash> = []
  for (const [hash, theirs] of remote) {
    const ours = local.get(hash)
    if (ours === undefined) missing.push(hash)
    else if (compareMetaVersion(ours, theirs) > 0) newerHere.push(hash)
  }
  return { missing, newerHere }
}

export interface ReconcileSummary {
  readonly localDigests: number
  readonly remoteDigests: number
  readonly wanted: number
  readonly metaSent: number
}

/** Page the local digests out to the peer; returns the local index. */
export const announce = Effect.fn("Reconcile.announce")(function*(s: ActorWiring, limits: Limits) {
  const local: DigestIndex = new Map()
  let since = 0
  while (true) {
    const page = yield* s.store.list({ since, limit: limits.digestChunkSize })
    for (const d of page.digests) local.set(d.hash, { updatedAt: d.updatedAt, origin: d.metaOrigin, size: d.size })
    const last = page.done || page.digests.length === 0 || page.next <= since
    // A store may return more than asked: frames never carry more than the protocol allows.
    const chunks = chunksOf(page.digests, limits.digestChunkSize)
    for (let i = 0; i < chunks.length; i++) {
      yield* Queue.offer(s.outbox, Frame.make("DigestChunk", { digests: chunks[i]!.map(toWireDigest), last: last && i === chunks.length - 1 }))
    }
    if (last) return local
    since = page.next
  }
})

/** Collect the peer's digest chunks up to the one marked last; returns the remote index. */
export const collect = Effect.fn("Reconcile.collect")(function*(s: ActorWiring) {
  const remote: DigestIndex = new Map()
  while (true) {
    const chunk = yield* Queue.take(s.digests)
    for (const d of chunk.digests) {
      const hash = asHash(d.hash)
      if (hash === undefined) {
        return yield* new ProtocolViolation({ peer: s.peer, frame: "DigestChunk", detail: `malformed hash ${JSON.stringify(d.hash)}` })
      }
      remote.set(hash, { updatedAt: d.updatedAt, origin: d.metaOrigin, size: d.size })
    }
    if (remote.size > s.config.maxRemoteDigests) {
      return yield* new ProtocolViolation({ peer: s.peer, frame: "DigestChunk", detail: `more than ${s.config.maxRemoteDigests} digests` })
    }
    if (chunk.last) return remote
  }
})

/** Hand what this side lacks to the fetcher and send the metadata that is newer here. */
const act = Effect.fnUntraced(function*(
  s: ActorWiring,
  limits: Limits,
  missing: ReadonlyArray<AssetHash>,
  sizes: ReadonlyArray<number>,
  newerHere: ReadonlyArray<AssetHash>
) {
  yield* Queue.offer(s.wantInbox, { _tag: "Missing", hashes: missing, sizes })
  let metaSent = 0
  for (const hash of newerHere) {
    const record = yield* s.store.stat(hash)
    if (Option.isSome(record) && (yield* sendMetaUpdate(s, limits, hash, record.value.meta))) metaSent++
  }
  yield* bump(s.stats, { metaSent })
  return metaSent
})

/**
 * Range reconciliation: the side with the lower peer id starts; messages alternate as RangeRound
 * frames until both know the difference. A peer breaking the range protocol is a ProtocolViolation.
 */
export const byRanges = Effect.fn("Reconcile.byRanges")(function*(s: ActorWiring, limits: Limits, source: RangeSource<StoreError>) {
  const role = s.config.localPeerId < s.peer ? "initiator" : "responder"
  const [total] = yield* source.fingerprints([""])
  const outcome = yield* RangeFrames.driveFrames(RangeReconcile.make(source), role, limits.peerMaxFrameBytes, {
    send: (round) => Queue.offer(s.outbox, Frame.make("RangeRound", round)),
    take: Queue.take(s.rangeRounds)
  }).pipe(
    Effect.catchTag("RangeViolation", (e) => Effect.fail(new ProtocolViolation({ peer: s.peer, frame: "RangeRound", detail: e.detail })))
  )
  s.windows.rangesDone = true
  const { missing, newerHere } = RangeReconcile.toDiff(outcome)
  const metaSent = yield* act(s, limits, missing.map((m) => m.hash), missing.map((m) => m.size), newerHere)
  const localDigests = total?.count ?? 0
  const summary: ReconcileSummary = {
    localDigests,
    remoteDigests: localDigests - outcome.theyLack.length + outcome.weLack.length,
    wanted: missing.length,
    metaSent
  }
  yield* Effect.annotateCurrentSpan({ ...summary, role, byRanges: true })
  // What the exchange showed the peer holds: its items that differ from ours.
  return { summary, peerHas: [...missing.map((m) => m.hash), ...newerHere] }
})

/**
 * Exchange digests, then hand what this side lacks to the fetcher and send the metadata that
 * is newer here. The assets themselves flow afterwards, through the fetcher and the sender.
 */
export const run = Effect.fn("Reconcile")(function*(s: ActorWiring, limits: Limits) {
  if (limits.ranges && s.store.ranges !== undefined) return yield* byRanges(s, limits, s.store.ranges)
  const [local, remote] = yield* Effect.all([announce(s, limits), collect(s)], { concurrency: 2 })
  const { missing, newerHere } = diff(local, remote)
  const metaSent = yield* act(s, limits, missing, missing.map((h) => remote.get(h)?.size ?? 0), newerHere)
  const summary: ReconcileSummary = { localDigests: local.size, remoteDigests: remote.size, wanted: missing.length, metaSent }
  yield* Effect.annotateCurrentSpan({ ...summary })
  return { summary, peerHas: [...remote.keys()] }
})
