/**
 * The ways a sync session can end, as tagged errors carrying what is needed to act on them, and
 * the Error-frame code each one is reported to the peer with. A session never "succeeds": it runs
 * until its link closes or one of these fails it; the PeerManager decides whether to restart.
 */
import * as Schema from "effect/Schema"
import type { AssetTooLarge, HashMismatch, InvalidInput, StoreUnavailable } from "./CanStore.ts"
import type { FrameError } from "./Frame.ts"
import type { LinkClosed } from "./PeerLink.ts"

/** Error-frame codes of the protocol (docs/protocol.md lists what each side does on each). */
export const ErrorCode = {
  ProtocolVersion: "PROTOCOL_VERSION",
  PeerMismatch: "PEER_MISMATCH",
  FrameInvalid: "FRAME_INVALID",
  ProtocolViolation: "PROTOCOL_VIOLATION",
  HashMismatch: "HASH_MISMATCH",
  AssetTooLarge: "ASSET_TOO_LARGE",
  AssetNotFound: "ASSET_NOT_FOUND",
  StoreFailed: "STORE_FAILED",
  DuplicatePeer: "DUPLICATE_PEER"
} as const
export type ErrorCode = typeof ErrorCode[keyof typeof ErrorCode]

/** The peer speaks another protocol version. */
export class ProtocolVersionMismatch extends Schema.TaggedError<ProtocolVersionMismatch>()("ProtocolVersionMismatch", {
  peer: Schema.String,
  local: Schema.Number,
  remote: Schema.Number
}) {}

/** The Hello names another peer than the one the transport authenticated. */
export class PeerMismatch extends Schema.TaggedError<PeerMismatch>()("PeerMismatch", {
  expected: Schema.String,
  announced: Schema.String
}) {}

/** A frame that does not decode (wraps the codec's FrameError). */
export class FrameInvalid extends Schema.TaggedError<FrameInvalid>()("FrameInvalid", {
  peer: Schema.String,
  reason: Schema.String,
  detail: Schema.String
}) {}

/** A frame that decodes but breaks the protocol: wrong phase, unsolicited asset, window overrun. */
export class ProtocolViolation extends Schema.TaggedError<ProtocolViolation>()("ProtocolViolation", {
  peer: Schema.String,
  frame: Schema.String,
  reason: Schema.String
}) {}

/** The peer sent a fatal Error frame and is closing the session. */
export class RemoteFailure extends Schema.TaggedError<RemoteFailure>()("RemoteFailure", {
  peer: Schema.String,
  code: Schema.String,
  reason: Schema.String
}) {}

/** A second session with a peer that already has one was refused. */
export class DuplicatePeer extends Schema.TaggedError<DuplicatePeer>()("DuplicatePeer", {
  peer: Schema.String
}) {}

/** Everything a session can fail with. */
export type SessionError =
  | LinkClosed
  | StoreUnavailable
  | InvalidInput
  | ProtocolVersionMismatch
  | PeerMismatch
  | FrameInvalid
  | ProtocolViolation
  | RemoteFailure

export const frameInvalid = (peer: string, error: FrameError): FrameInvalid =>
  new FrameInvalid({ peer, reason: error._tag, detail: JSON.stringify(error) })

/** The code a failure is reported to the peer with, or undefined when there is nobody to tell. */
export const fatalCode = (error: SessionError): ErrorCode | undefined => {
  switch (error._tag) {
    case "ProtocolVersionMismatch":
      return ErrorCode.ProtocolVersion
    case "PeerMismatch":
      return ErrorCode.PeerMismatch
    case "FrameInvalid":
      return ErrorCode.FrameInvalid
    case "ProtocolViolation":
      return ErrorCode.ProtocolViolation
    case "StoreUnavailable":
    case "InvalidInput":
      return ErrorCode.StoreFailed
    case "LinkClosed":
    case "RemoteFailure":
      return undefined
  }
}

/** One line for logs and for the message of the Error frame sent to the peer. */
export const describe = (error: SessionError): string => {
  switch (error._tag) {
    case "ProtocolVersionMismatch":
      return `incompatible protocol: peer ${error.peer} speaks version ${error.remote}, this agent speaks version ${error.local}`
    case "PeerMismatch":
      return `Hello announced peer ${error.announced}, but the link is authenticated as ${error.expected}`
    case "FrameInvalid":
      return `undecodable frame from ${error.peer}: ${error.reason} ${error.detail}`
    case "ProtocolViolation":
      return `protocol violation by ${error.peer} (${error.frame}): ${error.reason}`
    case "RemoteFailure":
      return `peer ${error.peer} failed the session: ${error.code} ${error.reason}`
    case "LinkClosed":
      return error.message
    case "StoreUnavailable":
      return `store failed (${error.operation}): ${error.message}`
    case "InvalidInput":
      return `store refused input: ${error.message}`
  }
}

/** The non-fatal code for content the store refused. */
export const refusalCode = (error: HashMismatch | AssetTooLarge): ErrorCode =>
  error._tag === "HashMismatch" ? ErrorCode.HashMismatch : ErrorCode.AssetTooLarge
