/**
 * The ways a sync session can end, as tagged errors that describe themselves (`message`) and carry
 * what is needed to act on them, and the Error-frame code each one is reported to the peer with.
 * A session never "succeeds": it runs until its link closes or one of these fails it; the
 * PeerManager then waits (backoff) and dials again.
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { AssetTooLarge, HashMismatch, InvalidInput, StoreUnavailable } from "./CanStore.ts"
import { FrameTooLarge, FrameTruncated, MalformedPayload, UnknownFrameType } from "./Frame.ts"
import { LinkClosed } from "./PeerLink.ts"
import { ErrorCode } from "./proto/sync.ts"

export { ErrorCode } from "./proto/sync.ts"

/** The code's name as in sync.proto (for logs and messages). */
export const codeName = (code: ErrorCode): string =>
  Object.entries(ErrorCode).find(([, value]) => value === code)?.[0] ?? `ERROR_CODE_${code}`

/** The peer speaks another protocol version. */
export class ProtocolVersionMismatch extends Schema.TaggedError<ProtocolVersionMismatch>()("ProtocolVersionMismatch", {
  peer: Schema.String,
  local: Schema.Number,
  remote: Schema.Number
}) {
  override get message(): string {
    return `incompatible protocol: peer ${this.peer} speaks version ${this.remote}, this agent speaks version ${this.local}`
  }
}

/** The Hello (or the link) names another peer than the one expected. */
export class PeerMismatch extends Schema.TaggedError<PeerMismatch>()("PeerMismatch", {
  expected: Schema.String,
  announced: Schema.String
}) {
  override get message(): string {
    return `Hello announced peer ${this.announced}, but the link is authenticated as ${this.expected}`
  }
}

/** A frame that does not decode; `cause` is the codec's error. */
export class FrameInvalid extends Schema.TaggedError<FrameInvalid>()("FrameInvalid", {
  peer: Schema.String,
  cause: Schema.Union([FrameTooLarge, UnknownFrameType, FrameTruncated, MalformedPayload])
}) {
  override get message(): string {
    return `undecodable frame from ${this.peer}: ${this.cause.message}`
  }
}

/** A frame that decodes but breaks the protocol: wrong phase, unsolicited asset, window overrun. */
export class ProtocolViolation extends Schema.TaggedError<ProtocolViolation>()("ProtocolViolation", {
  peer: Schema.String,
  frame: Schema.String,
  detail: Schema.String
}) {
  override get message(): string {
    return `protocol violation by ${this.peer} (${this.frame}): ${this.detail}`
  }
}

/** The peer sent a fatal Error frame and is ending the session. */
export class RemoteFailure extends Schema.TaggedError<RemoteFailure>()("RemoteFailure", {
  peer: Schema.String,
  code: Schema.Number,
  detail: Schema.String
}) {
  override get message(): string {
    return `peer ${this.peer} failed the session: ${codeName(this.code as ErrorCode)} ${this.detail}`
  }
}

/** A second dial for a peer that is already dialed. */
export class DuplicatePeer extends Schema.TaggedError<DuplicatePeer>()("DuplicatePeer", {
  peer: Schema.String
}) {
  override get message(): string {
    return `peer ${this.peer} is already dialed`
  }
}

/** Everything a session can fail with: the type and the runtime check come from this one list. */
const sessionErrors = [
  LinkClosed,
  StoreUnavailable,
  InvalidInput,
  ProtocolVersionMismatch,
  PeerMismatch,
  FrameInvalid,
  ProtocolViolation,
  RemoteFailure
] as const
export type SessionError = InstanceType<typeof sessionErrors[number]>

export const isSessionError = (u: unknown): u is SessionError => sessionErrors.some((error) => u instanceof error)

/** The code a failure is reported to the peer with, or undefined when there is nobody to tell. */
export const fatalCode = (error: SessionError): ErrorCode | undefined => {
  switch (error._tag) {
    case "ProtocolVersionMismatch":
      return ErrorCode.PROTOCOL_VERSION
    case "PeerMismatch":
      return ErrorCode.PEER_MISMATCH
    case "FrameInvalid":
      return ErrorCode.FRAME_INVALID
    case "ProtocolViolation":
      return ErrorCode.PROTOCOL_VIOLATION
    case "StoreUnavailable":
    case "InvalidInput":
      return ErrorCode.STORE_FAILED
    case "LinkClosed":
    case "RemoteFailure":
      return undefined
  }
}

/** One line for logs and for the message of the Error frame sent to the peer. */
export const describe = (error: SessionError): string => {
  switch (error._tag) {
    case "StoreUnavailable":
      return `store failed (${error.operation}): ${error.message}`
    case "InvalidInput":
      return `store refused input: ${error.message}`
    default:
      return error.message
  }
}

/** Whatever ended a session or a connection attempt (a transport's error too), in one line. */
export const describeFailure = (error: unknown): string => {
  if (isSessionError(error)) return describe(error)
  if (Predicate.hasProperty(error, "message") && typeof error.message === "string" && error.message !== "") return error.message
  if (Predicate.hasProperty(error, "_tag")) return JSON.stringify(error)
  return String(error)
}

/** The non-fatal code for content the store refused. */
export const refusalCode = (error: HashMismatch | AssetTooLarge): ErrorCode =>
  error instanceof HashMismatch ? ErrorCode.HASH_MISMATCH : ErrorCode.ASSET_TOO_LARGE
