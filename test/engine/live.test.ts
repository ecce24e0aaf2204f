/**
 * Live sync between two connected peers: new assets and metadata edits on either side reach the
 * other at once, nothing is ever pushed back to where it came from, concurrent metadata edits
 * converge, and the fallback poll catches an asset whose store event was lost.
 */
import { describe, expect, it } from "@effect/vitest"
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as Frame from "@can-sync/core/Frame"
import * as InMemoryLink from "@can-sync/core/InMemoryLink"
import * as PeerManager from "@can-sync/core/PeerManager"
import type { CanStoreShape } from "@can-sync/core"
import { Effect, Result, Stream } from "effect"
import { TestClock } from "effect/testing"
import { createHash } from "node:crypto"
import {
  asHash,
  awaitConverged,
  awaitLive,
  connect,
  content,
  hashSet,
  ingestMany,
  makePeer,
  peerId,
  settledStats,
  snapshot,
  tempStore
} from "./harness.ts"
import type { Tap } from "./harness.ts"

/** Records, per direction, the hashes offered and the hashes whose content was sent. */
const recorder = () => {
  const offered = new Map<string, Set<string>>()
  const sent = new Map<string, Set<string>>()
  const at = (m: Map<string, Set<string>>, k: string) => m.get(k) ?? m.set(k, new Set()).get(k)!
  const tap: Tap = (from, to, bytes) => {
    const frame = Frame.decode(bytes)
    if (Result.isFailure(frame)) return
    const f = frame.success
    if (f._tag === "Offer") for (const d of f.message.digests) at(offered, `${from}>${to}`).add(d.hash)
    if (f._tag === "AssetHeader") at(sent, `${from}>${to}`).add(f.message.hash)
  }
  const get = (m: Map<string, Set<string>>, from: string, to: string) => m.get(`${from}>${to}`) ?? new Set<string>()
  return { tap, offered: (from: string, to: string) => get(offered, from, to), sent: (from: string, to: string) => get(sent, from, to) }
}

const sha256 = (stream: Stream.Stream<Uint8Array>) =>
  Stream.runFold(stream, () => createHash("sha256"), (h, chunk) => h.update(chunk)).pipe(Effect.map((h) => h.digest("hex")))

describe("live sync", () => {
  it.live("assets ingested on both sides while connected reach the other side, each sent once", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      yield* connect(a, b)
      yield* awaitLive(a, [b])
      yield* Effect.all([ingestMany(a.store, 21, 150), ingestMany(b.store, 22, 150)], { concurrency: 2 })
      expect(yield* awaitConverged([a.store, b.store], "30 seconds", { expectSize: 300 })).toBe(300)
      const ab = yield* settledStats(a, b, (s) => s.assetsSent + s.assetsReceived >= 300)
      const ba = yield* settledStats(b, a, (s) => s.assetsSent + s.assetsReceived >= 300)
      expect(ab.assetsSent).toBe(150)
      expect(ba.assetsSent).toBe(150)
      expect(ab.redundantReceives + ba.redundantReceives).toBe(0)
      expect(ab.reconciles).toBe(1) // all of it live, in the first session
    }).pipe(Effect.scoped))

  it.live("an asset received from B is never pushed back to B (zero echoes, counted on the wire)", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      const rec = recorder()
      yield* ingestMany(a.store, 31, 20)
      yield* ingestMany(b.store, 32, 20)
      yield* connect(a, b, { tap: rec.tap })
      yield* awaitLive(a, [b])
      yield* Effect.all([ingestMany(a.store, 33, 60), ingestMany(b.store, 34, 60)], { concurrency: 2 })
      yield* awaitConverged([a.store, b.store], "30 seconds", { expectSize: 160 })
      const fromB = rec.sent("b", "a")
      const fromA = rec.sent("a", "b")
      expect(fromB.size).toBe(80)
      expect(fromA.size).toBe(80)
      // Nothing that came from one side was ever offered or sent back to it.
      expect([...rec.offered("a", "b")].filter((h) => fromB.has(h))).toEqual([])
      expect([...rec.offered("b", "a")].filter((h) => fromA.has(h))).toEqual([])
      expect([...fromA].filter((h) => fromB.has(h))).toEqual([])
      // The live pushes that were suppressed because the asset came from that very peer.
      expect((yield* a.manager.stats(b.id)).echoesSuppressed).toBeGreaterThanOrEqual(60)
      expect((yield* b.manager.stats(a.id)).echoesSuppressed).toBeGreaterThanOrEqual(60)
    }).pipe(Effect.scoped))

  it.live("concurrent metadata edits on both sides converge to the last writer (description, tags, trashed)", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      const hashes = (yield* ingestMany(a.store, 41, 30)).map(asHash)
      yield* connect(a, b)
      yield* awaitConverged([a.store, b.store], "30 seconds", { expectSize: 30 })
      // Both sides edit every asset at once, several times.
      for (let round = 0; round < 3; round++) {
        yield* Effect.all([
          Effect.forEach(hashes, (h, i) => a.store.editMeta(h, { description: `a${round}-${i}`, tags: ["from-a", `r${round}`] })),
          Effect.forEach(hashes, (h, i) => b.store.editMeta(h, { description: `b${round}-${i}`, trashed: i % 2 === 0 }))
        ], { concurrency: 2 })
      }
      yield* awaitConverged([a.store, b.store], "30 seconds")
      // The winner of each asset is the greater (updatedAt, origin) of the two last edits.
      const snap = yield* snapshot(a.store)
      for (const h of hashes) {
        const ra = yield* a.store.stat(h)
        const rb = yield* b.store.stat(h)
        expect(ra._tag === "Some" && ra.value.meta).toEqual(rb._tag === "Some" && rb.value.meta)
        expect(snap.get(h)).toMatch(/^\["(a2|b2)-/)
      }
    }).pipe(Effect.scoped))

  it.live("edits made while disconnected converge at the next reconcile", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      const shared = (yield* ingestMany(a.store, 51, 10)).map(asHash)
      yield* ingestMany(b.store, 51, 10)
      yield* b.store.editMeta(shared[0]!, { description: "edited offline at b", tags: ["b"] })
      yield* a.store.editMeta(shared[1]!, { trashed: true })
      yield* b.store.editMeta(shared[2]!, { description: "b first" })
      yield* Effect.sleep("5 millis")
      yield* a.store.editMeta(shared[2]!, { description: "a later" })
      yield* connect(a, b)
      yield* awaitConverged([a.store, b.store], "30 seconds")
      const meta = (h: string) => b.store.stat(asHash(h)).pipe(Effect.map((r) => (r._tag === "Some" ? r.value.meta : undefined)))
      expect((yield* meta(shared[0]!))?.description).toBe("edited offline at b")
      expect((yield* meta(shared[1]!))?.trashed).toBe(true)
      expect((yield* meta(shared[2]!))?.description).toBe("a later")
      expect((yield* a.manager.stats(b.id)).assetsSent).toBe(0) // metadata only, no content moved
    }).pipe(Effect.scoped))
})

describe("fallback poll", () => {
  it.effect("picks up an asset whose store event was dropped, at the next poll (TestClock, no real 30 s wait)", () =>
    Effect.gen(function*() {
      const realSleep = (ms: number) => Effect.promise(() => new Promise<void>((r) => setTimeout(r, ms)))
      const awaitReal = <E>(check: Effect.Effect<boolean, E>, ms: number) =>
        Effect.gen(function*() {
          const until = Date.now() + ms
          while (!(yield* check)) {
            if (Date.now() > until) return false
            yield* realSleep(20)
          }
          return true
        })
      const storeA = yield* tempStore("a")
      const storeB = yield* tempStore("b")
      const lost = content(9090, 5000)
      const lostHash = yield* sha256(lost)
      // A's engine sees A's store through a filter that loses the event of one asset.
      const leaky: CanStoreShape = {
        ...storeA,
        events: (o) => storeA.events(o).pipe(Stream.filter((e) => e.hash !== lostHash))
      }
      const config = (id: string) => EngineConfig.make({ localPeerId: peerId(id), pollInterval: "30 seconds" })
      const a = yield* PeerManager.make(config("a"), leaky)
      const b = yield* PeerManager.make(config("b"), storeB)
      const net = yield* InMemoryLink.network()
      yield* a.dial(peerId("b"), net.connect(peerId("a"), peerId("b")))
      yield* b.dial(peerId("a"), net.connect(peerId("b"), peerId("a")))
      expect(yield* awaitReal(a.sessions.pipe(Effect.map((ss) => ss.some((s) => s.state === "live"))), 10_000)).toBe(true)
      yield* storeA.ingest(content(9091, 3000)) // an asset whose event arrives: pushed at once
      yield* storeA.ingest(lost)
      expect(yield* awaitReal(storeB.stats.pipe(Effect.map((s) => s.assets === 1)), 10_000)).toBe(true)
      yield* realSleep(300)
      expect(yield* storeB.has(asHash(lostHash))).toBe(false) // its event was lost: not pushed yet
      yield* TestClock.adjust("30 seconds")
      expect(yield* awaitReal(storeB.has(asHash(lostHash)), 10_000)).toBe(true)
      expect(yield* hashSet(storeB)).toEqual(yield* hashSet(storeA))
    }).pipe(Effect.scoped), 60_000)
})
