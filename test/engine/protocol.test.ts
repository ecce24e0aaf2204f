/**
 * The engine against a hand-driven peer that speaks raw frames: the handshake refuses another
 * protocol version with a clear error, content that does not match its hash is refused without
 * ending the session, broken input fails that one session (never the agent), and a second
 * dial for a peer already dialed is refused. Also: the actor's scope owns its children and its
 * link, and the manager retries failed attempts and dropped sessions with backoff.
 */
import { describe, expect, it } from "@effect/vitest"
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as Frame from "@can-sync/core/Frame"
import * as InMemoryLink from "@can-sync/core/InMemoryLink"
import * as Metrics from "@can-sync/core/Metrics"
import * as PeerActor from "@can-sync/core/PeerActor"
import { Proto } from "@can-sync/core"
import type { PeerLink } from "@can-sync/core"
import { Data, Effect, Fiber, Metric, Queue, Ref, Result } from "effect"
import { asHash, awaitConverged, awaitLive, connect, dialOver, ingestMany, makePeer, peerId, tempStore } from "./harness.ts"
import { digest, engineSide, fakeHashes, hello, meta, rawPeer, sha } from "./rawPeer.ts"

class ConnectRefused extends Data.TaggedError("ConnectRefused")<{ readonly attempt: number }> {
  override get message() {
    return `connection refused (attempt ${this.attempt})`
  }
}

describe("handshake", () => {
  it.live("a peer speaking another protocol version gets a fatal PROTOCOL_VERSION error and the session fails with a typed error", () =>
    Effect.gen(function*() {
      const { actor, raw } = yield* engineSide()
      yield* raw.send(hello(99))
      expect((yield* raw.next("Hello")).message.protocolVersion).toBe(EngineConfig.PROTOCOL_VERSION)
      const error = (yield* raw.next("Error")).message
      expect(error).toMatchObject({ code: Proto.ErrorCode.PROTOCOL_VERSION, fatal: true })
      expect(error.message).toContain("version 99")
      const failure = yield* Fiber.join(actor)
      expect(failure).toMatchObject({ _tag: "ProtocolVersionMismatch", local: EngineConfig.PROTOCOL_VERSION, remote: 99 })
    }).pipe(Effect.scoped))

  it.live("a Hello naming another peer than the link's is refused", () =>
    Effect.gen(function*() {
      const { actor, raw } = yield* engineSide()
      yield* raw.send(hello(EngineConfig.PROTOCOL_VERSION, "someone-else"))
      expect(yield* Fiber.join(actor)).toMatchObject({ _tag: "PeerMismatch", expected: "raw", announced: "someone-else" })
    }).pipe(Effect.scoped))
})

describe("transfer verification", () => {
  it.live("content whose hash differs is refused with a HASH_MISMATCH error frame, nothing is stored, and the session goes on (wants it cannot serve are answered with ASSET_NOT_FOUND)", () =>
    Effect.gen(function*() {
      const { store, actor, raw } = yield* engineSide()
      const good = new Uint8Array(1000).fill(7)
      const bad = new Uint8Array(1000).fill(8)
      const x = sha(good)
      yield* raw.send(hello())
      yield* raw.send(Frame.make("DigestChunk", { digests: [digest(x, good.length)], last: true }))
      yield* raw.next("Hello")
      expect((yield* raw.next("DigestChunk")).message).toEqual({ digests: [], last: true })
      // We ask the engine for an asset it does not have: answered with a non-fatal error naming it.
      const absent = sha(new Uint8Array([42]))
      yield* raw.send(Frame.make("Want", { hashes: [absent], last: true }))
      expect((yield* raw.next("Error")).message).toMatchObject({ code: Proto.ErrorCode.ASSET_NOT_FOUND, hash: absent, fatal: false })
      expect((yield* raw.next("Want")).message).toEqual({ hashes: [x], last: true, offsets: [] })
      yield* raw.send(Frame.make("AssetHeader", { hash: x, size: bad.length, meta }))
      yield* raw.send(Frame.make("AssetChunk", { hash: x, data: bad }))
      yield* raw.send(Frame.make("AssetEnd", { hash: x }))
      expect((yield* raw.next("Error")).message).toMatchObject({ code: Proto.ErrorCode.HASH_MISMATCH, hash: x, fatal: false })
      expect(yield* store.has(asHash(x))).toBe(false)
      // The session goes on: reconcile ends, and a live Offer is answered and served.
      yield* raw.next("Done")
      yield* raw.send(Frame.make("Done", { assetsSent: 0, bytesSent: 0 }))
      const other = new Uint8Array(500).fill(9)
      const y = sha(other)
      yield* raw.send(Frame.make("Offer", { digests: [digest(y, other.length)] }))
      expect((yield* raw.next("Want")).message).toEqual({ hashes: [y], last: true, offsets: [] })
      yield* raw.send(Frame.make("AssetHeader", { hash: y, size: other.length, meta }))
      yield* raw.send(Frame.make("AssetChunk", { hash: y, data: other }))
      yield* raw.send(Frame.make("AssetEnd", { hash: y }))
      while (!(yield* store.has(asHash(y)))) yield* Effect.sleep("10 millis")
      expect(yield* store.has(asHash(x))).toBe(false)
      expect(actor.pollUnsafe()).toBeUndefined() // still running
    }).pipe(Effect.scoped))

  it.live("an asset nobody asked for is a protocol violation: fatal error frame, typed failure, nothing stored", () =>
    Effect.gen(function*() {
      const { store, actor, raw } = yield* engineSide()
      const data = new Uint8Array(10).fill(1)
      yield* raw.send(hello())
      yield* raw.send(Frame.make("DigestChunk", { digests: [], last: true }))
      yield* raw.send(Frame.make("AssetHeader", { hash: sha(data), size: 10, meta }))
      yield* raw.send(Frame.make("AssetChunk", { hash: sha(data), data }))
      expect(yield* Fiber.join(actor)).toMatchObject({ _tag: "ProtocolViolation", frame: "AssetHeader" })
      expect((yield* raw.next("Error")).message).toMatchObject({ code: Proto.ErrorCode.PROTOCOL_VIOLATION, fatal: true })
      expect(yield* store.has(asHash(sha(data)))).toBe(false)
    }).pipe(Effect.scoped))
})

describe("metrics", () => {
  it.live("propagation latency is measured from the announcement that made us want an asset, not from its age", () =>
    Effect.gen(function*() {
      const { raw, store } = yield* engineSide()
      const data = new Uint8Array(300).fill(3)
      const x = sha(data)
      yield* raw.send(hello())
      yield* raw.send(Frame.make("DigestChunk", { digests: [digest(x, data.length)], last: true }))
      expect((yield* raw.next("Want")).message.hashes).toEqual([x])
      // Created in 1970 (createdAt = 1 ms), announced just now.
      yield* raw.send(Frame.make("AssetHeader", { hash: x, size: data.length, meta }))
      yield* raw.send(Frame.make("AssetChunk", { hash: x, data }))
      yield* raw.send(Frame.make("AssetEnd", { hash: x }))
      const latency = yield* Effect.gen(function*() {
        while (true) {
          const state = yield* Metric.value(Metrics.propagationLatency)
          if (state.count > 0 && (yield* store.has(asHash(x)))) return state
          yield* Effect.sleep("10 millis")
        }
      }).pipe(Effect.timeout("10 seconds"))
      expect(latency.max).toBeLessThan(60)
    }).pipe(Effect.scoped))
})

describe("flow-control windows", () => {
  it.live("a Want(last) after the reconcile round that answers no Offer is a protocol violation", () =>
    Effect.gen(function*() {
      const { actor, raw } = yield* engineSide()
      yield* raw.send(hello())
      yield* raw.send(Frame.make("DigestChunk", { digests: [], last: true }))
      expect((yield* raw.next("Want")).message).toEqual({ hashes: [], last: true, offsets: [] }) // the engine's reconcile wants: none
      yield* raw.send(Frame.make("Want", { hashes: [], last: true })) // ours: none, round closed
      yield* raw.next("Done")
      yield* raw.send(Frame.make("Want", { hashes: [], last: true })) // the engine offered nothing
      expect(yield* Fiber.join(actor)).toMatchObject({ _tag: "ProtocolViolation", frame: "Want", detail: "an answer (last = true) to no Offer" })
      expect((yield* raw.next("Error")).message).toMatchObject({ code: Proto.ErrorCode.PROTOCOL_VIOLATION, fatal: true })
    }).pipe(Effect.scoped))

  it.live("wanting more than 4,096 hashes unanswered is a protocol violation", () =>
    Effect.gen(function*() {
      const { actor, raw } = yield* engineSide()
      yield* raw.send(hello())
      yield* raw.send(Frame.make("DigestChunk", { digests: [], last: true }))
      const hashes = fakeHashes(EngineConfig.MAX_OUTSTANDING_WANTS + 1, "w")
      for (let i = 0; i < hashes.length; i += EngineConfig.MAX_DIGESTS_PER_FRAME) {
        yield* raw.send(Frame.make("Want", { hashes: hashes.slice(i, i + EngineConfig.MAX_DIGESTS_PER_FRAME), last: false }))
      }
      expect(yield* Fiber.join(actor)).toMatchObject({ _tag: "ProtocolViolation", frame: "Want", detail: "4097 hashes wanted and unanswered, more than 4096" })
    }).pipe(Effect.scoped))

  it.live("a 17th unanswered Offer is a protocol violation (the 16 before it are within the window)", () =>
    Effect.gen(function*() {
      // The engine asks one hash at a time: with two missing, its reconcile round stays open and Offers wait for answers.
      const { actor, raw } = yield* engineSide({ wantWindow: 1 })
      const [x, y] = fakeHashes(2, "missing")
      yield* raw.send(hello())
      yield* raw.send(Frame.make("DigestChunk", { digests: [digest(x!, 10), digest(y!, 10)], last: true }))
      expect((yield* raw.next("Want")).message.last).toBe(false)
      const offers = fakeHashes(EngineConfig.MAX_UNANSWERED_OFFERS + 1, "offered")
      for (const h of offers) yield* raw.send(Frame.make("Offer", { digests: [digest(h, 10)] }))
      expect(yield* Fiber.join(actor)).toMatchObject({ _tag: "ProtocolViolation", frame: "Offer", detail: "17 Offers unanswered, more than 16" })
    }).pipe(Effect.scoped))
})

describe("failure isolation and supervision", () => {
  it.live("a malformed frame fails that peer's actor, never the agent: other sessions keep syncing", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      yield* connect(a, b)
      yield* awaitLive(a, [b])
      const [toEngine, evilEnd] = yield* InMemoryLink.pair(peerId("a"), peerId("evil"))
      const evilLinks = yield* Queue.unbounded<PeerLink>()
      yield* Queue.offer(evilLinks, toEngine) // one link: later attempts wait forever
      yield* a.manager.dial(peerId("evil"), Queue.take(evilLinks))
      const evil = yield* rawPeer(evilEnd)
      yield* evilEnd.send(new Uint8Array([0x7f, 0, 0, 0, 0])) // unknown frame type
      expect((yield* evil.next("Error")).message).toMatchObject({ code: Proto.ErrorCode.FRAME_INVALID, fatal: true })
      yield* evilEnd.closed
      // a's session with b is untouched and still syncs.
      yield* ingestMany(a.store, 61, 10)
      expect(yield* awaitConverged([a.store, b.store], "20 seconds", { expectSize: 10 })).toBe(10)
      const sessions = yield* a.manager.sessions
      expect(sessions.find((s) => s.peer === b.id)?.state).toBe("live")
      expect(sessions.find((s) => s.peer === "evil")?.lastError).toBe("undecodable frame from evil: unknown frame type 0x7f")
      expect((yield* a.manager.stats(b.id)).sessions).toBe(1)
    }).pipe(Effect.scoped))

  it.live("a second dial for a peer that is already dialed is refused", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      yield* connect(a, b)
      yield* awaitLive(a, [b])
      expect(yield* a.manager.dial(b.id, Effect.never).pipe(Effect.flip)).toMatchObject({ _tag: "DuplicatePeer", peer: "b" })
      expect((yield* a.manager.sessions).map((s) => [s.peer, s.state])).toEqual([["b", "live"]])
    }).pipe(Effect.scoped))

  it.live("closing an actor's scope interrupts its children and closes the link; the peer's actor then fails with LinkClosed", () =>
    Effect.gen(function*() {
      const sa = yield* tempStore("a")
      const sb = yield* tempStore("b")
      yield* ingestMany(sa, 71, 5)
      const [la, lb] = yield* InMemoryLink.pair(peerId("a"), peerId("b"))
      const stateA = yield* Ref.make<"connecting" | "handshake" | "reconciling" | "live" | "backoff">("connecting")
      const actorA = yield* PeerActor.run(la, { config: EngineConfig.make({ localPeerId: peerId("a") }), store: sa, state: stateA }).pipe(Effect.forkChild)
      const actorB = yield* PeerActor.run(lb, { config: EngineConfig.make({ localPeerId: peerId("b") }), store: sb, role: "acceptor" }).pipe(Effect.flip, Effect.forkChild)
      while ((yield* Ref.get(stateA)) !== "live") yield* Effect.sleep("10 millis")
      yield* Fiber.interrupt(actorA)
      yield* la.closed
      expect(yield* Fiber.join(actorB)).toMatchObject({ _tag: "LinkClosed" })
      expect(Result.isFailure(yield* la.send(new Uint8Array(1)).pipe(Effect.result))).toBe(true)
    }).pipe(Effect.scoped))

  it.live("a failed connection attempt is retried with backoff until it connects; a dropped session is redialed", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      yield* ingestMany(b.store, 81, 5)
      const net = yield* InMemoryLink.network()
      const attempts = yield* Ref.make(0)
      yield* a.manager.dial(b.id, Effect.gen(function*() {
        const n = yield* Ref.updateAndGet(attempts, (x) => x + 1)
        if (n <= 3) return yield* new ConnectRefused({ attempt: n })
        return yield* net.connect(a.id, b.id)
      }))
      yield* dialOver(net, b, a)
      expect(yield* awaitConverged([a.store, b.store], "20 seconds", { expectSize: 5 })).toBe(5)
      expect(yield* Ref.get(attempts)).toBe(4)
      const [info] = yield* a.manager.sessions
      expect(info).toMatchObject({ peer: "b", state: "live", restarts: 3, role: expect.any(String) })
      expect(info!.lastError).toBe("connection refused (attempt 3)")
      // b stops dialing and drops the session: a notices and keeps trying; b dials again and they meet.
      yield* b.manager.disconnect(a.id)
      yield* dialOver(net, b, a)
      yield* awaitLive(a, [b])
      while ((yield* a.manager.stats(b.id)).reconciles < 2) yield* Effect.sleep("10 millis")
      expect((yield* a.manager.stats(b.id)).sessions).toBe(2)
      expect((yield* a.manager.sessions)[0]!.lastError).toBe("link to b closed: closed by the peer")
    }).pipe(Effect.scoped))

  it.live("a peer never reached keeps its entry: backing off, no session, the last error with its time and the next retry", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      yield* a.manager.dial(peerId("far"), new ConnectRefused({ attempt: 0 }))
      while ((yield* a.manager.sessions)[0]!.restarts < 3) yield* Effect.sleep("10 millis")
      const [info] = yield* a.manager.sessions
      expect(info).toMatchObject({ peer: "far", role: undefined, lastError: "connection refused (attempt 0)" })
      expect(["connecting", "backoff"]).toContain(info!.state)
      expect(info!.stats.sessions).toBe(0) // never connected, as opposed to dropped
      expect(info!.lastErrorAt).toBeGreaterThan(0)
      if (info!.state === "backoff") expect(info!.nextRetryAt).toBeGreaterThanOrEqual(info!.lastErrorAt!)
      yield* a.manager.disconnect(peerId("far"))
      expect(yield* a.manager.sessions).toEqual([])
    }).pipe(Effect.scoped))
})
