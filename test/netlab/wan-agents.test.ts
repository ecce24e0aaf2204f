/**
 * Two real `can-sync sync` agents in two namespaces joined by the network lab's emulated link:
 * they converge both ways through 50 ms RTT and 1 % loss (`verify` clean on both), and they
 * reconnect by themselves and converge after the link has been down for 20 s mid-transfer.
 * Skips with one line where namespaces cannot be made (like netlab.test.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { DEFAULT_MAX_LANES } from "@can-sync/transport/Transport"
import { hashesOf, Scenario, union } from "../e2e/Scenario.ts"
import { notYet } from "../kit/Eventually.ts"
import { largestInFlight } from "../kit/Files.ts"
import * as Netlab from "./Netlab.ts"
import { agent, mixedFiles, peerWhere, signal } from "./WanAgents.ts"

const base = await Effect.runPromise(Netlab.canCreateNamespaces)
const curl = base.ok ? await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
  const lab = yield* Netlab.make
  const ns = yield* lab.namespace("curlprobe")
  yield* ns.exec(["curl", "--version"])
})).pipe(Effect.as({ ok: true } as const), Effect.catch((e: Netlab.NetlabError) => Effect.succeed({ ok: false as const, reason: `no curl in a namespace (${e.detail.split("\n")[0]})` })))) : base
const probe = base.ok ? curl : base
if (!probe.ok) console.warn(`WAN agent tests skipped: ${probe.reason}`)

const TEST_TIMEOUT = 300_000

/** A scenario, the lab pair, the signaling server and the two agents (data in a/ and b/). */
const twoSites = (name: string, params: Netlab.LinkParams, env?: Record<string, string>) =>
  Effect.gen(function*() {
    const s = yield* Scenario.make(name)
    const p = yield* Netlab.pair(params)
    const idA = yield* s.id(s.path("a"))
    const idB = yield* s.id(s.path("b"))
    const signalUrl = yield* signal(s, p)
    const start = (which: "a" | "b") =>
      agent(s, {
        name: `agent ${which.toUpperCase()}`,
        ns: which === "a" ? p.a : p.b,
        address: which === "a" ? p.addressA : p.addressB,
        data: s.path(which),
        peer: which === "a" ? idB : idA,
        signalUrl,
        ...(env === undefined ? {} : { env })
      })
    return { s, p, idA, idB, start }
  })

const verifyClean = (s: Scenario, data: string) =>
  Effect.gen(function*() {
    const ran = yield* s.verify(data)
    expect(ran.code, `${ran.stdout}\n${ran.stderr}`).toBe(0)
  })

describe.skipIf(!probe.ok)("agents across an emulated WAN (real processes, namespaces, linkemu)", () => {
  it.live("through 50 ms RTT and 1 % loss both ways, two agents on one connection each (CAN_SYNC_LANES=1) converge on 100 assets of mixed sizes; verify is clean on both", () =>
    Effect.gen(function*() {
      const { s, p, idA, idB, start } = yield* twoSites("wan-loss", Netlab.symmetric({ delayMs: 25, lossRate: 0.01 }), { CAN_SYNC_LANES: "1" })
      const filesA = yield* mixedFiles(s, "files-a", "wan-a", 50)
      const filesB = yield* mixedFiles(s, "files-b", "wan-b", 50)
      yield* s.add(s.path("a"), filesA.map((f) => f.path))
      yield* s.add(s.path("b"), filesB.map((f) => f.path))
      const a = yield* start("a")
      const b = yield* start("b")
      const expected = union(hashesOf(filesA), hashesOf(filesB))
      expect(expected.size).toBe(100)
      const t0 = Date.now()
      yield* s.converged([a.data, b.data], { expected, timeout: "240 seconds" })
      yield* s.note(`converged in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
      yield* verifyClean(s, a.data)
      yield* verifyClean(s, b.data)
      yield* peerWhere(s, a, idB, "live with B", (x) => x.state === "live")
      yield* peerWhere(s, b, idA, "live with A", (x) => x.state === "live")
      const stats = yield* p.link.stats
      expect(stats.aToB.lost + stats.bToA.lost).toBeGreaterThan(0) // the loss really was there
    }).pipe(Effect.scoped), TEST_TIMEOUT)

  it.live("with the defaults, the agents stripe the 50 ms / 1 % link over several connections (lanes), say so in /status, and converge", () =>
    Effect.gen(function*() {
      const { s, idA, idB, start } = yield* twoSites("wan-lanes", Netlab.symmetric({ delayMs: 25, lossRate: 0.01 }))
      const filesA = yield* mixedFiles(s, "files-a", "lanes-a", 30)
      const filesB = yield* mixedFiles(s, "files-b", "lanes-b", 30)
      yield* s.add(s.path("a"), filesA.map((f) => f.path))
      yield* s.add(s.path("b"), filesB.map((f) => f.path))
      const a = yield* start("a")
      const b = yield* start("b")
      yield* s.converged([a.data, b.data], { expected: union(hashesOf(filesA), hashesOf(filesB)), timeout: "240 seconds" })
      yield* verifyClean(s, a.data)
      yield* verifyClean(s, b.data)
      // 50 ms: the offerer chose several lanes from the round trip; both ends count them
      for (const [x, peer] of [[a, idB], [b, idA]] as const) {
        const st = yield* peerWhere(s, x, peer, "live on several lanes", (q) => q.state === "live" && ((q as { path?: { lanes?: number } }).path?.lanes ?? 0) > 1, "60 seconds")
        expect((st as { path?: { lanes?: number } }).path?.lanes).toBeLessThanOrEqual(DEFAULT_MAX_LANES)
      }
      const lines = [...a.proc.messages(/^transport: link to .* now has \d+ lanes/), ...b.proc.messages(/^transport: link to .* now has \d+ lanes/)]
      expect(lines.length, a.proc.tail(40)).toBeGreaterThan(0)
    }).pipe(Effect.scoped), TEST_TIMEOUT)

  it.live("the link goes down for 20 s mid-transfer and comes back: both agents reconnect by themselves and converge", () =>
    Effect.gen(function*() {
      // 2 MB/s each way so that a 12 MiB asset is still crossing when the link goes down
      const { s, p, idA, idB, start } = yield* twoSites(
        "wan-down",
        Netlab.symmetric({ delayMs: 25, rateBytesPerSec: 2_000_000, queueBytes: 256 * 1024 })
      )
      const big = yield* s.largeFile("big", "wan-down", 12 * 1024 * 1024)
      const filesB = yield* mixedFiles(s, "files-b", "wan-down-b", 20)
      yield* s.add(s.path("a"), [big.path])
      yield* s.add(s.path("b"), filesB.map((f) => f.path))
      const a = yield* start("a")
      const b = yield* start("b")
      // wait until B is writing the big asset (past 1 MiB in its tmp/), then cut the link
      yield* s.wait("B to be receiving the large asset", largestInFlight(b.data).pipe(Effect.map((n) => (n > 1024 * 1024 ? n : notYet(`${n} bytes in flight`)))), "120 seconds", { interval: "100 millis" })
      yield* p.link.down
      const listed = yield* s.ls(b.data)
      expect(listed.map((r) => r.hash)).not.toContain(big.hash) // it really was cut mid-transfer
      // both notice (heartbeat) that the link is gone while it is down
      for (const [x, peer] of [[a, idB], [b, idA]] as const) {
        yield* peerWhere(s, x, peer, "no longer live", (st) => st.state !== "live", "15 seconds")
      }
      yield* Effect.sleep("20 seconds")
      yield* p.link.up
      const expected = union(hashesOf([big]), hashesOf(filesB))
      yield* s.converged([a.data, b.data], { expected, timeout: "180 seconds" })
      for (const [x, peer] of [[a, idB], [b, idA]] as const) {
        const st = yield* peerWhere(s, x, peer, "live again", (q) => q.state === "live")
        expect(st.restarts).toBeGreaterThanOrEqual(1)
      }
      yield* verifyClean(s, a.data)
      yield* verifyClean(s, b.data)
    }).pipe(Effect.scoped), TEST_TIMEOUT)
})
