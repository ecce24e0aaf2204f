/**
 * Meshes of three agents over in-memory links: an asset added anywhere reaches everyone, through
 * intermediaries when there is no direct link, and no agent ever receives content it already has
 * (counted on the wire: every AssetHeader a peer receives is for an asset it lacked).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Frame from "@can-sync/core/Frame"
import { Effect, Result } from "effect"
import { awaitConverged, awaitLive, connect, hashSet, ingestMany, makePeer, settledStats } from "./harness.ts"
import type { Peer, Tap } from "./harness.ts"

/** Per receiving peer: how many asset contents arrived, and which hashes arrived more than once. */
const wireCounter = () => {
  const received = new Map<string, Array<string>>()
  const tap: Tap = (_from, to, bytes) => {
    const f = Frame.decode(bytes)
    if (Result.isSuccess(f) && f.success._tag === "AssetHeader") {
      const list = received.get(to) ?? []
      list.push(f.success.message.hash)
      received.set(to, list)
    }
  }
  const count = (peer: string) => (received.get(peer) ?? []).length
  const duplicates = (peer: string) => {
    const seen = new Set<string>()
    return (received.get(peer) ?? []).filter((h) => (seen.has(h) ? true : (seen.add(h), false)))
  }
  return { tap, count, duplicates }
}

/** Every asset a peer received over the wire was one it lacked: received = final − initial. */
const expectNoRedundantTransfers = (peers: ReadonlyArray<Peer>, initial: ReadonlyArray<number>, final: number, wire: ReturnType<typeof wireCounter>) =>
  Effect.gen(function*() {
    for (const [i, p] of peers.entries()) {
      expect(wire.duplicates(p.id)).toEqual([])
      expect(wire.count(p.id)).toBe(final - initial[i]!)
      let redundant = 0
      for (const q of peers) redundant += (yield* p.manager.stats(q.id)).redundantReceives
      expect(redundant).toBe(0)
    }
  })

describe("mesh", () => {
  it.live("A–B–C in a line: assets reach C from A through B, none received twice, none echoed", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      const c = yield* makePeer("c")
      const wire = wireCounter()
      yield* ingestMany(a.store, 101, 30)
      yield* ingestMany(b.store, 102, 20)
      yield* ingestMany(c.store, 103, 10)
      yield* connect(a, b, { tap: wire.tap })
      yield* connect(b, c, { tap: wire.tap })
      yield* awaitConverged([a.store, b.store, c.store], "30 seconds", { expectSize: 60 })
      yield* awaitLive(b, [a, c])
      // Live: added at A, it must reach C, which has no link to A.
      const live = yield* ingestMany(a.store, 104, 25)
      yield* awaitConverged([a.store, b.store, c.store], "30 seconds", { expectSize: 85 })
      const atC = yield* hashSet(c.store)
      expect(live.every((h) => atC.has(h))).toBe(true)
      yield* expectNoRedundantTransfers([a, b, c], [30 + 25, 20, 10], 85, wire)
      expect((yield* settledStats(c, b, (s) => s.assetsReceived >= 50 + 25)).assetsReceived).toBe(50 + 25)
    }).pipe(Effect.scoped))

  it.live("a triangle converges the same way, with live ingest at every corner and no asset received twice", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      const c = yield* makePeer("c")
      const wire = wireCounter()
      yield* ingestMany(a.store, 201, 40)
      yield* ingestMany(b.store, 202, 30)
      yield* ingestMany(c.store, 203, 20)
      yield* ingestMany(a.store, 204, 10) // shared by a and b from the start
      yield* ingestMany(b.store, 204, 10)
      yield* connect(a, b, { tap: wire.tap })
      yield* connect(b, c, { tap: wire.tap })
      yield* connect(c, a, { tap: wire.tap })
      yield* awaitConverged([a.store, b.store, c.store], "30 seconds", { expectSize: 100 })
      yield* Effect.all([awaitLive(a, [b, c]), awaitLive(b, [a, c]), awaitLive(c, [a, b])], { concurrency: 3 })
      yield* Effect.all([ingestMany(a.store, 205, 30), ingestMany(b.store, 206, 30), ingestMany(c.store, 207, 30)], { concurrency: 3 })
      yield* awaitConverged([a.store, b.store, c.store], "30 seconds", { expectSize: 190 })
      yield* expectNoRedundantTransfers([a, b, c], [80, 70, 50], 190, wire)
    }).pipe(Effect.scoped))
})
