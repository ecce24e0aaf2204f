/**
 * The PeerLink over one ordered, reliable data channel, whichever carries it (node-datachannel in
 * the agent, the browser's own RTCDataChannel in the browser test peer, both behind
 * `DataChannelPort`): frames split and joined (ChannelFraming), send backpressure from the
 * channel's buffered amount, a credit window (FlowControl), the Ping/Pong heartbeat, the graceful
 * GOODBYE close and the AuthProof exchange. No Node-only imports; times come from the Clock.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import type { Context, Scope } from "effect"
import { LinkClosed, LinkCloseReason } from "@can-sync/core"
import type { EncodedFrame, PeerId, PeerLink, Role } from "@can-sync/core"
import { bindingBytes } from "./Binding.ts"
import type { ChannelBinding, LinkAuth, SdpRole } from "./Binding.ts"
import * as Framing from "./ChannelFraming.ts"
import { ChannelSender } from "./ChannelSender.ts"
import { ReceiveWindow } from "./FlowControl.ts"

/** The events of a data channel; each handler is registered once. */
export interface ChannelHandlers {
  readonly onOpen: () => void
  readonly onMessage: (message: Uint8Array | string) => void
  readonly onClosed: () => void
  readonly onError: (error: string) => void
  readonly onBufferedAmountLow: () => void
}

/** What the link needs of a data channel (ordered, reliable, binary). */
export interface DataChannelPort {
  /** Write one message; the bytes may be reused once it returns. Throws if the channel is gone. */
  readonly send: (message: Uint8Array) => void
  readonly close: () => void
  readonly bufferedAmount: () => number
  readonly isOpen: () => boolean
  /** Register every handler, once; `onBufferedAmountLow` fires on draining to `lowWaterBytes`. Throws if the channel is gone. */
  readonly listen: (handlers: ChannelHandlers, lowWaterBytes: number) => void
}

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
  // the largest message every WebRTC stack takes (Chrome's max-message-size): an engine chunk frame in one message
  maxMessageBytes: 256 * 1024,
  maxFrameBytes: 4 * 1024 * 1024,
  receiveWindowBytes: 16 * 1024 * 1024,
  highWaterBytes: 2 * 1024 * 1024,
  lowWaterBytes: 512 * 1024,
  heartbeatInterval: "1 second",
  heartbeatTimeout: "4 seconds"
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

/** How long a graceful close waits for the peer's GOODBYE before closing anyway. */
const GOODBYE_TIMEOUT = "1 second"
/** Messages held while the peer's AuthProof is being verified (only small control frames can come). */
const MAX_HELD_MESSAGES = 256

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
  /** The shortest round trip of any Ping (the path's own delay, least disturbed by queues and load). */
  readonly minRttMillis: number | undefined
  /** Time `send` spent waiting for the peer's credit (its consumer or the window is the limit). */
  readonly creditWaitMillis: number
  /** Time `send` spent waiting for the channel to drain (the network or the library is the limit). */
  readonly bufferWaitMillis: number
  readonly authProofSent: boolean
  /** The peer's AuthProof verified here. */
  readonly remoteProofVerified: boolean
  /** The peer granted credit, which it does only after verifying our AuthProof. */
  readonly peerAcceptedProof: boolean
  readonly creditGrants: number
  readonly creditGrantedBytes: number
  readonly pingsSent: number
  readonly pingsReceived: number
  readonly pongsSent: number
  readonly pongsReceived: number
  /** After our GOODBYE, the peer's came back (everything we sent was received). */
  readonly goodbyeAnswered: boolean
}

/** What a striped link (Lanes.ts) needs of each lane beyond the PeerLink. */
export interface LanePort {
  /** The next frame, pulled (credit goes back to the peer as the consumer takes, as with `frames`). */
  readonly take: Effect.Effect<Uint8Array, LinkClosed | Cause.Done>
  /**
   * If a frame of `bytes` can be written at once, this lane's load (bytes it buffers plus bytes
   * sent and not yet taken by the peer); else undefined.
   */
  readonly room: (bytes: number) => number | undefined
  /** One listener, told whenever credit arrives, the channel drains or the link closes. */
  readonly onProgress: (listener: () => void) => void
  /** From now on give credit back after every frame taken (so the peer's `room` stays current). */
  readonly grantEachFrame: () => void
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
  /** This link as one lane of a striped link (a single data channel's link has one; a striped link has none). */
  readonly lane?: LanePort | undefined
}

export interface ChannelLinkParams {
  readonly auth: LinkAuth
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

/** A link being set up: attach the channel synchronously, then `authenticate`. */
export interface PendingLink {
  /** Register every handler on the channel; call in the same step that obtained it. */
  readonly attach: (channel: DataChannelPort) => void
  /** Fail the link before it is handed out (connection failed, attempt given up, ...). */
  readonly fail: (reason: LinkCloseReason) => void
  /**
   * Wait for the channel to open and both AuthProofs to verify, then give the link. Fails if
   * the link closes first; bounding the wait is the caller's (one deadline for the whole connect).
   */
  readonly authenticate: Effect.Effect<WebRtcLink, LinkClosed>
}

type State = "detached" | "connecting" | "open" | "verifying" | "authenticated" | "closed"

const lost = (detail: string) => LinkCloseReason.cases.ConnectionLost.make({ detail })
const authFailed = (detail: string) => LinkCloseReason.cases.AuthFailed.make({ detail })
const violation = (detail: string) => LinkCloseReason.cases.LinkProtocolViolation.make({ detail })

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((byte, i) => byte === b[i])

const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/**
 * One link's state. Channel callbacks run on the JS thread and drive it synchronously; fibers see
 * it through `send`, `take`, `closeReason` and the heartbeat. Signing and verifying run as
 * effects (at once in the agent; asynchronously in a browser, with messages held meanwhile).
 */
class ChannelLink {
  readonly remotePeer: PeerId
  private readonly params: ChannelLinkParams
  private readonly queue: Queue.Queue<Uint8Array, LinkClosed | Cause.Done>
  private readonly clock: Clock.Clock
  private readonly context: Context.Context<never>
  private readonly closedSignal = Deferred.makeUnsafe<LinkClosed>()
  private readonly authenticated = Deferred.makeUnsafe<void, LinkClosed>()
  private readonly goodbyeReceived = Deferred.makeUnsafe<void>()
  private readonly channelClosed = Deferred.makeUnsafe<void>()
  private readonly window: ReceiveWindow
  private readonly reassembler: Framing.Reassembler
  private readonly sender: ChannelSender
  private channel: DataChannelPort | undefined
  private state: State = "detached"
  private reason: LinkClosed | undefined
  private held: Array<Uint8Array | string> = []
  lastHeard: number
  private pingNonce = 0
  private counters = {
    framesReceived: 0,
    bytesReceived: 0,
    rttMillis: undefined as number | undefined,
    minRttMillis: undefined as number | undefined,
    authProofSent: false,
    remoteProofVerified: false,
    peerAcceptedProof: false,
    creditGrants: 0,
    creditGrantedBytes: 0,
    pingsSent: 0,
    pingsReceived: 0,
    pongsSent: 0,
    pongsReceived: 0,
    goodbyeAnswered: false
  }

  constructor(
    params: ChannelLinkParams,
    queue: Queue.Queue<Uint8Array, LinkClosed | Cause.Done>,
    clock: Clock.Clock,
    context: Context.Context<never>
  ) {
    this.params = params
    this.remotePeer = params.remotePeer
    this.queue = queue
    this.clock = clock
    this.context = context
    this.lastHeard = clock.currentTimeMillisUnsafe()
    this.window = new ReceiveWindow(params.options.receiveWindowBytes)
    this.reassembler = new Framing.Reassembler(params.options.maxFrameBytes)
    this.sender = new ChannelSender({
      channel: () => this.channel,
      isAuthenticated: () => this.state === "authenticated",
      isClosed: () => this.state === "closed",
      closedError: () => this.closedError(),
      fail: (reason) => this.closeWith(reason, true),
      now: () => this.now()
    }, params.options)
  }

  now(): number {
    return this.clock.currentTimeMillisUnsafe()
  }

  /**
   * Take the channel and register every handler, once. Call it in the same synchronous step that
   * obtained the channel, so no event is missed. The link holds the channel for its whole life:
   * a native channel nothing references is garbage-collected mid-transfer.
   */
  attach(channel: DataChannelPort): void {
    if (this.state !== "detached") return
    this.channel = channel
    this.state = "connecting"
    try {
      channel.listen({
        onMessage: (message) => this.onMessage(message),
        onOpen: () => this.onOpen(),
        onClosed: () => this.onChannelClosed(),
        onError: (error) => this.closeWith(lost(`channel error: ${error}`), true),
        onBufferedAmountLow: () => this.sender.drained()
      }, this.params.options.lowWaterBytes)
    } catch (error) {
      // the library refuses handlers on a channel that is already gone
      return this.closeWith(lost(`the channel closed at once: ${errorText(error)}`), true)
    }
    if (channel.isOpen()) this.onOpen()
  }

  get isOpen(): boolean {
    return this.state === "open" || this.state === "verifying" || this.state === "authenticated"
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
    this.held = []
    const error = new LinkClosed({ peer: this.remotePeer, reason })
    this.reason = error
    if (failed) Queue.failCauseUnsafe(this.queue, Cause.fail(error))
    else Queue.endUnsafe(this.queue)
    this.sender.closed()
    Deferred.doneUnsafe(this.authenticated, Effect.fail(error))
    Deferred.doneUnsafe(this.closedSignal, Effect.succeed(error))
    this.params.onClosed?.(error, wasAuthenticated)
    return true
  }

  /** Close the channel (idempotent); whatever it still buffers may be lost. */
  private closeChannel(): void {
    Deferred.doneUnsafe(this.goodbyeReceived, Effect.void)
    Deferred.doneUnsafe(this.channelClosed, Effect.void)
    try {
      this.channel?.close()
    } catch {
      // already closed: nothing left to release
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
      this.sender.writeUnchecked(Framing.goodbye())
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
    this.sender.writeUnchecked(Framing.goodbye())
    this.closeChannel()
  }

  private onChannelClosed(): void {
    this.finish(lost("the channel closed without a goodbye"), true)
    this.closeChannel()
  }

  private closedError(): LinkClosed {
    return this.reason ?? new LinkClosed({ peer: this.remotePeer, reason: LinkCloseReason.cases.ClosedLocally.make({}) })
  }

  // ---- authentication ------------------------------------------------------------------------

  /** Run a signing or verifying effect; `then` runs when it is done (at once if it is synchronous). */
  private run<A>(effect: Effect.Effect<A>, then: (a: A) => void): void {
    Effect.runForkWith(this.context)(Effect.flatMap(effect, (a) => Effect.sync(() => then(a))))
  }

  private onOpen(): void {
    if (this.state !== "connecting") return
    this.state = "open"
    this.lastHeard = this.now()
    const { auth, role } = this.params
    const binding = this.params.binding()
    if (binding === undefined) return this.closeWith(lost("the channel opened before both descriptions were known"), true)
    this.run(auth.sign(bindingBytes(binding, role)), (signature) => {
      this.sender.control({ _tag: "AuthProof", message: { peerId: auth.peerId, publicKey: auth.publicKey, signature } })
      this.counters.authProofSent = true
    })
  }

  private onAuthProof(proof: { readonly peerId: string; readonly publicKey: Uint8Array; readonly signature: Uint8Array }) {
    if (this.state !== "open") return this.violation("a second AuthProof")
    const { remotePeer, role } = this.params
    const binding = this.params.binding()
    const remotePublicKey = this.params.remotePublicKey()
    if (binding === undefined || remotePublicKey === undefined) {
      return this.violation("AuthProof before both descriptions were known")
    }
    if (proof.peerId !== remotePeer) {
      return this.closeWith(authFailed(`the channel proved ${proof.peerId}, expected ${remotePeer}`), true)
    }
    if (!equalBytes(proof.publicKey, remotePublicKey)) {
      return this.closeWith(authFailed("the channel key differs from the key that signed the SDP"), true)
    }
    const remoteRole: SdpRole = role === "offerer" ? "answerer" : "offerer"
    this.state = "verifying"
    this.run(this.params.auth.verify(remotePeer, proof.publicKey, bindingBytes(binding, remoteRole), proof.signature), (valid) => {
      if (this.state !== "verifying") return
      if (!valid) return this.closeWith(authFailed("the channel binding signature does not verify"), true)
      this.state = "authenticated"
      this.counters.remoteProofVerified = true
      this.grant(this.window.initialGrant())
      Deferred.doneUnsafe(this.authenticated, Effect.void)
      for (const message of this.held.splice(0)) this.onMessage(message)
    })
  }

  // ---- receiving -----------------------------------------------------------------------------

  private violation(detail: string): void {
    this.closeWith(violation(detail), true)
  }

  private onMessage(message: Uint8Array | string): void {
    if (typeof message === "string") return this.violation("text message on a binary channel")
    if (this.state === "closed") {
      // after our GOODBYE only the peer's GOODBYE matters
      if (message.length === 1 && message[0] === Framing.GOODBYE) {
        this.counters.goodbyeAnswered = true
        Deferred.doneUnsafe(this.goodbyeReceived, Effect.void)
      }
      return
    }
    this.lastHeard = this.now()
    if (this.state === "verifying") {
      if (this.held.length >= MAX_HELD_MESSAGES) return this.violation("too many messages before authentication")
      this.held.push(message)
      return
    }
    if (this.state === "connecting") this.onOpen()
    const parsed = Framing.parse(message)
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
    this.counters.framesReceived++
    this.counters.bytesReceived += joined.success.length
    Queue.offerUnsafe(this.queue, joined.success)
  }

  private onControl(body: Uint8Array): void {
    const decoded = Framing.decodeControl(body)
    if (Result.isFailure(decoded)) return this.violation(decoded.failure.detail)
    const frame = decoded.success
    switch (frame._tag) {
      case "Ping":
        this.counters.pingsReceived++
        // with our buffer full the peer hears our data anyway; never queue Pongs without bound
        if (this.channel !== undefined && this.channel.bufferedAmount() <= this.params.options.highWaterBytes) {
          this.sender.control({ _tag: "Pong", message: { nonce: frame.message.nonce, sentAt: frame.message.sentAt } })
          this.counters.pongsSent++
        }
        return
      case "Pong":
        this.counters.pongsReceived++
        this.counters.rttMillis = this.now() - frame.message.sentAt
        this.counters.minRttMillis = Math.min(this.counters.minRttMillis ?? Infinity, this.counters.rttMillis)
        return
      case "Credit":
        if (this.state !== "authenticated") return this.violation("credit before authentication")
        this.counters.peerAcceptedProof = true
        this.sender.granted(frame.message.bytes)
        return
      case "AuthProof":
        return this.onAuthProof(frame.message)
    }
  }

  /** One frame handed to the consumer: its bytes are granted back once enough have gathered. */
  readonly take: Effect.Effect<Uint8Array, LinkClosed | Cause.Done> = Effect.tap(
    Effect.suspend(() => Queue.take(this.queue)),
    (frame) =>
      Effect.sync(() => {
        const grant = this.window.consumed(frame.length)
        if (grant > 0 && this.state === "authenticated") this.grant(grant)
      })
  )

  private grant(bytes: number): void {
    this.sender.control({ _tag: "Credit", message: { bytes } })
    this.counters.creditGrants++
    this.counters.creditGrantedBytes += bytes
  }

  readonly send = (frame: EncodedFrame): Effect.Effect<void, LinkClosed> => this.sender.send(frame)

  readonly lane: LanePort = {
    take: this.take,
    room: (bytes) => this.sender.room(bytes),
    onProgress: (listener) => {
      this.sender.progress = listener
    },
    grantEachFrame: () => {
      const grant = this.window.grantEachFrame()
      if (grant > 0 && this.state === "authenticated") this.grant(grant)
    }
  }

  // ---- heartbeat, lifecycle ------------------------------------------------------------------

  /** Send a Ping now (the heartbeat's). */
  ping(now: number): void {
    this.sender.control({ _tag: "Ping", message: { nonce: ++this.pingNonce, sentAt: now } })
    this.counters.pingsSent++
  }

  /** Fail the link: the peer has been silent too long. */
  silenced(silentMillis: number): void {
    this.closeWith(LinkCloseReason.cases.HeartbeatTimeout.make({ silentMillis }), true)
  }

  /** Completes once both sides have proved their keys over the channel; fails if the link closes first. */
  readonly whenAuthenticated: Effect.Effect<void, LinkClosed> = Deferred.await(this.authenticated)

  readonly closeReason: Effect.Effect<LinkClosed> = Deferred.await(this.closedSignal)

  readonly stats: Effect.Effect<LinkStats> = Effect.sync(() => ({
    ...this.counters,
    framesSent: this.sender.framesSent,
    bytesSent: this.sender.bytesSent,
    creditWaitMillis: this.sender.creditWaitMillis,
    bufferWaitMillis: this.sender.bufferWaitMillis,
    bufferedBytes: this.window.buffered,
    peakBufferedBytes: this.window.peakBuffered,
    sendCredit: this.sender.creditBytes
  }))
}

/**
 * Pings a link sends at each of its first heartbeat ticks instead of once per interval, so its
 * round trip is known within a second of opening (the offerer sizes its lanes by the shortest).
 */
export const RTT_PROBES = 3

/**
 * Ping every interval (the first RTT_PROBES at each tick); fail the link after `heartbeatTimeout`
 * without any message from the peer (checked four times per interval, so a vanished peer is
 * noticed soon after the timeout).
 */
const heartbeat = (link: ChannelLink, options: LinkOptions): Effect.Effect<void> =>
  Effect.suspend(() => {
    const interval = Duration.toMillis(Duration.fromInputUnsafe(options.heartbeatInterval))
    const timeout = Duration.toMillis(Duration.fromInputUnsafe(options.heartbeatTimeout))
    const tickMillis = Math.max(10, Math.floor(interval / 4))
    let lastPing = 0
    let probes = 0
    let lastTick = link.now()
    const tick = Effect.sync(() => {
      if (!link.isOpen) return
      const now = link.now()
      // Our own event loop stalled (GC, a long synchronous task): the peer's messages may be
      // queued behind this timer, unread. Give it a fresh window instead of blaming it.
      if (now - lastTick > 2 * tickMillis + 500) link.lastHeard = now
      lastTick = now
      const silent = now - link.lastHeard
      if (silent > timeout) return link.silenced(silent)
      if (now - lastPing >= interval || probes < RTT_PROBES) {
        lastPing = now
        probes++
        link.ping(now)
      }
    })
    return Effect.whileLoop({
      while: () => !link.isClosed,
      body: () => Effect.andThen(Effect.sleep(tickMillis), tick),
      step: () => undefined
    })
  })

/**
 * Prepare a link for one peer. Its heartbeat runs in, and the channel closes with, the current
 * scope; the link also closes when either side closes it or the heartbeat fails.
 */
export const make = Effect.fn("ChannelLink.make")(function*(params: ChannelLinkParams) {
  const invalid = checkOptions(params.options)
  if (invalid !== undefined) return yield* Effect.die(new Error(`LinkOptions: ${invalid}`))
  // Unbounded as a queue, bounded in bytes by the credit window: the peer cannot send more than
  // one window ahead of the consumer without breaking the protocol (and the link).
  const queue = yield* Queue.make<Uint8Array, LinkClosed | Cause.Done>()
  const core = new ChannelLink(params, queue, yield* Clock.Clock, yield* Effect.context<never>())
  yield* Effect.addFinalizer(() => core.closeGracefully)
  yield* Effect.forkScoped(heartbeat(core, params.options))
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
    stats: core.stats,
    lane: core.lane
  }
  const pending: PendingLink = {
    attach: (channel) => core.attach(channel),
    fail: (reason) => core.closeWith(reason, true),
    authenticate: Effect.as(core.whenAuthenticated, link)
  }
  return pending
}) satisfies (params: ChannelLinkParams) => Effect.Effect<PendingLink, never, Scope.Scope>
