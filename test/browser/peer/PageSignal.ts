/**
 * The signed strings of the can-sync protocol that live in Node-only modules (they import
 * node:crypto), written again for the browser: signed signals (Signal.ts) and the signaling
 * registration proof (Signaling.ts), byte for byte the same JSON; the interop test checks it.
 * The AuthProof channel binding and the SDP fingerprint come from the shared Binding.ts.
 */
import type { BrowserIdentity, Bytes } from "./PageIdentity.ts"
import { fromBase64, isPeerId, peerIdOf, toBase64, verifySignature } from "./PageIdentity.ts"

export type SignalKind = "offer" | "answer" | "candidate" | "knock"

/** As it travels through the signaling server. */
export interface SignedSignal {
  readonly v: 1
  readonly kind: SignalKind
  readonly sid: string
  readonly from: string
  readonly to: string
  readonly publicKey: string
  readonly body: string
  readonly signature: string
}

export interface VerifiedSignal {
  readonly kind: SignalKind
  readonly sid: string
  readonly from: string
  readonly publicKey: Bytes
  readonly body: string
}

const encode = (value: unknown): Bytes => new TextEncoder().encode(JSON.stringify(value))

const signedBytes = (kind: SignalKind, sid: string, from: string, to: string, body: string): Bytes =>
  encode(["can-sync/signal/v1", kind, sid, from, to, body])

export const registrationBytes = (nonce: string, peerId: string): Bytes => encode(["can-sync/register/v1", nonce, peerId])

export type { ChannelBinding } from "../../../packages/transport/src/Binding.ts"
export { bindingBytes, fingerprintOf } from "../../../packages/transport/src/Binding.ts"

export const sign = async (identity: BrowserIdentity, to: string, kind: SignalKind, sid: string, body: string): Promise<SignedSignal> => ({
  v: 1,
  kind,
  sid,
  from: identity.peerId,
  to,
  publicKey: toBase64(identity.publicKey),
  body,
  signature: toBase64(await identity.sign(signedBytes(kind, sid, identity.peerId, to, body)))
})

const KINDS: ReadonlyArray<string> = ["offer", "answer", "candidate", "knock"]

const field = (data: object, name: string): string | undefined => {
  const value = (data as Record<string, unknown>)[name]
  return typeof value === "string" ? value : undefined
}

/**
 * Check a signal relayed to `self` as the agent does: well formed, addressed to us, from the peer
 * the server says sent it, signed by a key that derives to that id. A string is the refusal.
 */
export const verify = async (self: string, relayedFrom: string, data: unknown): Promise<VerifiedSignal | string> => {
  if (typeof data !== "object" || data === null || (data as Record<string, unknown>).v !== 1) return "malformed signal"
  const [kind, sid, from, to, publicKeyText, body, signatureText] = ["kind", "sid", "from", "to", "publicKey", "body", "signature"]
    .map((name) => field(data, name))
  if (kind === undefined || !KINDS.includes(kind) || sid === undefined || from === undefined || to === undefined) return "malformed signal"
  if (publicKeyText === undefined || body === undefined || signatureText === undefined) return "malformed signal"
  if (!isPeerId(from)) return "the sender is not a peer id"
  if (from !== relayedFrom) return `relayed as coming from ${relayedFrom}`
  if (to !== self) return `addressed to ${to}, not to us`
  const publicKey = fromBase64(publicKeyText)
  const signature = fromBase64(signatureText)
  if (publicKey === undefined || signature === undefined) return "malformed signal"
  if (publicKey.length !== 32 || (await peerIdOf(publicKey)) !== from) return `the public key is not ${from}'s`
  const signalKind = kind as SignalKind
  if (!(await verifySignature(from, publicKey, signedBytes(signalKind, sid, from, to, body), signature))) {
    return "the signature does not verify"
  }
  return { kind: signalKind, sid, from, publicKey, body }
}
