/**
 * OpenTelemetry export for the agent: traces and Effect metrics over OTLP/HTTP (JSON) through
 * `@effect/opentelemetry`'s NodeSdk, configured only by the standard `OTEL_*` variables. With no
 * endpoint set the layer is `Layer.empty` and the OpenTelemetry packages are never even loaded.
 * docs/observability.md lists what is exported and how the variables are read.
 */
import type { MetricData, MetricProducer } from "@opentelemetry/sdk-metrics"
import type { SpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { hostname } from "node:os"

/** An `OTEL_*` variable holds a value the layer cannot use. */
export class TelemetryConfigError extends Data.TaggedError("TelemetryConfigError")<{
  readonly variable: string
  readonly value: string
  readonly message: string
}> {}

/** Everything the export needs, resolved from the environment. */
export interface Settings {
  /** Full URL traces are POSTed to, or undefined when traces are off. */
  readonly tracesUrl: string | undefined
  /** Full URL metrics are POSTed to, or undefined when metrics are off. */
  readonly metricsUrl: string | undefined
  readonly serviceName: string
  /** Resource attributes (OTEL_RESOURCE_ATTRIBUTES plus defaults), service.name excluded. */
  readonly resourceAttributes: Readonly<Record<string, string>>
  readonly metricInterval: Duration.Duration
  readonly metricTimeout: Duration.Duration
  readonly temporality: "cumulative" | "delta"
  /** OTEL_LOG_LEVEL: what the OpenTelemetry SDK's own diagnostics log (default "error"). */
  readonly sdkLogLevel: SdkLogLevel
  /** How long shutdown may take, per signal, to flush what is buffered. */
  readonly shutdownTimeout: Duration.Duration
}

export type SdkLogLevel = "none" | "error" | "warn" | "info" | "debug" | "verbose" | "all"
const sdkLogLevels: ReadonlyArray<SdkLogLevel> = ["none", "error", "warn", "info", "debug", "verbose", "all"]

/** What the CLI may add: the agent's own identity, merged under OTEL_RESOURCE_ATTRIBUTES. */
export interface Options {
  readonly serviceName?: string | undefined
  readonly serviceVersion?: string | undefined
  readonly attributes?: Readonly<Record<string, string>> | undefined
}

// --- Reading the standard variables ----------------------------------------------------------

/** An env variable; the specification says an empty value means unset. */
const variable = (name: string) =>
  Config.option(Config.String(name)).pipe(
    Effect.map(Option.filter((value) => value.trim() !== "")),
    Effect.map(Option.map((value) => value.trim())),
    Effect.mapError((error) => new TelemetryConfigError({ variable: name, value: "", message: String(error) }))
  )

const milliseconds = (name: string, fallback: number) =>
  Effect.flatMap(variable(name), Option.match({
    onNone: () => Effect.succeed(Duration.millis(fallback)),
    onSome: (value) => {
      const ms = Number(value)
      return Number.isInteger(ms) && ms > 0
        ? Effect.succeed(Duration.millis(ms))
        : Effect.fail(new TelemetryConfigError({ variable: name, value, message: `${name} must be a positive integer of milliseconds, got "${value}"` }))
    }
  }))

/** `OTEL_RESOURCE_ATTRIBUTES`: `k=v,k2=v2`, percent-encoded; malformed entries are skipped. */
export const parseResourceAttributes = (raw: string): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const entry of raw.split(",")) {
    const at = entry.indexOf("=")
    if (at <= 0) continue
    const key = safeDecode(entry.slice(0, at).trim())
    const value = safeDecode(entry.slice(at + 1).trim())
    if (key !== undefined && key !== "" && value !== undefined) out[key] = value
  }
  return out
}

const safeDecode = (s: string): string | undefined => {
  try {
    return decodeURIComponent(s)
  } catch {
    return undefined
  }
}

/** The signal's own endpoint is used as is; the generic one gets `/v1/<signal>` appended. */
const endpointFor = (signal: "traces" | "metrics") =>
  Effect.gen(function*() {
    const upper = signal.toUpperCase()
    if (Option.getOrUndefined(yield* variable(`OTEL_${upper}_EXPORTER`)) === "none") return undefined
    const specific = yield* variable(`OTEL_EXPORTER_OTLP_${upper}_ENDPOINT`)
    if (Option.isSome(specific)) return specific.value
    const base = yield* variable("OTEL_EXPORTER_OTLP_ENDPOINT")
    return Option.isSome(base) ? `${base.value.replace(/\/+$/, "")}/v1/${signal}` : undefined
  })

/**
 * The export settings from the environment, or None when nothing is to be exported
 * (no endpoint, `OTEL_SDK_DISABLED=true`, or both signals' exporters set to `none`).
 */
export const settings = (options: Options = {}): Effect.Effect<Option.Option<Settings>, TelemetryConfigError> =>
  Effect.gen(function*() {
    if (Option.getOrUndefined(yield* variable("OTEL_SDK_DISABLED"))?.toLowerCase() === "true") return Option.none()
    const tracesUrl = yield* endpointFor("traces")
    const metricsUrl = yield* endpointFor("metrics")
    if (tracesUrl === undefined && metricsUrl === undefined) return Option.none()

    const fromEnv: Record<string, string> = Option.match(yield* variable("OTEL_RESOURCE_ATTRIBUTES"), {
      onNone: () => ({}),
      onSome: parseResourceAttributes
    })
    const { "service.name": attributeServiceName, ...envAttributes } = fromEnv
    const serviceName = Option.getOrUndefined(yield* variable("OTEL_SERVICE_NAME")) ?? attributeServiceName ??
      options.serviceName ?? "can-sync"
    const resourceAttributes: Record<string, string> = {
      // Several agents share a service name; the instance id keeps their series apart
      // (the Collector's Prometheus exporter turns it into the `instance` label).
      "service.instance.id": `${hostname()}-${process.pid}`,
      ...(options.serviceVersion !== undefined ? { "service.version": options.serviceVersion } : {}),
      ...options.attributes,
      ...envAttributes
    }

    const metricInterval = yield* milliseconds("OTEL_METRIC_EXPORT_INTERVAL", 60_000)
    const metricTimeout = Duration.min(yield* milliseconds("OTEL_METRIC_EXPORT_TIMEOUT", 30_000), metricInterval)
    const temporality = Option.getOrUndefined(yield* variable("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"))?.toLowerCase() === "delta"
      ? "delta" as const
      : "cumulative" as const
    const logLevel = Option.getOrElse(yield* variable("OTEL_LOG_LEVEL"), () => "error").toLowerCase()
    const sdkLogLevel = sdkLogLevels.find((l) => l === logLevel) ?? "error"
    return Option.some({
      tracesUrl,
      metricsUrl,
      serviceName,
      resourceAttributes,
      metricInterval,
      metricTimeout,
      temporality,
      sdkLogLevel,
      // Per signal; with the collector down, shutdown (Ctrl-C) must not hang for long.
      shutdownTimeout: Duration.seconds(2)
    })
  })

// --- Units ------------------------------------------------------------------------------------

/**
 * Effect metrics carry no unit, so the bridge exports "1" for all of them; Metrics.ts states
 * each metric's UCUM unit at the end of its description, e.g. "(By)", "(s)", "({asset})".
 * Exporting that unit is what makes the Prometheus names right (`_seconds`, and no `_ratio`
 * on gauges).
 */
export const unitOf = (description: string): string | undefined => /\(([^()\s]+)\)\s*$/.exec(description)?.[1]

const withUnit = (metric: MetricData): MetricData => {
  const unit = metric.descriptor.unit === "1" || metric.descriptor.unit === "" ? unitOf(metric.descriptor.description) : undefined
  return unit === undefined ? metric : { ...metric, descriptor: { ...metric.descriptor, unit } }
}

/** A producer that reports what `inner` reports, with each metric's documented unit. */
export const withUnits = (inner: MetricProducer): MetricProducer => ({
  collect: (options) =>
    inner.collect(options).then((result) => ({
      ...result,
      resourceMetrics: {
        ...result.resourceMetrics,
        scopeMetrics: result.resourceMetrics.scopeMetrics.map((scope) => ({ ...scope, metrics: scope.metrics.map(withUnit) }))
      }
    }))
})

// --- The layers -------------------------------------------------------------------------------

/** The OpenTelemetry modules, loaded only when something is to be exported. */
const loadSdk = Effect.promise(() =>
  Promise.all([
    import("@opentelemetry/api"),
    import("@effect/opentelemetry/NodeSdk"),
    import("@effect/opentelemetry/OtelMetrics"),
    import("@effect/opentelemetry/Resource"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/sdk-metrics"),
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/exporter-metrics-otlp-http")
  ]).then(([OtelApi, NodeSdk, OtelMetrics, Resource, TraceBase, SdkMetrics, TraceExporter, MetricExporter]) => ({
    OtelApi,
    NodeSdk,
    OtelMetrics,
    Resource,
    TraceBase,
    SdkMetrics,
    TraceExporter,
    MetricExporter
  }))
)

type Sdk = Effect.Success<typeof loadSdk>

/** The SDK's global error handler hands over `JSON.stringify(error)`; say just its message. */
const describeArg = (u: unknown): string => {
  if (u instanceof Error) return u.message
  if (typeof u !== "string") return JSON.stringify(u) ?? String(u)
  if (!u.startsWith("{")) return u
  try {
    const parsed: unknown = JSON.parse(u)
    return typeof parsed === "object" && parsed !== null && "message" in parsed && typeof parsed.message === "string" ? parsed.message : u
  } catch {
    return u
  }
}

/**
 * The SDK reports failed exports (collector down, 4xx) only through its `diag` channel; this
 * routes it into the agent's own logs at OTEL_LOG_LEVEL, so an unreachable collector is visible.
 */
const diagnostics = (sdk: Sdk, level: SdkLogLevel) =>
  Layer.effectDiscard(Effect.gen(function*() {
    if (level === "none") return
    const run = Effect.runForkWith(yield* Effect.context<never>())
    const forward = (log: (message: string) => Effect.Effect<void>) => (message: string, ...args: Array<unknown>) => {
      run(log(["opentelemetry:", describeArg(message), ...args.map(describeArg)].join(" ")))
    }
    const levels = sdk.OtelApi.DiagLogLevel
    const logLevel = { error: levels.ERROR, warn: levels.WARN, info: levels.INFO, debug: levels.DEBUG, verbose: levels.VERBOSE, all: levels.ALL }[level]
    yield* Effect.acquireRelease(
      Effect.sync(() =>
        sdk.OtelApi.diag.setLogger({
          error: forward(Effect.logError),
          warn: forward(Effect.logWarning),
          info: forward(Effect.logInfo),
          debug: forward(Effect.logDebug),
          verbose: forward(Effect.logTrace)
        }, { logLevel, suppressOverrideMessage: true })
      ),
      () => Effect.sync(() => sdk.OtelApi.diag.disable())
    )
  }))

/**
 * A span processor whose flush and shutdown never reject: NodeSdk turns a rejected final flush
 * (collector down at exit) into a defect, which would make a clean shutdown exit non-zero.
 */
const tolerant = (sdk: Sdk, inner: SpanProcessor): SpanProcessor => {
  const report = (what: string) => (error: unknown) => sdk.OtelApi.diag.error(`span ${what} failed: ${describeArg(error)}`)
  return {
    onStart: (span, context) => inner.onStart(span, context),
    onEnd: (span) => inner.onEnd(span),
    forceFlush: () => inner.forceFlush().catch(report("flush")),
    shutdown: () => inner.shutdown().catch(report("export at shutdown"))
  }
}

/**
 * Effect metrics reach the SDK as a MetricProducer on a periodic reader (the @effect/opentelemetry
 * bridge), registered here rather than through NodeSdk's `metricReader` so that units can be
 * added and a failed final export is logged instead of becoming a defect.
 */
const metricsLayer = (sdk: Sdk, s: Settings, url: string) =>
  Layer.effectDiscard(Effect.gen(function*() {
    const producer = withUnits(yield* sdk.OtelMetrics.makeProducer(s.temporality))
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        const reader = new sdk.SdkMetrics.PeriodicExportingMetricReader({
          exporter: new sdk.MetricExporter.OTLPMetricExporter({ url }),
          exportIntervalMillis: Duration.toMillis(s.metricInterval),
          exportTimeoutMillis: Duration.toMillis(s.metricTimeout)
        })
        reader.setMetricProducer(producer)
        return reader
      }),
      (reader) =>
        Effect.tryPromise(() => reader.shutdown()).pipe( // exports once more, then stops
          Effect.catch((error) => Effect.logWarning(`opentelemetry: final metrics export failed: ${describeArg(error)}`)),
          Effect.interruptible,
          Effect.timeoutOption(s.shutdownTimeout)
        )
    )
  }))

/** Installs the tracer and the metric reader for `settings`; flushes both when released. */
export const layerFrom = (s: Settings): Layer.Layer<never> =>
  Layer.unwrap(Effect.gen(function*() {
    const sdk = yield* loadSdk
    const tracesUrl = s.tracesUrl
    const metricsUrl = s.metricsUrl
    const base = sdk.NodeSdk.layer(() => ({
      resource: { serviceName: s.serviceName, attributes: s.resourceAttributes },
      shutdownTimeout: s.shutdownTimeout,
      ...(tracesUrl === undefined ? {} : {
        spanProcessor: tolerant(sdk, new sdk.TraceBase.BatchSpanProcessor(new sdk.TraceExporter.OTLPTraceExporter({ url: tracesUrl })))
      })
    }))
    const signals = metricsUrl === undefined ? base : Layer.provideMerge(metricsLayer(sdk, s, metricsUrl), base)
    // The Resource service is only needed while building; the program gets the tracer alone.
    const withoutResource = Layer.effectContext(Effect.map(Layer.build(signals), Context.omit(sdk.Resource.Resource)))
    return Layer.provideMerge(withoutResource, diagnostics(sdk, s.sdkLogLevel))
  })).pipe(
    Layer.tap(() =>
      Effect.logInfo("telemetry export on").pipe(Effect.annotateLogs({
        traces: s.tracesUrl ?? "off",
        metrics: s.metricsUrl ?? "off",
        metricIntervalMs: Duration.toMillis(s.metricInterval),
        service: s.serviceName
      }))
    )
  )

/** Export when the `OTEL_*` variables ask for it; `Layer.empty` otherwise. */
export const layerWith = (options: Options = {}): Layer.Layer<never, TelemetryConfigError> =>
  Layer.unwrap(Effect.map(settings(options), Option.match({ onNone: () => Layer.empty, onSome: layerFrom })))

/** `layerWith()` with the defaults (service name "can-sync"). */
export const layer: Layer.Layer<never, TelemetryConfigError> = layerWith()
