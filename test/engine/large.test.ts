/**
 * Big content: a 256 MiB asset each way at once crosses with bounded memory (content streams
 * chunk by chunk from disk to disk, never whole in memory), and a peer restarted in the middle
 * of a transfer ends with the complete asset and never a partial one.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Frame from "@can-sync/core/Frame"
import * as InMemoryLink from "@can-sync/core/InMemoryLink"
import type { AssetHash, EncodedFrame, PeerLink } from "@can-sync/core"
import { Effect, Exit, Ref, Result, Scope, Stream } from "effect"
import { readdir } from "node:fs/promises"
import { join } from "node:path"
import { awaitConverged, connect, content, dialOver, hashSet, ingestMany, makePeer, peerAt, peerId, tempDir } from "./harness.ts"

const MiB = 1024 * 1024

describe("large assets", () => {
  it.live("a 256 MiB asset each way at once, with process memory bounded well below the asset size", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      const size = 256 * MiB
      const before = process.memoryUsage()
      const [ia, ib] = yield* Effect.all([a.store.ingest(content(1, size)), b.store.ingest(content(2, size))], { concurrency: 2 })
      // Two measures: resident memory, and what JS holds (heap + ArrayBuffers, garbage included),
      // which cannot hide a buffered asset inside memory the allocator kept from the ingest.
      const held = () => {
        const m = process.memoryUsage()
        return m.heapUsed + m.arrayBuffers
      }
      const after = process.memoryUsage()
      const baseline = { rss: after.rss, held: held() }
      const peak = { rss: baseline.rss, held: baseline.held }
      yield* Effect.forkScoped(
        Effect.sync(() => {
          peak.rss = Math.max(peak.rss, process.memoryUsage.rss())
          peak.held = Math.max(peak.held, held())
        }).pipe(Effect.andThen(Effect.sleep("10 millis")), Effect.forever)
      )
      yield* connect(a, b)
      expect(yield* awaitConverged([a.store, b.store], "120 seconds", { expectSize: 2 })).toBe(2)
      const mib = (n: number) => (n / MiB).toFixed(0)
      console.log(
        `256 MiB each way: RSS ${mib(before.rss)} MiB before ingest, ${mib(baseline.rss)} after, transfer peak +${mib(peak.rss - baseline.rss)}; ` +
          `JS-held ${mib(baseline.held)} MiB, transfer peak +${mib(peak.held - baseline.held)}`
      )
      expect((peak.rss - baseline.rss) / MiB).toBeLessThan(128)
      expect((peak.held - baseline.held) / MiB).toBeLessThan(128)
      // Both arrived whole and verified.
      for (const s of [a.store, b.store]) {
        const checks = yield* Stream.runCollect(s.verify)
        expect(checks.every((c) => c.ok)).toBe(true)
      }
      expect((yield* a.manager.stats(b.id)).bytesReceived).toBe(size)
      expect((yield* b.manager.stats(a.id)).bytesReceived).toBe(size)
      expect([...(yield* hashSet(a.store))].sort()).toEqual([ia.hash, ib.hash].sort())
    }).pipe(Effect.scoped), 180_000)

  it.live("a peer restarted mid-transfer converges, with no partial asset ever stored", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const big = yield* a.store.ingest(content(77, 48 * MiB))
      yield* ingestMany(a.store, 78, 20)
      const dirB = yield* tempDir("b")
      // A and whichever B is running dial each other; while no B runs, A's attempt waits for one.
      const net = yield* InMemoryLink.network({ capacity: 8 })
      const chunksToB = yield* Ref.make(0)
      // During B's first run the link stalls after 200 chunks (~12 MiB): B dies mid-asset, surely.
      const stall = yield* Ref.make(true)
      const stalling = (link: PeerLink): PeerLink => ({
        ...link,
        send: (bytes: EncodedFrame) => {
          const f = Frame.decode(Frame.join(bytes))
          const isChunk = Result.isSuccess(f) && f.success._tag === "AssetChunk"
          return Effect.gen(function*() {
            if (!isChunk) return yield* link.send(bytes)
            const n = yield* Ref.updateAndGet(chunksToB, (x) => x + 1)
            if (n > 200 && (yield* Ref.get(stall))) return yield* Effect.never
            return yield* link.send(bytes)
          })
        }
      })
      yield* a.manager.dial(peerId("b"), net.connect(a.id, peerId("b")).pipe(Effect.map(stalling)))

      // First run of B: killed once part of the big asset has crossed.
      const firstRun = yield* Scope.make()
      const b1 = yield* peerAt("b", dirB).pipe(Scope.provide(firstRun))
      yield* dialOver(net, b1, a).pipe(Scope.provide(firstRun))
      while ((yield* Ref.get(chunksToB)) <= 200) yield* Effect.sleep("5 millis")
      yield* Scope.close(firstRun, Exit.void)

      // Restarted B, same data dir: the partial transfer left nothing behind.
      const b2 = yield* peerAt("b", dirB)
      expect(yield* b2.store.has(big.hash)).toBe(false)
      expect(yield* Effect.promise(() => readdir(join(dirB, "tmp")))).toEqual([])
      yield* Ref.set(stall, false)
      yield* dialOver(net, b2, a)
      expect(yield* awaitConverged([a.store, b2.store], "60 seconds", { expectSize: 21 })).toBe(21)
      const checks = yield* Stream.runCollect(b2.store.verify)
      expect(checks.length).toBe(21)
      expect(checks.filter((c) => !c.ok)).toEqual([])
      expect(yield* b2.store.has(big.hash as AssetHash)).toBe(true)
      expect((yield* a.manager.stats(b2.id)).sessions).toBeGreaterThanOrEqual(2)
    }).pipe(Effect.scoped), 120_000)
})
