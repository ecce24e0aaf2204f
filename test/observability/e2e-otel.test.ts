/**
 * Two real agents (`can-sync sync`) and a signaling server, exporting to a real OTLP/HTTP
 * receiver: after B pulls A's assets, the spans (session, reconcile, each transfer, store ingest)
 * and the metrics (bytes and assets per peer and direction, peers, latencies, store size) that
 * arrived say exactly what happened, and every agent log line is structured JSON with trace ids
 * (and exported over OTLP too).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { eventually } from "../kit/Eventually.ts"
import { tempDir } from "../kit/Files.ts"
import { freePort, httpStatus } from "../kit/Net.ts"
import { cleanEnv, cli, cliMain, runOk } from "../kit/Process.ts"
import * as OtlpReceiver from "./OtlpReceiver.ts"
import type { ReceivedSpan } from "./OtlpReceiver.ts"

/** `can-sync ARGS` to completion; a non-zero exit fails the test. */
const cliOk = (args: ReadonlyArray<string>) => runOk(process.execPath, [cliMain, ...args], { name: `can-sync ${args[0] ?? ""}` })

/** The engine's span names (packages/core PeerActor, Receiver, Sender; packages/store EmbeddedStore). */
const SPAN = {
  session: "PeerActor.session",
  reconcile: "PeerActor.reconcile",
  received: "Receiver.asset",
  sent: "Sender.asset",
  storeIngest: "EmbeddedStore.push"
} as const

const sizes = [1, 3000, 300_000] // one byte, one chunk, several chunks

describe("two agents syncing, observed over OTLP", () => {
  it.live("export the spans and metrics of what they did", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.start
      const dir = yield* tempDir("e2e-otel")
      const [dataA, dataB] = [join(dir, "a"), join(dir, "b")]
      const idA = (yield* cliOk(["id", "--data", dataA])).stdout.trim().split("\n").at(-1) ?? ""
      const idB = (yield* cliOk(["id", "--data", dataB])).stdout.trim().split("\n").at(-1) ?? ""

      const files = sizes.map((size, i) => {
        const path = join(dir, `asset-${i}.bin`)
        writeFileSync(path, randomBytes(size))
        return path
      })
      const added = (yield* cliOk(["add", "--data", dataA, ...files])).stdout.trim().split("\n").map((line) => line.split(/\s+/)[0] ?? "")
      const size = new Map(added.map((hash, i) => [hash, sizes[i] ?? 0]))
      const total = sizes.reduce((a, b) => a + b, 0)

      const signalPort = yield* freePort
      const signal = yield* cli(["signal", "--host", "127.0.0.1", "--port", String(signalPort)])
      yield* signal.waitFor("stdout", /signaling at/, "30 seconds")
      const agent = (name: string, data: string, peer: string, adminPort: number) =>
        cli([
          "sync",
          "--data", data,
          "--signal", `ws://127.0.0.1:${signalPort}`,
          "--peer", peer,
          "--admin-port", String(adminPort),
          "--bind-address", "127.0.0.1"
        ], {
          name,
          grace: "20 seconds",
          env: cleanEnv({
            OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
            OTEL_SERVICE_NAME: "can-sync",
            OTEL_RESOURCE_ATTRIBUTES: `service.instance.id=${name}`,
            OTEL_METRIC_EXPORT_INTERVAL: "300",
            OTEL_BSP_SCHEDULE_DELAY: "200"
          })
        })
      const [adminA, adminB] = [yield* freePort, yield* freePort]
      const agentA = yield* agent("agent-a", dataA, idB, adminA)
      const agentB = yield* agent("agent-b", dataB, idA, adminB)
      const inA = { "service.instance.id": "agent-a" }
      const inB = { "service.instance.id": "agent-b" }

      const tails = () => `${agentA.tail()}\n${agentB.tail()}`
      yield* eventually("both agents ready", Effect.gen(function*() {
        yield* agentA.alive
        yield* agentB.alive
        const statuses = [yield* httpStatus(`http://127.0.0.1:${adminA}/readyz`), yield* httpStatus(`http://127.0.0.1:${adminB}/readyz`)]
        return statuses.every((s) => s === 200) ? true : undefined
      }), "60 seconds", { diagnostics: tails })
      yield* eventually("B to store every asset", cliOk(["ls", "--data", dataB, "--json"]).pipe(
        Effect.map(({ stdout }) => {
          const have = new Set((JSON.parse(stdout) as Array<{ readonly hash: string }>).map((r) => r.hash))
          return added.every((h) => have.has(h)) ? true : undefined
        })
      ), "60 seconds", { diagnostics: tails })

      // Metrics, exported every 300 ms while the agents run.
      const value = (name: string, attributes: OtlpReceiver.Attributes, resource: OtlpReceiver.Attributes, expected: number) =>
        receiver.waitFor(`${name} ${JSON.stringify(attributes)} = ${expected}`, () => {
          const p = receiver.latest(name, attributes, resource)
          return p !== undefined && p.value === expected ? p : undefined
        }, 30)
      const received = yield* value("cansync.transfer.bytes", { peer: idA, direction: "received" }, inB, total)
      expect(received).toMatchObject({ kind: "sum", monotonic: true, unit: "By" })
      yield* value("cansync.transfer.assets", { peer: idA, direction: "received" }, inB, sizes.length)
      yield* value("cansync.transfer.bytes", { peer: idB, direction: "sent" }, inA, total)
      yield* value("cansync.transfer.assets", { peer: idB, direction: "sent" }, inA, sizes.length)
      // Every asset B stored came from A, so none is pushed back to A: each is an echo suppressed.
      yield* value("cansync.echo.suppressed", { peer: idA }, inB, sizes.length)
      yield* value("cansync.peers.connected", {}, inA, 1)
      yield* value("cansync.peers.connected", {}, inB, 1)
      // each link's ICE path: exactly one kind is 1 (no TURN here, so never "relayed"), with an RTT
      for (const [peer, resource] of [[idB, inA], [idA, inB]] as const) {
        yield* receiver.waitFor(`one cansync.link.path of ${peer} = 1`, () => {
          const kinds = ["host", "server-reflexive", "relayed"].map((path) => receiver.latest("cansync.link.path", { peer, path }, resource)?.value)
          return kinds.every((v) => v !== undefined) && kinds.reduce((a, b) => a! + b!, 0) === 1 && kinds[2] === 0 ? kinds : undefined
        }, 30)
      }
      const rtt = yield* receiver.waitFor("cansync.link.rtt of B's link at A", () => receiver.latest("cansync.link.rtt", { peer: idB }, inA), 30)
      expect(rtt.value).toBeGreaterThanOrEqual(0)
      expect(rtt.value).toBeLessThan(5)
      yield* value("cansync.store.bytes", {}, inA, total)
      yield* value("cansync.store.assets", {}, inA, sizes.length)
      const latency = yield* receiver.waitFor("propagation latency on B", () => {
        const p = receiver.latest("cansync.propagation.latency", {}, inB)
        return p !== undefined && p.count === sizes.length ? p : undefined
      }, 30)
      expect(latency).toMatchObject({ kind: "histogram", unit: "s" })
      expect(latency.value).toBeGreaterThan(0)
      for (const resource of [inA, inB]) {
        const reconcile = yield* receiver.waitFor("a reconcile", () => receiver.latest("cansync.reconcile.duration", {}, resource), 30)
        expect(reconcile.count).toBeGreaterThanOrEqual(1)
      }
      expect(receiver.latest("cansync.verification.failures", {}, inB)?.value ?? 0).toBe(0)

      // Spans end (and are flushed) when the agents shut down.
      expect([(yield* agentA.stop("SIGTERM", "20 seconds")).code, (yield* agentB.stop("SIGTERM", "20 seconds")).code]).toEqual([0, 0])
      const spans = (name: string, resource: OtlpReceiver.Attributes) =>
        receiver.spans().filter((s) => s.name === name && Object.entries(resource).every(([k, v]) => s.resource[k] === v))
      const one = (name: string, resource: OtlpReceiver.Attributes): ReceivedSpan => {
        const found = spans(name, resource)
        expect(found.length, `${name} spans in ${JSON.stringify(resource)}`).toBeGreaterThanOrEqual(1)
        return found[0] as ReceivedSpan
      }

      const sessionB = one(SPAN.session, inB)
      expect(sessionB.attributes).toMatchObject({ peer: idA, localPeer: idB })
      expect(sessionB.attributes.role).toBeTypeOf("string")
      expect(sessionB.attributes.outcome).toBeTypeOf("string")
      expect(one(SPAN.session, inA).attributes).toMatchObject({ peer: idB, localPeer: idA })

      expect(one(SPAN.reconcile, inB).attributes).toMatchObject({ peer: idA, localDigests: 0, remoteDigests: sizes.length, wantsSent: sizes.length })
      expect(one(SPAN.reconcile, inA).attributes).toMatchObject({ peer: idB, localDigests: sizes.length, remoteDigests: 0, wantsReceived: sizes.length })

      // A received asset's size is known from its header (`announcedBytes`) before its bytes are counted.
      const bytesOf = (s: ReceivedSpan) => s.attributes.bytes ?? s.attributes.announcedBytes
      const transfersIn = spans(SPAN.received, inB)
      expect(new Set(transfersIn.map((s) => s.attributes.hash))).toEqual(new Set(added))
      for (const s of transfersIn) {
        expect(s.attributes).toMatchObject({ peer: idA, direction: "received" })
        expect(bytesOf(s)).toBe(size.get(String(s.attributes.hash)))
        expect(s.traceId).toBe(sessionB.traceId) // each transfer belongs to the session's trace
      }
      const transfersOut = spans(SPAN.sent, inA)
      expect(new Set(transfersOut.map((s) => s.attributes.hash))).toEqual(new Set(added))
      for (const s of transfersOut) {
        expect(s.attributes).toMatchObject({ peer: idB, direction: "sent" })
        expect(bytesOf(s)).toBe(size.get(String(s.attributes.hash)))
      }

      const ingested = spans(SPAN.storeIngest, inB)
      expect(new Set(ingested.map((s) => s.attributes.hash))).toEqual(new Set(added))
      for (const s of ingested) expect(s.statusCode).not.toBe(2)

      // Logs: JSON lines (stderr is a pipe, not a terminal), tied to the exported traces.
      const traceIds = new Set(receiver.spans().map((s) => s.traceId))
      for (const running of [agentA, agentB]) {
        const lines = running.stderr.split("\n").filter((l) => l.trim() !== "")
        expect(lines.length).toBeGreaterThan(0)
        const records = lines.map((l) => JSON.parse(l) as { readonly level: string; readonly message: string; readonly trace_id?: string })
        for (const r of records) expect(r).toMatchObject({ level: expect.any(String), message: expect.any(String) })
        expect(records.some((r) => r.trace_id !== undefined && traceIds.has(r.trace_id))).toBe(true)
      }
      // The same log lines also arrive over OTLP, from each agent, tied to exported traces.
      for (const resource of [inA, inB]) {
        const exported = receiver.logs().filter((l) => l.resource["service.instance.id"] === resource["service.instance.id"])
        expect(exported.some((l) => traceIds.has(l.traceId)), `OTLP logs of ${resource["service.instance.id"]}`).toBe(true)
      }
      expect(receiver.requests().every((r) => r.accepted)).toBe(true)
    }), { timeout: 180_000 })
})
