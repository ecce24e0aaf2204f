/**
 * The one way a test waits: `eventually(what, probe, deadline)` runs `probe` until it yields a
 * value, at most until the deadline, and fails with a message naming what it waited for and the
 * last thing the probe saw. No sleeps, no waits that only vitest's own timeout would end.
 */
import { Data, Duration, Effect, Schedule } from "effect"
import * as Backoff from "@can-sync/core/Backoff"

/** A probe's "not yet", carrying what it saw (shown if the deadline passes). */
export class NotYet {
  readonly seen: unknown
  constructor(seen: unknown) {
    this.seen = seen
  }
}

/** "Not yet; this is what I saw." */
export const notYet = (seen?: unknown): NotYet => new NotYet(seen)

/** A probe fails with this when waiting longer cannot help (the process it watches exited). */
export class GaveUp extends Data.TaggedError("GaveUp")<{ readonly what: string; readonly reason: string; readonly diagnostics: string }> {
  override get message(): string {
    return `gave up waiting for ${this.what}: ${this.reason}${this.diagnostics === "" ? "" : `\n${this.diagnostics}`}`
  }
}

/** Thrown (as a failure) by a probe: `hopeless("the agent exited")`. */
export const hopeless = (reason: string) => Effect.fail(new GaveUp({ what: "", reason, diagnostics: "" }))

export class TimedOut extends Data.TaggedError("TimedOut")<{
  readonly what: string
  readonly after: Duration.Duration
  readonly seen: string
  readonly diagnostics: string
}> {
  override get message(): string {
    return `timed out after ${Duration.format(this.after)} waiting for ${this.what}; last seen: ${this.seen}${this.diagnostics === "" ? "" : `\n${this.diagnostics}`}`
  }
}

export interface EventuallyOptions {
  /** Pause between attempts (default 250 ms). */
  readonly interval?: Duration.Input
  /** When set, the pause grows (Backoff) up to this: for probes that cost a process start. */
  readonly maxInterval?: Duration.Input
  /** More for the failure message (stderr tails...), computed only on failure. */
  readonly diagnostics?: () => string
}

const show = (value: unknown): string => {
  if (value instanceof Error) return `${value.name}: ${value.message}`
  if (typeof value === "string") return value
  try {
    const text = JSON.stringify(value)
    return text === undefined ? String(value) : text.length > 2_000 ? `${text.slice(0, 2_000)}…` : text
  } catch {
    return String(value)
  }
}

/**
 * Runs `probe` until it returns a value that is neither `undefined` nor `notYet(...)`; a probe
 * failure counts as "not yet" (and is what was last seen), except `GaveUp`, which ends the wait.
 */
export const eventually = <A, E, R>(
  what: string,
  probe: Effect.Effect<A | NotYet | undefined, E, R>,
  deadline: Duration.Input,
  options: EventuallyOptions = {}
): Effect.Effect<Exclude<A, NotYet | undefined>, TimedOut | GaveUp, R> =>
  Effect.suspend(() => {
    let seen = "nothing yet"
    const diagnostics = () => (options.diagnostics === undefined ? "" : options.diagnostics())
    const attempt: Effect.Effect<Exclude<A, NotYet | undefined>, NotYet | GaveUp, R> = probe.pipe(
      Effect.catch((error): Effect.Effect<NotYet, GaveUp> =>
        error instanceof GaveUp
          ? Effect.fail(new GaveUp({ what, reason: error.reason, diagnostics: diagnostics() }))
          : Effect.succeed(notYet(error))
      ),
      Effect.flatMap((value: A | NotYet | undefined) => {
        if (value === undefined || value instanceof NotYet) {
          const pending = value === undefined ? notYet(undefined) : (value as NotYet)
          seen = value === undefined ? "undefined" : show(pending.seen)
          return Effect.fail(pending)
        }
        return Effect.succeed(value as Exclude<A, NotYet | undefined>)
      })
    )
    const interval = options.interval ?? "250 millis"
    const schedule = options.maxInterval === undefined
      ? Schedule.spaced(interval)
      : Backoff.exponential({ base: interval, cap: options.maxInterval })
    return attempt.pipe(
      Effect.retry({ schedule, while: (e) => e instanceof NotYet }),
      Effect.catch((e: NotYet | GaveUp) => (e instanceof GaveUp ? Effect.fail(e) : Effect.never)),
      Effect.timeoutOrElse({
        duration: deadline,
        orElse: () => Effect.fail(new TimedOut({ what, after: Duration.fromInputUnsafe(deadline), seen, diagnostics: diagnostics() }))
      })
    )
  })
