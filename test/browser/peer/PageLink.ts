/**
 * The browser peer's link: the agent's own ChannelLink (packages/transport/src/ChannelLink.ts)
 * over the browser's RTCDataChannel, proving and checking keys with WebCrypto, behind the promise
 * API the page's session and engine use. Nothing of the link protocol is written again here.
 */
import { Effect, Exit, Scope, Stream } from "effect"
import { describeLinkCloseReason, LinkCloseReason } from "@can-sync/core"
import type { PeerId } from "@can-sync/core"
import { linkAuth } from "../../../packages/transport/src/Binding.ts"
import * as ChannelLink from "../../../packages/transport/src/ChannelLink.ts"
import type { ChannelLinkParams, DataChannelPort, LinkStats, PendingLink, WebRtcLink } from "../../../packages/transport/src/ChannelLink.ts"
import * as Frame from "../../../packages/core/src/Frame.ts"
import type { BrowserIdentity } from "./PageIdentity.ts"
import { verifySignature } from "./PageIdentity.ts"

export type { LinkStats }

/** The browser's data channel as the link sees it. */
const rtcChannel = (channel: RTCDataChannel): DataChannelPort => ({
  // the link reuses its buffer for the next message: hand the browser a copy
  send: (message) => channel.send(message.slice()),
  close: () => channel.close(),
  bufferedAmount: () => channel.bufferedAmount,
  isOpen: () => channel.readyState === "open",
  listen: (handlers, lowWaterBytes) => {
    channel.binaryType = "arraybuffer"
    channel.bufferedAmountLowThreshold = lowWaterBytes
    channel.onmessage = (event: MessageEvent) =>
      handlers.onMessage(event.data instanceof ArrayBuffer ? new Uint8Array(event.data) : String(event.data))
    channel.onopen = () => handlers.onOpen()
    channel.onclose = () => handlers.onClosed()
    channel.onerror = (event) => handlers.onError((event as RTCErrorEvent).error?.message ?? "unknown")
    channel.onbufferedamountlow = () => handlers.onBufferedAmountLow()
  }
})

/** A ChannelLink's parameters, with the page's WebCrypto identity (it answers asynchronously: the link holds messages meanwhile). */
export interface PageLinkParams extends Omit<ChannelLinkParams, "auth" | "remotePeer" | "onClosed"> {
  readonly identity: BrowserIdentity
  readonly remotePeer: string
}

export class PageLink {
  private readonly scope = Scope.makeUnsafe()
  private readonly pending: PendingLink
  private link: WebRtcLink | undefined
  private frames: AsyncIterator<Uint8Array> | undefined
  private reason: string | undefined
  /** Completes once both AuthProofs verified; rejects if the link closes first. */
  readonly authenticated: Promise<void>
  /** Why the link closed, once it has. */
  readonly closed: Promise<string>

  constructor(params: PageLinkParams) {
    let closed!: (reason: string) => void
    this.closed = new Promise((resolve) => (closed = resolve))
    this.pending = Effect.runSync(Scope.provide(
      ChannelLink.make({
        ...params,
        auth: linkAuth(params.identity, verifySignature),
        remotePeer: params.remotePeer as PeerId,
        onClosed: (error) => {
          this.reason = describeLinkCloseReason(error.reason)
          closed(this.reason)
        }
      }),
      this.scope
    ))
    this.authenticated = Effect.runPromise(this.pending.authenticate).then((link) => {
      this.link = link
      this.frames = Stream.toAsyncIterable(link.frames)[Symbol.asyncIterator]()
    })
    this.authenticated.catch(() => {})
  }

  /** Take the channel (the offerer's own, or the answerer's from `ondatachannel`) and every handler. */
  attach(channel: RTCDataChannel): void {
    this.pending.attach(rtcChannel(channel))
  }

  /** Close at once, without a goodbye (a failed connect, a timeout, a failed session). */
  fail(reason: string): void {
    this.pending.fail(LinkCloseReason.cases.ConnectionLost.make({ detail: reason }))
  }

  get isOpen(): boolean {
    return this.link !== undefined && this.reason === undefined
  }

  stats(): LinkStats {
    if (this.link === undefined) throw new Error("the link is not authenticated")
    return Effect.runSync(this.link.stats)
  }

  /** The next engine frame; its bytes are credited back to the agent as it is taken. */
  async take(): Promise<Uint8Array> {
    const next = await this.frames?.next()
    if (next === undefined || next.done === true) throw new Error(`link closed: ${this.reason ?? "not authenticated"}`)
    return next.value
  }

  /** Send one engine frame once the agent's credit covers it. */
  send(frame: Frame.Frame): Promise<void> {
    if (this.link === undefined) return Promise.reject(new Error("the link is not authenticated"))
    return Effect.runPromise(this.link.send(Frame.encode(frame)))
  }

  /** GOODBYE after everything sent, wait (bounded) for the agent's; true if it answered. */
  async close(): Promise<boolean> {
    if (this.link === undefined) {
      this.fail("closed before authentication")
      await Effect.runPromise(Scope.close(this.scope, Exit.void))
      return false
    }
    await Effect.runPromise(this.link.close)
    const { goodbyeAnswered } = this.stats()
    await Effect.runPromise(Scope.close(this.scope, Exit.void))
    return goodbyeAnswered
  }
}
