/**
 * PeerLink: what the sync engine needs from a connection to one peer, whatever carries it
 * (in-memory pair in tests, WebRTC data channel in production). Frames travel as encoded bytes,
 * one whole frame per `send` and per received element; the link does any splitting it needs.
 * `LinkClosed` says why a link closed as a tagged reason: callers match on tags, never on text.
 */
import * as Schema from "effect/Schema"
import type { Effect, Stream } from "effect"
import type { PeerId } from "./Domain.ts"

/** Why a link closed; the engine, the transport and the `errors` metric match on `_tag`. */
export const LinkCloseReason = Schema.TaggedUnion({
  /** This side closed it (close(), or its scope ended). */
  ClosedLocally: {},
  /** The peer closed it in an orderly way (in memory: the other end closed). */
  ClosedByPeer: {},
  /** Nothing heard from the peer for `silentMillis` (more than the heartbeat timeout). */
  HeartbeatTimeout: { silentMillis: Schema.Number },
  /** The channel's proof did not show the expected peer, key or binding. */
  AuthFailed: { detail: Schema.String },
  /** The peer broke the link's own (framing, credit) protocol; the engine's is `ProtocolViolation`. */
  LinkProtocolViolation: { detail: Schema.String },
  /** The channel or connection went away without a goodbye (channel error, send failed, ICE failed). */
  ConnectionLost: { detail: Schema.String },
  /** A newer connection with the same peer (it restarted) replaced this one. */
  Replaced: {}
})
export type LinkCloseReason = typeof LinkCloseReason.Type

/** One line for logs. */
export const describeLinkCloseReason = (reason: LinkCloseReason): string => {
  switch (reason._tag) {
    case "ClosedLocally":
      return "closed locally"
    case "ClosedByPeer":
      return "closed by the peer"
    case "HeartbeatTimeout":
      return `heartbeat timeout: nothing heard from the peer for ${reason.silentMillis} ms`
    case "AuthFailed":
      return `authentication failed: ${reason.detail}`
    case "LinkProtocolViolation":
      return `link protocol violation: ${reason.detail}`
    case "ConnectionLost":
      return `connection lost: ${reason.detail}`
    case "Replaced":
      return "replaced by a newer connection from the same peer"
  }
}

/** The link is closed (by either side, or because the connection died). */
export class LinkClosed extends Schema.TaggedError<LinkClosed>()("LinkClosed", {
  peer: Schema.String,
  reason: LinkCloseReason,
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return `link to ${this.peer} closed: ${describeLinkCloseReason(this.reason)}`
  }
}

/** Which side opened a connection: the dialer asked for it (WebRTC: sent the offer), the acceptor answered. */
export type Role = "dialer" | "acceptor"

/**
 * One encoded frame: a buffer, or parts that follow each other on the wire (`Frame.encodeParts`
 * gives an AssetChunk's content as its own part, so it is never copied into a frame of its own).
 */
export type EncodedFrame = Uint8Array | ReadonlyArray<Uint8Array>

export interface PeerLink {
  /** The authenticated id of the peer at the other end. */
  readonly remotePeer: PeerId
  /** Which side this one was in opening the link, when the carrier knows (for status and logs). */
  readonly role?: Role | undefined
  /** Send one encoded frame; suspends while the link's send buffer is full (backpressure). */
  readonly send: (frame: EncodedFrame) => Effect.Effect<void, LinkClosed>
  /** Encoded frames from the peer, one element per frame; ends (or fails) when the link closes. */
  readonly frames: Stream.Stream<Uint8Array, LinkClosed>
  /** Completes when the link has closed, for whatever reason. */
  readonly closed: Effect.Effect<void>
  /** Close the link (idempotent). */
  readonly close: Effect.Effect<void>
}
