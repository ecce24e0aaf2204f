/**
 * The agent's PeerLink: ChannelLink over a node-datachannel channel, proving and checking keys
 * with the agent's own Ed25519 identity. The link logic itself lives in ChannelLink.ts (shared
 * with the browser test peer); this module is the node-datachannel side of it.
 */
import * as Effect from "effect/Effect"
import type { Scope } from "effect"
import type { LinkClosed, PeerId } from "@can-sync/core"
import type { ChannelBinding, LinkAuth, SdpRole } from "./Binding.ts"
import * as ChannelLink from "./ChannelLink.ts"
import type { DataChannelPort, LinkOptions, PendingLink } from "./ChannelLink.ts"
import { verifySignature } from "./Identity.ts"
import type { PeerIdentity } from "./Identity.ts"
import type { DataChannel } from "./Native.ts"

export { checkOptions, defaultLinkOptions } from "./ChannelLink.ts"
export type { LinkOptions, LinkStats, WebRtcLink } from "./ChannelLink.ts"
export type { ChannelBinding, SdpRole } from "./Binding.ts"
export { bindingBytes } from "./Binding.ts"

/** A node-datachannel channel as the link sees it. */
export const nodeChannel = (channel: DataChannel): DataChannelPort => ({
  // the library copies the message before returning; `false` means "queued", not failure
  send: (message) => void channel.sendMessageBinary(message),
  close: () => channel.close(),
  bufferedAmount: () => channel.bufferedAmount(),
  isOpen: () => channel.isOpen(),
  listen: (handlers, lowWaterBytes) => {
    channel.setBufferedAmountLowThreshold(lowWaterBytes)
    // Handlers are single-slot. onMessage first: its callback queue is then drained before
    // onClosed's when both are pending.
    channel.onMessage((message) => handlers.onMessage(message instanceof ArrayBuffer ? new Uint8Array(message) : message))
    channel.onOpen(handlers.onOpen)
    channel.onClosed(handlers.onClosed)
    channel.onError(handlers.onError)
    channel.onBufferedAmountLow(handlers.onBufferedAmountLow)
  }
})

/** The agent's identity as the link needs it (signing and verifying are synchronous here). */
export const identityAuth = (identity: PeerIdentity): LinkAuth => ({
  peerId: identity.peerId,
  publicKey: identity.publicKey,
  sign: (bytes) => Effect.sync(() => identity.sign(bytes)),
  verify: (peerId, publicKey, bytes, signature) => Effect.sync(() => verifySignature(peerId, publicKey, bytes, signature))
})

export interface LinkParams {
  readonly identity: PeerIdentity
  readonly role: SdpRole
  readonly remotePeer: PeerId
  /** The key the peer signed its SDP with (known once its offer or answer arrived); its AuthProof must carry the same one. */
  readonly remotePublicKey: () => Uint8Array | undefined
  /** Read when the channel opens: by then both SDPs (and so both fingerprints) are known. */
  readonly binding: () => ChannelBinding | undefined
  readonly options: LinkOptions
  /** Called once, synchronously, when the link closes; `authenticated` says whether it ever was. */
  readonly onClosed?: ((closed: LinkClosed, authenticated: boolean) => void) | undefined
}

/** A link being set up over a node-datachannel channel. */
export interface PendingWebRtcLink extends Omit<PendingLink, "attach"> {
  /** Register every handler on the channel; call in the same step that obtained it. */
  readonly attach: (channel: DataChannel) => void
}

/**
 * Prepare a link for one peer. Its heartbeat runs in, and the channel closes with, the current
 * scope; the link also closes when either side closes it or the heartbeat fails.
 */
export const make = (params: LinkParams): Effect.Effect<PendingWebRtcLink, never, Scope.Scope> =>
  Effect.map(
    ChannelLink.make({ ...params, auth: identityAuth(params.identity) }),
    (pending): PendingWebRtcLink => ({ ...pending, attach: (channel) => pending.attach(nodeChannel(channel)) })
  )
