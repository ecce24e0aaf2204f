/**
 * The link over one real data channel (two peer connections in this process, wired directly):
 * splitting and joining, the AuthProof exchange, the credit window against a sender that ignores
 * it, the heartbeat against a peer that falls silent, and closing.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import nodeDataChannel from "node-datachannel"
import { LinkCloseReason } from "@can-sync/core"
import { Identity } from "../src/Identity.ts"
import type { PeerIdentity } from "../src/Identity.ts"
import type { DataChannel } from "../src/Native.ts"
import * as WebRtcLink from "../src/WebRtcLink.ts"
import type { ChannelBinding, LinkOptions, PendingWebRtcLink } from "../src/WebRtcLink.ts"
import * as Framing from "../src/ChannelFraming.ts"
import { directPair } from "./support/directPair.ts"

afterAll(() => nodeDataChannel.cleanup())

const frameOf = (size: number, seed: number) => Uint8Array.from({ length: size }, (_, i) => (i * 131 + seed * 7) & 255)
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b))

interface Side {
  readonly identity: PeerIdentity
  readonly options?: Partial<LinkOptions>
  /** What this side believes the channel binding is (a man in the middle makes the sides disagree). */
  readonly binding?: (real: ChannelBinding | undefined) => ChannelBinding | undefined
  /** The peer this side expects at the other end (default: the real one). */
  readonly expects?: PeerIdentity
}

/** Two links over a direct pair, offerer `a` and answerer `b`, not yet authenticated. */
const linkPair = (a: Side, b: Side) =>
  Effect.gen(function*() {
    let answerer: PendingWebRtcLink | undefined
    const pair = yield* directPair(a.identity, b.identity, (dc) => answerer?.attach(dc))
    const make = (side: Side, role: "offerer" | "answerer", other: Side) => {
      const expected = side.expects ?? other.identity
      return WebRtcLink.make({
        identity: side.identity,
        role,
        remotePeer: expected.peerId,
        remotePublicKey: () => expected.publicKey,
        binding: () => (side.binding ?? ((real) => real))(pair.binding()),
        options: { ...WebRtcLink.defaultLinkOptions, ...side.options }
      })
    }
    const offerer = yield* make(a, "offerer", b)
    answerer = yield* make(b, "answerer", a)
    offerer.attach(pair.offerer.createDataChannel("can-sync"))
    return { offerer, answerer, pair }
  })

/** The answerer side played by hand on a bare channel: proves its key correctly, then misbehaves. */
const rogueAnswerer = (a: Side, rogue: PeerIdentity) =>
  Effect.gen(function*() {
    const pair = yield* directPair(a.identity, rogue)
    const offerer = yield* WebRtcLink.make({
      identity: a.identity,
      role: "offerer",
      remotePeer: rogue.peerId,
      remotePublicKey: () => rogue.publicKey,
      binding: pair.binding,
      options: { ...WebRtcLink.defaultLinkOptions, ...a.options }
    })
    offerer.attach(pair.offerer.createDataChannel("can-sync"))
    const channel: DataChannel = yield* pair.answererChannel
    const signature = rogue.sign(WebRtcLink.bindingBytes(pair.binding()!, "answerer"))
    channel.sendMessageBinary(Framing.control({ _tag: "AuthProof", message: { peerId: rogue.peerId, publicKey: rogue.publicKey, signature } }))
    return { offerer, channel }
  })

describe("WebRtcLink", () => {
  it.live("carries frames of every size both ways, split below the message limit and joined byte for byte", () =>
    Effect.gen(function*() {
      const { answerer, offerer } = yield* linkPair({ identity: Identity.generate() }, { identity: Identity.generate() })
      const [a, b] = yield* Effect.all([offerer.authenticate, answerer.authenticate], { concurrency: 2 })
      const max = WebRtcLink.defaultLinkOptions.maxMessageBytes
      const sizes = [0, 1, 5, max - 2, max - 1, max, max + 1, 200_000, 1_000_000, WebRtcLink.defaultLinkOptions.maxFrameBytes]
      const fromA = sizes.map((size, i) => frameOf(size, i))
      const fromB = sizes.map((size, i) => frameOf(size, 100 + i))
      // b echoes what it receives, after sending its own frames
      const echo = yield* Effect.forkChild(
        Effect.andThen(
          Effect.forEach(fromB, (f) => b.send(f), { discard: true }),
          b.frames.pipe(Stream.take(fromA.length), Stream.runForEach((f) => b.send(f)))
        )
      )
      yield* Effect.forEach(fromA, (f) => a.send(f), { discard: true })
      const received = yield* a.frames.pipe(Stream.take(fromB.length + fromA.length), Stream.runCollect)
      yield* Fiber.join(echo)
      expect(received.length).toBe(fromB.length + fromA.length)
      received.slice(0, fromB.length).forEach((f, i) => expect(same(f, fromB[i]!), `b's frame ${i}`).toBe(true))
      received.slice(fromB.length).forEach((f, i) => expect(same(f, fromA[i]!), `echo of frame ${i}`).toBe(true))
      const stats = yield* a.stats
      expect(stats.framesSent).toBe(sizes.length)
      expect(stats.bytesReceived).toBe(2 * sizes.reduce((x, y) => x + y, 0))
    }).pipe(Effect.scoped))

  it.live("refuses a channel whose two sides saw different DTLS fingerprints (a man in the middle)", () =>
    Effect.gen(function*() {
      const { answerer, offerer } = yield* linkPair(
        { identity: Identity.generate() },
        {
          identity: Identity.generate(),
          binding: (real) => real && { ...real, offererFingerprint: "sha-256 00:11:22:33" }
        }
      )
      // neither side authenticates; each refuses the other's proof, unless the other's refusal
      // (closing the channel) reached it first
      const failures = yield* Effect.all([Effect.flip(offerer.authenticate), Effect.flip(answerer.authenticate)], { concurrency: 2 })
      const refused = LinkCloseReason.cases.AuthFailed.make({ detail: "the channel binding signature does not verify" })
      const lost = LinkCloseReason.cases.ConnectionLost.make({ detail: "the channel closed without a goodbye" })
      for (const failure of failures) expect([refused, lost]).toContainEqual(failure.reason)
      expect(failures.map((f) => f.reason)).toContainEqual(refused)
    }).pipe(Effect.scoped))

  it.live("refuses a channel whose peer proves a different identity than the one expected", () =>
    Effect.gen(function*() {
      const bob = Identity.generate()
      const carol = Identity.generate()
      const { answerer, offerer } = yield* linkPair({ identity: Identity.generate(), expects: carol }, { identity: bob })
      const a = yield* Effect.flip(offerer.authenticate)
      expect(a.reason).toEqual(LinkCloseReason.cases.AuthFailed.make({ detail: `the channel proved ${bob.peerId}, expected ${carol.peerId}` }))
      expect(a.message).toBe(`link to ${carol.peerId} closed: authentication failed: the channel proved ${bob.peerId}, expected ${carol.peerId}`)
      // bob's side may have accepted the (genuine) offerer, but its link closes at once
      yield* answerer.authenticate.pipe(Effect.flatMap((link) => link.closed), Effect.ignore)
    }).pipe(Effect.scoped))

  it.live("cuts off a sender that ignores its credit; the receive buffer never exceeds the window", () =>
    Effect.gen(function*() {
      const window = 1024 * 1024
      const { channel, offerer } = yield* rogueAnswerer(
        { identity: Identity.generate(), options: { receiveWindowBytes: window, maxFrameBytes: 256 * 1024 } },
        Identity.generate()
      )
      const link = yield* offerer.authenticate
      // nobody consumes frames; the rogue sends 64 KiB frames far past the 1 MiB it was granted
      const piece = Framing.split(frameOf(64 * 1024 - 1, 1), 64 * 1024)[0]!
      for (let i = 0; i < 200; i++) channel.sendMessageBinary(piece)
      const reason = yield* link.closeReason
      expect(reason.reason._tag).toBe("LinkProtocolViolation")
      expect(reason.message).toMatch(/: link protocol violation: peer sent \d+ bytes beyond the credit it was granted$/)
      const stats = yield* link.stats
      expect(stats.peakBufferedBytes).toBeLessThanOrEqual(window)
      // frames that arrived within the credit are still delivered, then the stream fails
      const drained = yield* link.frames.pipe(Stream.runCollect, Effect.flip)
      expect(drained._tag).toBe("LinkClosed")
    }).pipe(Effect.scoped))

  it.live("fails with a heartbeat timeout when the peer falls silent, long before the transport would notice", () =>
    Effect.gen(function*() {
      const { channel, offerer } = yield* rogueAnswerer(
        { identity: Identity.generate(), options: { heartbeatInterval: "200 millis", heartbeatTimeout: "1 second" } },
        Identity.generate()
      )
      const link = yield* offerer.authenticate
      // the rogue holds its channel open (a strong reference) but never answers a Ping
      expect(channel.isOpen()).toBe(true)
      const reason = yield* link.closeReason
      expect(reason.reason._tag).toBe("HeartbeatTimeout")
      expect(reason.reason._tag === "HeartbeatTimeout" && reason.reason.silentMillis).toBeGreaterThan(1000)
      const failure = yield* link.frames.pipe(Stream.runDrain, Effect.flip)
      expect(failure.reason).toEqual(reason.reason)
    }).pipe(Effect.scoped))

  it.live("answers Pings, so a live but idle link stays up through several heartbeat timeouts", () =>
    Effect.gen(function*() {
      const fast = { heartbeatInterval: "100 millis", heartbeatTimeout: "1 second" } as const
      const { answerer, offerer } = yield* linkPair({ identity: Identity.generate(), options: fast }, { identity: Identity.generate(), options: fast })
      const [a, b] = yield* Effect.all([offerer.authenticate, answerer.authenticate], { concurrency: 2 })
      yield* Effect.sleep("3 seconds")
      yield* a.send(new Uint8Array([1, 2, 3]))
      const got = yield* b.frames.pipe(Stream.take(1), Stream.runCollect)
      expect([...got[0]!]).toEqual([1, 2, 3])
      expect((yield* a.stats).rttMillis).toBeTypeOf("number")
    }).pipe(Effect.scoped))

  it.live("a graceful close delivers everything sent before it, then ends the other side's frames cleanly", () =>
    Effect.gen(function*() {
      const { answerer, offerer } = yield* linkPair({ identity: Identity.generate() }, { identity: Identity.generate() })
      const [a, b] = yield* Effect.all([offerer.authenticate, answerer.authenticate], { concurrency: 2 })
      const frames = Array.from({ length: 64 }, (_, i) => frameOf(100_000, i))
      yield* Effect.forEach(frames, (f) => a.send(f), { discard: true })
      yield* a.close // returns once b has acknowledged, i.e. received everything
      const received = yield* Stream.runCollect(b.frames)
      expect(received.length).toBe(frames.length)
      received.forEach((f, i) => expect(same(f, frames[i]!)).toBe(true))
    }).pipe(Effect.scoped))

  it.live("refuses to send a frame above the link's limit, closing the link with the reason", () =>
    Effect.gen(function*() {
      const small = { maxFrameBytes: 256 * 1024, receiveWindowBytes: 1024 * 1024 }
      const { answerer, offerer } = yield* linkPair({ identity: Identity.generate(), options: small }, { identity: Identity.generate(), options: small })
      const [a] = yield* Effect.all([offerer.authenticate, answerer.authenticate], { concurrency: 2 })
      const error = yield* Effect.flip(a.send(new Uint8Array(300 * 1024)))
      expect(error.reason).toEqual(
        LinkCloseReason.cases.LinkProtocolViolation.make({ detail: "we tried to send a frame of 307200 bytes, over the link limit of 262144" })
      )
    }).pipe(Effect.scoped))

  it.live("closing one side ends the other side's frames cleanly and fails later sends", () =>
    Effect.gen(function*() {
      const { answerer, offerer } = yield* linkPair({ identity: Identity.generate() }, { identity: Identity.generate() })
      const [a, b] = yield* Effect.all([offerer.authenticate, answerer.authenticate], { concurrency: 2 })
      yield* a.send(frameOf(100_000, 3))
      const first = yield* b.frames.pipe(Stream.take(1), Stream.runCollect)
      expect(first[0]!.length).toBe(100_000)
      yield* a.close
      const rest = yield* Stream.runCollect(b.frames) // ends, does not fail
      expect(rest.length).toBe(0)
      expect((yield* b.closeReason).reason._tag).toBe("ClosedByPeer")
      expect((yield* Effect.flip(a.send(new Uint8Array(1)))).reason._tag).toBe("ClosedLocally")
    }).pipe(Effect.scoped))
})
