/**
 * Many small assets, both ways at once, between two agents in separate processes: they converge,
 * and once converged, restarting both agents reconciles without transferring anything.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { all, hashesOf, Scenario, TEST_TIMEOUT, union } from "./Scenario.ts"

describe("can-sync sync: many small assets", () => {
  it.live("300 distinct assets on each side converge both ways; a restart then transfers nothing", () =>
    Effect.gen(function*() {
      const s = yield* Scenario.make("small")
      const [a, b] = [s.path("a"), s.path("b")]
      const [filesA, filesB] = yield* all([s.smallFiles("files-a", "small/a", 300), s.smallFiles("files-b", "small/b", 300)])
      const [signal, idA, idB] = yield* all([
        s.signal(),
        s.id(a),
        s.id(b),
        s.add(a, filesA.map((f) => f.path), { description: "from A", tags: ["a"] }),
        s.add(b, filesB.map((f) => f.path), { description: "from B", tags: ["b"] })
      ])
      const allHashes = union(hashesOf(filesA), hashesOf(filesB))
      expect(allHashes.size).toBe(600)
      yield* s.note("stores filled")

      let [agentA, agentB] = yield* all([
        s.agent("A", { data: a, signal: signal.url, peers: [idB] }),
        s.agent("B", { data: b, signal: signal.url, peers: [idA] })
      ])
      yield* s.note("agents ready")
      const listing = yield* s.converged([a, b], { expected: allHashes })
      yield* s.note("converged")
      expect(listing.filter((r) => r.meta.description === "from A").length).toBe(300)
      expect(listing.filter((r) => r.meta.description === "from B").length).toBe(300)

      // Each side received exactly the other's 300, once.
      for (const [agent, peer] of [[agentA, idB], [agentB, idA]] as const) {
        const counters = yield* s.counters(agent, peer, (p) => p.assetsReceived >= 300)
        expect(counters).toMatchObject({ assetsReceived: 300, assetsSent: 300, redundantReceives: 0, verificationFailures: 0 })
      }
      yield* s.note("counted")
      // Both exit cleanly on SIGTERM...
      expect(yield* agentA.proc.stop("SIGTERM", "10 seconds")).toEqual({ code: 0, signal: null })
      expect(yield* agentB.proc.stop("SIGTERM", "10 seconds")).toEqual({ code: 0, signal: null })

      // ...and, started again on the converged stores, only reconcile.
      ;[agentA, agentB] = yield* all([
        s.agent("A again", { data: a, signal: signal.url, peers: [idB] }),
        s.agent("B again", { data: b, signal: signal.url, peers: [idA] })
      ])
      yield* s.note("restarted")
      for (const [agent, peer] of [[agentA, idB], [agentB, idA]] as const) {
        const counters = yield* s.counters(agent, peer, (p) => p.state === "live" && p.reconciles >= 1, "60 seconds")
        expect(counters).toMatchObject({ assetsReceived: 0, assetsSent: 0, bytesReceived: 0, bytesSent: 0, redundantReceives: 0 })
      }
      expect(yield* s.converged([a, b], { expected: allHashes, timeout: "10 seconds" })).toEqual(listing)
    }), TEST_TIMEOUT)
})
