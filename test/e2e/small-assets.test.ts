/**
 * Many small assets, both ways at once, between two agents in separate processes: they converge,
 * and once converged, restarting both agents reconciles without transferring anything.
 */
import { afterEach, describe, expect, it } from "vitest"
import { hashesOf, Scenario, TEST_TIMEOUT, union } from "./harness.ts"

describe("can-sync sync: many small assets", () => {
  let scenario: Scenario | undefined
  afterEach(async () => {
    await scenario?.close()
    scenario = undefined
  })

  it("300 distinct assets on each side converge both ways; a restart then transfers nothing", async () => {
    const s = (scenario = await Scenario.create("small"))
    const a = s.path("a")
    const b = s.path("b")
    const [filesA, filesB] = await Promise.all([s.smallFiles("files-a", "small/a", 300), s.smallFiles("files-b", "small/b", 300)])
    const [signal, idA, idB] = await Promise.all([
      s.signal(),
      s.id(a),
      s.id(b),
      s.add(a, filesA.map((f) => f.path), { description: "from A", tags: ["a"] }),
      s.add(b, filesB.map((f) => f.path), { description: "from B", tags: ["b"] })
    ])
    const all = union(hashesOf(filesA), hashesOf(filesB))
    expect(all.size).toBe(600)
    s.note("stores filled")

    let [agentA, agentB] = await Promise.all([
      s.agent("A", { data: a, signal: signal.url, peers: [idB] }),
      s.agent("B", { data: b, signal: signal.url, peers: [idA] })
    ])
    s.note("agents ready")
    const listing = await s.converged([a, b], { expected: all })
    s.note("converged")
    expect(listing.filter((r) => r.meta.description === "from A").length).toBe(300)
    expect(listing.filter((r) => r.meta.description === "from B").length).toBe(300)

    // Each side received exactly the other's 300, once.
    for (const [agent, peer] of [[agentA, idB], [agentB, idA]] as const) {
      const counters = await s.counters(agent, peer, (p) => p.assetsReceived >= 300)
      expect(counters).toMatchObject({ assetsReceived: 300, assetsSent: 300, redundantReceives: 0, verificationFailures: 0 })
    }
    s.note("counted")
    // Both exit cleanly on SIGTERM...
    expect(await agentA.proc.stop("SIGTERM")).toEqual({ code: 0, signal: null })
    expect(await agentB.proc.stop("SIGTERM")).toEqual({ code: 0, signal: null })

    // ...and, started again on the converged stores, only reconcile.
    ;[agentA, agentB] = await Promise.all([
      s.agent("A again", { data: a, signal: signal.url, peers: [idB] }),
      s.agent("B again", { data: b, signal: signal.url, peers: [idA] })
    ])
    s.note("restarted")
    for (const [agent, peer] of [[agentA, idB], [agentB, idA]] as const) {
      const counters = await s.counters(agent, peer, (p) => p.state === "live" && p.reconciles >= 1, 60_000)
      expect(counters).toMatchObject({ assetsReceived: 0, assetsSent: 0, bytesReceived: 0, bytesSent: 0, redundantReceives: 0 })
    }
    expect(await s.converged([a, b], { expected: all, timeout: 10_000 })).toEqual(listing)
  }, TEST_TIMEOUT)
})
