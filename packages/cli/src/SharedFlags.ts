/**
 * The one place that reads configuration: flags first, then environment (`CAN_SYNC_DATA`,
 * `CAN_SYNC_TOKEN`, ...), then per-user defaults. Values are checked while the command line is
 * parsed, so a bad one is a usage error naming the flag; commands receive plain resolved values.
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Option from "effect/Option"
import { CliError, Flag } from "effect/cli"
import { homedir } from "node:os"
import { join } from "node:path"

/** `$XDG_DATA_HOME/can-sync`, else `~/.local/share/can-sync`. */
export const defaultDataDir = (): string =>
  join(process.env.XDG_DATA_HOME && process.env.XDG_DATA_HOME !== "" ? process.env.XDG_DATA_HOME : join(homedir(), ".local", "share"), "can-sync")

/** `--data DIR`, else `CAN_SYNC_DATA`, else the per-user data directory. */
export const dataFlag = Flag.String("data").pipe(
  Flag.withDescription("Data directory of the CAN store (env CAN_SYNC_DATA; default ~/.local/share/can-sync)"),
  Flag.withFallbackConfig(Config.String("CAN_SYNC_DATA")),
  Flag.optional,
  Flag.map((dir) => Option.getOrElse(dir, defaultDataDir))
)

/**
 * `--data` for commands that only read a store (ls, cat, verify, ...): the directory must hold one
 * (its index or its objects), so a typo is a usage error naming the path instead of a new, empty
 * store created there.
 */
export const existingDataFlag = dataFlag.pipe(Flag.mapEffect((dir) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) =>
    Effect.all([fs.exists(join(dir, "index.sqlite")), fs.exists(join(dir, "objects"))]).pipe(
      Effect.orElseSucceed(() => [false, false] as const),
      Effect.flatMap(([index, objects]) =>
        index || objects
          ? Effect.succeed(dir)
          : Effect.fail(
            new CliError.InvalidValue({
              option: "data",
              value: dir,
              expected: "a data directory holding a store (none there: check --data or CAN_SYNC_DATA; `can-sync add` or `sync` creates one)",
              kind: "flag"
            })
          )
      )
    ))
))

/** `--token T`, else `CAN_SYNC_TOKEN`; redacted, so it never shows in logs or errors. */
export const tokenFlag = Flag.Redacted("token").pipe(
  Flag.withDescription("Bearer token of the CAN HTTP service (env CAN_SYNC_TOKEN)"),
  Flag.withFallbackConfig(Config.Redacted("CAN_SYNC_TOKEN")),
  Flag.optional
)

/** `--json`: machine-readable output. */
export const jsonFlag = Flag.Boolean("json").pipe(Flag.withDescription("Machine-readable JSON output"), Flag.withDefault(false))

// --- Checks applied while parsing --------------------------------------------------------------

/** A TCP port; 0 lets the system pick a free one. */
export const port = (flag: Flag.Flag<number>) =>
  flag.pipe(Flag.filter((n) => Number.isInteger(n) && n >= 0 && n <= 65535, () => "a port number from 0 to 65535 (0: any free port)"))

/** An integer of at least 1. */
export const positive = (flag: Flag.Flag<number>) => flag.pipe(Flag.filter((n) => Number.isInteger(n) && n >= 1, () => "a whole number of at least 1"))

/** An integer within `[min, max]`. */
export const within = (min: number, max: number) => (flag: Flag.Flag<number>) =>
  flag.pipe(Flag.filter((n) => Number.isInteger(n) && n >= min && n <= max, () => `a whole number from ${min} to ${max}`))

/** A URL whose scheme is one of `schemes` (e.g. ["ws:", "wss:"]) and that names a host. */
export const url = (schemes: ReadonlyArray<string>, example: string) => (flag: Flag.Flag<string>) =>
  flag.pipe(Flag.filter(
    (s) => {
      const parsed = URL.parse(s)
      return parsed !== null && schemes.includes(parsed.protocol) && parsed.hostname !== ""
    },
    () => `a URL starting ${schemes.map((s) => `${s}//`).join(" or ")}, e.g. ${example}`
  ))

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** A positive duration written "30s", "500ms", "2m", "1h", or a bare number of seconds. */
export const parseDuration = (input: string): Option.Option<Duration.Duration> => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(input)
  if (match === null) return Option.none()
  const millis = Number(match[1]) * units[match[2] ?? "s"]!
  return millis > 0 ? Option.some(Duration.millis(millis)) : Option.none()
}

/** A duration flag: "30s", "500ms", "2m", "1h" (a bare number is seconds). */
export const duration = (flag: Flag.Flag<string>): Flag.Flag<Duration.Duration> =>
  flag.pipe(Flag.filterMap(parseDuration, () => "a positive duration such as 30s, 500ms, 2m or 1h"))

/** `--NAME F`, else the environment variable `env`: a file this process can read, optional. */
export const optionalFileFlag = (name: string, env: string, description: string) =>
  Flag.File(name, { mustExist: true }).pipe(
    Flag.withDescription(`${description} (env ${env})`),
    Flag.withFallbackConfig(Config.String(env)),
    readableFile(name),
    Flag.optional
  )

/** A file this process can read (checked for the flag and its environment fallback alike). */
export const readableFile = (name: string) => (flag: Flag.Flag<string>) =>
  flag.pipe(Flag.mapEffect((path) =>
    Effect.flatMap(FileSystem.FileSystem, (fs) => fs.access(path, { readable: true })).pipe(
      Effect.as(path),
      Effect.mapError(() => new CliError.InvalidValue({ option: name, value: path, expected: "an existing, readable file", kind: "flag" }))
    )
  ))
