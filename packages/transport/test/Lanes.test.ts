/**
 * Striping one link over several WebRTC connections ("lanes"): the SDP marks and the lane-count
 * rule, then for real (this process and a fixture peer process, real signaling and WebRTC on
 * loopback): frames of every size cross a 4-lane link both ways in order, byte for byte; a peer
 * that cannot stripe gets one plain connection; a lane that dies closes the link, and the next
 * connect stripes again.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Queue, Stream } from "effect"
import type { PeerId } from "@can-sync/core"
import { Identity } from "../src/Identity.ts"
import type { PeerIdentity } from "../src/Identity.ts"
import * as Lanes from "../src/Lanes.ts"
import * as Signaling from "../src/Signaling.ts"
import { Transport } from "../src/Transport.ts"
import type { TransportConfig, TransportShape } from "../src/Transport.ts"
import type { WebRtcLink } from "../src/WebRtcLink.ts"
import { GREETING_BYTES, pattern } from "./fixtures/peer.ts"
import { linksTo } from "./support/dial.ts"
import { identityDir, spawnPeer } from "./support/processes.ts"
import { eventually, notYet } from "../../../test/kit/Eventually.ts"

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b))

const localTransport = (identity: PeerIdentity, config: TransportConfig) =>
  Transport.make({ rtc: { bindAddress: "127.0.0.1" }, ...config }).pipe(
    Effect.provideService(Identity, identity),
    Effect.flatMap((t) => Effect.map(linksTo(t, config.peers[0] as PeerId), (links) => Object.assign(t, { links })))
  )

const nextLink = (transport: TransportShape & { readonly links: Queue.Dequeue<WebRtcLink> }) =>
  Queue.take(transport.links).pipe(Effect.timeout("30 seconds"))

const lanesOf = (transport: TransportShape, peer: string) =>
  Effect.map(transport.paths, (paths) => paths.get(peer as PeerId)?.lanes)

/** The fixture peer b echoing, and our transport a, both allowing `lanes`; the first link. */
const echoPeer = (lanes: { readonly max: number; readonly count?: number }, peerLanes = lanes) =>
  Effect.gen(function*() {
    const server = yield* Signaling.serve({ port: 0 })
    const a = Identity.generate()
    const b = yield* identityDir("b")
    const peer = yield* spawnPeer("b", { dataDir: b.dir, signalingUrl: server.url, peers: [a.peerId], mode: "echo", lanes: peerLanes })
    const transport = yield* localTransport(a, { signalingUrl: server.url, peers: [b.identity.peerId], lanes })
    const link = yield* nextLink(transport)
    return { b, peer, transport, link }
  })

describe("lanes: negotiation and count", () => {
  it("marks an SDP, reads the marks back, and leaves an unmarked SDP alone", () => {
    const sdp = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=fingerprint:sha-256 AB:CD\r\n"
    expect(Lanes.markSdp(sdp, "offerer", {})).toBe(sdp)
    expect(Lanes.markSdp(sdp, "answerer", { lanes: 1 })).toBe(sdp)
    const marked = Lanes.markSdp(sdp, "offerer", { lanes: 4, laneOf: "0a1b2c.17" })
    expect(Lanes.lanesOf(marked, "offerer")).toBe(4)
    expect(Lanes.laneOf(marked)).toBe("0a1b2c.17")
    expect(Lanes.lanesOf(sdp, "offerer")).toBe(1)
    expect(Lanes.laneOf(sdp)).toBeUndefined()
    expect(Lanes.lanesOf(Lanes.markSdp(sdp, "answerer", { lanes: 99 }), "answerer")).toBe(Lanes.MAX_LANES)
    // an answer that repeats the offer's lines (libdatachannel copies unknown attributes) says nothing of the answerer
    expect(Lanes.lanesOf(marked, "answerer")).toBe(1)
    expect(Lanes.laneOf(Lanes.markSdp(sdp, "answerer", { lanes: 4, laneOf: "0a1b2c.17" }))).toBeUndefined()
    expect(Lanes.laneOf(`${sdp}a=x-can-sync-lane-of:not an id\r\n`)).toBeUndefined()
  })

  it("gives one lane on loopback and a LAN, more as the round trip grows, never more than the maximum", () => {
    expect(Lanes.lanesFor(0.3, 8)).toBe(1)
    expect(Lanes.lanesFor(4, 8)).toBe(1)
    expect(Lanes.lanesFor(6, 8)).toBe(6)
    expect(Lanes.lanesFor(7.2, 32)).toBe(8)
    expect(Lanes.lanesFor(20, 8)).toBe(8)
    expect(Lanes.lanesFor(50, 8)).toBe(8)
    expect(Lanes.lanesFor(100, 8)).toBe(8)
    expect(Lanes.lanesFor(300, 8)).toBe(8)
    expect(Lanes.lanesFor(100, 3)).toBe(3)
    expect(Lanes.lanesFor(50, 16)).toBe(16)
    expect(Lanes.lanesFor(20, 32)).toBe(20)
    expect(Lanes.lanesFor(50, 32)).toBe(32)
    expect(Lanes.lanesFor(300, 99)).toBe(Lanes.MAX_LANES)
  })
})

describe("lanes (two OS processes, real signaling, real WebRTC on loopback)", () => {
  it.live("a link striped over 4 connections carries frames of every size both ways, in order, byte for byte", () =>
    Effect.gen(function*() {
      const lanes = { max: 4, count: 4 }
      const { b, peer, transport, link } = yield* echoPeer(lanes)
      yield* eventually("4 lanes at our end", Effect.map(lanesOf(transport, b.identity.peerId), (n) => (n === 4 ? n : notYet(n))), "30 seconds").pipe(Effect.tapError(() => Effect.sync(() => console.log(JSON.stringify(peer.events.filter((e) => e.event === "log"), null, 1)))))
      const sizes = [1, 65_535, 65_536, 65_537, 300_001, 1_000_000, 4 * 1024 * 1024, ...Array.from({ length: 200 }, (_, i) => 1 + ((i * 7919) % 70_000))]
      const sent = sizes.map((size, i) => pattern(size, 1000 + i))
      const received = yield* Effect.all([
        Effect.forEach(sent, (frame) => link.send(frame), { discard: true }),
        link.frames.pipe(Stream.take(1 + sent.length), Stream.runCollect, Effect.timeout("90 seconds"))
      ], { concurrency: 2 }).pipe(Effect.map(([, r]) => r))
      expect(same(received[0]!, pattern(GREETING_BYTES, 7))).toBe(true)
      received.slice(1).forEach((frame, i) => {
        expect(frame.length, `frame ${i}`).toBe(sizes[i])
        expect(same(frame, sent[i]!), `frame ${i} byte for byte`).toBe(true)
      })
      // the frames really were spread: more than one lane carried some
      const stats = yield* link.stats
      expect(stats.framesSent).toBe(sent.length)
      expect(peer.events.filter((e) => e.event === "link").length).toBe(1) // the engine's view: one link
    }).pipe(Effect.scoped))

  it.live("a peer that cannot stripe gets one plain connection", () =>
    Effect.gen(function*() {
      const { b, transport, link } = yield* echoPeer({ max: 4, count: 4 }, { max: 1 })
      const greeting = yield* link.frames.pipe(Stream.take(1), Stream.runCollect)
      expect(same(greeting[0]!, pattern(GREETING_BYTES, 7))).toBe(true)
      yield* link.send(pattern(100_000, 3))
      yield* Effect.sleep("1 second")
      expect(yield* lanesOf(transport, b.identity.peerId)).toBe(1)
      expect("addLane" in link).toBe(false)
    }).pipe(Effect.scoped))

  it.live("on one host the offerer keeps one lane even when both allow eight (the round trip is not measured against loopback)", () =>
    Effect.gen(function*() {
      const { b, transport, link } = yield* echoPeer({ max: 8 })
      expect("addLane" in link).toBe(true) // both can stripe: the link is a striped one ...
      yield* Effect.sleep("6 seconds") // ... past three heartbeats and the decision
      expect(yield* lanesOf(transport, b.identity.peerId)).toBe(1) // ... on one lane
      yield* link.send(pattern(70_000, 5))
      const echoed = yield* link.frames.pipe(Stream.take(2), Stream.runCollect)
      expect(same(echoed[1]!, pattern(70_000, 5))).toBe(true)
      // more than a credit window (16 MiB) each way through the one lane, as chunks go: never stalls
      const chunks = Array.from({ length: 160 }, (_, i) => pattern(128 * 1024, 2000 + i))
      const back = yield* Effect.all([
        Effect.forEach(chunks, (chunk) => link.send(chunk), { discard: true }),
        link.frames.pipe(Stream.take(chunks.length), Stream.runCollect)
      ], { concurrency: 2 }).pipe(
        Effect.map(([, r]) => r),
        Effect.timeoutOrElse({ duration: "60 seconds", orElse: () => Effect.die("20 MiB sent through one lane did not all come back within 60 s") })
      )
      back.forEach((frame, i) => expect(same(frame, chunks[i]!), `chunk ${i} byte for byte`).toBe(true))
    }).pipe(Effect.scoped))

  it.live("a lane that dies closes the link, and the next connect stripes again", () =>
    Effect.gen(function*() {
      const { b, transport, link } = yield* echoPeer({ max: 3, count: 3 })
      yield* eventually("3 lanes", Effect.map(lanesOf(transport, b.identity.peerId), (n) => (n === 3 ? n : notYet(n))), "30 seconds")
      // kill one lane from below (as a failed connection would): the whole link closes with its reason
      const striped = link as Lanes.StripedLink
      expect(striped.laneCount()).toBe(3)
      yield* striped.closeBecause({ _tag: "ConnectionLost", detail: "test: one lane lost" })
      const reason = yield* link.closeReason
      expect(reason.reason._tag).toBe("ConnectionLost")
      const again = yield* nextLink(transport)
      yield* eventually("3 lanes again", Effect.map(lanesOf(transport, b.identity.peerId), (n) => (n === 3 ? n : notYet(n))), "30 seconds")
      const greeting = yield* again.frames.pipe(Stream.take(1), Stream.runCollect)
      expect(same(greeting[0]!, pattern(GREETING_BYTES, 7))).toBe(true)
    }).pipe(Effect.scoped))
})
