/**
 * What the agents really export: runs every metric defined in `@can-sync/core/Metrics` and the
 * agent's own (`@can-sync/cli/AgentMetrics`: identity, backlog, process) once through `Telemetry.layer` against a real OTLP receiver and returns the metrics that arrived,
 * with their names, kinds and units as the wire carried them.
 */
import { Metrics } from "@can-sync/core"
import * as AgentMetrics from "@can-sync/cli/AgentMetrics"
import * as Telemetry from "@can-sync/cli/Telemetry"
import { ConfigProvider, Effect, Metric } from "effect"
import * as OtlpReceiver from "./OtlpReceiver.ts"
import type { OtlpMetricShape } from "./PromNames.ts"

/** The env a test gives the layer: export to `url` every 200 ms. */
export const otelEnv = (url: string, extra: Record<string, string> = {}) =>
  ConfigProvider.layer(ConfigProvider.fromUnknown({
    OTEL_EXPORTER_OTLP_ENDPOINT: url,
    OTEL_METRIC_EXPORT_INTERVAL: "200",
    ...extra
  }))

const isNumberMetric = (u: unknown): u is Metric.Metric<number, unknown> =>
  Metric.isMetric(u) && (u.type === "Counter" || u.type === "Gauge" || u.type === "Histogram")

/** Every number-valued metric exported by the core Metrics module and the agent (AgentMetrics). */
export const allCoreMetrics = (): ReadonlyArray<Metric.Metric<number, unknown>> =>
  [...Object.values(Metrics), ...AgentMetrics.all].flatMap((u): Array<Metric.Metric<number, unknown>> => (isNumberMetric(u) ? [u] : []))

/** Records each core metric once under Telemetry.layer and returns what reached the receiver. */
export const exportedMetrics = Effect.scoped(Effect.gen(function*() {
  const receiver = yield* OtlpReceiver.start
  yield* Effect.forEach(allCoreMetrics(), (metric) => Metric.update(metric, 1), { discard: true }).pipe(
    Effect.provide(Telemetry.layer),
    Effect.provide(otelEnv(receiver.url))
  )
  // The layer flushed on release; everything recorded has been POSTed by now.
  const shapes = new Map<string, OtlpMetricShape>()
  for (const p of receiver.points()) shapes.set(p.name, { name: p.name, unit: p.unit, kind: p.kind, monotonic: p.monotonic })
  return [...shapes.values()]
}))
