/**
 * Turns any failure a command can meet into one clear line for stderr. Commands fail with the
 * typed errors of the modules they call; this is the only place that words them for people.
 */
import * as Cause from "effect/Cause"

/** A command's own verdict (e.g. verify found damage): its message is the whole line. */
export class CliFailure extends Error {}

const describeTagged = (e: { readonly _tag: string } & Record<string, unknown>): string => {
  switch (e._tag) {
    case "AssetNotFound":
      return `asset ${String(e.hash)} not found`
    case "HashMismatch":
      return `content hashes to ${String(e.actual)}, not ${String(e.expected)}: nothing was stored`
    case "AssetTooLarge":
      return `asset larger than the limit of ${String(e.limit)} bytes: nothing was stored`
    case "InvalidInput":
    case "TelemetryConfigError":
      return String(e.message)
    case "StoreUnavailable":
      return `store unavailable (${String(e.operation)}): ${String(e.message)}`
    default: {
      const message = typeof e.message === "string" && e.message !== "" ? e.message : JSON.stringify(e)
      return `${e._tag}: ${message}`
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
  if (defect !== undefined) return `internal error: ${describe(defect.defect)}`
  return "interrupted"
}
