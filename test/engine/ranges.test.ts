/**
 * Range reconciliation in the engine: two peers whose stores both provide range fingerprints
 * negotiate "ranges/1" and reconcile by RangeRound frames (no DigestChunk), finding missing assets
 * and a metadata edit made while apart; when only one side provides them, both fall back to the
 * full digest exchange; equal stores settle in one round trip.
 */
import type { StoreError } from "@can-sync/core"
import * as PeerManager from "@can-sync/core/PeerManager"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Peer, Store } from "./harness.ts"
import * as Fingerprints from "../../packages/core/src/Fingerprints.ts"
import type { RangeSource } from "../../packages/core/src/Fingerprints.ts"
import { allDigests, awaitConverged, connect, engineConfig, ingestMany, peerId, storeAt, tempDir, tempStore } from "./harness.ts"

/**
 * A RangeSource over a store's digests, listed afresh on every call (a test's stand-in for the
 * table a store keeps up to date).
 */
const listedRanges = (store: Store): RangeSource<StoreError> => {
  const current = allDigests(store).pipe(
    Effect.map((digests) =>
      Fingerprints.memorySource(
        digests
          .map((d) => ({ hash: d.hash as string, size: d.size, updatedAt: d.updatedAt, origin: d.metaOrigin }))
          .sort((x, y) => (x.hash < y.hash ? -1 : x.hash > y.hash ? 1 : 0))
      )
    )
  )
  return {
    fingerprints: (prefixes) => Effect.flatMap(current, (source) => source.fingerprints(prefixes)),
    items: (prefixes) => Effect.flatMap(current, (source) => source.items(prefixes))
  }
}

/** A peer whose engine sees its store (in `dir`, or a fresh one) with (or without) range fingerprints. */
const rangePeer = (name: string, ranges: boolean, dir?: string) =>
  Effect.gen(function*() {
    const id = peerId(name)
    const store = dir === undefined ? yield* tempStore(name) : yield* storeAt(dir)
    const manager = yield* PeerManager.make(engineConfig(id), ranges ? { ...store, ranges: listedRanges(store) } : store)
    return { id, store, manager } satisfies Peer
  })

const RANGE_ROUND = 0x0f
const DIGEST_CHUNK = 0x02

/** Frames of each type sent on the link, counted by a tap. */
const frameCounter = () => {
  const counts = new Map<number, number>()
  return {
    tap: (_from: unknown, _to: unknown, frame: Uint8Array) => counts.set(frame[0]!, (counts.get(frame[0]!) ?? 0) + 1),
    count: (type: number) => counts.get(type) ?? 0
  }
}

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
