/**
 * Turns any failure a command can meet into one plain line for stderr, saying what to do next
 * where there is something to do, and into the exit code: 0 ok, 1 a runtime failure, 2 a usage
 * error (a command line that does not parse, or values that do not fit together). Commands fail
 * with the typed errors of the modules they call; this is the only place that words them for people.
 */
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import { CliError } from "effect/cli"

/** A command's own verdict (e.g. verify found damage): its message is the whole line. */
export class CliFailure extends Error {}

/** The command line asks for something that cannot work (flags that need each other, a bad peer id): exit 2. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

export const exitCodes = { ok: 0, failure: 1, usage: 2 } as const

/** What went wrong and what to do, for a socket that cannot listen, by its error code. */
const listenErrors: Readonly<Record<string, readonly [string, string]>> = {
  EADDRINUSE: ["the port is already in use", "stop the process holding it or choose another port"],
  EACCES: ["not allowed to listen there", "ports below 1024 need privileges: choose a port of 1024 or more"],
  EADDRNOTAVAIL: ["not an address of this machine", "use 127.0.0.1, 0.0.0.0 or one of this machine's own addresses"]
}

const codeIn = (text: string): string | undefined => /\b(EADDRINUSE|EACCES|EADDRNOTAVAIL)\b/.exec(text)?.[1]

const field = (u: unknown, key: string): unknown => (typeof u === "object" && u !== null && key in u ? (u as Record<string, unknown>)[key] : undefined)

const describeTagged = (e: { readonly _tag: string } & Record<string, unknown>): string => {
  switch (e._tag) {
    case "AssetNotFound":
      return `asset ${String(e.hash)} not found`
    case "HashMismatch":
      return `content hashes to ${String(e.actual)}, not ${String(e.expected)}: nothing was stored`
    case "AssetTooLarge":
      return `asset larger than the limit of ${String(e.limit)} bytes: nothing was stored`
    case "InvalidInput":
    case "UsageError":
    case "TelemetryConfigError":
      return String(e.message)
    case "StoreUnavailable":
      return `store unavailable (${String(e.operation)}): ${String(e.message)}`
    case "ServeError": {
      // effect's HTTP server: the cause is Node's listen error (code, address, port)
      const cause = e.cause
      const code = field(cause, "code")
      const address = field(cause, "address")
      const port = field(cause, "port")
      const where = address === undefined ? "the requested address" : `${String(address)}${port === undefined ? "" : `:${String(port)}`}`
      const known = typeof code === "string" ? listenErrors[code] : undefined
      const detail = cause instanceof Error ? cause.message : String(code ?? "failed")
      return known === undefined ? `cannot listen on ${where}: ${detail}` : `cannot listen on ${where}: ${known[0]}; ${known[1]}`
    }
    default: {
      const message = typeof e.message === "string" && e.message !== "" ? e.message : undefined
      if (message === undefined) return `${e._tag} (no details)`
      const code = codeIn(message)
      const known = code === undefined ? undefined : listenErrors[code]
      return known === undefined ? message : `${message}; ${known[1]}`
    }
  }
}

export const describe = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string") {
    return describeTagged(error as { readonly _tag: string } & Record<string, unknown>)
  }
  if (error instanceof Error) return error.message
  return String(error)
}

/** The first failure of a cause, worded; interruptions and defects included. */
export const describeCause = (cause: Cause.Cause<unknown>): string => {
  const failure = cause.reasons.find(Cause.isFailReason)
  if (failure !== undefined) return describe(failure.error)
  const defect = cause.reasons.find(Cause.isDieReason)
  if (defect !== undefined) return `internal error: ${describe(defect.defect)} (please report it)`
  return "interrupted"
}

/** 2 when the command line was at fault (parse errors, UsageError), else 1. */
export const failureExitCode = (cause: Cause.Cause<unknown>): number =>
  cause.reasons.some((reason) =>
      Cause.isFailReason(reason) && (CliError.isCliError(reason.error) || (reason.error instanceof UsageError))
    )
    ? exitCodes.usage
    : exitCodes.failure
