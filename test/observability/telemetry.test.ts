/**
 * Telemetry.layer against a real OTLP/HTTP receiver: spans, Effect metrics and logs arrive as OTLP
 * JSON with their names, attributes, units and values; the standard OTEL_* variables are honoured;
 * and with none set the layer is a no-op that leaves Effect's own tracer in place.
 */
import { Metrics } from "@can-sync/core"
import * as Logging from "@can-sync/cli/Logging"
import * as Telemetry from "@can-sync/cli/Telemetry"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Data, Effect, Layer, Metric } from "effect"
import { otelEnv } from "./Exported.ts"
import * as OtlpReceiver from "./OtlpReceiver.ts"

class DiskFull extends Data.TaggedError("DiskFull")<{ readonly message: string }> {}

const receiveAsset = Effect.fn("test.transfer")(function*(peer: string, hash: string, bytes: number) {
  yield* Effect.annotateCurrentSpan({ peer, hash, bytes, direction: "received" })
  yield* Metrics.recordTransfer(peer, "received", bytes)
  yield* Effect.logInfo("asset received").pipe(Effect.annotateLogs({ hash }))
})

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
      // The same lines are exported over OTLP too, with their trace and the resource.
      const exported = receiver.logs().filter((l) => l.body === "asset received")
      expect(exported.map((l) => [l.traceId, l.spanId, l.attributes.hash])).toEqual(transfers.map((t) => [t.traceId, t.spanId, t.attributes.hash]))
      expect(exported[0]?.resource).toMatchObject({ "service.name": "can-sync-test", "service.instance.id": "agent-t1" })
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

describe("Telemetry.layer reads the standard variables", () => {
  const traceAndCount = Metric.update(Metrics.verificationFailures, 1).pipe(Effect.withSpan("test.variables"), Effect.andThen(Effect.logInfo("counted")))

  it.live("exports nothing with OTEL_SDK_DISABLED=true, or with every signal's exporter set to none", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.start
      yield* traceAndCount.pipe(Effect.provide(Telemetry.layer), Effect.provide(otelEnv(receiver.url, { OTEL_SDK_DISABLED: "true" })))
      yield* traceAndCount.pipe(
        Effect.provide(Telemetry.layer),
        Effect.provide(otelEnv(receiver.url, { OTEL_TRACES_EXPORTER: "none", OTEL_METRICS_EXPORTER: "none", OTEL_LOGS_EXPORTER: "none" }))
      )
      expect(receiver.requests()).toEqual([])
    }))

  it.live("uses a signal-specific endpoint as given, and turns a signal off with OTEL_<SIGNAL>_EXPORTER=none", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.start
      yield* traceAndCount.pipe(
        Effect.provide(Telemetry.layer),
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({
          OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9",
          OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: `${receiver.url}/v1/metrics`,
          OTEL_TRACES_EXPORTER: "none",
          OTEL_LOGS_EXPORTER: "none"
        })))
      )
      expect(new Set(receiver.requests().map((r) => r.path))).toEqual(new Set(["/v1/metrics"]))
      expect(receiver.latest("cansync.verification.failures")?.unit).toBe("{asset}")
    }))

  it.effect("takes the service name from OTEL_SERVICE_NAME, then OTEL_RESOURCE_ATTRIBUTES, then can-sync", () =>
    Effect.gen(function*() {
      const resourceFor = (env: Record<string, string>) =>
        Telemetry.resourceOptions().pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env))))
      expect((yield* resourceFor({})).serviceName).toBe("can-sync")
      expect((yield* resourceFor({ OTEL_RESOURCE_ATTRIBUTES: "service.name=from-attrs,team=sync" })).serviceName).toBe("from-attrs")
      const both = yield* resourceFor({ OTEL_SERVICE_NAME: "named", OTEL_RESOURCE_ATTRIBUTES: "service.name=from-attrs,team=sync" })
      expect(both.serviceName).toBe("named")
      expect(both.attributes).toMatchObject({ team: "sync" })
      expect(both.attributes["service.instance.id"]).toBeTypeOf("string")
      const instance = yield* resourceFor({ OTEL_RESOURCE_ATTRIBUTES: "service.instance.id=agent-7" })
      expect(instance.attributes["service.instance.id"]).toBe("agent-7")
    }))

  it.effect("fails with TelemetryConfigError on a value that is not milliseconds", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(Telemetry.layer).pipe(
        Effect.scoped,
        Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_METRIC_EXPORT_INTERVAL: "soon" })))
      ))
      expect(error._tag).toBe("TelemetryConfigError")
      expect(error.message).toContain("OTEL_METRIC_EXPORT_INTERVAL")
    }))
})

describe("Telemetry.layer with no OTEL variables", () => {
  const spanClass = (env: Record<string, string>) =>
    Effect.currentSpan.pipe(
      Effect.map((span) => span.constructor.name),
      Effect.withSpan("probe"),
      Effect.provide(Telemetry.layer),
      Effect.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env)))
    )

  it.live("is a no-op: Effect's own tracer stays", () =>
    Effect.gen(function*() {
      expect(yield* spanClass({})).toBe("NativeSpan")
      expect(yield* spanClass({ OTEL_SERVICE_NAME: "named", OTEL_RESOURCE_ATTRIBUTES: "a=b" })).toBe("NativeSpan")
      // With an endpoint the exporter's tracer takes over (the probe works).
      expect(yield* spanClass({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9", OTEL_EXPORTER_OTLP_TIMEOUT: "200" })).not.toBe("NativeSpan")
    }))
})
