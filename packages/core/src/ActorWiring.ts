/**
 * ActorWiring: the wiring of one PeerActor — the bounded Queues and one-shot signals between its
 * children (reader, writer, reconciler, fetcher, sender, receiver, pusher), the peer's
 * counters, and what was negotiated in the handshake. Children receive an ActorWiring and talk only
 * through it; docs/architecture.md draws the graph and says why each Queue cannot deadlock.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Semaphore from "effect/Semaphore"
import type { CanStoreShape } from "./CanStore.ts"
import type { AssetHash, AssetMeta, MetadataInvalid, PeerId } from "./Domain.ts"
import type { EngineConfig } from "./EngineConfig.ts"
import { MAX_OUTSTANDING_WANTS, MAX_UNANSWERED_OFFERS } from "./EngineConfig.ts"
import type { Frame, FrameOf } from "./Frame.ts"
import { make as makeFrame } from "./Frame.ts"
import type { InFlight, Owner } from "./InFlight.ts"
import * as Metrics from "./Metrics.ts"
import type { Role } from "./PeerLink.ts"
import type * as Proto from "./proto/sync.ts"
import type { ErrorCode } from "./proto/sync.ts"
import { toOutgoingMeta } from "./ProtoDomain.ts"

export type SessionState = "connecting" | "handshake" | "reconciling" | "live" | "backoff"

/** Counters of one peer, kept across restarts of its actor (tests and `sessions` read them). */
export interface PeerStats {
  readonly sessions: number
  readonly reconciles: number
  readonly assetsSent: number
  readonly bytesSent: number
  readonly assetsReceived: number
  readonly bytesReceived: number
  /** Assets received that the store already had when the transfer ended (0 unless racing a local ingest). */
  readonly redundantReceives: number
  readonly verificationFailures: number
  /** Store events not pushed because they came from this very peer. */
  readonly echoesSuppressed: number
  readonly digestsOffered: number
  readonly hashesWanted: number
  /** Content bytes of the assets asked for (as the peer announced their sizes): progress = bytesReceived / bytesWanted. */
  readonly bytesWanted: number
  readonly hashesWantedByPeer: number
  readonly metaSent: number
  readonly metaApplied: number
  /** Content bytes of AssetChunk frames taken in, counted per chunk as they arrive (whole assets or not): Status's progress. */
  readonly chunkBytesReceived: number
  /** Content bytes of AssetChunk frames queued for the peer, counted per chunk (the outbox is bounded, so a few ahead of the wire). */
  readonly chunkBytesSent: number
}

export const emptyStats: PeerStats = {
  sessions: 0,
  reconciles: 0,
  assetsSent: 0,
  bytesSent: 0,
  assetsReceived: 0,
  bytesReceived: 0,
  redundantReceives: 0,
  verificationFailures: 0,
  echoesSuppressed: 0,
  digestsOffered: 0,
  hashesWanted: 0,
  bytesWanted: 0,
  hashesWantedByPeer: 0,
  metaSent: 0,
  metaApplied: 0,
  chunkBytesReceived: 0,
  chunkBytesSent: 0
}

export const bump = (stats: Ref.Ref<PeerStats>, delta: Partial<PeerStats>): Effect.Effect<void> =>
  Ref.update(stats, (s) => {
    const next: Record<string, number> = { ...s }
    for (const [k, v] of Object.entries(delta)) next[k] = (next[k] ?? 0) + (v ?? 0)
    return next as unknown as PeerStats
  })

/**
 * One AssetChunk moved: the receiver calls it for each chunk it takes in, the sender for each it
 * queues. Progress (Status.ts) counts bytes per chunk this way, so a large asset shows its rate and
 * ETA while it crosses, not only when it completes.
 */
export const chunkMoved = (stats: Ref.Ref<PeerStats>, direction: "received" | "sent", bytes: number): Effect.Effect<void> =>
  Ref.update(stats, (s) =>
    direction === "received"
      ? { ...s, chunkBytesReceived: s.chunkBytesReceived + bytes }
      : { ...s, chunkBytesSent: s.chunkBytesSent + bytes })

/**
 * Metadata skipped because it is outside MetadataLimits (or, going out, the peer's frame limit):
 * logged and counted (`cansync.errors{kind=metadata_refused | metadata_unsent}`); only that asset
 * or edit is skipped, the session goes on.
 */
export const metaSkipped = (peer: string, hash: string, direction: "received" | "sent", error: MetadataInvalid): Effect.Effect<void> =>
  Effect.all([
    Metrics.recordError(direction === "received" ? "metadata_refused" : "metadata_unsent"),
    Effect.logWarning(direction === "received" ? "refused a peer's metadata" : "did not send metadata", {
      peer,
      hash,
      reason: error.message
    })
  ], { discard: true })

/** Queue a MetaUpdate with our metadata of `hash`, unless it cannot go out (then skipped); true when queued. */
export const sendMetaUpdate = (s: ActorWiring, limits: Limits, hash: AssetHash, meta: AssetMeta): Effect.Effect<boolean> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => {
    const wire = toOutgoingMeta(meta, limits.peerMaxFrameBytes, now)
    return wire._tag === "Failure"
      ? metaSkipped(s.peer, hash, "sent", wire.failure).pipe(Effect.as(false))
      : Queue.offer(s.outbox, makeFrame("MetaUpdate", { hash, meta: wire.success })).pipe(Effect.as(true))
  })

/** What the handshake settled: sizes that fit both sides' frame limits. */
export interface Limits {
  readonly chunkBytes: number
  /** The largest frame the peer accepts (its Hello): nothing larger is ever sent to it. */
  readonly peerMaxFrameBytes: number
  readonly digestChunkSize: number
  readonly peerAgent: string
  /** Both Hellos announce "ranges/1": reconcile by ranges (RangeRound frames), not DigestChunks. */
  readonly ranges: boolean
  /** Both Hellos announce "resume/1": Wants may carry offsets, AssetHeaders say where content starts. */
  readonly resume?: boolean | undefined
}

/** Frames the reader hands to the receiver, in link order. */
export type InboundFrame =
  | FrameOf<"AssetHeader">
  | FrameOf<"AssetChunk">
  | FrameOf<"AssetEnd">
  | FrameOf<"MetaUpdate">
  | FrameOf<"Error">

/** Work for the sender: one wanted asset, or the end of the peer's reconcile wants. */
export type SendJob =
  /** `offset` (resume/1): the first content byte the peer asks for; 0 or absent: from the start. */
  | { readonly _tag: "Asset"; readonly hash: AssetHash; readonly offset?: number | undefined }
  | { readonly _tag: "ReconcileWantsEnd" }

/**
 * How a wanted asset's transfer ended: stored, refused by our store (hash, size), not held by the
 * peer, or held but not readable right now (the peer's store failed; worth asking again later), or
 * resumed and failed the hash check ("restart": the partial is gone, ask again from byte 0).
 */
export type Outcome = "stored" | "refused" | "not-found" | "unavailable" | "restart"

/** Input of the fetcher (the side that asks the peer for what we lack). */
export type WantInput =
  | { readonly _tag: "Missing"; readonly hashes: ReadonlyArray<AssetHash>; readonly sizes: ReadonlyArray<number> }
  | { readonly _tag: "Offered"; readonly hashes: ReadonlyArray<AssetHash>; readonly sizes: ReadonlyArray<number> }
  | { readonly _tag: "Answered"; readonly hash: AssetHash; readonly outcome: Outcome; readonly code?: ErrorCode | undefined }
  | { readonly _tag: "Retry"; readonly hash: AssetHash; readonly size: number }

export interface ActorWiring {
  readonly peer: PeerId
  readonly role: Role
  readonly owner: Owner
  readonly config: EngineConfig
  readonly store: CanStoreShape
  readonly inFlight: InFlight
  /** Every frame this side sends, drained by the writer into the link. */
  readonly outbox: Queue.Queue<Frame>
  /** reader → receiver: asset frames, metadata and non-fatal errors, in order. */
  readonly inbound: Queue.Queue<InboundFrame>
  /** reader → reconciler: the peer's digest chunks. */
  readonly digests: Queue.Queue<Proto.DigestChunk>
  /** reader → reconciler: the peer's range reconciliation frames. */
  readonly rangeRounds: Queue.Queue<Proto.RangeRound>
  /** reader → sender: hashes the peer wants. Sized by MAX_OUTSTANDING_WANTS; never blocks the reader. */
  readonly sendQueue: Queue.Queue<SendJob>
  /** reader, receiver, reconciler → fetcher. Sized by the protocol windows; never blocks the reader. */
  readonly wantInbox: Queue.Queue<WantInput>
  /** fetcher's own deferred retries (assets another session failed to deliver). */
  readonly retries: Queue.Queue<{ readonly hash: AssetHash; readonly size: number }>
  /** receiver → pusher: hashes received from this peer, never to be pushed back (sliding). */
  readonly echo: Queue.Queue<AssetHash>
  /** receiver → repairer: assets whose metadata the peer just showed to be older than ours (dropping). */
  readonly repairs: Queue.Queue<AssetHash>
  /** receiver → sender's checker: assets we sent that the peer refused as not hashing to their name (dropping). */
  readonly refused: Queue.Queue<AssetHash>
  /** The protocol's windows, counted exactly (see Windows). */
  readonly windows: Windows
  /** Permits for Offers not yet answered; the pusher takes one per Offer, the reader gives it back. */
  readonly offerWindow: Semaphore.Semaphore
  readonly hello: Deferred.Deferred<Proto.Hello>
  readonly peerDone: Deferred.Deferred<Proto.Done>
  readonly sentDone: Deferred.Deferred<void>
  readonly stats: Ref.Ref<PeerStats>
  readonly state: Ref.Ref<SessionState>
}

/**
 * Outstanding messages each way, so that a peer overrunning a window or answering what was never
 * asked is caught at once. Plain counters: each changes in one synchronous step of the fiber named.
 */
export interface Windows {
  /** Our Offers the peer has not answered (pusher +1 before queueing it; reader −1 on its Want(last)). */
  ourOffers: number
  /** The peer's Offers not answered yet (reader +1; fetcher −1 per answering Want(last)). */
  peerOffers: number
  /**
   * Hashes the peer wants and has not seen answered (reader adds each new one; a hash already
   * here is not queued again; the sender removes it just before the frame that answers it — the
   * AssetEnd or an Error naming it — so the peer can never want it again before it is removed).
   */
  readonly peerWants: Set<AssetHash>
  /** The range reconciliation is over (reconciler sets it): a RangeRound after it breaks the protocol. */
  rangesDone: boolean
}

/** What a session is made from; `make` adds its queues and signals. */
export type WiringInput = Pick<ActorWiring, "peer" | "role" | "owner" | "config" | "store" | "inFlight" | "stats" | "state">

export const make = (input: WiringInput): Effect.Effect<ActorWiring> =>
  Effect.gen(function*() {
    const { config } = input
    return {
      ...input,
      outbox: yield* Queue.bounded<Frame>(config.outboxCapacity),
      inbound: yield* Queue.bounded<InboundFrame>(config.inboundCapacity),
      digests: yield* Queue.bounded<Proto.DigestChunk>(4),
      rangeRounds: yield* Queue.bounded<Proto.RangeRound>(4),
      sendQueue: yield* Queue.bounded<SendJob>(MAX_OUTSTANDING_WANTS + 2),
      wantInbox: yield* Queue.bounded<WantInput>(config.wantWindow + MAX_UNANSWERED_OFFERS + 4),
      retries: yield* Queue.bounded<{ readonly hash: AssetHash; readonly size: number }>(256),
      echo: yield* Queue.sliding<AssetHash>(Math.max(1024, Math.min(config.echoCapacity, 16_384))),
      repairs: yield* Queue.dropping<AssetHash>(4096),
      refused: yield* Queue.dropping<AssetHash>(64),
      windows: { ourOffers: 0, peerOffers: 0, peerWants: new Set(), rangesDone: false },
      offerWindow: yield* Semaphore.make(config.offerWindow),
      hello: yield* Deferred.make<Proto.Hello>(),
      peerDone: yield* Deferred.make<Proto.Done>(),
      sentDone: yield* Deferred.make<void>()
    }
  })
