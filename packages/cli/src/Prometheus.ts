/**
 * `GET /metrics`: every Effect metric of this process in the Prometheus text format, rendered by
 * effect's own `PrometheusMetrics`. Names follow the OpenTelemetry Collector's Prometheus exporter
 * (the unit from the description appended, `_total` on counters), so the one Grafana dashboard
 * reads an agent scraped directly and agents exported over OTLP through a Collector alike.
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import { PrometheusMetrics } from "effect/observability"
import { unitOf } from "./Telemetry.ts"

/** Content type of the text exposition format 0.0.4. */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

const unitWords: Readonly<Record<string, string>> = {
  s: "seconds",
  ms: "milliseconds",
  By: "bytes",
  KiBy: "kibibytes",
  MiBy: "mebibytes",
  "%": "percent"
}

const tokens = (s: string) => s.split(/[^a-zA-Z0-9]+/).filter((t) => t !== "")

/**
 * The Prometheus family name of a metric: `cansync.transfer.bytes` (a counter in By) is
 * `cansync_transfer_bytes_total`, `cansync.reconcile.duration` (a histogram in s) is
 * `cansync_reconcile_duration_seconds`; `{annotation}` units add nothing.
 */
export const familyName = (metric: { readonly id: string; readonly type: Metric.Metric.Type; readonly description?: string | undefined }): string => {
  let parts = tokens(metric.id)
  const unit = unitOf(metric.description ?? "")
  if (unit !== undefined && !/[{}]/.test(unit)) {
    const word = tokens(unitWords[unit] ?? unit).join("_")
    if (word !== "" && !parts.includes(word)) parts.push(word)
  }
  if (metric.type === "Counter") parts = [...parts.filter((t) => t !== "total"), "total"]
  const name = parts.join("_")
  return /^[0-9]/.test(name) ? `_${name}` : name
}

/** The exposition of every metric registered in this process. */
export const exposition: Effect.Effect<string> = Effect.gen(function*() {
  const context = yield* Effect.context<never>()
  const names = new Map(Metric.snapshotUnsafe(context).map((m) => [m.id, familyName(m)]))
  return PrometheusMetrics.formatUnsafe(context, { metricNameMapper: (id) => names.get(id) ?? id })
})
