/**
 * PeerManager: one PeerActor per peer (a FiberMap keyed by peer id) over one local store. `dial`
 * keeps a session alive, restarting it with jittered exponential backoff (reset once live);
 * `accept` runs an inbound one; a second session with the same peer is refused. All sessions share
 * one InFlight registry. Closing the manager's scope stops every session and closes every link.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type { Scope } from "effect"
import { CanStore } from "./CanStore.ts"
import type { CanStoreShape } from "./CanStore.ts"
import type { PeerId } from "./Domain.ts"
import type { EngineConfig } from "./EngineConfig.ts"
import * as InFlight from "./InFlight.ts"
import * as PeerActor from "./PeerActor.ts"
import type { PeerLink } from "./PeerLink.ts"
import type { PeerStats, Role, SessionState } from "./ActorWiring.ts"
import { emptyStats } from "./ActorWiring.ts"
import { describe, DuplicatePeer, PeerMismatch } from "./SyncErrors.ts"
import type { SessionError } from "./SyncErrors.ts"

export interface SessionInfo {
  readonly peer: PeerId
  readonly role: Role
  readonly state: SessionState
  /** Sessions that ended and were (or are about to be) started again. */
  readonly restarts: number
  readonly lastError: string | undefined
  readonly stats: PeerStats
}

export interface PeerManagerShape {
  readonly localPeerId: PeerId
  /**
   * Keep a session with `peer` alive: connect, run, and after any failure wait (backoff) and
   * connect again, until `disconnect` or shutdown. Fails with DuplicatePeer if `peer` has a session.
   */
  readonly dial: <E>(peer: PeerId, connect: Effect.Effect<PeerLink, E, Scope.Scope>) => Effect.Effect<void, DuplicatePeer>
  /** Run an inbound session on `link`; if its peer already has one, close the link and fail. */
  readonly accept: (link: PeerLink, role?: Role) => Effect.Effect<void, DuplicatePeer>
  /** Stop the session with `peer` (and its restarts); its link is closed. */
  readonly disconnect: (peer: PeerId) => Effect.Effect<void>
  /** Every peer with a session (running, connecting or backing off). */
  readonly sessions: Effect.Effect<ReadonlyArray<SessionInfo>>
  /** Counters of a peer over all its sessions so far (zero if never seen). */
  readonly stats: (peer: PeerId) => Effect.Effect<PeerStats>
}

interface Entry {
  readonly role: Role
  readonly state: Ref.Ref<SessionState>
  restarts: number
  lastError: string | undefined
}

export const make = Effect.fn("PeerManager.make")(function*(config: EngineConfig, store: CanStoreShape) {
  const fibers = yield* FiberMap.make<PeerId>()
  const inFlight = yield* InFlight.make
  // Mutated only in Effect.sync blocks: check-and-insert is atomic, so two sessions never race in.
  const entries = new Map<PeerId, Entry>()
  const statsByPeer = new Map<PeerId, Ref.Ref<PeerStats>>()

  const statsRef = (peer: PeerId) =>
    Effect.sync(() => {
      const existing = statsByPeer.get(peer)
      if (existing !== undefined) return existing
      const created = Ref.makeUnsafe(emptyStats)
      statsByPeer.set(peer, created)
      return created
    })

  const register = (peer: PeerId, role: Role) =>
    Effect.suspend(() => {
      if (entries.has(peer)) return Effect.fail(new DuplicatePeer({ peer }))
      const entry: Entry = { role, state: Ref.makeUnsafe<SessionState>("connecting"), restarts: 0, lastError: undefined }
      entries.set(peer, entry)
      return Effect.succeed(entry)
    })

  const unregister = (peer: PeerId, entry: Entry) =>
    Effect.sync(() => {
      if (entries.get(peer) === entry) entries.delete(peer)
    })

  const runSession = (link: PeerLink, role: Role, entry: Entry) =>
    Effect.gen(function*() {
      const stats = yield* statsRef(link.remotePeer)
      return yield* PeerActor.run(link, { config, store, role, inFlight, stats, state: entry.state })
    })

  const recordEnd = (entry: Entry, cause: Cause.Cause<unknown>) =>
    Effect.sync(() => {
      const error = Cause.findErrorOption(cause)
      entry.lastError = error._tag === "Some" ? describeUnknown(error.value) : Cause.pretty(cause)
    })

  /** One dialed session after another, with backoff between them (reset after a live session). */
  const supervise = <E>(peer: PeerId, connect: Effect.Effect<PeerLink, E, Scope.Scope>, entry: Entry) =>
    Effect.gen(function*() {
      let step = yield* Schedule.toStepWithSleep(config.restartBackoff)
      while (true) {
        yield* Ref.set(entry.state, "connecting")
        const exit = yield* Effect.scoped(
          Effect.gen(function*() {
            const link = yield* connect
            if (link.remotePeer !== peer) {
              yield* link.close
              return yield* new PeerMismatch({ expected: peer, announced: link.remotePeer })
            }
            return yield* runSession(link, "dialer", entry)
          })
        ).pipe(Effect.exit)
        if (exit._tag === "Success") return
        yield* recordEnd(entry, exit.cause)
        if ((yield* Ref.get(entry.state)) === "live") step = yield* Schedule.toStepWithSleep(config.restartBackoff)
        entry.restarts++
        yield* Ref.set(entry.state, "backoff")
        const again = yield* step(exit.cause).pipe(Effect.as(true), Effect.catchCause(() => Effect.succeed(false)))
        if (!again) return
      }
    }).pipe(Effect.withSpan("PeerManager.dial", { attributes: { peer } }))

  const dial = <E>(peer: PeerId, connect: Effect.Effect<PeerLink, E, Scope.Scope>) =>
    Effect.gen(function*() {
      const entry = yield* register(peer, "dialer")
      yield* FiberMap.run(fibers, peer, supervise(peer, connect, entry).pipe(Effect.ensuring(unregister(peer, entry)))).pipe(
        Effect.onInterrupt(() => unregister(peer, entry)) // the manager is shutting down
      )
    })

  /** `role` says which side connected, for spans and status (a transport may know it). */
  const accept = (link: PeerLink, role: Role = "acceptor") =>
    Effect.gen(function*() {
      const peer = link.remotePeer
      const entry = yield* register(peer, role).pipe(Effect.tapError(() => link.close))
      yield* FiberMap.run(
        fibers,
        peer,
        runSession(link, role, entry).pipe(
          Effect.catchCause((cause) => recordEnd(entry, cause)),
          Effect.ensuring(unregister(peer, entry))
        )
      ).pipe(Effect.onInterrupt(() => Effect.andThen(unregister(peer, entry), link.close)))
    })

  const sessions = Effect.suspend(() =>
    Effect.forEach([...entries], ([peer, entry]) =>
      Effect.gen(function*() {
        const stats = yield* Ref.get(yield* statsRef(peer))
        const state = yield* Ref.get(entry.state)
        return { peer, role: entry.role, state, restarts: entry.restarts, lastError: entry.lastError, stats } satisfies SessionInfo
      }))
  )

  return PeerManager.of({
    localPeerId: config.localPeerId,
    dial,
    accept,
    disconnect: (peer) => FiberMap.remove(fibers, peer),
    sessions,
    stats: (peer) => statsRef(peer).pipe(Effect.flatMap(Ref.get))
  })
})

const sessionTags: ReadonlySet<string> = new Set([
  "LinkClosed",
  "StoreUnavailable",
  "InvalidInput",
  "ProtocolVersionMismatch",
  "PeerMismatch",
  "FrameInvalid",
  "ProtocolViolation",
  "RemoteFailure"
])

const describeUnknown = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "_tag" in error) {
    const tag = error._tag
    if (typeof tag === "string" && sessionTags.has(tag)) return describe(error as SessionError)
    return `${String(tag)}: ${JSON.stringify(error)}`
  }
  return String(error)
}

export class PeerManager extends Context.Service<PeerManager, PeerManagerShape>()("can-sync/PeerManager") {
  /** A manager for the local CanStore; shut down with the layer. */
  static readonly layer = (config: EngineConfig): Layer.Layer<PeerManager, never, CanStore> =>
    Layer.effect(PeerManager, Effect.gen(function*() {
      return yield* make(config, yield* CanStore)
    }))
}
