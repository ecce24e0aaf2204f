/**
 * The PeerLink over one ordered, reliable node-datachannel channel: frames split and joined
 * (Wire), send backpressure from the channel's buffered amount, a credit window (FlowControl),
 * Ping/Pong heartbeat, graceful GOODBYE close, and the AuthProof exchange binding both peer ids to
 * both DTLS fingerprints. Transport frames are consumed here and never reach the engine.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import type { Scope } from "effect"
import { Frame, LinkClosed, LinkCloseReason } from "@can-sync/core"
import type { PeerId, PeerLink, Role } from "@can-sync/core"
import { bindingBytes } from "./Binding.ts"
import type { ChannelBinding, SdpRole } from "./Binding.ts"
import { ReceiveWindow, SendCredit } from "./FlowControl.ts"
import { verifySignature } from "./Identity.ts"
import type { PeerIdentity } from "./Identity.ts"
import type { DataChannel } from "./Native.ts"
import * as Wire from "./ChannelFraming.ts"

export interface LinkOptions {
  /** Largest data-channel message, kind byte included (a 64 KiB chunk and its frame envelope fit). */
  readonly maxMessageBytes: number
  /** Largest frame the link carries; at most half the receive window. */
  readonly maxFrameBytes: number
  /** Bytes the peer may send ahead of what our consumer has taken. */
  readonly receiveWindowBytes: number
  /** Stop writing while the channel buffers more than this ... */
  readonly highWaterBytes: number
  /** ... and resume when it has drained to this. */
  readonly lowWaterBytes: number
  readonly heartbeatInterval: Duration.Input
  /** Silence after which the peer is taken for gone and the link fails. */
  readonly heartbeatTimeout: Duration.Input
}

/**
 * The window must cover the credit loop: our channel buffer (high water), the peer's own outgoing
 * buffer that its Credit frames queue behind when traffic flows both ways, and the grant batch.
 * Measured on loopback (bench/transport.ts): with an 8 MiB window behind 4 MiB buffers, senders
 * waited for credit 35-60% of the time in bidirectional transfers; 16 MiB behind 2 MiB, ~0-2%.
 */
export const defaultLinkOptions: LinkOptions = {
  maxMessageBytes: 64 * 1024 + 1024,
  maxFrameBytes: 4 * 1024 * 1024,
  receiveWindowBytes: 16 * 1024 * 1024,
  highWaterBytes: 2 * 1024 * 1024,
  lowWaterBytes: 512 * 1024,
  heartbeatInterval: "1 second",
  heartbeatTimeout: "4 seconds"
}

/** The largest control frame accepted (an AuthProof is ~150 bytes). */
const MAX_CONTROL_FRAME_BYTES = 4096
/** How long a graceful close waits for the peer's GOODBYE before closing anyway. */
const GOODBYE_TIMEOUT = "1 second"

export type { ChannelBinding, SdpRole } from "./Binding.ts"
export { bindingBytes } from "./Binding.ts"

export interface LinkStats {
  readonly framesSent: number
  readonly bytesSent: number
  readonly framesReceived: number
  readonly bytesReceived: number
  /** Received frame bytes the consumer has not taken yet (the receive buffer). */
  readonly bufferedBytes: number
  /** The most the receive buffer has held. */
  readonly peakBufferedBytes: number
  /** Credit granted by the peer and not yet used. */
  readonly sendCredit: number
  /** Round trip of the last Ping, if any came back. */
  readonly rttMillis: number | undefined
  /** Time `send` spent waiting for the peer's credit (its consumer or the window is the limit). */
  readonly creditWaitMillis: number
  /** Time `send` spent waiting for the channel to drain (the network or the library is the limit). */
  readonly bufferWaitMillis: number
}

export interface WebRtcLink extends PeerLink {
  /** Whether this side made the offer (the lower peer id always does). */
  readonly sdpRole: SdpRole
  /** The same, as the engine names it: the offerer dialed. */
  readonly role: Role
  /** Waits for the link to close and gives the reason (heartbeat timeout, closed by the peer, ...). */
  readonly closeReason: Effect.Effect<LinkClosed>
  /** Close at once, without a goodbye, for `reason` (the transport: a newer connection replaced it). */
  readonly closeBecause: (reason: LinkCloseReason) => Effect.Effect<void>
  readonly stats: Effect.Effect<LinkStats>
}

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

type State = "detached" | "connecting" | "open" | "authenticated" | "closed"

const lost = (detail: string) => LinkCloseReason.cases.ConnectionLost.make({ detail })
const authFailed = (detail: string) => LinkCloseReason.cases.AuthFailed.make({ detail })

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((byte, i) => byte === b[i])

/**
 * One link's state. Native callbacks run on the JS thread and drive it synchronously (no Effect
 * runs inside them); fibers see it through `send`, `frames`, `closed` and the heartbeat.
 */
class ChannelLink {
  readonly remotePeer: PeerId
  private readonly params: LinkParams
  private readonly queue: Queue.Queue<Uint8Array, LinkClosed | Cause.Done>
  private readonly closedSignal = Deferred.makeUnsafe<LinkClosed>()
  private readonly authenticated = Deferred.makeUnsafe<void, LinkClosed>()
  private readonly goodbyeReceived = Deferred.makeUnsafe<void>()
  private readonly channelClosed = Deferred.makeUnsafe<void>()
  private readonly sendLock = Semaphore.makeUnsafe(1)
  private readonly window: ReceiveWindow
  private readonly credit = new SendCredit()
  private readonly reassembler: Wire.Reassembler
  /** Every data message is built here: the library copies it synchronously when sending. */
  private readonly scratch: Buffer
  private channel: DataChannel | undefined
  private state: State = "detached"
  private reason: LinkClosed | undefined
  private creditWaiter: (() => void) | undefined
  private bufferWaiter: (() => void) | undefined
  private lastHeard = Date.now()
  private pingNonce = 0
  private rttMillis: number | undefined
  private creditWaitMillis = 0
  private bufferWaitMillis = 0
  private framesSent = 0
  private bytesSent = 0
  private framesReceived = 0
  private bytesReceived = 0

  constructor(params: LinkParams, queue: Queue.Queue<Uint8Array, LinkClosed | Cause.Done>) {
    this.params = params
    this.remotePeer = params.remotePeer
    this.queue = queue
    this.window = new ReceiveWindow(params.options.receiveWindowBytes)
    this.reassembler = new Wire.Reassembler(params.options.maxFrameBytes)
    this.scratch = Buffer.allocUnsafe(params.options.maxMessageBytes)
  }

  /**
   * Take the channel and register every handler, once (handlers are single-slot). Call it in the
   * same synchronous step that obtained the channel, so no event is missed. The link holds the
   * channel for its whole life: a channel nothing references is garbage-collected mid-transfer.
   */
  attach(channel: DataChannel): void {
    if (this.state !== "detached") return
    this.channel = channel
    this.state = "connecting"
    try {
      channel.setBufferedAmountLowThreshold(this.params.options.lowWaterBytes)
      // onMessage first: its callback queue is then drained before onClosed's when both are pending
      channel.onMessage((message) => this.onMessage(message))
      channel.onOpen(() => this.onOpen())
      channel.onClosed(() => this.onChannelClosed())
      channel.onError((error) => this.closeWith(lost(`channel error: ${error}`), true))
      channel.onBufferedAmountLow(() => this.bufferWaiter?.())
    } catch (error) {
      // the library refuses handlers on a channel that is already gone
      return this.closeWith(lost(`the channel closed at once: ${error instanceof Error ? error.message : String(error)}`), true)
    }
    if (channel.isOpen()) this.onOpen()
  }

  get isClosed(): boolean {
    return this.state === "closed"
  }

  // ---- closing -------------------------------------------------------------------------------

  /**
   * The logical close, once: no more sends, the frame stream ends (clean: after the frames
   * already received) or fails, every waiter wakes. False if the link was already closed.
   */
  private finish(reason: LinkCloseReason, failed: boolean): boolean {
    if (this.state === "closed") return false
    const wasAuthenticated = this.state === "authenticated"
    this.state = "closed"
    const error = new LinkClosed({ peer: this.remotePeer, reason })
    this.reason = error
    if (failed) Queue.failCauseUnsafe(this.queue, Cause.fail(error))
    else Queue.endUnsafe(this.queue)
    this.creditWaiter?.()
    this.bufferWaiter?.()
    Deferred.doneUnsafe(this.authenticated, Effect.fail(error))
    Deferred.doneUnsafe(this.closedSignal, Effect.succeed(error))
    this.params.onClosed?.(error, wasAuthenticated)
    return true
  }

  /** Close the native channel (idempotent); whatever it still buffers may be lost. */
  private closeChannel(): void {
    Deferred.doneUnsafe(this.goodbyeReceived, Effect.void)
    Deferred.doneUnsafe(this.channelClosed, Effect.void)
    try {
      this.channel?.close()
    } catch {
      // already closed natively: nothing left to release
    }
  }

  /** Close at once, without a goodbye: failures, and links that never authenticated. */
  closeWith(reason: LinkCloseReason, failed: boolean): void {
    if (this.finish(reason, failed)) this.closeChannel()
  }

  /**
   * Close gracefully: say GOODBYE after everything already sent, wait (bounded) for the peer's
   * GOODBYE, which it sends only after receiving ours and thus everything before it, then close
   * the channel. Concurrent and repeated calls wait for the same close.
   */
  readonly closeGracefully: Effect.Effect<void> = Effect.suspend(() => {
    if (this.state === "authenticated" && this.channel !== undefined) {
      this.finish(LinkCloseReason.cases.ClosedLocally.make({}), false)
      this.writeUnchecked(Wire.goodbye())
      return Deferred.await(this.goodbyeReceived).pipe(
        Effect.timeoutOption(GOODBYE_TIMEOUT),
        Effect.andThen(Effect.sync(() => this.closeChannel()))
      )
    }
    if (this.finish(LinkCloseReason.cases.ClosedLocally.make({}), false)) this.closeChannel()
    return Deferred.await(this.channelClosed)
  })

  /** The peer said GOODBYE: deliver what came before it, answer in kind, close. */
  private onGoodbye(): void {
    if (!this.finish(LinkCloseReason.cases.ClosedByPeer.make({}), false)) return
    this.writeUnchecked(Wire.goodbye())
    this.closeChannel()
  }

  private onChannelClosed(): void {
    this.finish(lost("the channel closed without a goodbye"), true)
    this.closeChannel()
  }

  private closedError(): LinkClosed {
    return this.reason ?? new LinkClosed({ peer: this.remotePeer, reason: LinkCloseReason.cases.ClosedLocally.make({}) })
  }

  // ---- receiving -----------------------------------------------------------------------------

  private onOpen(): void {
    if (this.state !== "connecting") return
    this.state = "open"
    this.lastHeard = Date.now()
    const { identity, role } = this.params
    const binding = this.params.binding()
    if (binding === undefined) return this.closeWith(lost("the channel opened before both descriptions were known"), true)
    this.sendControl(
      Frame.make("AuthProof", {
        peerId: identity.peerId,
        publicKey: identity.publicKey,
        signature: identity.sign(bindingBytes(binding, role))
      })
    )
  }

  private violation(reason: string): void {
    this.closeWith(LinkCloseReason.cases.LinkProtocolViolation.make({ detail: reason }), true)
  }

  private onMessage(message: string | Buffer | ArrayBuffer): void {
    if (typeof message === "string") return this.violation("text message on a binary channel")
    const bytes = message instanceof ArrayBuffer ? new Uint8Array(message) : message
    if (this.state === "closed") {
      // after our GOODBYE only the peer's GOODBYE matters
      if (bytes.length === 1 && bytes[0] === Wire.GOODBYE) Deferred.doneUnsafe(this.goodbyeReceived, Effect.void)
      return
    }
    if (this.state === "connecting") this.onOpen()
    this.lastHeard = Date.now()
    const parsed = Wire.parse(bytes)
    if (Result.isFailure(parsed)) return this.violation(parsed.failure.detail)
    const msg = parsed.success
    if (msg._tag === "Goodbye") return this.onGoodbye()
    if (msg._tag === "Control") return this.onControl(msg.frame)
    if (this.state !== "authenticated") return this.violation("data before authentication")
    const accounted = this.window.received(msg.payload.length)
    if (Result.isFailure(accounted)) return this.violation(accounted.failure.detail)
    const joined = this.reassembler.push(msg.payload, msg.last)
    if (Result.isFailure(joined)) return this.violation(joined.failure.detail)
    if (joined.success === undefined) return
    this.framesReceived++
    this.bytesReceived += joined.success.length
    Queue.offerUnsafe(this.queue, joined.success)
  }

  private onControl(bytes: Uint8Array): void {
    const decoded = Frame.decode(bytes, MAX_CONTROL_FRAME_BYTES)
    if (Result.isFailure(decoded)) return this.violation(`bad control frame: ${decoded.failure._tag}`)
    const frame = decoded.success
    switch (frame._tag) {
      case "Ping":
        // with our buffer full the peer hears our data anyway; never queue Pongs without bound
        if (this.channel !== undefined && this.channel.bufferedAmount() <= this.params.options.highWaterBytes) {
          this.sendControl(Frame.make("Pong", { nonce: frame.message.nonce, sentAt: frame.message.sentAt }))
        }
        return
      case "Pong":
        this.rttMillis = Date.now() - frame.message.sentAt
        return
      case "Credit":
        if (this.state !== "authenticated") return this.violation("credit before authentication")
        this.credit.grant(frame.message.bytes)
        this.creditWaiter?.()
        return
      case "AuthProof":
        return this.onAuthProof(frame.message)
      default:
        return this.violation(`${frame._tag} frame sent as a control message`)
    }
  }

  private onAuthProof(proof: { readonly peerId: string; readonly publicKey: Uint8Array; readonly signature: Uint8Array }) {
    if (this.state !== "open") return this.violation("a second AuthProof")
    const { remotePeer, role } = this.params
    const binding = this.params.binding()
    const remotePublicKey = this.params.remotePublicKey()
    if (binding === undefined || remotePublicKey === undefined) {
      return this.violation("AuthProof before both descriptions were known")
    }
    const remoteRole: SdpRole = role === "offerer" ? "answerer" : "offerer"
    if (proof.peerId !== remotePeer) {
      return this.closeWith(authFailed(`the channel proved ${proof.peerId}, expected ${remotePeer}`), true)
    }
    if (!equalBytes(proof.publicKey, remotePublicKey)) {
      return this.closeWith(authFailed("the channel key differs from the key that signed the SDP"), true)
    }
    if (!verifySignature(remotePeer, proof.publicKey, bindingBytes(binding, remoteRole), proof.signature)) {
      return this.closeWith(authFailed("the channel binding signature does not verify"), true)
    }
    this.state = "authenticated"
    this.sendControl(Frame.make("Credit", { bytes: this.window.initialGrant() }))
    Deferred.doneUnsafe(this.authenticated, Effect.void)
  }

  /** One frame handed to the consumer: its bytes are granted back once enough have gathered. */
  readonly take: Effect.Effect<Uint8Array, LinkClosed | Cause.Done> = Effect.tap(
    Effect.suspend(() => Queue.take(this.queue)),
    (frame) =>
      Effect.sync(() => {
        const grant = this.window.consumed(frame.length)
        if (grant > 0 && this.state === "authenticated") this.sendControl(Frame.make("Credit", { bytes: grant }))
      })
  )

  // ---- sending -------------------------------------------------------------------------------

  /** Write one message now; `false` from the library means "queued", not failure. */
  private sendRaw(message: Uint8Array): boolean {
    if (this.state === "closed" || this.channel === undefined) return false
    try {
      this.channel.sendMessageBinary(message)
      return true
    } catch (error) {
      this.closeWith(lost(`send failed: ${error instanceof Error ? error.message : String(error)}`), true)
      return false
    }
  }

  /** Write even though the link is logically closed (the GOODBYEs); errors mean it is gone anyway. */
  private writeUnchecked(message: Uint8Array): void {
    try {
      this.channel?.sendMessageBinary(message)
    } catch {
      // the channel is already closed natively
    }
  }

  /** Transport frames skip the credit and the send lock: they are tiny and must never wait behind data. */
  private sendControl(frame: Frame.Frame): void {
    this.sendRaw(Wire.control(Frame.encode(frame)))
  }

  private waitCredit(bytes: number): Effect.Effect<void, LinkClosed> {
    if (this.state !== "closed" && this.credit.tryUse(bytes)) return Effect.void
    return this.waitUntil("credit", () => this.credit.tryUse(bytes))
  }

  /** Suspends until the channel has drained to the low-water mark (or the link closes). */
  private waitBuffer(): Effect.Effect<void, LinkClosed> {
    return this.waitUntil("buffer", () => this.channel!.bufferedAmount() <= this.params.options.highWaterBytes)
  }

  /**
   * Suspends until `ready()` holds, checked now and each time the `which` waiter is woken (credit
   * granted, buffer drained), or fails once the link closes; the time spent is counted.
   */
  private waitUntil(which: "credit" | "buffer", ready: () => boolean): Effect.Effect<void, LinkClosed> {
    const since = Date.now()
    const setWaiter = (waiter: (() => void) | undefined) => {
      if (which === "credit") this.creditWaiter = waiter
      else this.bufferWaiter = waiter
    }
    return Effect.callback<void, LinkClosed>((resume) => {
      const attempt = () => {
        if (this.state === "closed") {
          setWaiter(undefined)
          resume(Effect.fail(this.closedError()))
        } else if (ready()) {
          setWaiter(undefined)
          resume(Effect.void)
        }
      }
      setWaiter(attempt)
      attempt()
      return Effect.sync(() => setWaiter(undefined))
    }).pipe(Effect.ensuring(Effect.sync(() => {
      if (which === "credit") this.creditWaitMillis += Date.now() - since
      else this.bufferWaitMillis += Date.now() - since
    })))
  }

  private sendPieces(frame: Uint8Array, from: number): Effect.Effect<void, LinkClosed> {
    return Effect.suspend(() => {
      const { highWaterBytes } = this.params.options
      let offset = from
      do {
        if (this.state === "closed") return Effect.fail(this.closedError())
        if (this.channel!.bufferedAmount() > highWaterBytes) {
          const resumeAt = offset
          return Effect.andThen(this.waitBuffer(), this.sendPieces(frame, resumeAt))
        }
        const piece = Wire.writePiece(this.scratch, frame, offset)
        if (!this.sendRaw(this.scratch.subarray(0, piece.length))) return Effect.fail(this.closedError())
        offset = piece.next
      } while (offset < frame.length)
      this.framesSent++
      this.bytesSent += frame.length
      return Effect.void
    })
  }

  readonly send = (frame: Uint8Array): Effect.Effect<void, LinkClosed> =>
    this.sendLock.withPermit(
      Effect.suspend(() => {
        if (this.state !== "authenticated") return Effect.fail(this.closedError())
        if (frame.length > this.params.options.maxFrameBytes) {
          this.closeWith(
            LinkCloseReason.cases.LinkProtocolViolation.make({
              detail: `we tried to send a frame of ${frame.length} bytes, over the link limit of ${this.params.options.maxFrameBytes}`
            }),
            true
          )
          return Effect.fail(this.closedError())
        }
        return Effect.andThen(this.waitCredit(frame.length), this.sendPieces(frame, 0))
      })
    )

  // ---- heartbeat, lifecycle ------------------------------------------------------------------

  /**
   * Ping every interval; fail the link after `heartbeatTimeout` without any message from the peer
   * (checked four times per interval, so a vanished peer is noticed soon after the timeout).
   */
  readonly heartbeat: Effect.Effect<void> = Effect.suspend(() => {
    const interval = Duration.toMillis(this.params.options.heartbeatInterval)
    const timeout = Duration.toMillis(this.params.options.heartbeatTimeout)
    const tickMillis = Math.max(10, Math.floor(interval / 4))
    let lastPing = 0
    let lastTick = Date.now()
    const tick = Effect.sync(() => {
      if (this.state !== "open" && this.state !== "authenticated") return
      const now = Date.now()
      // Our own event loop stalled (GC, a long synchronous task): the peer's messages may be
      // queued behind this timer, unread. Give it a fresh window instead of blaming it.
      if (now - lastTick > 2 * tickMillis + 500) this.lastHeard = now
      lastTick = now
      const silent = now - this.lastHeard
      if (silent > timeout) {
        this.closeWith(LinkCloseReason.cases.HeartbeatTimeout.make({ silentMillis: silent }), true)
        return
      }
      if (now - lastPing >= interval) {
        lastPing = now
        this.sendControl(Frame.make("Ping", { nonce: ++this.pingNonce, sentAt: now }))
      }
    })
    return Effect.whileLoop({
      while: () => this.state !== "closed",
      body: () => Effect.andThen(Effect.sleep(tickMillis), tick),
      step: () => undefined
    })
  })

  /** Completes once both sides have proved their keys over the channel; fails if the link closes first. */
  readonly whenAuthenticated: Effect.Effect<void, LinkClosed> = Deferred.await(this.authenticated)

  readonly closeReason: Effect.Effect<LinkClosed> = Deferred.await(this.closedSignal)

  readonly stats: Effect.Effect<LinkStats> = Effect.sync(() => ({
    framesSent: this.framesSent,
    bytesSent: this.bytesSent,
    framesReceived: this.framesReceived,
    bytesReceived: this.bytesReceived,
    bufferedBytes: this.window.buffered,
    peakBufferedBytes: this.window.peakBuffered,
    sendCredit: this.credit.bytes,
    rttMillis: this.rttMillis,
    creditWaitMillis: this.creditWaitMillis,
    bufferWaitMillis: this.bufferWaitMillis
  }))
}

/** A link being set up: attach the channel synchronously, then `authenticate`. */
export interface PendingLink {
  /** Register every handler on the channel; call in the same step that obtained it. */
  readonly attach: (channel: DataChannel) => void
  /** Fail the link before it is handed out (connection failed, session replaced, ...). */
  readonly fail: (reason: LinkCloseReason) => void
  /**
   * Wait for the channel to open and both AuthProofs to verify, then give the link. Fails if
   * the link closes first; bounding the wait is the caller's (one deadline for the whole connect).
   */
  readonly authenticate: Effect.Effect<WebRtcLink, LinkClosed>
}

/** Why a set of options cannot work, or undefined. */
export const checkOptions = (options: LinkOptions): string | undefined => {
  if (options.maxFrameBytes * 2 > options.receiveWindowBytes) {
    return "receiveWindowBytes must be at least twice maxFrameBytes (so credit cannot deadlock)"
  }
  if (options.maxMessageBytes < 2 || options.maxMessageBytes > 256 * 1024) {
    return "maxMessageBytes must be between 2 and 262144 (the channel's message limit)"
  }
  if (options.lowWaterBytes > options.highWaterBytes) return "lowWaterBytes must not exceed highWaterBytes"
  return undefined
}

/**
 * Prepare a link for one peer. Its heartbeat runs in, and the channel closes with, the current
 * scope; the link also closes when either side closes it or the heartbeat fails.
 */
export const make = Effect.fn("WebRtcLink.make")(function*(params: LinkParams) {
  const invalid = checkOptions(params.options)
  if (invalid !== undefined) return yield* Effect.die(new Error(`LinkOptions: ${invalid}`))
  // Unbounded as a queue, bounded in bytes by the credit window: the peer cannot send more than
  // one window ahead of the consumer without breaking the protocol (and the link).
  const queue = yield* Queue.make<Uint8Array, LinkClosed | Cause.Done>()
  const core = new ChannelLink(params, queue)
  yield* Effect.addFinalizer(() => core.closeGracefully)
  yield* Effect.forkScoped(core.heartbeat)
  const link: WebRtcLink = {
    remotePeer: params.remotePeer,
    sdpRole: params.role,
    role: params.role === "offerer" ? "dialer" : "acceptor",
    send: core.send,
    frames: Stream.fromEffectRepeat(core.take),
    closed: Effect.asVoid(core.closeReason),
    close: core.closeGracefully,
    closeReason: core.closeReason,
    closeBecause: (reason) => Effect.sync(() => core.closeWith(reason, true)),
    stats: core.stats
  }
  const pending: PendingLink = {
    attach: (channel) => core.attach(channel),
    fail: (reason) => core.closeWith(reason, true),
    authenticate: Effect.as(core.whenAuthenticated, link)
  }
  return pending
}) satisfies (params: LinkParams) => Effect.Effect<PendingLink, never, Scope.Scope>
