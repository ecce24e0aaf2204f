/**
 * InMemoryLink: two PeerLinks joined back to back inside one process, for tests and benchmarks,
 * and `network`, whose `connect(self, peer)` meets the peer's own `connect(peer, self)` as the
 * WebRTC transport's does (one attempt per call), so PeerManagers dial each other over it.
 * Each direction is a bounded Queue of encoded frames, so a sender suspends when its peer reads
 * slowly, exactly as over a real transport; backpressure bugs show up here as deadlocks.
 * Closing either end closes both: frames already buffered are still delivered, then the streams end;
 * a send fails with `ClosedLocally` on the end that closed, `ClosedByPeer` on the other.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import type { Scope } from "effect"
import type { PeerId } from "./Domain.ts"
import * as Frame from "./Frame.ts"
import { LinkClosed } from "./PeerLink.ts"
import type { EncodedFrame, PeerLink, Role } from "./PeerLink.ts"

export interface PairOptions {
  /** Frames buffered per direction before `send` suspends (default 16). */
  readonly capacity?: number | undefined
}

/**
 * A connected pair: `[linkHeldByA, linkHeldByB]`. The first end's `remotePeer` is `b`, the
 * second's is `a`. Both ends close when the scope closes.
 */
export const pair = (
  a: PeerId,
  b: PeerId,
  options?: PairOptions
): Effect.Effect<readonly [PeerLink, PeerLink], never, Scope.Scope> =>
  Effect.acquireRelease(makePair(a, b, options?.capacity ?? 16), ([left]) => left.close)

/** The same pair, unscoped: the caller closes it (for links handed to long-lived managers). */
export const makePair = Effect.fnUntraced(function*(a: PeerId, b: PeerId, capacity = 16) {
  const aToB = yield* Queue.bounded<Uint8Array, Cause.Done>(capacity)
  const bToA = yield* Queue.bounded<Uint8Array, Cause.Done>(capacity)
  const closed = Deferred.makeUnsafe<void>()
  let closedBy: PeerId | undefined
  const closeFrom = (self: PeerId) =>
    Effect.suspend(() => {
      if (!Deferred.doneUnsafe(closed, Effect.void)) return Effect.void
      closedBy = self
      return Effect.all([Queue.end(aToB), Queue.end(bToA)], { discard: true })
    })
  const end = (self: PeerId, remote: PeerId, outbound: Queue.Queue<Uint8Array, Cause.Done>, inbound: Queue.Queue<Uint8Array, Cause.Done>, role: Role): PeerLink => {
    const error = () => new LinkClosed({ peer: remote, reason: { _tag: closedBy === self ? "ClosedLocally" : "ClosedByPeer" } })
    const send = (encoded: EncodedFrame): Effect.Effect<void, LinkClosed> =>
      Effect.suspend(() => {
        const frame = Frame.join(encoded)
        if (Deferred.isDoneUnsafe(closed)) return Effect.fail(error())
        if (Queue.offerUnsafe(outbound, frame)) return Effect.void
        // Full: wait for room, or for the link to close while waiting (then the offer is withdrawn).
        return Effect.raceFirst(
          Queue.offer(outbound, frame).pipe(
            Effect.flatMap((accepted) => (accepted ? Effect.void : Effect.fail(error())))
          ),
          Deferred.await(closed).pipe(Effect.andThen(Effect.suspend(() => Effect.fail(error()))))
        )
      })
    return {
      remotePeer: remote,
      role,
      send,
      frames: Stream.fromQueue(inbound),
      closed: Deferred.await(closed),
      close: closeFrom(self)
    }
  }
  return [end(a, b, aToB, bToA, "dialer"), end(b, a, bToA, aToB, "acceptor")] as const
})

export interface Network {
  /**
   * One connection attempt from `self` to `peer`: waits until `peer` calls `connect(peer, self)`,
   * then both get their end of a fresh pair. The link closes with the caller's scope.
   */
  readonly connect: (self: PeerId, peer: PeerId) => Effect.Effect<PeerLink, never, Scope.Scope>
}

/** A rendezvous for in-memory links: every pair of peers meets on it, one pair per attempt. */
export const network = (options?: PairOptions): Effect.Effect<Network> =>
  Effect.sync(() => {
    /** `self→peer`: the end waiting for `peer` to connect back. */
    const waiting = new Map<string, Deferred.Deferred<PeerLink>>()
    const meet = (self: PeerId, peer: PeerId): Effect.Effect<PeerLink> =>
      Effect.suspend(() => {
        const theirs = waiting.get(`${peer}→${self}`)
        if (theirs !== undefined) {
          waiting.delete(`${peer}→${self}`)
          return makePair(self, peer, options?.capacity ?? 16).pipe(
            Effect.tap(([, forPeer]) => Deferred.succeed(theirs, forPeer)),
            Effect.map(([mine]) => mine)
          )
        }
        const mine = Deferred.makeUnsafe<PeerLink>()
        waiting.set(`${self}→${peer}`, mine)
        return Deferred.await(mine).pipe(Effect.onInterrupt(() =>
          Effect.gen(function*() {
            if (waiting.get(`${self}→${peer}`) === mine) waiting.delete(`${self}→${peer}`)
            // Met just as this attempt was given up: close the link nobody will use.
            const met = yield* Deferred.poll(mine)
            if (Option.isSome(met)) yield* met.value.pipe(Effect.flatMap((link) => link.close))
          })
        ))
      })
    // The wait is interruptible (an attempt is given up at shutdown); the link, once met, closes with the scope.
    const connect = (self: PeerId, peer: PeerId): Effect.Effect<PeerLink, never, Scope.Scope> =>
      Effect.uninterruptibleMask((restore) =>
        restore(meet(self, peer)).pipe(Effect.tap((link) => Effect.addFinalizer(() => link.close)))
      )
    return { connect }
  })
