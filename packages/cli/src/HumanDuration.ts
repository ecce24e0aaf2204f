/**
 * Human durations for flags: "30s", "500ms", "2m", "1h", or a bare number of seconds. The
 * `--poll-interval` flag reads them (SharedFlags.duration); anything else is refused as it parses.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { InvalidInput } from "@can-sync/core/CanStore"

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** The duration `input` says, if it is a positive one in this format. */
export const fromString = (input: string): Option.Option<Duration.Duration> => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(input)
  if (match === null) return Option.none()
  const millis = Number(match[1]) * units[match[2] ?? "s"]!
  return millis > 0 ? Option.some(Duration.millis(millis)) : Option.none()
}

export const parse = (input: string): Effect.Effect<Duration.Duration, InvalidInput> =>
  Option.match(fromString(input), {
    onNone: () => Effect.fail(new InvalidInput({ message: `not a positive duration: "${input}" (try 30s, 500ms, 2m)` })),
    onSome: Effect.succeed
  })
