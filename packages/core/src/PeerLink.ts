/**
 * PeerLink: what the sync engine needs from a connection to one peer, whatever carries it
 * (in-memory pair in tests, WebRTC data channel in production). Frames travel as encoded bytes,
 * one whole frame per `send` and per received element; the link does any splitting it needs.
 */
import * as Schema from "effect/Schema"
import type { Effect, Stream } from "effect"
import type { PeerId } from "./Domain.ts"

/** The link is closed (by either side, or because the connection died). */
export class LinkClosed extends Schema.TaggedError<LinkClosed>()("LinkClosed", {
  peer: Schema.String,
  reason: Schema.String
}) {}

export interface PeerLink {
  /** The authenticated id of the peer at the other end. */
  readonly remotePeer: PeerId
  /** Send one encoded frame; suspends while the link's send buffer is full (backpressure). */
  readonly send: (frame: Uint8Array) => Effect.Effect<void, LinkClosed>
  /** Encoded frames from the peer, one element per frame; ends (or fails) when the link closes. */
  readonly frames: Stream.Stream<Uint8Array, LinkClosed>
  /** Completes when the link has closed, for whatever reason. */
  readonly closed: Effect.Effect<void>
  /** Close the link (idempotent). */
  readonly close: Effect.Effect<void>
}
