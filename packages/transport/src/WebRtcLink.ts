/**
 * The agent's PeerLink: ChannelLink over a node-datachannel channel, proving and checking keys
 * with the agent's own Ed25519 identity. The link logic itself lives in ChannelLink.ts (shared
 * with the browser test peer); this module is the node-datachannel side of it.
 */
import * as Effect from "effect/Effect"
import type { Scope } from "effect"
import { linkAuth } from "./Binding.ts"
import * as ChannelLink from "./ChannelLink.ts"
import type { ChannelLinkParams, DataChannelPort, PendingLink } from "./ChannelLink.ts"
import { verifySignature } from "./Identity.ts"
import type { PeerIdentity } from "./Identity.ts"
import type { DataChannel } from "./Native.ts"

export { checkOptions, defaultLinkOptions, RTT_PROBES } from "./ChannelLink.ts"
export type { LanePort, LinkOptions, LinkStats, WebRtcLink } from "./ChannelLink.ts"
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

/** A ChannelLink's parameters, with the agent's identity to prove and check keys with. */
export interface LinkParams extends Omit<ChannelLinkParams, "auth"> {
  readonly identity: PeerIdentity
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
    ChannelLink.make({ ...params, auth: linkAuth(params.identity, verifySignature) }),
    (pending): PendingWebRtcLink => ({ ...pending, attach: (channel) => pending.attach(nodeChannel(channel)) })
  )
