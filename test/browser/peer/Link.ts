/**
 * The PeerLink over the browser's own RTCDataChannel, speaking what the agent's WebRtcLink speaks:
 * messages of one kind byte (Wire.ts: MORE/LAST pieces of a frame, CONTROL, GOODBYE), AuthProof
 * over the channel binding, credit in both directions (FlowControl.ts), Ping/Pong heartbeat and
 * the GOODBYE close. The codec, the piece/join rules and the window arithmetic are the project's
 * own modules, loaded unchanged; only what touches node-datachannel is written again here.
 */
import { Result } from "effect"
import * as Frame from "../../../packages/core/src/Frame.ts"
import { ReceiveWindow, SendCredit } from "../../../packages/transport/src/FlowControl.ts"
import * as Wire from "../../../packages/transport/src/ChannelFraming.ts"
import type { BrowserIdentity } from "./Identity.ts"
import { verifySignature } from "./Identity.ts"
import type { ChannelBinding, Role } from "./Signal.ts"
import { bindingBytes } from "./Signal.ts"

export interface LinkParams {
  readonly identity: BrowserIdentity
  readonly role: Role
  readonly remotePeer: string
  /** Read when the channel opens: both SDPs, and so both fingerprints, are known by then. */
  readonly binding: () => ChannelBinding | undefined
  /** The key that signed the peer's SDP; its AuthProof must carry the same one. */
  readonly remotePublicKey: () => Uint8Array | undefined
  /** Bytes the agent may send ahead of what the page has consumed. */
  readonly receiveWindowBytes: number
  /** Largest frame accepted; at most half the window (as the agent requires of itself). */
  readonly maxFrameBytes: number
  /** Largest message the page writes, kind byte included. */
  readonly maxMessageBytes: number
  readonly heartbeatIntervalMs: number
  readonly heartbeatTimeoutMs: number
}

export interface LinkStats {
  readonly authProofSent: boolean
  /** The agent's AuthProof verified here (WebCrypto Ed25519 over the channel binding). */
  readonly remoteProofVerified: boolean
  /** The agent granted credit, which it does only after verifying the page's AuthProof. */
  readonly peerAcceptedProof: boolean
  readonly creditReceivedBytes: number
  readonly creditGrantedBytes: number
  readonly creditGrants: number
  readonly peakBufferedBytes: number
  readonly pingsSent: number
  readonly pongsReceived: number
  readonly pingsReceived: number
  readonly pongsSent: number
  readonly rttMillis: number | undefined
  readonly messagesReceived: number
  readonly framesReceived: number
  readonly bytesReceived: number
  readonly framesSent: number
  readonly bytesSent: number
}

type State = "detached" | "connecting" | "open" | "authenticated" | "closed"

/** The largest control frame accepted (as the agent: an AuthProof is ~150 bytes). */
const MAX_CONTROL_FRAME_BYTES = 4096
const GOODBYE_TIMEOUT_MS = 3000

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((byte, i) => byte === b[i])

interface Deferred<A> {
  readonly promise: Promise<A>
  readonly resolve: (a: A) => void
  readonly reject: (error: Error) => void
}
const deferred = <A>(): Deferred<A> => {
  let resolve!: (a: A) => void
  let reject!: (error: Error) => void
  const promise = new Promise<A>((res, rej) => {
    resolve = res
    reject = rej
  })
  promise.catch(() => {})
  return { promise, resolve, reject }
}

export class DataChannelLink {
  readonly remotePeer: string
  private readonly params: LinkParams
  private channel: RTCDataChannel | undefined
  private state: State = "detached"
  private reason: string | undefined
  private readonly window: ReceiveWindow
  private readonly credit = new SendCredit()
  private readonly reassembler: Wire.Reassembler
  private readonly scratch: Uint8Array<ArrayBuffer>
  /** Inbound messages are handled one after another, async steps (signature checks) included. */
  private inbound: Promise<void> = Promise.resolve()
  private readonly frames: Array<Uint8Array> = []
  private frameWaiter: Deferred<Uint8Array> | undefined
  private readonly outbox: Array<{ readonly frame: Uint8Array; readonly written: Deferred<void> }> = []
  private readonly authenticatedSignal = deferred<void>()
  private readonly closedSignal = deferred<string>()
  private readonly goodbyeSignal = deferred<void>()
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined
  private lastHeard = Date.now()
  private lastPing = 0
  private pingNonce = 0
  private counters = {
    authProofSent: false,
    remoteProofVerified: false,
    peerAcceptedProof: false,
    creditReceivedBytes: 0,
    creditGrantedBytes: 0,
    creditGrants: 0,
    pingsSent: 0,
    pongsReceived: 0,
    pingsReceived: 0,
    pongsSent: 0,
    rttMillis: undefined as number | undefined,
    messagesReceived: 0,
    framesReceived: 0,
    bytesReceived: 0,
    framesSent: 0,
    bytesSent: 0
  }

  constructor(params: LinkParams) {
    this.params = params
    this.remotePeer = params.remotePeer
    this.window = new ReceiveWindow(params.receiveWindowBytes)
    this.reassembler = new Wire.Reassembler(params.maxFrameBytes)
    this.scratch = new Uint8Array(params.maxMessageBytes)
  }

  /** Completes once the agent's AuthProof verified; rejects if the link closes first. */
  get authenticated(): Promise<void> {
    return this.authenticatedSignal.promise
  }

  /** Why the link closed, once it has. */
  get closed(): Promise<string> {
    return this.closedSignal.promise
  }

  get isOpen(): boolean {
    return this.state === "authenticated"
  }

  stats(): LinkStats {
    return { ...this.counters, peakBufferedBytes: this.window.peakBuffered }
  }

  /** Take the channel (the offerer's own, or the answerer's from `ondatachannel`) and every handler. */
  attach(channel: RTCDataChannel): void {
    if (this.state !== "detached") return
    this.channel = channel
    this.state = "connecting"
    channel.binaryType = "arraybuffer"
    channel.onmessage = (event: MessageEvent) => this.onMessage(event.data)
    channel.onopen = () => this.onOpen()
    channel.onclose = () => this.finish("the channel closed without a goodbye")
    channel.onerror = (event) => this.fail(`channel error: ${(event as RTCErrorEvent).error?.message ?? "unknown"}`)
    if (channel.readyState === "open") this.onOpen()
  }

  /** Close at once, without a goodbye (a failed connect, a timeout). */
  fail(reason: string): void {
    if (this.finish(reason)) this.closeChannel()
  }

  // ---- closing -------------------------------------------------------------------------------

  private finish(reason: string): boolean {
    if (this.state === "closed") return false
    this.state = "closed"
    this.reason = reason
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer)
    const error = new Error(`link closed: ${reason}`)
    this.authenticatedSignal.reject(error)
    this.frameWaiter?.reject(error)
    this.frameWaiter = undefined
    for (const pending of this.outbox.splice(0)) pending.written.reject(error)
    this.closedSignal.resolve(reason)
    return true
  }

  private closeChannel(): void {
    this.goodbyeSignal.resolve()
    this.channel?.close()
  }

  /**
   * Close gracefully: GOODBYE after everything sent, wait (bounded) for the agent's GOODBYE, which
   * it sends only after reading ours, then close the channel. True if the agent answered.
   */
  async close(): Promise<boolean> {
    if (this.state !== "authenticated" || this.channel === undefined) {
      this.fail("closed locally")
      return false
    }
    this.finish("closed locally")
    this.channel.send(new Uint8Array([Wire.GOODBYE]))
    const answered = await Promise.race([
      this.goodbyeSignal.promise.then(() => true),
      new Promise<boolean>((timeout) => setTimeout(() => timeout(false), GOODBYE_TIMEOUT_MS))
    ])
    this.closeChannel()
    return answered
  }

  // ---- receiving -----------------------------------------------------------------------------

  private onOpen(): void {
    if (this.state !== "connecting") return
    this.state = "open"
    this.lastHeard = Date.now()
    this.heartbeatTimer = setInterval(() => this.heartbeat(), Math.max(10, Math.floor(this.params.heartbeatIntervalMs / 4)))
    const binding = this.params.binding()
    if (binding === undefined) return this.fail("the channel opened before both descriptions were known")
    const { identity, role } = this.params
    this.enqueue(async () => {
      const signature = await identity.sign(bindingBytes(binding, role))
      this.sendControl(Frame.make("AuthProof", { peerId: identity.peerId, publicKey: identity.publicKey, signature }))
      this.counters.authProofSent = true
    })
  }

  private enqueue(step: () => Promise<void> | void): void {
    this.inbound = this.inbound.then(step).catch((error: unknown) => this.fail(`internal error: ${String(error)}`))
  }

  private violation(reason: string): void {
    this.fail(`protocol violation: ${reason}`)
  }

  private onMessage(data: unknown): void {
    if (!(data instanceof ArrayBuffer)) return this.violation("text message on a binary channel")
    const bytes = new Uint8Array(data)
    if (this.state === "closed") {
      // after our GOODBYE only the agent's GOODBYE matters
      if (bytes.length === 1 && bytes[0] === Wire.GOODBYE) this.goodbyeSignal.resolve()
      return
    }
    this.lastHeard = Date.now()
    this.counters.messagesReceived++
    this.enqueue(() => this.handle(bytes))
  }

  private async handle(bytes: Uint8Array): Promise<void> {
    if (this.state === "closed") return
    const parsed = Wire.parse(bytes)
    if (Result.isFailure(parsed)) return this.violation(parsed.failure.detail)
    const message = parsed.success
    if (message._tag === "Goodbye") return this.onGoodbye()
    if (message._tag === "Control") return this.onControl(message.frame)
    if (this.state !== "authenticated") return this.violation("data before authentication")
    const accounted = this.window.received(message.payload.length)
    if (Result.isFailure(accounted)) return this.violation(accounted.failure.detail)
    const joined = this.reassembler.push(message.payload, message.last)
    if (Result.isFailure(joined)) return this.violation(joined.failure.detail)
    if (joined.success === undefined) return
    // a piece is a view of its message: copy, so the frame does not pin every message buffer
    const frame = new Uint8Array(joined.success)
    this.counters.framesReceived++
    this.counters.bytesReceived += frame.length
    if (this.frameWaiter !== undefined) {
      const waiter = this.frameWaiter
      this.frameWaiter = undefined
      this.consumed(frame)
      waiter.resolve(frame)
    } else {
      this.frames.push(frame)
    }
  }

  private onGoodbye(): void {
    const channel = this.channel
    if (!this.finish("closed by the peer")) return
    channel?.send(new Uint8Array([Wire.GOODBYE]))
    this.closeChannel()
  }

  private async onControl(bytes: Uint8Array): Promise<void> {
    const decoded = Frame.decode(bytes, MAX_CONTROL_FRAME_BYTES)
    if (Result.isFailure(decoded)) return this.violation(`bad control frame: ${decoded.failure._tag}`)
    const frame = decoded.success
    switch (frame._tag) {
      case "Ping":
        this.counters.pingsReceived++
        this.sendControl(Frame.make("Pong", { nonce: frame.message.nonce, sentAt: frame.message.sentAt }))
        this.counters.pongsSent++
        return
      case "Pong":
        this.counters.pongsReceived++
        this.counters.rttMillis = Date.now() - frame.message.sentAt
        return
      case "Credit":
        if (this.state !== "authenticated") return this.violation("credit before authentication")
        this.counters.peerAcceptedProof = true
        this.counters.creditReceivedBytes += frame.message.bytes
        this.credit.grant(frame.message.bytes)
        return this.flush()
      case "AuthProof":
        return this.onAuthProof(frame.message)
      default:
        return this.violation(`${frame._tag} frame sent as a control message`)
    }
  }

  private async onAuthProof(proof: { readonly peerId: string; readonly publicKey: Uint8Array; readonly signature: Uint8Array }): Promise<void> {
    if (this.state !== "open") return this.violation("a second AuthProof")
    const { remotePeer, role } = this.params
    const binding = this.params.binding()
    const remotePublicKey = this.params.remotePublicKey()
    if (binding === undefined || remotePublicKey === undefined) return this.violation("AuthProof before both descriptions were known")
    const remoteRole: Role = role === "offerer" ? "answerer" : "offerer"
    if (proof.peerId !== remotePeer) {
      return this.fail(`authentication failed: the channel proved ${proof.peerId}, expected ${remotePeer}`)
    }
    if (!equalBytes(proof.publicKey, remotePublicKey)) {
      return this.fail("authentication failed: the channel key differs from the key that signed the SDP")
    }
    if (!(await verifySignature(remotePeer, proof.publicKey, bindingBytes(binding, remoteRole), proof.signature))) {
      return this.fail("authentication failed: the channel binding signature does not verify")
    }
    if (this.state !== "open") return
    this.state = "authenticated"
    this.counters.remoteProofVerified = true
    this.grant(this.window.initialGrant())
    this.authenticatedSignal.resolve()
  }

  /** The next engine frame; its bytes are credited back to the agent as it is taken. */
  take(): Promise<Uint8Array> {
    const frame = this.frames.shift()
    if (frame !== undefined) {
      this.consumed(frame)
      return Promise.resolve(frame)
    }
    if (this.state === "closed") return Promise.reject(new Error(`link closed: ${this.reason}`))
    this.frameWaiter = deferred<Uint8Array>()
    return this.frameWaiter.promise
  }

  private consumed(frame: Uint8Array): void {
    const grant = this.window.consumed(frame.length)
    if (grant > 0 && this.state === "authenticated") this.grant(grant)
  }

  private grant(bytes: number): void {
    this.sendControl(Frame.make("Credit", { bytes }))
    this.counters.creditGrantedBytes += bytes
    this.counters.creditGrants++
  }

  // ---- sending -------------------------------------------------------------------------------

  /** Transport frames skip the credit: tiny, and they must never wait behind data. */
  private sendControl(frame: Frame.Frame): void {
    if (this.channel === undefined || this.channel.readyState !== "open") return
    const encoded = Frame.encode(frame)
    const message = new Uint8Array(Wire.KIND_BYTES + encoded.length)
    message[0] = Wire.CONTROL
    message.set(encoded, Wire.KIND_BYTES)
    this.channel.send(message)
  }

  /**
   * Send one engine frame once the agent's credit covers it. The page only sends small frames
   * (Hello, digests, wants, Done), so the channel's own buffer never needs watching here.
   */
  send(frame: Frame.Frame): Promise<void> {
    if (this.state !== "authenticated") return Promise.reject(new Error(`link closed: ${this.reason ?? "not authenticated"}`))
    const encoded = Frame.encode(frame)
    if (encoded.length > this.params.maxFrameBytes) return Promise.reject(new Error(`frame of ${encoded.length} bytes is too large`))
    const written = deferred<void>()
    this.outbox.push({ frame: encoded, written })
    this.flush()
    return written.promise
  }

  private flush(): void {
    while (this.state === "authenticated" && this.outbox.length > 0 && this.credit.tryUse(this.outbox[0]!.frame.length)) {
      const { frame, written } = this.outbox.shift()!
      let offset = 0
      do {
        const piece = Wire.writePiece(this.scratch, frame, offset)
        this.channel!.send(this.scratch.slice(0, piece.length))
        offset = piece.next
      } while (offset < frame.length)
      this.counters.framesSent++
      this.counters.bytesSent += frame.length
      written.resolve()
    }
  }

  // ---- heartbeat -----------------------------------------------------------------------------

  private heartbeat(): void {
    if (this.state !== "open" && this.state !== "authenticated") return
    const now = Date.now()
    const silent = now - this.lastHeard
    if (silent > this.params.heartbeatTimeoutMs) {
      return this.fail(`heartbeat timeout: nothing heard from the agent for ${silent} ms`)
    }
    if (now - this.lastPing >= this.params.heartbeatIntervalMs) {
      this.lastPing = now
      this.sendControl(Frame.make("Ping", { nonce: ++this.pingNonce, sentAt: now }))
      this.counters.pingsSent++
    }
  }
}
