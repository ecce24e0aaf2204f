/**
 * How Prometheus names an OTLP metric, as the OpenTelemetry Collector's Prometheus exporter (and
 * Prometheus' own OTLP receiver) do by default ("underscore escaping with suffixes"): name split
 * into tokens on non-alphanumerics, the unit appended unless already there or a `{annotation}`,
 * `_total` for monotonic sums, `_ratio` for gauges of unit "1", `_bucket/_sum/_count` for histograms.
 */
import type { ReceivedPoint } from "./OtlpReceiver.ts"

const unitWords: Readonly<Record<string, string>> = {
  d: "days", h: "hours", min: "minutes", s: "seconds", ms: "milliseconds", us: "microseconds", ns: "nanoseconds",
  By: "bytes", KiBy: "kibibytes", MiBy: "mebibytes", GiBy: "gibibytes", TiBy: "tebibytes",
  KBy: "kilobytes", MBy: "megabytes", GBy: "gigabytes", TBy: "terabytes",
  m: "meters", V: "volts", A: "amperes", J: "joules", W: "watts", g: "grams",
  Cel: "celsius", Hz: "hertz", "1": "", "%": "percent"
}
const perUnitWords: Readonly<Record<string, string>> = { s: "second", m: "minute", h: "hour", d: "day", w: "week", mo: "month", y: "year" }

const tokens = (s: string) => s.split(/[^a-zA-Z0-9]+/).filter((t) => t !== "")
const clean = (s: string) => tokens(s).join("_")

export interface OtlpMetricShape {
  readonly name: string
  readonly unit: string
  readonly kind: ReceivedPoint["kind"]
  readonly monotonic: boolean
}

/** The metric family name (histograms: without `_bucket` etc.). */
export const familyName = (metric: OtlpMetricShape): string => {
  let parts = tokens(metric.name)
  const [main = "", per] = metric.unit.split("/", 2).map((u) => u.trim())
  if (main !== "" && !/[{}]/.test(main)) {
    const word = clean(unitWords[main] ?? main)
    if (word !== "" && !parts.includes(word)) parts.push(word)
  }
  if (per !== undefined && per !== "" && !/[{}]/.test(per)) {
    const word = clean(perUnitWords[per] ?? per)
    if (word !== "" && !parts.includes(word)) parts.push("per", word)
  }
  if (metric.kind === "sum" && metric.monotonic) parts = [...parts.filter((t) => t !== "total"), "total"]
  if (metric.kind === "gauge" && metric.unit === "1") parts = [...parts.filter((t) => t !== "ratio"), "ratio"]
  const name = parts.join("_")
  return /^[0-9]/.test(name) ? `_${name}` : name
}

/** Every series name Prometheus shows for the metric. */
export const seriesNames = (metric: OtlpMetricShape): ReadonlyArray<string> => {
  const family = familyName(metric)
  switch (metric.kind) {
    case "histogram":
    case "exponentialHistogram":
      return [`${family}_bucket`, `${family}_sum`, `${family}_count`]
    case "summary":
      return [family, `${family}_sum`, `${family}_count`]
    default:
      return [family]
  }
}

// --- PromQL: which metric names does an expression read? --------------------------------------

const promqlWords = new Set([
  // aggregation operators and their modifiers
  "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
  "limitk", "limit_ratio", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
  "and", "or", "unless", "atan2", "inf", "nan",
  // functions
  "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month",
  "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_avg",
  "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev", "histogram_stdvar",
  "histogram_sum", "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "ln",
  "log2", "log10", "minute", "month", "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort",
  "sort_desc", "sqrt", "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time",
  "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
  "stdvar_over_time", "last_over_time", "present_over_time",
  // Grafana template functions
  "label_values", "label_names", "metrics", "query_result"
])

/**
 * The metric names an expression reads: identifiers outside label matchers, strings, range and
 * grouping clauses, that are neither PromQL words nor Grafana `$variables`.
 */
export const metricNamesIn = (expr: string): ReadonlyArray<string> => {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, " ")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, " ")
  // label_values(metric, label): the second argument is a label, not a metric.
  const withoutLabelArgs = stripped.replace(/\blabel_values\s*\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*\)/g, " $1 ")
  const names = new Set<string>()
  for (const match of withoutLabelArgs.matchAll(/(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    if (!promqlWords.has(match[0])) names.add(match[0])
  }
  return [...names]
}
