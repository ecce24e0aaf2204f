/**
 * Structured logs for every command: one JSON object per line when stderr is not a terminal (or
 * `json: true`), a readable line on a terminal. Both carry the current trace and span ids, so a
 * log line leads to its trace. Logs go to stderr: stdout belongs to command output (`ls --json`).
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import * as Tracer from "effect/Tracer"
import type { LogLevel } from "effect"
import { printable } from "./Printable.ts"

export interface Options {
  /** JSON lines; "auto" (the default) means JSON unless stderr is a terminal. */
  readonly json?: boolean | "auto" | undefined
  /** Minimum level written (default: the one in force, i.e. `--log-level`, else "Info"). */
  readonly level?: LogLevel.LogLevel | undefined
  /** Where each finished line goes (default: stderr). Tests capture lines here. */
  readonly write?: ((line: string) => void) | undefined
  /** Colors on the readable format (default: when writing to a terminal and NO_COLOR is unset). */
  readonly colors?: boolean | undefined
}

/** One log record, as the JSON format writes it. Annotations are merged in at the top level. */
export interface LogRecord {
  readonly timestamp: string
  readonly level: string
  readonly message: string
  readonly trace_id?: string
  readonly span_id?: string
  readonly fiber: string
  readonly cause?: string
  readonly [annotation: string]: unknown
}

const text = (u: unknown): string => {
  if (typeof u === "string") return u
  if (u instanceof Error) return u.message
  try {
    return JSON.stringify(u) ?? String(u)
  } catch {
    return String(u)
  }
}

const messageText = (message: unknown): string =>
  Array.isArray(message) ? message.map(text).join(" ") : text(message)

/** Values JSON.stringify cannot take (bigint, cycles, errors) become strings. */
const jsonSafe = (u: unknown): unknown => {
  if (typeof u === "bigint") return u.toString()
  if (u instanceof Error) return u.message
  if (typeof u === "object" && u !== null) {
    try {
      JSON.stringify(u)
      return u
    } catch {
      return String(u)
    }
  }
  return u
}

/** The record for one log call; shared by both formats. */
const toRecord = (options: Logger.Options<unknown>): LogRecord => {
  const span = Context.getOption(options.fiber.context, Tracer.ParentSpan)
  const annotations = options.fiber.getRef(References.CurrentLogAnnotations)
  const record: globalThis.Record<string, unknown> = {}
  for (const [key, value] of Object.entries(annotations)) record[key] = jsonSafe(value)
  record.timestamp = options.date.toISOString()
  record.level = options.logLevel.toUpperCase()
  record.message = messageText(options.message)
  if (span._tag === "Some") {
    record.trace_id = span.value.traceId
    record.span_id = span.value.spanId
  }
  record.fiber = `#${options.fiber.id}`
  if (options.cause.reasons.length > 0) record.cause = Cause.pretty(options.cause)
  return record as LogRecord
}

/** The JSON-lines formatter (exported for tests and other sinks). */
export const formatJson: Logger.Logger<unknown, string> = Logger.make((options) => JSON.stringify(toRecord(options)))

const reserved = new Set(["timestamp", "level", "message", "trace_id", "span_id", "fiber", "cause"])
const levelColor: globalThis.Record<string, string> = { FATAL: "35", ERROR: "31", WARN: "33", INFO: "32", DEBUG: "36", TRACE: "90" }

/** `12:00:01.234 INFO  message key=value … trace=<id>`, for people at a terminal. */
export const formatReadable = (colors: boolean): Logger.Logger<unknown, string> =>
  Logger.make((options) => {
    const r = toRecord(options)
    const paint = (code: string | undefined, s: string) => (colors && code !== undefined ? `\x1b[${code}m${s}\x1b[0m` : s)
    const fields = Object.entries(r)
      .filter(([key]) => !reserved.has(key))
      .map(([key, value]) => `${key}=${typeof value === "string" ? value : text(value)}`)
    // Messages and fields may carry a peer's text: escaped, so it cannot forge lines or drive the terminal
    // (the trace id is ours, painted after escaping).
    const trace = r.trace_id === undefined ? [] : [paint("90", `trace=${r.trace_id}`)]
    const line = `${r.timestamp.slice(11, 23)} ${paint(levelColor[r.level], r.level.padEnd(5))} ${printable(r.message)}${
      [...(fields.length > 0 ? [printable(fields.join(" "))] : []), ...trace].map((f) => ` ${f}`).join("")
    }`
    return r.cause === undefined ? line : `${line}\n${r.cause}`
  })

const writeStderr = (line: string) => {
  process.stderr.write(`${line}\n`)
}

/** `NO_COLOR` set to anything but "" turns colors off (https://no-color.org). */
export const noColor = (): boolean => (process.env.NO_COLOR ?? "") !== ""

/** Whether "auto" picks JSON here. */
export const jsonByDefault = (): boolean => process.stderr.isTTY !== true

/**
 * Replaces the default loggers: the chosen format to stderr, plus Effect's tracer logger, which
 * records each log as an event on the current span. Sets the minimum level only when given.
 */
export const layer = (options: Options = {}): Layer.Layer<never> => {
  const json = options.json === undefined || options.json === "auto" ? jsonByDefault() : options.json
  const write = options.write ?? writeStderr
  const colors = options.colors ?? (options.write === undefined && process.stderr.isTTY === true && !noColor())
  const format = json ? formatJson : formatReadable(colors)
  const sink = Logger.map(format, write)
  const loggers = Logger.layer([sink, Logger.tracerLogger])
  // Without a level the one in force stays: `--log-level` (set by the CLI around each command), else Info.
  return options.level === undefined ? loggers : Layer.merge(loggers, Layer.succeed(References.MinimumLogLevel, options.level))
}
