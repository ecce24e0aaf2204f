/**
 * Backoff: the one retry policy of the whole tree. Every reconnect and retry (peer sessions, the
 * signaling client, the CAN HTTP client's event stream, the fetcher's re-asks) waits by this
 * Schedule: exponential from `base`, doubled per failure, capped at `cap`, with jitter.
 */
import * as Duration from "effect/Duration"
import * as Schedule from "effect/Schedule"

export interface BackoffOptions {
  /** The first delay (default 200 ms). */
  readonly base?: Duration.Input | undefined
  /** The largest delay (default 30 s). */
  readonly cap?: Duration.Input | undefined
}

/** Exponential backoff from `base`, doubled each time, capped at `cap`, jittered (80–120 %). */
export const exponential = (options: BackoffOptions = {}): Schedule.Schedule<Duration.Duration, unknown> =>
  Schedule.min([Schedule.exponential(options.base ?? "200 millis", 2), Schedule.spaced(options.cap ?? "30 seconds")]).pipe(
    Schedule.jittered
  )
