/**
 * PeerManager: one PeerActor per peer over one local store, and the one owner of reconnection.
 * `dial(peer, connect)` keeps a session with `peer` going: one connection attempt (the transport's
 * `connect`), a session over the link, and after any failure a wait by `restartBackoff` (reset once
 * a session was live) before the next attempt. A dialed peer keeps its entry, counters and last
 * error while disconnected. All sessions share one InFlight registry; closing the manager's
 * scope stops every session and closes every link.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberMap from "effect/FiberMap"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type { Scope } from "effect"
import type { PeerStats, SessionState } from "./ActorWiring.ts"
import { emptyStats } from "./ActorWiring.ts"
import type { CanStoreShape } from "./CanStore.ts"
import type { PeerId } from "./Domain.ts"
import type { EngineConfig } from "./EngineConfig.ts"
import * as InFlight from "./InFlight.ts"
import * as PeerActor from "./PeerActor.ts"
import type { PeerLink, Role } from "./PeerLink.ts"
import type { FailureKind } from "./Status.ts"
import { classifyFailure } from "./Status.ts"
import { describeFailure, DuplicatePeer, PeerMismatch } from "./SyncErrors.ts"

export interface SessionInfo {
  readonly peer: PeerId
  /** Which side opened the current (or last) connection, if the link says; undefined before the first. */
  readonly role: Role | undefined
  readonly state: SessionState
  /** Sessions and connection attempts that ended and were (or are about to be) retried. */
  readonly restarts: number
  /** Why the last session or attempt ended. */
  readonly lastError: string | undefined
  /** When it ended (ms since the epoch). */
  readonly lastErrorAt: number | undefined
  /** What kind of failure that was (a refusal, no signaling, ...): Status shows "refused" or "waiting" from it. */
  readonly lastFailure: FailureKind | undefined
  /** While backing off: when the next attempt starts (ms since the epoch). */
  readonly nextRetryAt: number | undefined
  /** Counters over all sessions so far; `sessions === 0` means never connected (not "dropped"). */
  readonly stats: PeerStats
}

export interface DialOptions {
  /**
   * Completes when the peer asks for a link (the transport's `wake`): the backoff wait is cut
   * short then, so a peer that comes back is met at once rather than at the next retry.
   */
  readonly wake?: Effect.Effect<void> | undefined
}

export interface PeerManagerShape {
  readonly localPeerId: PeerId
  /**
   * Keep a session with `peer` going: `connect` (one attempt, within its own deadline), run the
   * session, and after any failure wait (backoff) and connect again, until `disconnect` or
   * shutdown. Returns once the entry is registered; fails with DuplicatePeer if `peer` has one.
   */
  readonly dial: <E>(peer: PeerId, connect: Effect.Effect<PeerLink, E, Scope.Scope>, options?: DialOptions) => Effect.Effect<void, DuplicatePeer>
  /** Stop dialing `peer`: its session (if any) ends and its link is closed; its counters stay. */
  readonly disconnect: (peer: PeerId) => Effect.Effect<void>
  /** Every dialed peer, connected or not (connecting, in session, or backing off). */
  readonly sessions: Effect.Effect<ReadonlyArray<SessionInfo>>
  /** Counters of a peer over all its sessions so far (zero if never seen). */
  readonly stats: (peer: PeerId) => Effect.Effect<PeerStats>
}

/** A dialed peer's record; mutated only by its own supervising fiber (and read by `sessions`). */
interface Entry {
  readonly state: Ref.Ref<SessionState>
  role: Role | undefined
  restarts: number
  lastError: string | undefined
  lastErrorAt: number | undefined
  lastFailure: FailureKind | undefined
  nextRetryAt: number | undefined
}

export const make = Effect.fn("PeerManager.make")(function*(config: EngineConfig, store: CanStoreShape) {
  const fibers = yield* FiberMap.make<PeerId>()
  const inFlight = yield* InFlight.make
  // Mutated only in Effect.sync blocks: check-and-insert is atomic, so two dials never race in.
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

  const register = (peer: PeerId) =>
    Effect.suspend(() => {
      if (entries.has(peer)) return Effect.fail(new DuplicatePeer({ peer }))
      const entry: Entry = {
        state: Ref.makeUnsafe<SessionState>("connecting"),
        role: undefined,
        restarts: 0,
        lastError: undefined,
        lastErrorAt: undefined,
        lastFailure: undefined,
        nextRetryAt: undefined
      }
      entries.set(peer, entry)
      return Effect.succeed(entry)
    })

  const unregister = (peer: PeerId, entry: Entry) =>
    Effect.sync(() => {
      if (entries.get(peer) === entry) entries.delete(peer)
    })

  /** One attempt: connect, check the link is with `peer`, run a session on it until it ends. */
  const attempt = <E>(peer: PeerId, connect: Effect.Effect<PeerLink, E, Scope.Scope>, entry: Entry) =>
    Effect.scoped(Effect.gen(function*() {
      const link = yield* connect
      if (link.remotePeer !== peer) {
        yield* link.close
        return yield* new PeerMismatch({ expected: peer, announced: link.remotePeer })
      }
      entry.role = link.role
      const stats = yield* statsRef(peer)
      return yield* PeerActor.run(link, { config, store, role: link.role, inFlight, stats, state: entry.state })
    }))

  const recordEnd = (entry: Entry, cause: Cause.Cause<unknown>) =>
    Effect.gen(function*() {
      const error = Cause.findErrorOption(cause)
      entry.lastError = error._tag === "Some" ? describeFailure(error.value) : Cause.pretty(cause)
      entry.lastFailure = error._tag === "Some" ? classifyFailure(error.value) : "other"
      entry.lastErrorAt = yield* Clock.currentTimeMillis
      entry.restarts++
    })

  /** Attempts one after another, with backoff between them (reset after a session that was live). */
  const supervise = <E>(peer: PeerId, connect: Effect.Effect<PeerLink, E, Scope.Scope>, entry: Entry, wake: Effect.Effect<void>) =>
    Effect.gen(function*() {
      let step = yield* Schedule.toStep(config.restartBackoff)
      let failuresInARow = 0
      while (true) {
        yield* Ref.set(entry.state, "connecting")
        const exit = yield* Effect.exit(attempt(peer, connect, entry))
        if (exit._tag === "Success" || Cause.hasInterruptsOnly(exit.cause)) return
        const wasLive = (yield* Ref.get(entry.state)) === "live"
        yield* recordEnd(entry, exit.cause)
        if (wasLive) {
          step = yield* Schedule.toStep(config.restartBackoff)
          failuresInARow = 0
        }
        const now = yield* Clock.currentTimeMillis
        const delay = yield* step(now, exit.cause).pipe(
          Effect.map(([, d]) => d),
          Effect.catchCause(() => Effect.succeed(undefined))
        )
        if (delay === undefined) return // the schedule gave up
        entry.nextRetryAt = now + Duration.toMillis(delay)
        yield* Ref.set(entry.state, "backoff")
        const log = failuresInARow++ === 0 ? Effect.logInfo : Effect.logDebug
        yield* log(`peer ${peer}: ${entry.lastError}; trying again in ${Math.round(Duration.toMillis(delay))} ms`)
        yield* Effect.raceFirst(Effect.sleep(delay), wake)
        entry.nextRetryAt = undefined
      }
    }).pipe(Effect.withSpan("PeerManager.dial", { attributes: { peer } }))

  const dial = <E>(peer: PeerId, connect: Effect.Effect<PeerLink, E, Scope.Scope>, options?: DialOptions) =>
    Effect.gen(function*() {
      const entry = yield* register(peer)
      yield* FiberMap.run(fibers, peer, supervise(peer, connect, entry, options?.wake ?? Effect.never).pipe(Effect.ensuring(unregister(peer, entry)))).pipe(
        Effect.onInterrupt(() => unregister(peer, entry)) // the manager is shutting down
      )
    })

  const sessions = Effect.suspend(() =>
    Effect.forEach([...entries], ([peer, entry]) =>
      Effect.gen(function*() {
        const stats = yield* Ref.get(yield* statsRef(peer))
        const state = yield* Ref.get(entry.state)
        const { role, restarts, lastError, lastErrorAt, lastFailure, nextRetryAt } = entry
        return { peer, role, state, restarts, lastError, lastErrorAt, lastFailure, nextRetryAt, stats } satisfies SessionInfo
      }))
  )

  const manager: PeerManagerShape = {
    localPeerId: config.localPeerId,
    dial,
    disconnect: (peer) => FiberMap.remove(fibers, peer),
    sessions,
    stats: (peer) => statsRef(peer).pipe(Effect.flatMap(Ref.get))
  }
  return manager
})
