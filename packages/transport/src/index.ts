/**
 * @can-sync/transport: peer identity (Ed25519, peer id from the public key), the signaling server
 * and client, signed signals, and the WebRTC PeerLink with its Transport service. The CLI wires
 * `Identity`, `Signaling.serve` and `Transport`; the engine sees only `PeerLink`s.
 */
export { Identity, IdentityError, isPeerId, peerIdOf, verifySignature } from "./Identity.ts"
export type { PeerIdentity } from "./Identity.ts"
export { ConnectFailed, ConnectFailedReason, Transport, TransportError } from "./Transport.ts"
export type { TransportConfig, TransportShape } from "./Transport.ts"
export { LOOPBACK_MTU } from "./Native.ts"
export type { RtcOptions } from "./Native.ts"
export * as Signal from "./Signal.ts"
export * as Signaling from "./Signaling.ts"
export * as WebRtcLink from "./WebRtcLink.ts"
export * as RateLimit from "./RateLimit.ts"
