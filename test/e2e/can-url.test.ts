/**
 * An agent syncing a CAN HTTP service (`can-sync serve`, bearer token) instead of its embedded
 * store behaves like embedded↔embedded: both directions converge, and assets added to the service
 * later — by `can-sync add` on its data dir or through `POST /assets` — reach the other side live.
 */
import { readFile } from "node:fs/promises"
import { afterEach, describe, expect, it } from "vitest"
import { hashesOf, Scenario, TEST_TIMEOUT, union } from "./harness.ts"

const MiB = 1024 * 1024
const ARRIVES_WITHIN = 20_000

describe("can-sync sync --can-url", () => {
  let scenario: Scenario | undefined
  afterEach(async () => {
    await scenario?.close()
    scenario = undefined
  })

  it("an agent over a CAN HTTP service converges both ways with an embedded one, and follows live changes", async () => {
    const s = (scenario = await Scenario.create("can-url"))
    const service = s.path("service")
    const a = s.path("a") // A's identity only: its assets live in the service
    const b = s.path("b")
    const token = "e2e-token-0123456789"
    const [atService, atB, bigService, bigB, liveCli, liveHttp, liveB] = await Promise.all([
      s.smallFiles("files-s", "can-url/s", 40),
      s.smallFiles("files-b", "can-url/b", 40),
      s.largeFile("big-s", "can-url/big-s", 12 * MiB),
      s.largeFile("big-b", "can-url/big-b", 12 * MiB),
      s.smallFiles("live-cli", "can-url/live-cli", 2),
      s.smallFiles("live-http", "can-url/live-http", 1),
      s.smallFiles("live-b", "can-url/live-b", 2)
    ])
    await Promise.all([
      s.add(service, [...atService, bigService].map((f) => f.path), { description: "in the service" }),
      s.add(b, [...atB, bigB].map((f) => f.path), { description: "at B" })
    ])
    const [signal, http, idA, idB] = await Promise.all([s.signal(), s.serve(service, token), s.id(a), s.id(b)])
    const [agentA, agentB] = await Promise.all([
      s.agent("A (service)", { data: a, signal: signal.url, peers: [idB], canUrl: http.url, token }),
      s.agent("B (embedded)", { data: b, signal: signal.url, peers: [idA] })
    ])
    const initial = union(hashesOf([...atService, bigService]), hashesOf([...atB, bigB]))
    await s.converged([service, b], { expected: initial })
    for (const [agent, peer, expected] of [[agentA, idB, atB.length + 1], [agentB, idA, atService.length + 1]] as const) {
      const counters = await s.counters(agent, peer, (p) => p.assetsReceived >= expected)
      expect(counters).toMatchObject({ assetsReceived: expected, assetsSent: 82 - expected, redundantReceives: 0, verificationFailures: 0 })
    }
    await Promise.all([s.live(agentA, agentB), s.live(agentB, agentA)])

    // Added to the service's data dir by another process: reaches B.
    const viaCli = await s.add(service, liveCli.map((f) => f.path), { description: "live via add", tags: ["cli"] })
    await s.listed(b, "assets added with `can-sync add` on the service, at B", (rs) => viaCli.every((h) => rs.some((r) => r.hash === h)), ARRIVES_WITHIN)

    // Added through the service's HTTP API with the bearer token: reaches B.
    const file = liveHttp[0]!
    const response = await fetch(`${http.url}/assets?description=${encodeURIComponent("live via HTTP")}&tag=http`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/octet-stream" },
      body: await readFile(file.path)
    })
    expect(response.status).toBe(200)
    expect(await response.json()).toMatchObject({ hash: file.hash, size: file.size })
    await s.listed(b, "the asset POSTed to the service, at B", (rs) => rs.some((r) => r.hash === file.hash && r.meta.description === "live via HTTP"), ARRIVES_WITHIN)

    // Added at B: reaches the service; a metadata edit at B too.
    const fromB = await s.add(b, liveB.map((f) => f.path), { description: "live at B" })
    await s.listed(service, "B's live assets in the service", (rs) => fromB.every((h) => rs.some((r) => r.hash === h)), ARRIVES_WITHIN)
    const edited = await s.meta(b, bigService.hash, { description: "edited at B", tags: ["edited"] })
    const listing = await s.listed(service, "B's edit in the service", (rs) => rs.some((r) => r.hash === bigService.hash && r.meta.description === "edited at B"), ARRIVES_WITHIN)
    expect(listing.find((r) => r.hash === bigService.hash)?.meta).toEqual(edited)

    await s.converged([service, b], { expected: union(initial, hashesOf(liveCli), hashesOf(liveHttp), hashesOf(liveB)), timeout: 30_000 })
    // Nothing travelled twice, in either direction.
    for (const [agent, peer] of [[agentA, idB], [agentB, idA]] as const) {
      expect((await agent.peer(peer))?.redundantReceives).toBe(0)
    }
    for (const data of [service, b]) expect((await s.verify(data)).code).toBe(0)
  }, TEST_TIMEOUT)

  it("the CAN service going down while the agent runs: the agent keeps running, retries, and converges once it is back", async () => {
    const s = (scenario = await Scenario.create("can-url-down"))
    const service = s.path("service")
    const a = s.path("a")
    const b = s.path("b")
    const token = "e2e-token-down"
    const [before, whileDownAtB, whileDownAtService] = await Promise.all([
      s.smallFiles("before", "can-url-down/before", 5),
      s.smallFiles("down-b", "can-url-down/b", 4),
      s.smallFiles("down-s", "can-url-down/s", 3)
    ])
    await s.add(service, before.map((f) => f.path))
    const [signal, first, idA, idB] = await Promise.all([s.signal(), s.serve(service, token), s.id(a), s.id(b)])
    const port = Number(new URL(first.url).port)
    const [agentA, agentB] = await Promise.all([
      s.agent("A (service)", { data: a, signal: signal.url, peers: [idB], canUrl: first.url, token }),
      s.agent("B (embedded)", { data: b, signal: signal.url, peers: [idA] })
    ])
    await s.converged([service, b], { expected: hashesOf(before) })

    // The service stops; both sides change meanwhile (the service's data dir through the CLI).
    expect((await first.proc.stop()).code).toBe(0)
    await Promise.all([
      s.add(b, whileDownAtB.map((f) => f.path), { description: "added at B while the service was down" }),
      s.add(service, whileDownAtService.map((f) => f.path), { description: "added to the service's store while it was down" })
    ])
    await s.wait("A to notice that its store is down", async () =>
      agentA.proc.messages(/service unreachable/).length > 0 ? true : undefined, ARRIVES_WITHIN, 100)
    expect(agentA.proc.running).toBe(true)

    // Back on the same port: everything converges, nothing partial anywhere.
    await s.serve(service, token, port)
    await s.converged([service, b], { expected: union(hashesOf(before), hashesOf(whileDownAtB), hashesOf(whileDownAtService)), timeout: 60_000 })
    expect(agentA.proc.running && agentB.proc.running).toBe(true)
    for (const data of [service, b]) {
      expect((await s.verify(data)).code).toBe(0)
      expect(await s.tmpFiles(data)).toEqual([])
    }
  }, TEST_TIMEOUT)
})
