/**
 * How a striped link (Lanes.make) shares frames among its lanes and merges them back, over
 * in-memory lanes whose delivery a test can stall: a stalled lane is given little, the other lanes
 * keep carrying (and the receiver keeps taking from them), and the frames still come out in order,
 * byte for byte, once it moves again. The real thing, over WebRTC, is in Lanes.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Fiber, Queue, Stream } from "effect"
import { Frame, LinkClosed, LinkCloseReason, type PeerId } from "@can-sync/core"
import type { EncodedFrame } from "@can-sync/core"
import * as Lanes from "../src/Lanes.ts"
import type { LinkStats } from "../src/ChannelLink.ts"
import { eventually } from "../../../test/kit/Eventually.ts"

const noStats: LinkStats = {
  framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0, bufferedBytes: 0, peakBufferedBytes: 0,
  sendCredit: 0, rttMillis: undefined, minRttMillis: undefined, creditWaitMillis: 0, bufferWaitMillis: 0,
  authProofSent: true, remoteProofVerified: true, peerAcceptedProof: true, creditGrants: 0, creditGrantedBytes: 0,
  pingsSent: 0, pingsReceived: 0, pongsSent: 0, pongsReceived: 0, goodbyeAnswered: false
}

/** One direction of an in-memory lane: what was sent and not yet taken is its load, as on a real lane. */
const direction = Effect.gen(function*() {
  const queue = yield* Queue.unbounded<Uint8Array, LinkClosed | Cause.Done>()
  const state = { load: 0, sentFrames: 0, stalled: false, pending: [] as Array<Uint8Array>, progress: (() => {}) as () => void }
  const deliver = (frame: Uint8Array) => (state.stalled ? state.pending.push(frame) : Queue.offerUnsafe(queue, frame))
  return {
    state,
    send: (frame: EncodedFrame) =>
      Effect.sync(() => {
        const joined = Frame.join(frame)
        state.load += joined.length
        state.sentFrames++
        deliver(joined)
      }),
    take: Effect.tap(Queue.take(queue), (frame) =>
      Effect.sync(() => {
        state.load -= frame.length
        state.progress()
      })),
    release: () => {
      state.stalled = false
      for (const frame of state.pending.splice(0)) Queue.offerUnsafe(queue, frame)
    }
  }
})
type Direction = Effect.Success<typeof direction>

/** Two ends of one lane; `ab` carries frames from end a to end b. */
const lanePair = (index: number) => Effect.gen(function*() {
  const ab = yield* direction
  const ba = yield* direction
  const end = (out: Direction, into: Direction, sdpRole: "offerer" | "answerer"): Lanes.Lane => {
    const closed = Deferred.makeUnsafe<LinkClosed>()
    const closeBecause = (reason: LinkCloseReason) =>
      Effect.sync(() => void Deferred.doneUnsafe(closed, Effect.succeed(new LinkClosed({ peer: `peer${index}` as PeerId, reason }))))
    return {
      remotePeer: "peer" as PeerId,
      sdpRole,
      role: sdpRole === "offerer" ? "dialer" : "acceptor",
      send: out.send,
      frames: Stream.fromEffectRepeat(into.take),
      closed: Effect.asVoid(Deferred.await(closed)),
      close: closeBecause(LinkCloseReason.cases.ClosedLocally.make({})),
      closeReason: Deferred.await(closed),
      closeBecause,
      stats: Effect.succeed(noStats),
      lane: {
        take: into.take,
        room: (bytes) => (out.state.load + bytes <= 8 * 1024 * 1024 ? out.state.load : undefined),
        onProgress: (listener) => {
          out.state.progress = listener
        },
        grantEachFrame: () => {}
      }
    }
  }
  return { ab, a: end(ab, ba, "offerer"), b: end(ba, ab, "answerer") }
})

const CHUNK = 128 * 1024
const frameOf = (i: number) => new Uint8Array(CHUNK).fill(i % 251)

describe("lane striping (in-memory lanes)", () => {
  it.live("a stalled lane is given at most about a megabyte; the others carry on, and the frames come out in order", () =>
    Effect.scoped(Effect.gen(function*() {
      const pairs = yield* Effect.all([lanePair(0), lanePair(1), lanePair(2)])
      const sender = yield* Lanes.make(pairs[0]!.a)
      const receiver = yield* Lanes.make(pairs[0]!.b)
      for (const pair of pairs.slice(1)) {
        yield* sender.addLane(pair.a)
        yield* receiver.addLane(pair.b)
      }
      const stalled = pairs[1]!.ab
      stalled.state.stalled = true

      // 64 chunks (8 MiB): more than the stalled lane's share, far less than what the receiver may hold
      const count = 64
      const collected = yield* Effect.forkScoped(Stream.runCollect(Stream.take(receiver.frames, count)))
      yield* Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => sender.send(frameOf(i)), { discard: true }).pipe(
        Effect.timeout("10 seconds")
      )

      // everything went out although one lane delivered nothing: it was given about a megabyte
      expect(stalled.state.load).toBeLessThanOrEqual(1024 * 1024 + CHUNK + Lanes.SEQ_BYTES)
      expect(stalled.state.sentFrames).toBeGreaterThan(0)
      // and the receiver took what the other lanes carried, though it cannot pass a gap yet
      yield* eventually("the receiver to take everything the moving lanes carried", Effect.sync(() => {
        const waiting = pairs[0]!.ab.state.load + pairs[2]!.ab.state.load
        return waiting === 0 ? true : undefined
      }), "10 seconds")

      stalled.release()
      const received = yield* Fiber.join(collected).pipe(Effect.timeout("10 seconds"))
      expect(received.length).toBe(count)
      received.forEach((frame, i) => {
        expect(frame.length, `frame ${i}`).toBe(CHUNK)
        expect(frame[0], `frame ${i} content`).toBe(i % 251)
      })
    })))

  it.live("an idle lane always takes a frame, however large", () =>
    Effect.scoped(Effect.gen(function*() {
      const pair = yield* lanePair(0)
      const sender = yield* Lanes.make(pair.a)
      const receiver = yield* Lanes.make(pair.b)
      const big = new Uint8Array(3 * 1024 * 1024).fill(7)
      yield* sender.send(big)
      const [frame] = yield* Stream.runCollect(Stream.take(receiver.frames, 1)).pipe(Effect.timeout("10 seconds"))
      expect(frame?.length).toBe(big.length)
    })))
})
