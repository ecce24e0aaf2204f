/**
 * Two stores that already share part of their content: a few large and many small assets, some on
 * both sides. Each side receives exactly what it lacked, byte for byte, and nothing it had.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { GeneratedFile } from "./Scenario.ts"
import { all, hashesOf, Scenario, TEST_TIMEOUT, union } from "./Scenario.ts"

const MiB = 1024 * 1024

const bytes = (files: ReadonlyArray<GeneratedFile>) => files.reduce((sum, f) => sum + f.size, 0)

describe("can-sync sync: overlapping stores", () => {
  it.live("each side receives exactly the assets it lacked, large and small, and none it already had", () =>
    Effect.gen(function*() {
      const s = yield* Scenario.make("overlap")
      const [a, b] = [s.path("a"), s.path("b")]
      // Large: L0 only at A, L1 on both, L2 and L3 only at B. Small: 0..99 at A, 60..159 at B.
      const large = yield* all([0, 1, 2, 3].map((i) => s.largeFile(`large-${i}`, `overlap/large/${i}`, (6 + i) * MiB)))
      const small = yield* s.smallFiles("small", "overlap/small", 160)
      const atA = [large[0]!, large[1]!, ...small.slice(0, 100)]
      const atB = [large[1]!, large[2]!, large[3]!, ...small.slice(60)]
      const onlyA = atA.filter((f) => !atB.includes(f))
      const onlyB = atB.filter((f) => !atA.includes(f))
      expect([onlyA.length, onlyB.length]).toEqual([61, 62])

      const [signal, idA, idB] = yield* all([
        s.signal(),
        s.id(a),
        s.id(b),
        s.add(a, atA.map((f) => f.path), { description: "added at A" }),
        s.add(b, atB.map((f) => f.path), { description: "added at B", tags: ["b"] })
      ])
      const [agentA, agentB] = yield* all([
        s.agent("A", { data: a, signal: signal.url, peers: [idB] }),
        s.agent("B", { data: b, signal: signal.url, peers: [idA] })
      ])
      const listing = yield* s.converged([a, b], { expected: union(hashesOf(atA), hashesOf(atB)) })
      expect(listing.length).toBe(164)

      // Exactly what each lacked, in assets and in bytes; nothing twice, nothing it had.
      const atAForB = yield* s.counters(agentA, agentB, (p) => p.assetsReceived >= onlyB.length)
      const atBForA = yield* s.counters(agentB, agentA, (p) => p.assetsReceived >= onlyA.length)
      expect(atAForB).toMatchObject({
        hashesWanted: onlyB.length,
        assetsReceived: onlyB.length,
        bytesReceived: bytes(onlyB),
        assetsSent: onlyA.length,
        bytesSent: bytes(onlyA),
        redundantReceives: 0,
        verificationFailures: 0
      })
      expect(atBForA).toMatchObject({
        hashesWanted: onlyA.length,
        assetsReceived: onlyA.length,
        bytesReceived: bytes(onlyA),
        assetsSent: onlyB.length,
        bytesSent: bytes(onlyB),
        redundantReceives: 0,
        verificationFailures: 0
      })

      // The 41 assets added on both sides (each with its own metadata) ended with one metadata
      // version, the same on both: `converged` compared every field.
      expect(listing.filter((r) => r.meta.description === "added at A").length).toBeGreaterThanOrEqual(61)
      for (const data of [a, b]) {
        const verified = yield* s.verify(data)
        expect(verified.stdout).toContain("164 assets checked, 0 damaged")
        expect(verified.code).toBe(0)
      }
    }), TEST_TIMEOUT)
})
