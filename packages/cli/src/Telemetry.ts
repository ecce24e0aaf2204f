/**
 * OpenTelemetry export for the agent: traces, Effect metrics and logs over OTLP/HTTP (JSON) with
 * effect's own `Otlp.layerFromConfig`, configured only by the standard `OTEL_*` variables. With no
 * endpoint set nothing is exported and Effect's native tracer stays. What this file adds to it:
 * the `can-sync` resource defaults, metric units, and a log line when the Collector fails.
 */
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { FetchHttpClient, HttpClient } from "effect/http"
import { Otlp, OtlpSerialization } from "effect/observability"
import type { OtlpMetrics } from "effect/observability"
import { hostname } from "node:os"

/** An `OTEL_*` variable holds a value the exporter cannot use. */
export class TelemetryConfigError extends Data.TaggedError("TelemetryConfigError")<{ readonly reason: string }> {
  override get message() {
    return `telemetry configuration: ${this.reason}`
  }
}

/** What the CLI may add: the agent's own identity, below what OTEL_* variables say. */
export interface Options {
  readonly serviceName?: string | undefined
  readonly serviceVersion?: string | undefined
  readonly attributes?: Readonly<Record<string, string>> | undefined
}

/** The resource the exporters are given (explicit options win over OTEL_* in effect's exporter). */
export interface ResourceOptions {
  readonly serviceName: string
  readonly serviceVersion?: string | undefined
  readonly attributes: Record<string, unknown>
}

const optional = (name: string) =>
  Config.schema(Schema.UndefinedOr(Schema.String), name).pipe(Config.map((s) => (s?.trim() === "" ? undefined : s?.trim())))

/**
 * `service.name` from OTEL_SERVICE_NAME, then OTEL_RESOURCE_ATTRIBUTES, then `options`, then
 * "can-sync"; `service.instance.id` is what `options` say (`sync` passes its peer id, stable across
 * restarts), else `<hostname>-<pid>`, because several agents share a service name and the
 * Collector's Prometheus exporter makes the instance id the `instance` label.
 */
export const resourceOptions = (options: Options = {}) =>
  Effect.gen(function*() {
    const fromEnv = (yield* Config.Record(Schema.StringFromUriComponent, Schema.StringFromUriComponent, "OTEL_RESOURCE_ATTRIBUTES", {
      trim: true,
      keepEmptyValues: true
    }).pipe(Config.withDefault(undefined))) ?? {}
    const { "service.name": envName, "service.version": envVersion, ...envAttributes } = fromEnv
    const resource: ResourceOptions = {
      serviceName: (yield* optional("OTEL_SERVICE_NAME")) ?? envName ?? options.serviceName ?? "can-sync",
      serviceVersion: (yield* optional("OTEL_SERVICE_VERSION")) ?? envVersion ?? options.serviceVersion,
      attributes: { "service.instance.id": `${hostname()}-${process.pid}`, ...options.attributes, ...envAttributes }
    }
    return resource
  })

// --- Units ------------------------------------------------------------------------------------

/**
 * Effect's exporter takes a metric's unit from a `unit` attribute, which would also become a
 * label on every series; Metrics.ts states each metric's UCUM unit at the end of its description
 * instead — "(By)", "(s)", "({asset})" — and this exports that unit. It is what makes the
 * Prometheus names right (`_seconds`, `_bytes`, and no `_ratio` on gauges).
 */
export const unitOf = (description: string): string | undefined => /\(([^()\s]+)\)\s*$/.exec(description)?.[1]

const withUnits = (data: OtlpMetrics.MetricsData): OtlpMetrics.MetricsData => ({
  resourceMetrics: data.resourceMetrics.map((rm) => ({
    ...rm,
    scopeMetrics: rm.scopeMetrics.map((sm) => ({
      ...sm,
      metrics: sm.metrics.map((m) => {
        const unit = m.unit === undefined || m.unit === "1" || m.unit === "" ? unitOf(m.description ?? "") : undefined
        return unit === undefined ? m : { ...m, unit }
      })
    }))
  }))
})

/** OTLP/JSON, as every Collector accepts on port 4318, with the metrics' units filled in. */
const serialization = Layer.effect(
  OtlpSerialization.OtlpSerialization,
  Effect.map(OtlpSerialization.OtlpSerialization, (json) => ({ ...json, metrics: (data) => json.metrics(withUnits(data)) }))
).pipe(Layer.provide(OtlpSerialization.layerJson))

// --- Transport ----------------------------------------------------------------------------------

/**
 * The exporters drop what fails and log it only at debug level; an unreachable or refusing
 * Collector is logged here once, at ERROR, until an export succeeds again.
 */
const httpClient = Layer.effect(
  HttpClient.HttpClient,
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    let failing = false
    const failed = (url: string, why: string) =>
      Effect.suspend(() => {
        if (failing) return Effect.void
        failing = true
        return Effect.logError(`opentelemetry: export to ${url} failed: ${why}`)
      })
    return client.pipe(
      HttpClient.tap((response) =>
        response.status >= 300
          ? failed(response.request.url, `HTTP ${response.status}`)
          : Effect.sync(() => {
            failing = false
          })
      ),
      HttpClient.tapError((error) => failed(error.request.url, error.message))
    )
  })
).pipe(Layer.provide(FetchHttpClient.layer))

// --- The layer ----------------------------------------------------------------------------------

/**
 * Defaults for variables that are unset: the specification's `otlp` exporters (effect's default
 * is none, so an endpoint alone would export nothing) and its 60 s metric interval (effect's: 10 s).
 */
const specificationDefaults = ConfigProvider.layerAdd(ConfigProvider.fromUnknown({
  OTEL_TRACES_EXPORTER: "otlp",
  OTEL_METRICS_EXPORTER: "otlp",
  OTEL_LOGS_EXPORTER: "otlp",
  OTEL_METRIC_EXPORT_INTERVAL: "60000"
}))

/** Export when the `OTEL_*` variables ask for it; a no-op otherwise. Flushes when released. */
export const layerWith = (options: Options = {}): Layer.Layer<never, TelemetryConfigError> =>
  Layer.unwrap(Effect.map(resourceOptions(options), (resource) => Otlp.layerFromConfig({ resource }))).pipe(
    Layer.provide([serialization, httpClient, specificationDefaults]),
    // effect's exporters turn a malformed variable into a defect; here it is a typed failure
    Layer.catchCause((cause) => Layer.effectDiscard(Effect.fail(new TelemetryConfigError({ reason: describe(Cause.squash(cause)) })))))

/** A ConfigError says what is wrong in its cause ("Expected ... at ["OTEL_…"]"), on one line. */
const describe = (u: unknown): string => {
  const inner = typeof u === "object" && u !== null && "cause" in u && u.cause instanceof Error ? u.cause : u
  return (inner instanceof Error ? inner.message : String(inner)).replace(/\s*\n\s*/g, " ")
}

/** `layerWith()` with the defaults (service name "can-sync"). */
export const layer: Layer.Layer<never, TelemetryConfigError> = layerWith()
