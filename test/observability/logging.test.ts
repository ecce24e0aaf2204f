/**
 * Logging.layer: JSON lines carrying trace and span ids inside spans, annotations at the top
 * level, the minimum level respected; a readable line for terminals that still names the trace.
 */
import * as Logging from "@can-sync/cli/Logging"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"

const capture = <A, E>(options: Omit<Logging.Options, "write">, program: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    yield* program.pipe(Effect.provide(Logging.layer({ ...options, write: (l) => lines.push(l) })))
    return lines
  })

describe("Logging.layer", () => {
  it.effect("writes one JSON object per line with the current trace and span ids", () =>
    Effect.gen(function*() {
      const lines = yield* capture({ json: true }, Effect.gen(function*() {
        yield* Effect.logInfo("outside any span")
        const span = yield* Effect.gen(function*() {
          yield* Effect.logWarning("inside", { bytes: 12 }).pipe(Effect.annotateLogs({ peer: "p1", hash: "h" }))
          return yield* Effect.currentSpan
        }).pipe(Effect.withSpan("test.span"))
        return span
      }))
      expect(lines).toHaveLength(2)
      const [outside, inside] = lines.map((l) => JSON.parse(l) as Logging.LogRecord)
      expect(outside).toMatchObject({ level: "INFO", message: "outside any span" })
      expect(outside?.trace_id).toBeUndefined()
      expect(inside).toMatchObject({ level: "WARN", message: `inside {"bytes":12}`, peer: "p1", hash: "h" })
      expect(inside?.trace_id).toMatch(/^[0-9a-f]{32}$/)
      expect(inside?.span_id).toMatch(/^[0-9a-f]{16}$/)
      expect(Date.parse(inside?.timestamp ?? "")).not.toBeNaN()
    }))

  it.effect("drops lines below the minimum level and records causes", () =>
    Effect.gen(function*() {
      const lines = yield* capture({ json: true, level: "Warn" }, Effect.gen(function*() {
        yield* Effect.logDebug("debug")
        yield* Effect.logInfo("info")
        yield* Effect.logError("failed").pipe(Effect.andThen(Effect.fail("boom")), Effect.catchCause((cause) => Effect.logError("with cause", cause)))
      }))
      const records = lines.map((l) => JSON.parse(l) as Logging.LogRecord)
      expect(records.map((r) => r.level)).toEqual(["ERROR", "ERROR"])
      expect(records[1]?.cause).toContain("boom")
    }))

  it.effect("writes a readable line, with the trace id, when JSON is off", () =>
    Effect.gen(function*() {
      const lines = yield* capture({ json: false, colors: false }, Effect.logInfo("hello").pipe(Effect.annotateLogs({ peer: "p2" }), Effect.withSpan("s")))
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO  hello peer=p2 trace=[0-9a-f]{32}$/)
    }))

  it("chooses JSON when stderr is not a terminal", () => {
    expect(Logging.jsonByDefault()).toBe(process.stderr.isTTY !== true)
  })
})
