/**
 * An agent syncing a CAN HTTP service (`can-sync serve`, bearer token) instead of its embedded
 * store behaves like embedded↔embedded: both directions converge, and assets added to the service
 * later — by `can-sync add` on its data dir or through `POST /assets` — reach the other side live.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFile } from "node:fs/promises"
import { notYet } from "../kit/Eventually.ts"
import { all, hashesOf, Scenario, TEST_TIMEOUT, union } from "./Scenario.ts"

const MiB = 1024 * 1024
const ARRIVES_WITHIN = "20 seconds"

describe("can-sync sync --can-url", () => {
  it.live("an agent over a CAN HTTP service converges both ways with an embedded one, and follows live changes", () =>
    Effect.gen(function*() {
      const s = yield* Scenario.make("can-url")
      const service = s.path("service")
      const [a, b] = [s.path("a"), s.path("b")] // a: A's identity only (its assets live in the service)
      const token = "e2e-token-0123456789"
      const [atService, atB, bigService, bigB, liveCli, liveHttp, liveB] = yield* all([
        s.smallFiles("files-s", "can-url/s", 40),
        s.smallFiles("files-b", "can-url/b", 40),
        s.largeFile("big-s", "can-url/big-s", 12 * MiB),
        s.largeFile("big-b", "can-url/big-b", 12 * MiB),
        s.smallFiles("live-cli", "can-url/live-cli", 2),
        s.smallFiles("live-http", "can-url/live-http", 1),
        s.smallFiles("live-b", "can-url/live-b", 2)
      ])
      yield* all([
        s.add(service, [...atService, bigService].map((f) => f.path), { description: "in the service" }),
        s.add(b, [...atB, bigB].map((f) => f.path), { description: "at B" })
      ])
      const [signal, http, idA, idB] = yield* all([s.signal(), s.serve(service, token), s.id(a), s.id(b)])
      const [agentA, agentB] = yield* all([
        s.agent("A (service)", { data: a, signal: signal.url, peers: [idB], canUrl: http.url, token }),
        s.agent("B (embedded)", { data: b, signal: signal.url, peers: [idA] })
      ])
      const initial = union(hashesOf([...atService, bigService]), hashesOf([...atB, bigB]))
      yield* s.converged([service, b], { expected: initial })
      for (const [agent, peer, expected] of [[agentA, idB, atB.length + 1], [agentB, idA, atService.length + 1]] as const) {
        const counters = yield* s.counters(agent, peer, (p) => p.assetsReceived >= expected)
        expect(counters).toMatchObject({ assetsReceived: expected, assetsSent: 82 - expected, redundantReceives: 0, verificationFailures: 0 })
      }
      yield* all([s.live(agentA, agentB), s.live(agentB, agentA)])

      // Added to the service's data dir by another process: reaches B.
      const viaCli = yield* s.add(service, liveCli.map((f) => f.path), { description: "live via add", tags: ["cli"] })
      yield* s.listed(b, "assets added with `can-sync add` on the service, at B", (rs) => viaCli.every((h) => rs.some((r) => r.hash === h)), ARRIVES_WITHIN)

      // Added through the service's HTTP API with the bearer token: reaches B.
      const file = liveHttp[0]!
      const response = yield* Effect.promise(async () =>
        fetch(`${http.url}/assets?description=${encodeURIComponent("live via HTTP")}&tag=http`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/octet-stream" },
          body: await readFile(file.path)
        }))
      expect(response.status).toBe(200)
      expect(yield* Effect.promise(() => response.json())).toMatchObject({ hash: file.hash, size: file.size })
      yield* s.listed(b, "the asset POSTed to the service, at B", (rs) => rs.some((r) => r.hash === file.hash && r.meta.description === "live via HTTP"), ARRIVES_WITHIN)

      // Added at B: reaches the service; a metadata edit at B too.
      const fromB = yield* s.add(b, liveB.map((f) => f.path), { description: "live at B" })
      yield* s.listed(service, "B's live assets in the service", (rs) => fromB.every((h) => rs.some((r) => r.hash === h)), ARRIVES_WITHIN)
      const edited = yield* s.meta(b, bigService.hash, { description: "edited at B", tags: ["edited"] })
      const listing = yield* s.listed(service, "B's edit in the service", (rs) => rs.some((r) => r.hash === bigService.hash && r.meta.description === "edited at B"), ARRIVES_WITHIN)
      expect(listing.find((r) => r.hash === bigService.hash)?.meta).toEqual(edited)

      yield* s.converged([service, b], { expected: union(initial, hashesOf(liveCli), hashesOf(liveHttp), hashesOf(liveB)), timeout: "30 seconds" })
      // Nothing travelled twice, in either direction.
      for (const [agent, peer] of [[agentA, idB], [agentB, idA]] as const) {
        expect((yield* agent.peer(peer))?.redundantReceives).toBe(0)
      }
      for (const data of [service, b]) expect((yield* s.verify(data)).code).toBe(0)
    }), TEST_TIMEOUT)

  it.live("the CAN service going down while the agent runs: the agent keeps running, retries, and converges once it is back", () =>
    Effect.gen(function*() {
      const s = yield* Scenario.make("can-url-down")
      const service = s.path("service")
      const [a, b] = [s.path("a"), s.path("b")]
      const token = "e2e-token-down"
      const [before, whileDownAtB, whileDownAtService] = yield* all([
        s.smallFiles("before", "can-url-down/before", 5),
        s.smallFiles("down-b", "can-url-down/b", 4),
        s.smallFiles("down-s", "can-url-down/s", 3)
      ])
      yield* s.add(service, before.map((f) => f.path))
      const [signal, first, idA, idB] = yield* all([s.signal(), s.serve(service, token), s.id(a), s.id(b)])
      const port = Number(new URL(first.url).port)
      const [agentA, agentB] = yield* all([
        s.agent("A (service)", { data: a, signal: signal.url, peers: [idB], canUrl: first.url, token }),
        s.agent("B (embedded)", { data: b, signal: signal.url, peers: [idA] })
      ])
      yield* s.converged([service, b], { expected: hashesOf(before) })

      // The service stops; both sides change meanwhile (the service's data dir through the CLI).
      expect((yield* first.proc.stop("SIGTERM", "10 seconds")).code).toBe(0)
      yield* all([
        s.add(b, whileDownAtB.map((f) => f.path), { description: "added at B while the service was down" }),
        s.add(service, whileDownAtService.map((f) => f.path), { description: "added to the service's store while it was down" })
      ])
      yield* s.wait("A to notice that its store is down", Effect.sync(() =>
        agentA.proc.messages(/service unreachable/).length > 0 ? true : notYet("no 'service unreachable' log line")), ARRIVES_WITHIN, { interval: "100 millis" })
      expect(agentA.proc.running).toBe(true)

      // Back on the same port: everything converges, nothing partial anywhere.
      yield* s.serve(service, token, port)
      yield* s.converged([service, b], { expected: union(hashesOf(before), hashesOf(whileDownAtB), hashesOf(whileDownAtService)), timeout: "60 seconds" })
      expect(agentA.proc.running && agentB.proc.running).toBe(true)
      for (const data of [service, b]) {
        expect((yield* s.verify(data)).code).toBe(0)
        expect(yield* s.tmpFiles(data)).toEqual([])
      }
    }), TEST_TIMEOUT)
})
