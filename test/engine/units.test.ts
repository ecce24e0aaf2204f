/**
 * The engine's small parts on their own: the digest diff, the echo filter, the in-flight
 * registry, the in-memory link's bounded buffers and close, and the config's protocol clamps.
 */
import { describe, expect, it } from "@effect/vitest"
import * as EchoFilter from "../../packages/core/src/EchoFilter.ts"
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as InFlight from "../../packages/core/src/InFlight.ts"
import * as InMemoryLink from "@can-sync/core/InMemoryLink"
import * as Reconcile from "../../packages/core/src/Reconcile.ts"
import type { AssetHash } from "@can-sync/core"
import { Effect, Fiber, Result, Stream } from "effect"
import { peerId } from "./harness.ts"

const h = (n: number) => n.toString(16).padStart(64, "0") as AssetHash
const v = (updatedAt: number, origin = "s") => ({ updatedAt, origin })

describe("Reconcile.diff", () => {
  it("lists what the peer has and we lack, in the peer's order, and shared assets whose metadata is newer here", () => {
    const local = new Map([[h(1), v(5)], [h(2), v(5)], [h(3), v(9, "a")], [h(4), v(9, "b")]])
    const remote = new Map([[h(9), v(1)], [h(2), v(4)], [h(1), v(6)], [h(3), v(9, "b")], [h(4), v(9, "a")], [h(8), v(1)]])
    expect(Reconcile.diff(local, remote)).toEqual({ missing: [h(9), h(8)], newerHere: [h(2), h(4)] })
  })

  it("finds the handful that differ among 50,000 digests on each side", () => {
    const local = new Map<AssetHash, Reconcile.Version>()
    const remote = new Map<AssetHash, Reconcile.Version>()
    for (let i = 0; i < 50_000; i++) {
      local.set(h(i), v(1))
      remote.set(h(i < 49_950 ? i : 100_000 + i), v(i === 7 ? 0 : 1))
    }
    const d = Reconcile.diff(local, remote)
    expect(d.missing.length).toBe(50)
    expect(d.newerHere).toEqual([h(7)])
  })
})

describe("EchoFilter", () => {
  it("remembers what the peer has, forgetting the oldest first when full", () => {
    const f = EchoFilter.make(3)
    for (const x of ["a", "b", "c"]) f.add(x)
    f.add("a") // refreshed: now the newest
    f.add("d") // evicts b, the oldest
    expect(["a", "b", "c", "d"].map(f.has)).toEqual([true, false, true, true])
    expect(f.size()).toBe(3)
  })
})

describe("InFlight", () => {
  it.effect("one session at a time receives an asset; the others learn how it ended; stashed edits come back on settle", () =>
    Effect.gen(function*() {
      const reg = yield* InFlight.make
      const one = yield* InFlight.newOwner("b")
      const two = yield* InFlight.newOwner("c")
      expect((yield* reg.claim("x", one))._tag).toBe("Claimed")
      const busy = yield* reg.claim("x", two)
      expect(busy._tag).toBe("Busy")
      const meta = { description: "d", tags: [], trashed: false, createdAt: 1, updatedAt: 2, origin: "o" }
      expect(yield* reg.stashMeta("x", meta, "c")).toBe(true)
      expect(yield* reg.stashMeta("y", meta, "c")).toBe(false) // nobody receiving y
      const waiter = yield* Effect.forkChild(busy._tag === "Busy" ? busy.settled : Effect.succeed(true))
      expect(yield* reg.settle("x", one, false)).toEqual({ meta, from: "c" })
      expect(yield* Fiber.join(waiter)).toBe(false) // the other session may now ask its own peer
      expect((yield* reg.claim("x", two))._tag).toBe("Claimed")
      yield* reg.releaseAll(two)
      expect(yield* reg.size).toBe(0)
    }))
})

describe("InMemoryLink", () => {
  it.effect("a sender suspends when the peer's buffer is full, and resumes as the peer reads", () =>
    Effect.gen(function*() {
      const [a, b] = yield* InMemoryLink.pair(peerId("a"), peerId("b"), { capacity: 2 })
      const sender = yield* Effect.forkChild(Effect.forEach([1, 2, 3, 4, 5], (n) => a.send(new Uint8Array([n])), { discard: true }))
      yield* Effect.yieldNow
      expect(sender.pollUnsafe()).toBeUndefined() // blocked on the third frame
      const got = yield* b.frames.pipe(Stream.take(5), Stream.map((f) => f[0]), Stream.runCollect)
      expect(got).toEqual([1, 2, 3, 4, 5])
      yield* Fiber.join(sender)
    }).pipe(Effect.scoped))

  it.effect("closing either end delivers what was buffered, ends both streams, and fails later and blocked sends", () =>
    Effect.gen(function*() {
      const [a, b] = yield* InMemoryLink.pair(peerId("a"), peerId("b"), { capacity: 1 })
      yield* a.send(new Uint8Array([1]))
      const blocked = yield* Effect.forkChild(a.send(new Uint8Array([2])).pipe(Effect.result))
      yield* Effect.yieldNow
      yield* b.close
      yield* a.closed
      const result = yield* Fiber.join(blocked)
      expect(Result.isFailure(result) && result.failure._tag).toBe("LinkClosed")
      expect(yield* b.frames.pipe(Stream.map((f) => f[0]), Stream.runCollect)).toEqual([1])
      expect(yield* a.frames.pipe(Stream.runCollect)).toEqual([])
      expect(Result.isFailure(yield* b.send(new Uint8Array([3])).pipe(Effect.result))).toBe(true)
      expect([a.remotePeer, b.remotePeer]).toEqual(["b", "a"])
    }).pipe(Effect.scoped))
})

describe("EngineConfig", () => {
  it("clamps the windows to the protocol's limits and fills defaults", () => {
    const c = EngineConfig.make({ localPeerId: peerId("a"), wantWindow: 1e9, offerWindow: 0, digestChunkSize: 5000, pollInterval: "5 seconds" })
    expect(c.wantWindow).toBe(EngineConfig.MAX_OUTSTANDING_WANTS)
    expect(c.offerWindow).toBe(1)
    expect(c.digestChunkSize).toBe(EngineConfig.MAX_DIGESTS_PER_FRAME)
    expect(c.chunkBytes).toBe(128 * 1024)
    expect(c.pollInterval.toString()).toContain("5")
  })
})
