/**
 * What both ends of a link sign in their AuthProofs: both peer ids and both DTLS fingerprints
 * (read from the signed SDPs), and what a link needs to sign and check them. No Node-only
 * imports, so a browser peer uses this very module and the bytes cannot drift apart.
 */
import * as Effect from "effect/Effect"

/** Which side of the SDP exchange a peer took (the lower peer id offers). */
export type SdpRole = "offerer" | "answerer"

/** Both peer ids and both DTLS fingerprints, from the signed SDPs. */
export interface ChannelBinding {
  readonly offerer: string
  readonly answerer: string
  readonly offererFingerprint: string
  readonly answererFingerprint: string
}

export const bindingBytes = (binding: ChannelBinding, signer: SdpRole): Uint8Array<ArrayBuffer> =>
  new TextEncoder().encode(
    JSON.stringify([
      "can-sync/auth/v1",
      signer,
      binding.offerer,
      binding.answerer,
      binding.offererFingerprint,
      binding.answererFingerprint
    ])
  )

/** The `a=fingerprint:` of an SDP, normalised ("sha-256 AB:CD:..."), or undefined if it has none. */
export const fingerprintOf = (sdp: string): string | undefined => {
  const match = /^a=fingerprint:(\S+)\s+([0-9A-Fa-f:]+)\s*$/m.exec(sdp)
  return match === null ? undefined : `${match[1]!.toLowerCase()} ${match[2]!.toUpperCase()}`
}

/**
 * What a link needs of an identity to prove itself over the channel and check the peer's proof.
 * Effects, because a browser signs and verifies asynchronously (WebCrypto); the agent does not.
 */
export interface LinkAuth {
  readonly peerId: string
  /** Raw 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
  readonly sign: (bytes: Uint8Array<ArrayBuffer>) => Effect.Effect<Uint8Array>
  /** True only if `publicKey` derives to `peerId` and `signature` is its signature over `bytes`. */
  readonly verify: (
    peerId: string,
    publicKey: Uint8Array,
    bytes: Uint8Array<ArrayBuffer>,
    signature: Uint8Array
  ) => Effect.Effect<boolean>
}

/** An answer now, or a promise of one, as an effect (a browser's WebCrypto answers later). */
const lift = <A>(answer: () => A | Promise<A>): Effect.Effect<A> =>
  Effect.suspend(() => {
    const a = answer()
    return a instanceof Promise ? Effect.promise(() => a) : Effect.succeed(a)
  })

/** A LinkAuth from an identity and a signature check, each answering at once or with a promise. */
export const linkAuth = (
  identity: {
    readonly peerId: string
    readonly publicKey: Uint8Array
    readonly sign: (bytes: Uint8Array<ArrayBuffer>) => Uint8Array | Promise<Uint8Array>
  },
  verify: (peerId: string, publicKey: Uint8Array, bytes: Uint8Array<ArrayBuffer>, signature: Uint8Array) => boolean | Promise<boolean>
): LinkAuth => ({
  peerId: identity.peerId,
  publicKey: identity.publicKey,
  sign: (bytes) => lift(() => identity.sign(bytes)),
  verify: (peerId, publicKey, bytes, signature) => lift(() => verify(peerId, publicKey, bytes, signature))
})
