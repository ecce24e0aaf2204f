/**
 * An agent's telemetry names it by its peer id and version: over OTLP (resource
 * `service.instance.id` = peer id, the same after a restart, `service.version` = the package's),
 * with the agent's own metrics (agent info, backlog, process health) exported beside the engine's
 * and every engine counter present at 0 before anything happened.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { tempDir } from "../kit/Files.ts"
import { freePort } from "../kit/Net.ts"
import { cleanEnv, cli, cliMain, repoRoot, runOk } from "../kit/Process.ts"
import * as OtlpReceiver from "./OtlpReceiver.ts"

const version = (JSON.parse(readFileSync(join(repoRoot, "packages/cli/package.json"), "utf8")) as { version: string }).version

describe("an agent's identity in its telemetry", () => {
  it.live("is its peer id and version over OTLP, across restarts, with the agent's metrics and zeroed counters", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.start
      const dir = yield* tempDir("otel-identity")
      const data = join(dir, "a")
      const peer = join(dir, "b")
      const id = (yield* runOk(process.execPath, [cliMain, "id", "--data", data])).stdout.trim()
      const peerId = (yield* runOk(process.execPath, [cliMain, "id", "--data", peer])).stdout.trim()
      const signalPort = yield* freePort // nobody there: the agent runs alone
      const run = Effect.scoped(Effect.gen(function*() {
        const agent = yield* cli(["sync", "--data", data, "--signal", `ws://127.0.0.1:${signalPort}`, "--peer", peerId], {
          name: "agent",
          env: cleanEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_METRIC_EXPORT_INTERVAL: "300" })
        })
        const resource = { "service.instance.id": id }
        yield* receiver.waitFor("the agent's metrics", () => receiver.latest("cansync.agent.info", {}, resource), 30)
        yield* agent.stop("SIGTERM", "20 seconds")
      }))
      yield* run
      const first = receiver.points().filter((p) => p.resource["service.instance.id"] === id)
      expect(first.length).toBeGreaterThan(0)
      expect(first[0]?.resource).toMatchObject({ "service.name": "can-sync", "service.instance.id": id, "service.version": version })
      const info = receiver.latest("cansync.agent.info", {}, { "service.instance.id": id })
      expect(info?.attributes).toMatchObject({ "service.instance.id": id, "service.version": version })
      // counters from the start, at 0: per allowed peer and direction, per error kind
      expect(receiver.latest("cansync.transfer.bytes", { peer: peerId, direction: "received" })?.value).toBe(0)
      expect(receiver.latest("cansync.errors", { kind: "auth" })?.value).toBe(0)
      expect(receiver.latest("cansync.backlog.assets", { peer: peerId, direction: "sent" })?.value).toBe(0)
      for (const name of ["process.memory.usage", "v8js.memory.heap.used", "nodejs.eventloop.delay.p99", "process.cpu.time"]) {
        expect(receiver.metricNames().has(name), name).toBe(true)
      }
      expect(receiver.latest("process.memory.usage")?.value ?? 0).toBeGreaterThan(10_000_000)

      // restarted: the same instance id (the series continue), not a new one
      receiver.clear()
      yield* run
      const instances = new Set(receiver.points().map((p) => p.resource["service.instance.id"]))
      expect(instances).toEqual(new Set([id]))
    }))
})
