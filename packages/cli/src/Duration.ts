/**
 * Human durations for flags: "30s", "500ms", "2m", "1h", or a bare number of seconds.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { InvalidInput } from "@can-sync/core/CanStore"

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

export const parse = (input: string): Effect.Effect<Duration.Duration, InvalidInput> => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(input)
  if (match === null) {
    return Effect.fail(new InvalidInput({ message: `not a duration: "${input}" (try 30s, 500ms, 2m)` }))
  }
  const millis = Number(match[1]) * units[match[2] ?? "s"]!
  return millis > 0
    ? Effect.succeed(Duration.millis(millis))
    : Effect.fail(new InvalidInput({ message: `duration must be positive: "${input}"` }))
}
