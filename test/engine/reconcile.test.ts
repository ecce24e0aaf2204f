/**
 * Reconcile scenarios between two peers over an in-memory link with small bounded buffers:
 * whatever each side starts with, both end with the union, every asset moved exactly once.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { awaitConverged, connect, hashSet, ingestMany, makePeer, settledStats } from "./harness.ts"

describe("reconcile between two peers", () => {
  it.live("disjoint stores end with the union, each asset sent once", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      yield* ingestMany(a.store, 1, 40)
      yield* ingestMany(b.store, 2, 25)
      yield* connect(a, b)
      expect(yield* awaitConverged([a.store, b.store], "30 seconds")).toBe(65)
      const ab = yield* settledStats(a, b, (s) => s.assetsSent + s.assetsReceived >= 65)
      expect(ab.assetsSent).toBe(40)
      expect(ab.assetsReceived).toBe(25)
      expect(ab.redundantReceives).toBe(0)
    }).pipe(Effect.scoped))

  it.live("overlapping stores transfer only the difference", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      yield* ingestMany(a.store, 7, 30) // shared
      yield* ingestMany(b.store, 7, 30)
      yield* ingestMany(a.store, 8, 10) // only a
      yield* ingestMany(b.store, 9, 5) // only b
      yield* connect(a, b)
      expect(yield* awaitConverged([a.store, b.store], "30 seconds")).toBe(45)
      const ab = yield* settledStats(a, b, (s) => s.assetsSent + s.assetsReceived >= 15)
      expect(ab.assetsSent).toBe(10)
      expect(ab.assetsReceived).toBe(5)
      expect(ab.hashesWanted).toBe(5)
      expect(ab.hashesWantedByPeer).toBe(10)
    }).pipe(Effect.scoped))

  it.live("one side empty: the empty side receives everything, sends nothing", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      const hashes = yield* ingestMany(a.store, 3, 120)
      yield* connect(b, a) // the empty side dials
      expect(yield* awaitConverged([a.store, b.store], "30 seconds")).toBe(120)
      expect(yield* hashSet(b.store)).toEqual(new Set(hashes))
      const ba = yield* settledStats(b, a, (s) => s.assetsReceived >= 120)
      expect(ba.assetsSent).toBe(0)
      expect(ba.assetsReceived).toBe(120)
      expect(ba.bytesWanted).toBe(ba.bytesReceived) // progress: announced sizes match what arrived
    }).pipe(Effect.scoped))

  it.live("two empty stores reconcile to live with nothing to send", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      yield* connect(a, b)
      while ((yield* a.manager.sessions).find((s) => s.peer === b.id)?.state !== "live") yield* Effect.sleep("10 millis")
      const ab = yield* a.manager.stats(b.id)
      expect(ab.reconciles).toBe(1)
      expect(ab.assetsSent + ab.assetsReceived).toBe(0)
    }).pipe(Effect.scoped))

  it.live("a full want window is refilled in batches of an eighth of it, not with a Want per asset answered", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b", { wantWindow: 32 })
      yield* ingestMany(a.store, 13, 400)
      let wantsFromB = 0
      const WANT = 0x0e
      yield* connect(a, b, { tap: (from, _to, frame) => void (from === b.id && frame[0] === WANT && wantsFromB++) })
      expect(yield* awaitConverged([a.store, b.store], "60 seconds", { expectSize: 400 })).toBe(400)
      const ba = yield* settledStats(b, a, (s) => s.assetsReceived >= 400)
      expect(ba.hashesWanted).toBe(400)
      // 32 asked at first, then 4 at a time (plus the round's closing Want); asking again as each
      // answer freed one slot took ~330
      expect(wantsFromB).toBeGreaterThan(1)
      expect(wantsFromB).toBeLessThanOrEqual(2 + (400 - 32) / 4)
    }).pipe(Effect.scoped))

  it.live("5,000 small assets each way at once, over 4-frame link buffers: no deadlock", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      yield* Effect.all([ingestMany(a.store, 11, 5000, 64), ingestMany(b.store, 12, 5000, 64)], { concurrency: 2 })
      yield* connect(a, b, { capacity: 4 })
      expect(yield* awaitConverged([a.store, b.store], "150 seconds", { expectSize: 10_000 })).toBe(10_000)
      const ab = yield* settledStats(a, b, (s) => s.assetsSent + s.assetsReceived >= 10_000)
      const ba = yield* settledStats(b, a, (s) => s.assetsSent + s.assetsReceived >= 10_000)
      expect([ab.assetsSent, ab.assetsReceived, ba.assetsSent, ba.assetsReceived]).toEqual([5000, 5000, 5000, 5000])
      expect(ab.redundantReceives + ba.redundantReceives).toBe(0)
      expect(ab.sessions).toBe(1) // never restarted
    }).pipe(Effect.scoped), 200_000)
})
