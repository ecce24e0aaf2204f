/**
 * PeerActor: one sync session with one connected peer, as one scoped fiber tree — reader
 * (FrameRouter), writer, controller (handshake → reconcile → live), fetcher, sender, receiver and live pusher —
 * joined by the bounded Queues of an ActorWiring. The first child to fail fails the actor; closing
 * its scope interrupts every child and closes the link. `run` never succeeds: it ends when the
 * link closes or an error ends the session, and the PeerManager decides what happens next.
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberSet from "effect/FiberSet"
import * as Metric from "effect/Metric"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import type { Scope } from "effect"
import type { CanStoreShape } from "./CanStore.ts"
import type { EngineConfig } from "./EngineConfig.ts"
import * as Fetcher from "./Fetcher.ts"
import * as Frame from "./Frame.ts"
import * as FrameRouter from "./FrameRouter.ts"
import * as Handshake from "./Handshake.ts"
import * as InFlight from "./InFlight.ts"
import * as LivePusher from "./LivePusher.ts"
import * as Metrics from "./Metrics.ts"
import type { PeerLink, Role } from "./PeerLink.ts"
import * as Receiver from "./Receiver.ts"
import * as Reconcile from "./Reconcile.ts"
import * as Sender from "./Sender.ts"
import * as ActorWiring from "./ActorWiring.ts"
import type { PeerStats, SessionState } from "./ActorWiring.ts"
import type { SessionError } from "./SyncErrors.ts"
import { describe, fatalCode } from "./SyncErrors.ts"

export interface RunOptions {
  readonly config: EngineConfig
  readonly store: CanStoreShape
  readonly role?: Role | undefined
  /** Shared by all sessions of one store (PeerManager passes its own); a private one otherwise. */
  readonly inFlight?: InFlight.InFlight | undefined
  /** Counters to add this session's to (kept across restarts by the PeerManager). */
  readonly stats?: Ref.Ref<PeerStats> | undefined
  /** Where the session reports its phase. */
  readonly state?: Ref.Ref<SessionState> | undefined
}

/** writer: outbox → encode → link, suspending while the link's buffer is full. */
const writer = (s: ActorWiring.ActorWiring, link: PeerLink) =>
  Stream.fromQueue(s.outbox).pipe(
    Stream.runForEach((frame) => link.send(Frame.encodeParts(frame))),
    Effect.withSpan("PeerActor.writer")
  )

/** controller: handshake, then reconcile (children started as needed), then live pushing. */
const controller = (s: ActorWiring.ActorWiring, fibers: FiberSet.FiberSet<unknown, SessionError>) =>
  Effect.gen(function*() {
    yield* Ref.set(s.state, "handshake")
    const limits = yield* Handshake.check(s.config, s.peer, yield* Deferred.await(s.hello), Handshake.features(s.store))
    yield* Ref.set(s.state, "reconciling")
    // Noted before listing: the pusher reads events from here, so nothing after the listing is missed.
    const since = yield* s.store.currentSeq
    yield* FiberSet.run(fibers, Receiver.run(s))
    yield* FiberSet.run(fibers, Receiver.repairer(s, limits))
    yield* FiberSet.run(fibers, Sender.run(s, limits))
    yield* FiberSet.run(fibers, Sender.checker(s))
    yield* FiberSet.run(fibers, Fetcher.run(s, limits))
    const peerHas = yield* reconcilePhase(s, limits)
    yield* Ref.set(s.state, "live")
    yield* Effect.acquireRelease(Metric.modify(Metrics.peersConnected, 1), () => Metric.modify(Metrics.peersConnected, -1))
    return yield* LivePusher.run(s, limits, since, peerHas)
  })

/** From the first digest to both Done frames: one span with the digest counts and wants each way. */
const reconcilePhase = Effect.fn("PeerActor.reconcile")(function*(s: ActorWiring.ActorWiring, limits: ActorWiring.Limits) {
  const started = yield* Clock.currentTimeMillis
  const before = yield* Ref.get(s.stats) // counters are cumulative across restarts
  const { peerHas, summary } = yield* Reconcile.run(s, limits)
  yield* Deferred.await(s.sentDone)
  const peerDone = yield* Deferred.await(s.peerDone)
  const seconds = ((yield* Clock.currentTimeMillis) - started) / 1000
  yield* Metric.update(Metrics.reconcileDuration, seconds)
  const stats = yield* Ref.get(s.stats)
  yield* ActorWiring.bump(s.stats, { reconciles: 1 })
  yield* Effect.annotateCurrentSpan({
    peer: s.peer,
    localDigests: summary.localDigests,
    remoteDigests: summary.remoteDigests,
    wantsSent: summary.wanted,
    wantsReceived: stats.hashesWantedByPeer - before.hashesWantedByPeer,
    assetsReceivedFromPeer: peerDone.assetsSent,
    seconds
  })
  return peerHas
})

/** Tell the peer why we are ending the session (best effort, bounded in time). */
const reportFatal = (link: PeerLink, error: SessionError) => {
  const code = fatalCode(error)
  if (code === undefined) return Effect.void
  const frame = Frame.make("Error", { code, message: describe(error), hash: "", fatal: true })
  return link.send(Frame.encode(frame)).pipe(Effect.timeout("1 second"), Effect.ignore)
}

const session = (s: ActorWiring.ActorWiring, link: PeerLink): Effect.Effect<never, SessionError, Scope.Scope> =>
  Effect.gen(function*() {
    // Hello goes out first and directly, so it precedes anything else — even a fatal Error.
    yield* link.send(Frame.encode(Handshake.hello(s.config, undefined, Handshake.features(s.store))))
    const fibers = yield* FiberSet.make<unknown, SessionError>()
    yield* FiberSet.run(fibers, writer(s, link))
    yield* FiberSet.run(fibers, FrameRouter.run(s, link))
    yield* FiberSet.run(fibers, controller(s, fibers))
    yield* FiberSet.join(fibers)
    return yield* Effect.never
  })

/**
 * Run one session over `link` until it ends. Closing the surrounding scope (or interrupting)
 * stops every child and closes the link; a failure is reported to the peer when it can act on it.
 */
export const run = Effect.fn("PeerActor.session")(function*(link: PeerLink, options: RunOptions) {
  const peer = link.remotePeer
  const role = options.role ?? "dialer"
  yield* Effect.annotateCurrentSpan({ peer, role, localPeer: options.config.localPeerId })
  const inFlight = options.inFlight ?? (yield* InFlight.make)
  const owner = yield* InFlight.newOwner(peer)
  const stats = options.stats ?? (yield* Ref.make(ActorWiring.emptyStats))
  const state = options.state ?? (yield* Ref.make<SessionState>("connecting"))
  yield* ActorWiring.bump(stats, { sessions: 1 })
  const s = yield* ActorWiring.make({ peer, role, owner, config: options.config, store: options.store, inFlight, stats, state })
  return yield* Effect.scoped(session(s, link)).pipe(
    Effect.tapError((error) => reportFatal(link, error)),
    Effect.tapError((error) =>
      Effect.all([
        Effect.annotateCurrentSpan({ outcome: error._tag }),
        // A closed link is how sessions normally end (the transport counts its own link failures).
        error._tag === "LinkClosed" ? Effect.void : Metrics.recordError(error._tag),
        Effect.logInfo("session ended", { peer, role, reason: describe(error) })
      ], { discard: true })
    ),
    Effect.onInterrupt(() => Effect.annotateCurrentSpan({ outcome: "interrupted" })),
    Effect.ensuring(Effect.all([link.close, inFlight.releaseAll(owner)], { discard: true }))
  )
})
