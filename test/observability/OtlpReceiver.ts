/**
 * A small OTLP/HTTP receiver for tests: listens on 127.0.0.1 (port 0), accepts OTLP/JSON
 * (`application/json`, optionally gzip), and keeps every span, metric data point and log record,
 * flattened, so tests can assert names, attributes and values. Anything else (protobuf, unknown
 * paths) is answered 415/404 and recorded as rejected.
 */
import { Data, Effect } from "effect"
import type { Scope } from "effect"
import { eventually } from "../kit/Eventually.ts"
import type { GaveUp, NotYet, TimedOut } from "../kit/Eventually.ts"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { gunzipSync } from "node:zlib"

export type Attributes = Readonly<Record<string, unknown>>

export interface ReceivedRequest {
  readonly path: string
  readonly contentType: string
  readonly bytes: number
  readonly accepted: boolean
}

export interface ReceivedSpan {
  readonly name: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string
  readonly kind: number
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  readonly statusCode: number
  readonly statusMessage: string
  readonly attributes: Attributes
  readonly events: ReadonlyArray<{ readonly name: string; readonly attributes: Attributes }>
  readonly resource: Attributes
  readonly scope: string
  readonly startTimeUnixNano: string
  readonly endTimeUnixNano: string
}

export type MetricKind = "sum" | "gauge" | "histogram" | "exponentialHistogram" | "summary"

/** One data point of one metric, with its metric's descriptor and resource. */
export interface ReceivedPoint {
  readonly name: string
  readonly unit: string
  readonly description: string
  readonly kind: MetricKind
  /** Sums only: true for counters that only go up. */
  readonly monotonic: boolean
  /** 1 delta, 2 cumulative, 0 not applicable (gauges). */
  readonly temporality: number
  readonly attributes: Attributes
  readonly resource: Attributes
  /** Sums and gauges: the value; histograms: the sum of observations. */
  readonly value: number
  /** Histograms: observation count and bucket layout. */
  readonly count: number
  readonly bounds: ReadonlyArray<number>
  readonly bucketCounts: ReadonlyArray<number>
  readonly timeUnixNano: string
}

/** One exported log record. */
export interface ReceivedLog {
  readonly body: unknown
  readonly severityText: string
  readonly traceId: string
  readonly spanId: string
  readonly attributes: Attributes
  readonly resource: Attributes
}

export class ReceiverStartFailed extends Data.TaggedError("ReceiverStartFailed")<{ readonly message: string }> {}

export interface OtlpReceiver {
  /** Base URL for OTEL_EXPORTER_OTLP_ENDPOINT, e.g. `http://127.0.0.1:41234`. */
  readonly url: string
  readonly requests: () => ReadonlyArray<ReceivedRequest>
  readonly spans: () => ReadonlyArray<ReceivedSpan>
  readonly points: () => ReadonlyArray<ReceivedPoint>
  readonly logs: () => ReadonlyArray<ReceivedLog>
  /** Every metric name that arrived at least once. */
  readonly metricNames: () => ReadonlySet<string>
  /**
   * The newest point of `name` (by export time) whose attributes include `match`, across all
   * resources whose attributes include `resource`. Cumulative sums and gauges: the current value.
   */
  readonly latest: (name: string, match?: Attributes, resource?: Attributes) => ReceivedPoint | undefined
  /** Polls `look` every 100 ms until it returns a value, at most `seconds` (default 30). */
  readonly waitFor: <A>(waitingFor: string, look: () => A | undefined, seconds?: number) => Effect.Effect<Exclude<A, NotYet | undefined>, TimedOut | GaveUp>
  /** Forget everything received so far. */
  readonly clear: () => void
}

// --- OTLP/JSON decoding (AnyValue, KeyValue lists) ------------------------------------------

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [k: string]: Json }
type JsonObject = { readonly [k: string]: Json }

const isObject = (u: Json | undefined): u is JsonObject => typeof u === "object" && u !== null && !Array.isArray(u)
const field = (o: Json | undefined, key: string): Json | undefined => (isObject(o) ? o[key] : undefined)
const list = (u: Json | undefined): ReadonlyArray<Json> => (Array.isArray(u) ? (u as ReadonlyArray<Json>) : [])
const str = (u: Json | undefined): string => (typeof u === "string" ? u : typeof u === "number" ? String(u) : "")
const num = (u: Json | undefined): number => (typeof u === "number" ? u : typeof u === "string" && u !== "" ? Number(u) : 0)

const anyValue = (v: Json | undefined): unknown => {
  if (!isObject(v)) return undefined
  if ("stringValue" in v) return str(v.stringValue)
  if ("intValue" in v) return num(v.intValue)
  if ("doubleValue" in v) return num(v.doubleValue)
  if ("boolValue" in v) return v.boolValue === true
  if ("arrayValue" in v) return list(field(v.arrayValue, "values")).map(anyValue)
  if ("kvlistValue" in v) return attributes(field(v.kvlistValue, "values"))
  if ("bytesValue" in v) return str(v.bytesValue)
  return undefined
}

const attributes = (kvs: Json | undefined): Attributes => {
  const out: Record<string, unknown> = {}
  for (const kv of list(kvs)) out[str(field(kv, "key"))] = anyValue(field(kv, "value"))
  return out
}

const includes = (have: Attributes, want: Attributes | undefined): boolean =>
  want === undefined || Object.entries(want).every(([k, v]) => have[k] === v)

const parseJson = (text: string): Json | undefined => {
  try {
    return JSON.parse(text) as Json
  } catch {
    return undefined
  }
}

const decodeSpans = (body: Json): Array<ReceivedSpan> =>
  list(field(body, "resourceSpans")).flatMap((rs) => {
    const resource = attributes(field(field(rs, "resource"), "attributes"))
    return list(field(rs, "scopeSpans")).flatMap((ss) => {
      const scope = str(field(field(ss, "scope"), "name"))
      return list(field(ss, "spans")).map((s): ReceivedSpan => ({
        name: str(field(s, "name")),
        traceId: str(field(s, "traceId")),
        spanId: str(field(s, "spanId")),
        parentSpanId: str(field(s, "parentSpanId")),
        kind: num(field(s, "kind")),
        statusCode: num(field(field(s, "status"), "code")),
        statusMessage: str(field(field(s, "status"), "message")),
        attributes: attributes(field(s, "attributes")),
        events: list(field(s, "events")).map((e) => ({ name: str(field(e, "name")), attributes: attributes(field(e, "attributes")) })),
        resource,
        scope,
        startTimeUnixNano: str(field(s, "startTimeUnixNano")),
        endTimeUnixNano: str(field(s, "endTimeUnixNano"))
      }))
    })
  })

const metricKinds: ReadonlyArray<MetricKind> = ["sum", "gauge", "histogram", "exponentialHistogram", "summary"]

const decodePoints = (body: Json): Array<ReceivedPoint> =>
  list(field(body, "resourceMetrics")).flatMap((rm) => {
    const resource = attributes(field(field(rm, "resource"), "attributes"))
    return list(field(rm, "scopeMetrics")).flatMap((sm) =>
      list(field(sm, "metrics")).flatMap((m) => {
        const kind = metricKinds.find((k) => isObject(field(m, k)))
        if (kind === undefined) return []
        const data = field(m, kind)
        return list(field(data, "dataPoints")).map((p): ReceivedPoint => ({
          name: str(field(m, "name")),
          unit: str(field(m, "unit")),
          description: str(field(m, "description")),
          kind,
          monotonic: field(data, "isMonotonic") === true,
          temporality: num(field(data, "aggregationTemporality")),
          attributes: attributes(field(p, "attributes")),
          resource,
          value: kind === "sum" || kind === "gauge" ? num(field(p, "asDouble") ?? field(p, "asInt")) : num(field(p, "sum")),
          count: num(field(p, "count")),
          bounds: list(field(p, "explicitBounds")).map(num),
          bucketCounts: list(field(p, "bucketCounts")).map(num),
          timeUnixNano: str(field(p, "timeUnixNano"))
        }))
      })
    )
  })

const decodeLogs = (body: Json): Array<ReceivedLog> =>
  list(field(body, "resourceLogs")).flatMap((rl) => {
    const resource = attributes(field(field(rl, "resource"), "attributes"))
    return list(field(rl, "scopeLogs")).flatMap((sl) =>
      list(field(sl, "logRecords")).map((r): ReceivedLog => ({
        body: anyValue(field(r, "body")),
        severityText: str(field(r, "severityText")),
        traceId: str(field(r, "traceId")),
        spanId: str(field(r, "spanId")),
        attributes: attributes(field(r, "attributes")),
        resource
      }))
    )
  })

// --- The server -------------------------------------------------------------------------------

const readBody = (req: IncomingMessage, onBody: (body: Buffer) => void) => {
  const chunks: Array<Buffer> = []
  req.on("data", (chunk: Buffer) => chunks.push(chunk))
  req.on("end", () => onBody(Buffer.concat(chunks)))
}

const gunzip = (body: Buffer): Buffer | undefined => {
  try {
    return gunzipSync(body)
  } catch {
    return undefined
  }
}

/** Starts the receiver for the length of the scope. */
export const start: Effect.Effect<OtlpReceiver, ReceiverStartFailed, Scope.Scope> = Effect.gen(function*() {
  const requests: Array<ReceivedRequest> = []
  const spans: Array<ReceivedSpan> = []
  const points: Array<ReceivedPoint> = []
  const logs: Array<ReceivedLog> = []

  const handle = (req: IncomingMessage, res: ServerResponse) =>
    readBody(req, (raw) => {
      const path = (req.url ?? "/").split("?")[0] ?? "/"
      const contentType = String(req.headers["content-type"] ?? "").split(";")[0]?.trim() ?? ""
      const body = req.headers["content-encoding"] === "gzip" ? gunzip(raw) : raw
      const json = contentType === "application/json" && body !== undefined ? parseJson(body.toString("utf8")) : undefined
      const known = path === "/v1/traces" || path === "/v1/metrics" || path === "/v1/logs"
      const accepted = req.method === "POST" && known && json !== undefined
      requests.push({ path, contentType, bytes: raw.length, accepted })
      if (!accepted) {
        res.writeHead(known ? 415 : 404, { "content-type": "application/json" }).end("{}")
        return
      }
      if (path === "/v1/traces") spans.push(...decodeSpans(json))
      if (path === "/v1/metrics") points.push(...decodePoints(json))
      if (path === "/v1/logs") logs.push(...decodeLogs(json))
      res.writeHead(200, { "content-type": "application/json" }).end("{}")
    })

  const server = yield* Effect.acquireRelease(
    Effect.callback<ReturnType<typeof createServer>, ReceiverStartFailed>((resume) => {
      const s = createServer(handle)
      s.once("error", (e) => resume(Effect.fail(new ReceiverStartFailed({ message: e.message }))))
      s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
    }),
    (s) =>
      Effect.callback<void>((resume) => {
        s.close(() => resume(Effect.void))
        s.closeAllConnections()
      })
  )
  const port = (server.address() as AddressInfo).port

  const latest = (name: string, match?: Attributes, resource?: Attributes) => {
    let best: ReceivedPoint | undefined
    for (const p of points) {
      if (p.name !== name || !includes(p.attributes, match) || !includes(p.resource, resource)) continue
      if (best === undefined || BigInt(p.timeUnixNano || "0") >= BigInt(best.timeUnixNano || "0")) best = p
    }
    return best
  }

  /** What arrived so far, for a failed wait's message. */
  const summary = () => {
    const names = [...new Set(points.map((p) => p.name))].sort()
    return `received ${requests.length} requests (${requests.filter((r) => !r.accepted).length} refused), ` +
      `${spans.length} spans, ${logs.length} log records, metrics: ${names.join(", ") || "none"}`
  }

  const waitFor = <A>(waitingFor: string, look: () => A | undefined, seconds = 30) =>
    eventually(waitingFor, Effect.sync(look), `${seconds} seconds`, { interval: "100 millis", diagnostics: summary })

  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => requests.slice(),
    spans: () => spans.slice(),
    points: () => points.slice(),
    logs: () => logs.slice(),
    metricNames: () => new Set(points.map((p) => p.name)),
    latest,
    waitFor,
    clear: () => {
      requests.length = 0
      spans.length = 0
      points.length = 0
      logs.length = 0
    }
  } satisfies OtlpReceiver
})
