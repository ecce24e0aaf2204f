/**
 * Range reconciliation in the engine: two peers over real embedded stores (SQLite files), which
 * provide range fingerprints, negotiate "ranges/1" and reconcile by RangeRound frames (no
 * DigestChunk), finding missing assets and a metadata edit made while apart, also when another
 * process wrote a store between sessions; when only one side provides them, both fall back to the
 * full digest exchange; equal stores settle in one round trip.
 */
import * as PeerManager from "@can-sync/core/PeerManager"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Peer } from "./harness.ts"
import { awaitConverged, connect, DIGEST_CHUNK, engineConfig, frameCounter, ingestMany, peerId, RANGE_ROUND, storeAt, tempDir, tempStore } from "./harness.ts"

/** A peer whose engine sees its embedded store (in `dir`, or a fresh one) with its range fingerprints, or with them hidden. */
const rangePeer = (name: string, ranges: boolean, dir?: string) =>
  Effect.gen(function*() {
    const id = peerId(name)
    const store = dir === undefined ? yield* tempStore(name) : yield* storeAt(dir)
    expect(store.ranges).toBeDefined()
    const manager = yield* PeerManager.make(engineConfig(id), ranges ? store : { ...store, ranges: undefined })
    return { id, store, manager } satisfies Peer
  })



describe("range reconciliation between two engines", () => {
  it.live("both sides with ranges: missing assets both ways and a metadata edit made apart are found, without any DigestChunk", () =>
    Effect.gen(function*() {
      const a = yield* rangePeer("a", true)
      const b = yield* rangePeer("b", true)
      const shared = yield* ingestMany(a.store, 7, 300)
      yield* ingestMany(b.store, 7, 300)
      yield* ingestMany(a.store, 8, 12) // only a
      yield* ingestMany(b.store, 9, 5) // only b
      const edited = yield* b.store.editMeta(shared[42]!, { description: "edited while apart" })
      const frames = frameCounter()
      yield* connect(a, b, { tap: frames.tap })
      expect(yield* awaitConverged([a.store, b.store], "60 seconds", { expectSize: 317 })).toBe(317)
      const record = yield* a.store.stat(shared[42]!)
      expect(record._tag === "Some" && record.value.meta.description).toBe("edited while apart")
      expect(record._tag === "Some" && record.value.meta.updatedAt).toBe(edited.updatedAt)
      expect(frames.count(DIGEST_CHUNK)).toBe(0)
      expect(frames.count(RANGE_ROUND)).toBeGreaterThan(2)
      const ab = yield* a.manager.stats(b.id)
      expect([ab.assetsSent, ab.assetsReceived, ab.redundantReceives]).toEqual([12, 5, 0])
    }).pipe(Effect.scoped), 90_000)

  it.live("another process writes a store between sessions: the next session's ranges see it, without any DigestChunk", () =>
    Effect.gen(function*() {
      const dirA = yield* tempDir("a")
      const a = { id: peerId("a"), store: yield* storeAt(dirA) }
      const b = { id: peerId("b"), store: yield* tempStore("b") }
      const session = Effect.gen(function*() {
        const pa = { ...a, manager: yield* PeerManager.make(engineConfig(a.id), a.store) }
        const pb = { ...b, manager: yield* PeerManager.make(engineConfig(b.id), b.store) }
        const frames = frameCounter()
        yield* connect(pa, pb, { tap: frames.tap })
        return frames
      })
      const shared = yield* ingestMany(a.store, 31, 150)
      yield* ingestMany(b.store, 32, 10)
      const first = yield* Effect.scoped(Effect.gen(function*() {
        const frames = yield* session
        expect(yield* awaitConverged([a.store, b.store], "60 seconds", { expectSize: 160 })).toBe(160)
        return frames.count(DIGEST_CHUNK)
      }))
      expect(first).toBe(0)
      // While no session runs, another process (a second store on a's directory) adds and edits;
      // a's store, still open, learns of it only from the index.
      const edited = yield* Effect.scoped(Effect.gen(function*() {
        const other = yield* storeAt(dirA)
        yield* ingestMany(other, 33, 7)
        return yield* other.editMeta(shared[17]!, { description: "edited by another process" })
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const frames = yield* session
        expect(yield* awaitConverged([a.store, b.store], "60 seconds", { expectSize: 167 })).toBe(167)
        const record = yield* b.store.stat(shared[17]!)
        expect(record._tag === "Some" && record.value.meta.updatedAt).toBe(edited.updatedAt)
        expect(frames.count(DIGEST_CHUNK)).toBe(0)
        expect(frames.count(RANGE_ROUND)).toBeGreaterThan(2)
      }))
    }).pipe(Effect.scoped), 90_000)

  it.live("one side without ranges: both fall back to the full digest exchange and converge", () =>
    Effect.gen(function*() {
      for (const [withA, withB] of [[true, false], [false, true]] as const) {
        const a = yield* rangePeer(`a${withA}`, withA)
        const b = yield* rangePeer(`b${withB}`, withB)
        yield* ingestMany(a.store, 21, 20)
        yield* ingestMany(b.store, 22, 15)
        const frames = frameCounter()
        yield* connect(a, b, { tap: frames.tap })
        expect(yield* awaitConverged([a.store, b.store], "60 seconds", { expectSize: 35 })).toBe(35)
        expect(frames.count(RANGE_ROUND)).toBe(0)
        expect(frames.count(DIGEST_CHUNK)).toBeGreaterThanOrEqual(2)
      }
    }).pipe(Effect.scoped), 90_000)

  it.live("stores that already agree (hashes and versions) settle in one round trip: two RangeRound frames", () =>
    Effect.gen(function*() {
      const dirA = yield* tempDir("a")
      const dirB = yield* tempDir("b")
      // First session: b receives a's assets (and their metadata versions).
      yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* rangePeer("a", true, dirA)
        const b = yield* rangePeer("b", true, dirB)
        yield* ingestMany(a.store, 5, 200)
        yield* connect(a, b)
        expect(yield* awaitConverged([a.store, b.store], "60 seconds", { expectSize: 200 })).toBe(200)
      }))
      // The agents restart over the same stores: nothing differs.
      const a = yield* rangePeer("a", true, dirA)
      const b = yield* rangePeer("b", true, dirB)
      const frames = frameCounter()
      yield* connect(a, b, { tap: frames.tap })
      for (const [self, other] of [[a, b], [b, a]] as const) {
        while ((yield* self.manager.sessions).find((s) => s.peer === other.id)?.state !== "live") yield* Effect.sleep("10 millis")
      }
      expect(frames.count(RANGE_ROUND)).toBe(2)
      expect(frames.count(DIGEST_CHUNK)).toBe(0)
      const ab = yield* a.manager.stats(b.id)
      expect(ab.assetsSent + ab.assetsReceived + ab.metaSent).toBe(0)
    }).pipe(Effect.scoped, Effect.timeout("80 seconds")), 90_000)
})
