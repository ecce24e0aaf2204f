/**
 * Two agents that are already live: assets added by another process (`can-sync add`) on one
 * side's data dir, and metadata edits (`can-sync meta`), reach the other side within seconds; and
 * nothing that came from a peer is ever pushed back to it (the echo counters prove it).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Agent, GeneratedFile } from "./harness.ts"
import { hashesOf, Scenario, TEST_TIMEOUT, union } from "./harness.ts"

/** "Within seconds", with room for a loaded two-core machine. */
const ARRIVES_WITHIN = 20_000

describe("can-sync sync: live changes between connected agents", () => {
  let s: Scenario
  let a: string
  let b: string
  let agentA: Agent
  let agentB: Agent
  let initialA: ReadonlyArray<GeneratedFile>
  let initialB: ReadonlyArray<GeneratedFile>
  let liveA: ReadonlyArray<GeneratedFile>
  let liveB: ReadonlyArray<GeneratedFile>

  beforeAll(async () => {
    s = await Scenario.create("live")
    a = s.path("a")
    b = s.path("b")
    initialA = await s.smallFiles("initial-a", "live/initial-a", 10)
    initialB = await s.smallFiles("initial-b", "live/initial-b", 10)
    liveA = await s.smallFiles("live-a", "live/live-a", 5)
    liveB = await s.smallFiles("live-b", "live/live-b", 3)
    const [signal] = await Promise.all([
      s.signal(),
      s.add(a, initialA.map((f) => f.path), { description: "initial at A" }),
      s.add(b, initialB.map((f) => f.path), { description: "initial at B" })
    ])
    const [idA, idB] = await Promise.all([s.id(a), s.id(b)])
    ;[agentA, agentB] = await Promise.all([
      s.agent("A", { data: a, signal: signal.url, peers: [idB] }),
      s.agent("B", { data: b, signal: signal.url, peers: [idA] })
    ])
    await s.converged([a, b], { expected: union(hashesOf(initialA), hashesOf(initialB)) })
    await Promise.all([s.live(agentA, agentB), s.live(agentB, agentA)])
  }, TEST_TIMEOUT)

  afterAll(async () => {
    await s?.close()
  })

  it("assets added at A by another process arrive at B within seconds, and B's at A", async () => {
    const hashes = await s.add(a, liveA.map((f) => f.path), { description: "live at A", tags: ["live"] })
    expect(new Set(hashes)).toEqual(hashesOf(liveA))
    const atB = await s.listed(b, "A's live assets at B", (rs) => hashes.every((h) => rs.some((r) => r.hash === h)), ARRIVES_WITHIN)
    for (const h of hashes) expect(atB.find((r) => r.hash === h)?.meta).toMatchObject({ description: "live at A", tags: ["live"], trashed: false })

    const fromB = await s.add(b, liveB.map((f) => f.path), { description: "live at B" })
    await s.listed(a, "B's live assets at A", (rs) => fromB.every((h) => rs.some((r) => r.hash === h)), ARRIVES_WITHIN)
  }, TEST_TIMEOUT)

  it("a metadata edit on B (description, tags, trash) arrives at A", async () => {
    const target = initialA[0]!.hash
    const edited = await s.meta(b, target, { description: "edited at B", tags: ["edited", "b"], trash: true })
    expect(edited).toMatchObject({ description: "edited at B", tags: ["edited", "b"], trashed: true })
    const atA = await s.listed(a, "B's edit at A", (rs) => rs.some((r) => r.hash === target && r.meta.description === "edited at B"), ARRIVES_WITHIN)
    // The whole version travels: the same fields, timestamp and origin as on B.
    expect(atA.find((r) => r.hash === target)?.meta).toEqual(edited)

    const all = union(hashesOf(initialA), hashesOf(initialB), hashesOf(liveA), hashesOf(liveB))
    await s.converged([a, b], { expected: all, timeout: 30_000 })
  }, TEST_TIMEOUT)

  it("nothing that came from a peer is pushed back to it: no echoes, no redundant transfers", async () => {
    const fromA = initialA.length + liveA.length
    const fromB = initialB.length + liveB.length
    const aForB = await s.counters(agentA, agentB, (p) => p.assetsReceived >= fromB && p.metaApplied >= 1)
    const bForA = await s.counters(agentB, agentA, (p) => p.assetsReceived >= fromA)

    // Each sent exactly the assets that originated on its side; each received exactly the other's.
    expect(aForB).toMatchObject({ assetsSent: fromA, assetsReceived: fromB, redundantReceives: 0, verificationFailures: 0 })
    expect(bForA).toMatchObject({ assetsSent: fromB, assetsReceived: fromA, redundantReceives: 0, verificationFailures: 0 })
    // Each asked the other only for what it lacked, once: nothing received was offered back and
    // wanted again. (Offers alone are not counted exactly: the fallback poll, every 30 s, may
    // re-offer an asset whose metadata changed; the peer then answers that it has it.)
    expect(aForB.hashesWantedByPeer).toBe(fromA)
    expect(bForA.hashesWantedByPeer).toBe(fromB)
    expect(bForA.digestsOffered).toBeGreaterThanOrEqual(liveB.length)
    // The store events of received assets (and of B's applied edit, at A) were seen and suppressed.
    expect(bForA.echoesSuppressed).toBeGreaterThanOrEqual(liveA.length)
    expect(aForB.echoesSuppressed).toBeGreaterThanOrEqual(liveB.length + 1)
    // B's edit was applied at A once and never came back to B as a change.
    expect(aForB.metaApplied).toBe(1)
    expect(bForA.metaApplied).toBe(0)
    expect(bForA.metaSent).toBeGreaterThanOrEqual(1)
    expect([aForB.sessions, bForA.sessions]).toEqual([1, 1])
  }, TEST_TIMEOUT)
})
