/**
 * InMemoryLink: two PeerLinks joined back to back inside one process, for tests and benchmarks.
 * Each direction is a bounded Queue of encoded frames, so a sender suspends when its peer reads
 * slowly, exactly as over a real transport; backpressure bugs show up here as deadlocks.
 * Closing either end closes both: frames already buffered are still delivered, then the streams end;
 * a send fails with `ClosedLocally` on the end that closed, `ClosedByPeer` on the other.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Stream from "effect/Stream"
import type { Scope } from "effect"
import type { PeerId } from "./Domain.ts"
import { LinkClosed } from "./PeerLink.ts"
import type { PeerLink } from "./PeerLink.ts"

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
  const end = (self: PeerId, remote: PeerId, outbound: Queue.Queue<Uint8Array, Cause.Done>, inbound: Queue.Queue<Uint8Array, Cause.Done>): PeerLink => {
    const error = () => new LinkClosed({ peer: remote, reason: { _tag: closedBy === self ? "ClosedLocally" : "ClosedByPeer" } })
    const send = (frame: Uint8Array): Effect.Effect<void, LinkClosed> =>
      Effect.suspend(() => {
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
      send,
      frames: Stream.fromQueue(inbound),
      closed: Deferred.await(closed),
      close: closeFrom(self)
    }
  }
  return [end(a, b, aToB, bToA), end(b, a, bToA, aToB)] as const
})
