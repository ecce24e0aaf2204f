/**
 * Keep a link to one peer the way the engine's PeerManager does over `Transport.connect`: one
 * attempt after another, waiting out a backoff between failures (cut short when the peer asks
 * for a link), each link kept until it closes. For tests and fixtures that run no engine.
 */
import { Effect, Queue, Schedule } from "effect"
import type { Scope } from "effect"
import { Backoff } from "@can-sync/core"
import type { PeerId } from "@can-sync/core"
import type { TransportShape } from "../../src/Transport.ts"
import type { WebRtcLink } from "../../src/WebRtcLink.ts"

const backoff = Backoff.exponential({ base: "200 millis", cap: "2 seconds" })

/** Run `use` on every link to `peer`, one after another, until the scope closes. */
export const keepLinked = <E>(
  transport: TransportShape,
  peer: PeerId,
  use: (link: WebRtcLink) => Effect.Effect<void, E>
): Effect.Effect<never> =>
  Effect.gen(function*() {
    let step = yield* Schedule.toStepWithSleep(backoff)
    while (true) {
      const linked = yield* Effect.scoped(Effect.flatMap(transport.connect(peer), (link) => Effect.ignore(use(link)))).pipe(
        Effect.as(true),
        Effect.catchTag("ConnectFailed", () => Effect.succeed(false))
      )
      if (linked) step = yield* Schedule.toStepWithSleep(backoff)
      yield* Effect.raceFirst(Effect.ignore(step(undefined)), transport.wake(peer))
    }
  })

/** Every link to `peer`, in a queue; each stays open until the taker closes it or it closes. */
export const linksTo = (transport: TransportShape, peer: PeerId): Effect.Effect<Queue.Dequeue<WebRtcLink>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const links = yield* Queue.unbounded<WebRtcLink>()
    yield* Effect.forkScoped(keepLinked(transport, peer, (link) => Effect.andThen(Queue.offer(links, link), link.closed)))
    return links
  })
