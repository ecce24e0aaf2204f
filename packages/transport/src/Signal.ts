/**
 * Signed signaling messages between peers: offers and answers (the SDP, which holds the DTLS
 * fingerprint), trickled ICE candidates, knocks ("please offer to me") and refusals ("you are not
 * on my allow-list", the answer to a stranger's offer or knock). Each carries the
 * sender's peer id and public key and an Ed25519 signature over kind, session, both ids and
 * body, so a signaling server in the middle can drop messages but not forge or alter them.
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type { PeerId } from "@can-sync/core"
import type { PeerIdentity } from "./Identity.ts"
import { isPeerId, peerIdOf, verifySignature } from "./Identity.ts"

export const SignalKind = Schema.Literals(["offer", "answer", "candidate", "knock", "refused"])
export type SignalKind = typeof SignalKind.Type

/** As it travels through the signaling server (opaque to it). */
export const SignedSignal = Schema.Struct({
  v: Schema.Literal(1),
  kind: SignalKind,
  /** Session id, chosen by the offerer (a knock carries the last session it saw, or ""). */
  sid: Schema.String,
  from: Schema.String,
  to: Schema.String,
  /** Sender's raw Ed25519 public key, base64. */
  publicKey: Schema.String,
  /** SDP for offer/answer, JSON `{candidate, mid}` for a candidate, "" for a knock or a refusal. */
  body: Schema.String,
  /** Base64 Ed25519 signature over `signedBytes(kind, sid, from, to, body)`. */
  signature: Schema.String
})
export type SignedSignal = typeof SignedSignal.Type

/** A signal whose signature, key and addressing have been checked. */
export interface VerifiedSignal {
  readonly kind: SignalKind
  readonly sid: string
  readonly from: PeerId
  readonly publicKey: Uint8Array
  readonly body: string
}

/** A signal refused before anything was done with it. */
/** A claimed sender as logs show it: a peer id is 32 characters; a longer claim is cut, saying how long it was. */
const shortClaim = (claimed: string): string =>
  claimed.length <= 64 ? claimed : `${claimed.slice(0, 64)}… (${claimed.length} characters)`

export class SignalRefused extends Schema.TaggedError<SignalRefused>()("SignalRefused", {
  /** The sender it claims (unauthenticated). */
  claimedFrom: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `refused a signal claiming to come from ${shortClaim(this.claimedFrom)}: ${this.reason}`
  }
}

const signedBytes = (kind: SignalKind, sid: string, from: string, to: string, body: string): Uint8Array =>
  new TextEncoder().encode(JSON.stringify(["can-sync/signal/v1", kind, sid, from, to, body]))

export const sign = (
  identity: PeerIdentity,
  to: PeerId,
  kind: SignalKind,
  sid: string,
  body: string
): SignedSignal => ({
  v: 1,
  kind,
  sid,
  from: identity.peerId,
  to,
  publicKey: Buffer.from(identity.publicKey).toString("base64"),
  body,
  signature: Buffer.from(identity.sign(signedBytes(kind, sid, identity.peerId, to, body))).toString("base64")
})

const decodeSignal = Schema.decodeUnknownResult(SignedSignal)

/**
 * Check a signal relayed to `self`: well-formed, addressed to us, from the peer the server says
 * sent it, and signed by a key that derives to the claimed sender id.
 */
export const verify = (
  self: PeerId,
  relayedFrom: string,
  data: unknown
): Result.Result<VerifiedSignal, SignalRefused> => {
  const decoded = decodeSignal(data)
  if (Result.isFailure(decoded)) {
    return Result.fail(new SignalRefused({ claimedFrom: relayedFrom, reason: "malformed signal" }))
  }
  const s = decoded.success
  const refuse = (reason: string) => Result.fail(new SignalRefused({ claimedFrom: s.from, reason }))
  if (!isPeerId(s.from)) return refuse("the sender is not a peer id")
  if (s.from !== relayedFrom) return refuse(`relayed as coming from ${relayedFrom}`)
  if (s.to !== self) return refuse(`addressed to ${s.to}, not to us`)
  const publicKey = new Uint8Array(Buffer.from(s.publicKey, "base64"))
  const signature = new Uint8Array(Buffer.from(s.signature, "base64"))
  if (publicKey.length !== 32 || peerIdOf(publicKey) !== s.from) return refuse(`the public key is not ${s.from}'s`)
  if (!verifySignature(s.from, publicKey, signedBytes(s.kind, s.sid, s.from, s.to, s.body), signature)) {
    return refuse("the signature does not verify")
  }
  return Result.succeed({ kind: s.kind, sid: s.sid, from: s.from, publicKey, body: s.body })
}
