/**
 * Telemetry.layer against a real OTLP/HTTP receiver: spans and Effect metrics arrive as OTLP JSON
 * with their names, attributes, units and values; the standard OTEL_* variables are honoured; and
 * with none set the layer is a no-op that never loads the OpenTelemetry SDK.
 */
import { Metrics } from "@can-sync/core"
import * as Logging from "@can-sync/cli/Logging"
import * as Telemetry from "@can-sync/cli/Telemetry"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Data, Duration, Effect, Metric, Option } from "effect"
import { execFile } from "node:child_process"
import { join } from "node:path"
import { otelEnv } from "./Exported.ts"
import * as OtlpReceiver from "./OtlpReceiver.ts"

class DiskFull extends Data.TaggedError("DiskFull")<{ readonly message: string }> {}

const receiveAsset = Effect.fn("test.transfer")(function*(peer: string, hash: string, bytes: number) {
  yield* Effect.annotateCurrentSpan({ peer, hash, bytes, direction: "received" })
  yield* Metrics.recordTransfer(peer, "received", bytes)
  yield* Effect.logInfo("asset received").pipe(Effect.annotateLogs({ hash }))
})

const settingsFor = (env: Record<string, string>) =>
  Telemetry.settings().pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))

describe("Telemetry.layer with OTEL_EXPORTER_OTLP_ENDPOINT set", () => {
  it.live("exports spans with their attributes, parents and errors, and metrics with units and values", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.start
      const logs: Array<string> = []
      const peer = "peer-telemetry-1"
      const assets = [{ hash: "a".repeat(64), bytes: 1000 }, { hash: "b".repeat(64), bytes: 2345 }]

      const program = Effect.gen(function*() {
        yield* Effect.forEach(assets, (a) => receiveAsset(peer, a.hash, a.bytes), { discard: true }).pipe(
          Effect.withSpan("test.session", { attributes: { peer, role: "initiator" } })
        )
        yield* Metric.update(Metric.withAttributes(Metrics.reconcileDuration, { peer }), 0.3)
        yield* Metric.update(Metric.withAttributes(Metrics.peersConnected, { test: "telemetry-1" }), 2)
        yield* Metrics.recordError("store")
        yield* new DiskFull({ message: "no space left" }).pipe(Effect.withSpan("test.ingest"), Effect.ignore)
      })
      yield* program.pipe(
        Effect.provide(Telemetry.layer),
        Effect.provide(Logging.layer({ json: true, write: (line) => logs.push(line) })),
        Effect.provide(otelEnv(receiver.url, {
          OTEL_SERVICE_NAME: "can-sync-test",
          OTEL_RESOURCE_ATTRIBUTES: "service.instance.id=agent-t1,deployment.environment=test%20env"
        }))
      )
      // Released: the layer has flushed both signals.

      expect(receiver.requests().every((r) => r.accepted && r.contentType === "application/json")).toBe(true)
      const spans = receiver.spans()
      const session = spans.find((s) => s.name === "test.session")
      expect(session?.attributes).toMatchObject({ peer, role: "initiator" })
      expect(session?.resource).toMatchObject({ "service.name": "can-sync-test", "service.instance.id": "agent-t1", "deployment.environment": "test env" })
      const transfers = spans.filter((s) => s.name === "test.transfer")
      expect(transfers.map((s) => s.attributes)).toEqual(assets.map((a) => expect.objectContaining({ peer, hash: a.hash, bytes: a.bytes, direction: "received" })))
      for (const t of transfers) {
        expect(t.parentSpanId).toBe(session?.spanId)
        expect(t.traceId).toBe(session?.traceId)
      }
      const ingest = spans.find((s) => s.name === "test.ingest")
      expect(ingest?.statusCode).toBe(2)
      expect(ingest?.events.find((e) => e.name === "exception")?.attributes["exception.type"]).toBe("DiskFull")

      const bytes = receiver.latest("cansync.transfer.bytes", { peer, direction: "received" })
      expect(bytes).toMatchObject({ kind: "sum", monotonic: true, temporality: 2, unit: "By", value: 3345 })
      expect(receiver.latest("cansync.transfer.assets", { peer, direction: "received" })).toMatchObject({ unit: "{asset}", value: 2 })
      expect(receiver.latest("cansync.peers.connected", { test: "telemetry-1" })).toMatchObject({ kind: "gauge", unit: "{peer}", value: 2 })
      const reconcile = receiver.latest("cansync.reconcile.duration", { peer })
      expect(reconcile).toMatchObject({ kind: "histogram", unit: "s", count: 1, value: 0.3 })
      expect(reconcile?.bounds).toEqual([0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300])
      expect(reconcile?.bucketCounts[4]).toBe(1) // 0.25 < 0.3 <= 0.5
      expect(receiver.latest("cansync.errors", { kind: "store" })?.value).toBeGreaterThanOrEqual(1)

      // Every log line written inside a span names that span's trace.
      const received = logs.map((l) => JSON.parse(l) as Logging.LogRecord).filter((r) => r.message === "asset received")
      expect(received.map((r) => [r.trace_id, r.span_id, r.hash])).toEqual(transfers.map((t) => [t.traceId, t.spanId, t.attributes.hash]))
    }))

  it.live("exports metrics every OTEL_METRIC_EXPORT_INTERVAL while the program runs, not only at exit", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.start
      const counted = Metric.withAttributes(Metrics.echoesSuppressed, { peer: "peer-telemetry-2" })
      yield* Effect.gen(function*() {
        yield* Metric.update(counted, 1)
        yield* receiver.waitFor("a first export", () => receiver.latest("cansync.echo.suppressed", { peer: "peer-telemetry-2" }), 10)
        yield* Metric.update(counted, 4)
        const later = yield* receiver.waitFor("the updated value", () => {
          const p = receiver.latest("cansync.echo.suppressed", { peer: "peer-telemetry-2" })
          return p !== undefined && p.value === 5 ? p : undefined
        }, 10)
        expect(later.monotonic).toBe(true)
        expect(receiver.requests().filter((r) => r.path === "/v1/metrics").length).toBeGreaterThanOrEqual(2)
      }).pipe(Effect.provide(Telemetry.layer), Effect.provide(otelEnv(receiver.url, { OTEL_METRIC_EXPORT_INTERVAL: "150" })))
    }))

  it.live("sends only traces when only OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.start
      yield* Metric.update(Metrics.verificationFailures, 1).pipe(
        Effect.withSpan("test.traces-only"),
        Effect.provide(Telemetry.layer),
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/v1/traces` })))
      )
      expect(receiver.spans().map((s) => s.name)).toEqual(["test.traces-only"])
      expect(receiver.requests().map((r) => r.path)).not.toContain("/v1/metrics")
    }))
})

describe("Telemetry.settings reads the standard variables", () => {
  it.effect("is None with no endpoint, with OTEL_SDK_DISABLED=true, and with both exporters set to none", () =>
    Effect.gen(function*() {
      expect(Option.isNone(yield* settingsFor({}))).toBe(true)
      expect(Option.isNone(yield* settingsFor({ OTEL_EXPORTER_OTLP_ENDPOINT: "", OTEL_SERVICE_NAME: "x" }))).toBe(true)
      expect(Option.isNone(yield* settingsFor({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "true" }))).toBe(true)
      expect(Option.isNone(yield* settingsFor({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318",
        OTEL_TRACES_EXPORTER: "none",
        OTEL_METRICS_EXPORTER: "none"
      }))).toBe(true)
    }))

  it.effect("appends /v1/<signal> to the generic endpoint and uses signal-specific endpoints as given", () =>
    Effect.gen(function*() {
      const generic = Option.getOrThrow(yield* settingsFor({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }))
      expect([generic.tracesUrl, generic.metricsUrl]).toEqual(["http://collector:4318/v1/traces", "http://collector:4318/v1/metrics"])
      const specific = Option.getOrThrow(yield* settingsFor({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "http://metrics:9999/custom",
        OTEL_TRACES_EXPORTER: "none"
      }))
      expect([specific.tracesUrl, specific.metricsUrl]).toEqual([undefined, "http://metrics:9999/custom"])
    }))

  it.effect("takes the service name from OTEL_SERVICE_NAME, then OTEL_RESOURCE_ATTRIBUTES, then can-sync", () =>
    Effect.gen(function*() {
      const base = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" }
      expect(Option.getOrThrow(yield* settingsFor(base)).serviceName).toBe("can-sync")
      expect(Option.getOrThrow(yield* settingsFor({ ...base, OTEL_RESOURCE_ATTRIBUTES: "service.name=from-attrs,team=sync" })).serviceName)
        .toBe("from-attrs")
      const both = Option.getOrThrow(yield* settingsFor({ ...base, OTEL_SERVICE_NAME: "named", OTEL_RESOURCE_ATTRIBUTES: "service.name=from-attrs,team=sync" }))
      expect(both.serviceName).toBe("named")
      expect(both.resourceAttributes).toMatchObject({ team: "sync" })
      expect(both.resourceAttributes["service.instance.id"]).toBeTypeOf("string")
    }))

  it.effect("defaults the metric interval to 60 s and rejects a value that is not milliseconds", () =>
    Effect.gen(function*() {
      const base = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" }
      const defaults = Option.getOrThrow(yield* settingsFor(base))
      expect(Duration.toMillis(defaults.metricInterval)).toBe(60_000)
      expect(Duration.toMillis(defaults.metricTimeout)).toBe(30_000)
      const short = Option.getOrThrow(yield* settingsFor({ ...base, OTEL_METRIC_EXPORT_INTERVAL: "500" }))
      expect(Duration.toMillis(short.metricTimeout)).toBe(500) // never longer than the interval
      const error = yield* Effect.flip(settingsFor({ ...base, OTEL_METRIC_EXPORT_INTERVAL: "soon" }))
      expect(error).toMatchObject({ _tag: "TelemetryConfigError", variable: "OTEL_METRIC_EXPORT_INTERVAL", value: "soon" })
    }))
})

describe("Telemetry.layer with no OTEL variables", () => {
  const probe = (env: Record<string, string>) =>
    new Promise<{ readonly loaded: ReadonlyArray<string>; readonly spanClass: string }>((resolve, reject) => {
      const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OTEL_")))
      execFile(process.execPath, [join(import.meta.dirname, "fixtures", "telemetry-probe.ts")], { env: { ...clean, ...env }, timeout: 60_000 }, (error, stdout) => {
        if (error !== null) reject(error)
        else resolve(JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}"))
      })
    })

  it("is a no-op: Effect's own tracer stays, and no OpenTelemetry module is even loaded", async () => {
    const off = await probe({})
    expect(off).toEqual({ loaded: [], spanClass: "NativeSpan" })
    // The same probe with an endpoint does load the SDK and trace through it (the probe works).
    const receiverless = await probe({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9", OTEL_EXPORTER_OTLP_TIMEOUT: "200", OTEL_LOG_LEVEL: "none" })
    expect(receiverless.loaded).toContain("@effect/opentelemetry/NodeSdk")
    expect(receiverless.spanClass).not.toBe("NativeSpan")
  })
})
