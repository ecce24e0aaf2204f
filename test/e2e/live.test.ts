/**
 * Two agents that are already live: assets added by another process (`can-sync add`) on one
 * side's data dir, and metadata edits (`can-sync meta`), reach the other side within seconds; and
 * nothing that came from a peer is ever pushed back to it (the echo counters prove it).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import type { Agent, GeneratedFile } from "./Scenario.ts"
import { all, hashesOf, Scenario, TEST_TIMEOUT, union } from "./Scenario.ts"

/** "Within seconds", with room for a loaded two-core machine. */
const ARRIVES_WITHIN = "20 seconds"

describe("can-sync sync: live changes between connected agents", () => {
  /** The scenario lives across the tests of this file. */
  const scope = Effect.runSync(Scope.make())
  let s: Scenario
  let a: string
  let b: string
  let agentA: Agent
  let agentB: Agent
  let initialA: ReadonlyArray<GeneratedFile>
  let initialB: ReadonlyArray<GeneratedFile>
  let liveA: ReadonlyArray<GeneratedFile>
  let liveB: ReadonlyArray<GeneratedFile>

  beforeAll(() =>
    Effect.runPromise(Effect.gen(function*() {
      s = yield* Scenario.make("live").pipe(Scope.provide(scope))
      a = s.path("a")
      b = s.path("b")
      initialA = yield* s.smallFiles("initial-a", "live/initial-a", 10)
      initialB = yield* s.smallFiles("initial-b", "live/initial-b", 10)
      liveA = yield* s.smallFiles("live-a", "live/live-a", 5)
      liveB = yield* s.smallFiles("live-b", "live/live-b", 3)
      const [signal] = yield* all([
        s.signal(),
        s.add(a, initialA.map((f) => f.path), { description: "initial at A" }),
        s.add(b, initialB.map((f) => f.path), { description: "initial at B" })
      ])
      const [idA, idB] = yield* all([s.id(a), s.id(b)])
      ;[agentA, agentB] = yield* all([
        s.agent("A", { data: a, signal: signal.url, peers: [idB] }),
        s.agent("B", { data: b, signal: signal.url, peers: [idA] })
      ])
      yield* s.converged([a, b], { expected: union(hashesOf(initialA), hashesOf(initialB)) })
      yield* all([s.live(agentA, agentB), s.live(agentB, agentA)])
    })), TEST_TIMEOUT)

  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

  it.live("assets added at A by another process arrive at B within seconds, and B's at A", () =>
    Effect.gen(function*() {
      const hashes = yield* s.add(a, liveA.map((f) => f.path), { description: "live at A", tags: ["live"] })
      expect(new Set(hashes)).toEqual(hashesOf(liveA))
      const atB = yield* s.listed(b, "A's live assets at B", (rs) => hashes.every((h) => rs.some((r) => r.hash === h)), ARRIVES_WITHIN)
      for (const h of hashes) expect(atB.find((r) => r.hash === h)?.meta).toMatchObject({ description: "live at A", tags: ["live"], trashed: false })

      const fromB = yield* s.add(b, liveB.map((f) => f.path), { description: "live at B" })
      yield* s.listed(a, "B's live assets at A", (rs) => fromB.every((h) => rs.some((r) => r.hash === h)), ARRIVES_WITHIN)
    }), TEST_TIMEOUT)

  it.live("a metadata edit on B (description, tags, trash) arrives at A", () =>
    Effect.gen(function*() {
      const target = initialA[0]!.hash
      const edited = yield* s.meta(b, target, { description: "edited at B", tags: ["edited", "b"], trash: true })
      expect(edited).toMatchObject({ description: "edited at B", tags: ["edited", "b"], trashed: true })
      const atA = yield* s.listed(a, "B's edit at A", (rs) => rs.some((r) => r.hash === target && r.meta.description === "edited at B"), ARRIVES_WITHIN)
      // The whole version travels: the same fields, timestamp and origin as on B.
      expect(atA.find((r) => r.hash === target)?.meta).toEqual(edited)

      const everything = union(hashesOf(initialA), hashesOf(initialB), hashesOf(liveA), hashesOf(liveB))
      yield* s.converged([a, b], { expected: everything, timeout: "30 seconds" })
    }), TEST_TIMEOUT)

  it.live("nothing that came from a peer is pushed back to it: no echoes, no redundant transfers", () =>
    Effect.gen(function*() {
      const fromA = initialA.length + liveA.length
      const fromB = initialB.length + liveB.length
      const aForB = yield* s.counters(agentA, agentB, (p) => p.assetsReceived >= fromB && p.metaApplied >= 1)
      const bForA = yield* s.counters(agentB, agentA, (p) => p.assetsReceived >= fromA)

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
    }), TEST_TIMEOUT)
})
