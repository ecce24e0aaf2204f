/**
 * One connection attempt (ConnectAttempt.offer / ConnectAttempt.answer) between two peer connections in this
 * process, their signals passed by hand: the order in which the offerer signals, and a link
 * authenticated at the end; and what an attempt says when ICE connects but DTLS never finishes.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Latch, Queue } from "effect"
import nodeDataChannel from "node-datachannel"
import { Identity } from "../src/Identity.ts"
import * as Native from "../src/Native.ts"
import * as ConnectAttempt from "../src/ConnectAttempt.ts"
import type { AttemptInput } from "../src/ConnectAttempt.ts"
import type { SignalKind, VerifiedSignal } from "../src/Signal.ts"
import * as WebRtcLink from "../src/WebRtcLink.ts"

afterAll(() => nodeDataChannel.cleanup())

interface Relay {
  /** The body as the other side gets it (default: as signed). */
  readonly rewrite?: (kind: SignalKind, body: string) => string
  /** Hands a signal on (`send`, default at once); for the offer, which starts the answering attempt, `send` does nothing. */
  readonly deliver?: (signal: VerifiedSignal, fromOfferer: boolean, send: () => void) => void
}

/** Two attempts between fresh identities in this process (the lower id offers), their signals passed by `relay`. */
const attemptPair = (sid: string, relay: Relay = {}) =>
  Effect.gen(function*() {
    yield* Native.useLibrary
    const [low, high] = [Identity.generate(), Identity.generate()].sort((x, y) => (x.peerId < y.peerId ? -1 : 1))
    const toOfferer = yield* Queue.unbounded<AttemptInput>()
    const toAnswerer = yield* Queue.unbounded<AttemptInput>()
    const offer = yield* Latch.make(false)
    let offerSignal: VerifiedSignal | undefined
    const signal = (from: typeof low, inbox: Queue.Queue<AttemptInput>) => (kind: SignalKind, body: string) =>
      Effect.sync(() => {
        const verified: VerifiedSignal = { kind, sid, from: from.peerId, publicKey: from.publicKey, body: relay.rewrite?.(kind, body) ?? body }
        if (kind === "offer") {
          offerSignal = verified // starts the answering attempt
          offer.openUnsafe()
        }
        const send = kind === "offer" ? () => {} : () => Queue.offerUnsafe(inbox, { _tag: "Signal", signal: verified })
        if (relay.deliver === undefined) send()
        else relay.deliver(verified, from === low, send)
      })
    const params = (self: typeof low, other: typeof low, inbox: Queue.Queue<AttemptInput>, out: Queue.Queue<AttemptInput>): ConnectAttempt.AttemptParams => ({
      identity: self,
      remotePeer: other.peerId,
      sid,
      rtc: { bindAddress: "127.0.0.1" },
      link: WebRtcLink.defaultLinkOptions,
      inbox,
      signal: signal(self, out)
    })
    const offering = yield* Effect.forkChild(ConnectAttempt.offer(params(low, high, toOfferer, toAnswerer)))
    yield* offer.await
    const answering = yield* Effect.forkChild(ConnectAttempt.answer(params(high, low, toAnswerer, toOfferer), offerSignal!))
    return { offering, answering, offerer: low, answerer: high }
  })

describe("ConnectAttempt", () => {
  it.live("the offerer sends its candidates only once the answer is applied, and the attempt authenticates", () =>
    Effect.gen(function*() {
      /** What the offerer signalled, in order, and whether the answer had reached it by then. */
      const sent: Array<{ readonly kind: SignalKind; readonly answerDelivered: boolean }> = []
      let answerDelivered = false
      const { offering, answering, offerer, answerer } = yield* attemptPair("b007.1", {
        deliver: (signal, fromOfferer, send) => {
          if (fromOfferer) sent.push({ kind: signal.kind, answerDelivered })
          // the answer reaches the offerer a little late, as over a busy signaling server
          if (signal.kind !== "answer") return send()
          setTimeout(() => {
            answerDelivered = true
            send()
          }, 200)
        }
      })
      const [offererLink, answererLink] = [yield* Fiber.join(offering), yield* Fiber.join(answering)]
      expect([offererLink.remotePeer, answererLink.remotePeer]).toEqual([answerer.peerId, offerer.peerId])

      expect(sent[0]).toEqual({ kind: "offer", answerDelivered: false })
      const candidates = sent.filter((s) => s.kind === "candidate")
      expect(candidates.length).toBeGreaterThan(0)
      expect(candidates.every((s) => s.answerDelivered)).toBe(true)
    }).pipe(Effect.scoped), 60_000)

  it.live("when ICE finds a path but DTLS never finishes, the attempt says so, not that no pair succeeded", () =>
    Effect.gen(function*() {
      const { offering, answering } = yield* attemptPair("d715.1", {
        // each side is told the other is the DTLS client ("active"), so both wait as servers for a
        // ClientHello that never comes; ICE itself is fine
        rewrite: (kind, body) =>
          kind === "offer" ? body.replace(/a=setup:actpass/g, "a=setup:active") : kind === "answer" ? body.replace(/a=setup:passive/g, "a=setup:active") : body
      })
      for (const attempt of [offering, answering]) {
        const exit = yield* Fiber.await(attempt)
        const failure = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
        const error = failure?._tag === "Fail" ? failure.error : undefined
        expect(error?.reason, String(exit)).toMatchObject({ _tag: "IceFailed" })
        expect(error?.message).toMatch(/: the connection failed: ICE found a path but the DTLS handshake did not finish within 10 seconds \(ours: host; theirs: host\)$/)
      }
    }).pipe(Effect.scoped), 60_000)
})
