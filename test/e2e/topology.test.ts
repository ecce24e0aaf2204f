/**
 * Who syncs with whom: the allow-list is enforced by the side being asked (a peer that lists us
 * but that we do not list gets nothing), assets travel along a line of agents A–B–C through the
 * middle one, and a signaling server that alters offers in transit cannot get a link established.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { all, hashesOf, Scenario, TEST_TIMEOUT, union } from "./Scenario.ts"
import { TamperingRelay } from "./TamperingRelay.ts"

describe("can-sync sync: allow-lists and topologies", () => {
  it.live("a peer that is not on A's allow-list is refused, with a log line naming it, and receives nothing", () =>
    Effect.gen(function*() {
      const s = yield* Scenario.make("allow")
      const [a, b, c] = [s.path("a"), s.path("b"), s.path("c")]
      const files = yield* s.smallFiles("files", "allow/a", 5)
      const [signal, , idA, idB, idC] = yield* all([s.signal(), s.add(a, files.map((f) => f.path)), s.id(a), s.id(b), s.id(c)])
      // A lists only B (here through a peers file); C lists A.
      const peersFile = yield* s.peersFile("a.peers", [idB])
      const [agentA, agentB, agentC] = yield* all([
        s.agent("A", { data: a, signal: signal.url, peers: [], peersFile }),
        s.agent("B", { data: b, signal: signal.url, peers: [idA] }),
        s.agent("C", { data: c, signal: signal.url, peers: [idA] })
      ])

      yield* agentA.proc.waitFor("stderr", new RegExp(`refused connection from ${idC}: not on the allow-list`), "60 seconds", s.diagnostics)
      yield* s.converged([a, b], { expected: hashesOf(files) })
      // By now C had its chances: still nothing at C, and A never ran a session with it.
      yield* s.live(agentA, agentB)
      expect(yield* s.ls(c)).toEqual([])
      expect((yield* agentA.status).peers.map((p) => p.peer)).toEqual([idB])
      expect((yield* agentC.status).peers.filter((p) => p.assetsReceived > 0 || p.state === "live")).toEqual([])
      expect(agentC.proc.messages(/transport: connected to/)).toEqual([])
    }), TEST_TIMEOUT)

  it.live("in a line A–B–C, assets added at either end reach the other end through B", () =>
    Effect.gen(function*() {
      const s = yield* Scenario.make("line")
      const [a, b, c] = [s.path("a"), s.path("b"), s.path("c")]
      const [atA, atB, atC, liveA] = yield* all([
        s.smallFiles("files-a", "line/a", 4),
        s.smallFiles("files-b", "line/b", 4),
        s.smallFiles("files-c", "line/c", 4),
        s.smallFiles("live-a", "line/live-a", 2)
      ])
      const [signal] = yield* all([
        s.signal(),
        s.add(a, atA.map((f) => f.path), { description: "at A" }),
        s.add(b, atB.map((f) => f.path), { description: "at B" }),
        s.add(c, atC.map((f) => f.path), { description: "at C" })
      ])
      const [idA, idB, idC] = yield* all([s.id(a), s.id(b), s.id(c)])
      const [agentA, agentB, agentC] = yield* all([
        s.agent("A", { data: a, signal: signal.url, peers: [idB] }),
        s.agent("B", { data: b, signal: signal.url, peers: [idA, idC] }),
        s.agent("C", { data: c, signal: signal.url, peers: [idB] })
      ])
      yield* s.note("agents ready")
      yield* s.converged([a, b, c], { expected: union(hashesOf(atA), hashesOf(atB), hashesOf(atC)) })
      yield* s.note("converged")

      // Live: an asset added at A reaches C through B.
      yield* all([s.live(agentB, agentA), s.live(agentB, agentC)])
      const hashes = yield* s.add(a, liveA.map((f) => f.path), { description: "live at A" })
      yield* s.note("added live at A")
      yield* s.listed(c, "A's live assets at C", (rs) => hashes.every((h) => rs.some((r) => r.hash === h)), "30 seconds")
      yield* s.converged([a, b, c], { expected: union(hashesOf(atA), hashesOf(atB), hashesOf(atC), hashesOf(liveA)), timeout: "30 seconds" })

      // A and C never connected to each other: everything went through B.
      expect((yield* agentA.status).peers.map((p) => p.peer)).toEqual([idB])
      expect((yield* agentC.status).peers.map((p) => p.peer)).toEqual([idB])
      const cForB = yield* s.counters(agentC, agentB, (p) => p.assetsReceived >= atA.length + atB.length + liveA.length)
      expect(cForB).toMatchObject({ assetsReceived: atA.length + atB.length + liveA.length, redundantReceives: 0 })
    }), TEST_TIMEOUT)

  it.live("offers altered by the signaling server are refused; no link until it relays them honestly", () =>
    Effect.gen(function*() {
      const s = yield* Scenario.make("tamper")
      const [a, b] = [s.path("a"), s.path("b")]
      const files = yield* s.smallFiles("files", "tamper/a", 3)
      const [signal, , idA, idB] = yield* all([s.signal(), s.add(a, files.map((f) => f.path)), s.id(a), s.id(b)])
      const relay = yield* TamperingRelay.scoped(signal.url)
      const [agentA, agentB] = yield* all([
        s.agent("A", { data: a, signal: relay.url, peers: [idB] }),
        s.agent("B", { data: b, signal: relay.url, peers: [idA] })
      ])

      // The lower peer id makes the offers; the other side checks their signatures.
      const [offerer, answerer] = idA < idB ? [idA, agentB] : [idB, agentA]
      yield* answerer.proc.waitFor(
        "stderr",
        new RegExp(`refused a signal claiming to come from ${offerer}: the signature does not verify`),
        "60 seconds",
        s.diagnostics
      )
      expect(relay.tampered).toBeGreaterThan(0)
      expect(yield* s.ls(b)).toEqual([])
      expect(s.procs.flatMap((p) => p.messages(/transport: connected to/))).toEqual([])

      // Relayed honestly, the next attempt connects and the assets arrive.
      relay.tampering = false
      // (After the failed attempts the transport backs off, up to 30 s between attempts.)
      yield* s.converged([a, b], { expected: hashesOf(files) })
    }), TEST_TIMEOUT)
})
