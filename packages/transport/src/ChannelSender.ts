/**
 * The sending half of a ChannelLink: an engine frame is written as pieces no larger than a
 * message once the peer's credit covers it, pausing while the channel buffers more than the
 * high-water mark; control frames are written at once, ahead of any waiting data. The link owns
 * the state (open, closed, why); this holds what sending needs. No Node-only imports.
 */
import * as Effect from "effect/Effect"
import * as Semaphore from "effect/Semaphore"
import { Frame, LinkCloseReason } from "@can-sync/core"
import type { EncodedFrame, LinkClosed } from "@can-sync/core"
import * as Framing from "./ChannelFraming.ts"
import type { ControlFrame } from "./ChannelFraming.ts"
import { SendCredit } from "./FlowControl.ts"

/** What the sender needs of a data channel. */
export interface WritableChannel {
  /** Write one message; the bytes may be reused once it returns. Throws if the channel is gone. */
  readonly send: (message: Uint8Array) => void
  readonly bufferedAmount: () => number
}

/** The link the sender belongs to. */
export interface SenderHost {
  readonly channel: () => WritableChannel | undefined
  readonly isAuthenticated: () => boolean
  readonly isClosed: () => boolean
  /** Why the link closed (or "closed locally" if it has not yet). */
  readonly closedError: () => LinkClosed
  /** Close the link: a write failed, or we were about to break the protocol. */
  readonly fail: (reason: LinkCloseReason) => void
  readonly now: () => number
}

export interface SenderOptions {
  readonly maxMessageBytes: number
  readonly maxFrameBytes: number
  readonly highWaterBytes: number
}

const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error))

export class ChannelSender {
  private readonly host: SenderHost
  private readonly options: SenderOptions
  private readonly lock = Semaphore.makeUnsafe(1)
  private readonly credit = new SendCredit()
  /** Every data message is built here: the channel copies it synchronously when sending. */
  private readonly scratch: Uint8Array
  private creditWaiter: (() => void) | undefined
  private bufferWaiter: (() => void) | undefined
  /** Told whenever credit arrives, the channel drains or the link closes (a lane's striper listens). */
  progress: (() => void) | undefined
  framesSent = 0
  bytesSent = 0
  /** Time `send` spent waiting for the peer's credit (its consumer or the window is the limit). */
  creditWaitMillis = 0
  /** Time `send` spent waiting for the channel to drain (the network or the library is the limit). */
  bufferWaitMillis = 0

  constructor(host: SenderHost, options: SenderOptions) {
    this.host = host
    this.options = options
    this.scratch = new Uint8Array(options.maxMessageBytes)
  }

  /** Credit granted by the peer and not yet used. */
  get creditBytes(): number {
    return this.credit.bytes
  }

  /** The peer granted `bytes` more. */
  granted(bytes: number): void {
    this.credit.grant(bytes)
    this.creditWaiter?.()
    this.progress?.()
  }

  /** The channel drained to its low-water mark. */
  drained(): void {
    this.bufferWaiter?.()
    this.progress?.()
  }

  /** The link closed: every waiting send fails. */
  closed(): void {
    this.creditWaiter?.()
    this.bufferWaiter?.()
    this.progress?.()
  }

  /**
   * If a frame of `bytes` would be written at once (authenticated, credit for it, the channel
   * below its high-water mark), how loaded this channel is: the bytes it buffers plus those sent
   * and not yet taken by the peer (a lane still in slow start, or slowed by loss, holds more of
   * them); else undefined.
   */
  room(bytes: number): number | undefined {
    const channel = this.host.channel()
    if (channel === undefined || this.host.isClosed() || !this.host.isAuthenticated()) return undefined
    if (this.credit.bytes < bytes) return undefined
    const buffered = channel.bufferedAmount()
    return buffered <= this.options.highWaterBytes ? buffered + this.credit.inFlight : undefined
  }

  /** Write one message now (a full channel buffers it: that is not a failure); false if the link is gone. */
  write(message: Uint8Array): boolean {
    const channel = this.host.channel()
    if (this.host.isClosed() || channel === undefined) return false
    try {
      channel.send(message)
      return true
    } catch (error) {
      this.host.fail(LinkCloseReason.cases.ConnectionLost.make({ detail: `send failed: ${errorText(error)}` }))
      return false
    }
  }

  /** Write even though the link is logically closed (the GOODBYEs); errors mean it is gone anyway. */
  writeUnchecked(message: Uint8Array): void {
    try {
      this.host.channel()?.send(message)
    } catch {
      // the channel is already closed
    }
  }

  /** Control frames skip the credit and the send lock: they are tiny and must never wait behind data. */
  control(frame: ControlFrame): boolean {
    return this.write(Framing.control(frame))
  }

  /** Send one engine frame (given as parts that follow each other), in order with the others; fails once the link is closed. */
  readonly send = (frame: EncodedFrame): Effect.Effect<void, LinkClosed> =>
    this.lock.withPermit(
      Effect.suspend(() => {
        if (!this.host.isAuthenticated()) return Effect.fail(this.host.closedError())
        const limit = this.options.maxFrameBytes
        const bytes = Frame.byteLength(frame)
        if (bytes > limit) {
          this.host.fail(LinkCloseReason.cases.LinkProtocolViolation.make({
            detail: `we tried to send a frame of ${bytes} bytes, over the link limit of ${limit}`
          }))
          return Effect.fail(this.host.closedError())
        }
        return Effect.andThen(this.waitCredit(bytes), this.sendPieces(frame, bytes, 0))
      })
    )

  private waitCredit(bytes: number): Effect.Effect<void, LinkClosed> {
    if (!this.host.isClosed() && this.credit.tryUse(bytes)) return Effect.void
    return this.waitUntil("credit", () => this.credit.tryUse(bytes))
  }

  private sendPieces(frame: EncodedFrame, total: number, from: number): Effect.Effect<void, LinkClosed> {
    return Effect.suspend(() => {
      let offset = from
      do {
        const channel = this.host.channel()
        if (this.host.isClosed() || channel === undefined) return Effect.fail(this.host.closedError())
        if (channel.bufferedAmount() > this.options.highWaterBytes) {
          const resumeAt = offset
          return Effect.andThen(
            this.waitUntil("buffer", () => channel.bufferedAmount() <= this.options.highWaterBytes),
            this.sendPieces(frame, total, resumeAt)
          )
        }
        const piece = Framing.writePiece(this.scratch, frame, offset)
        if (!this.write(this.scratch.subarray(0, piece.length))) return Effect.fail(this.host.closedError())
        offset = piece.next
      } while (offset < total)
      this.framesSent++
      this.bytesSent += total
      return Effect.void
    })
  }

  /**
   * Suspends until `ready()` holds, checked now and each time the `which` waiter is woken (credit
   * granted, buffer drained), or fails once the link closes; the time spent is counted.
   */
  private waitUntil(which: "credit" | "buffer", ready: () => boolean): Effect.Effect<void, LinkClosed> {
    const since = this.host.now()
    const setWaiter = (waiter: (() => void) | undefined) => {
      if (which === "credit") this.creditWaiter = waiter
      else this.bufferWaiter = waiter
    }
    return Effect.callback<void, LinkClosed>((resume) => {
      const attempt = () => {
        if (this.host.isClosed()) {
          setWaiter(undefined)
          resume(Effect.fail(this.host.closedError()))
        } else if (ready()) {
          setWaiter(undefined)
          resume(Effect.void)
        }
      }
      setWaiter(attempt)
      attempt()
      return Effect.sync(() => setWaiter(undefined))
    }).pipe(Effect.ensuring(Effect.sync(() => {
      if (which === "credit") this.creditWaitMillis += this.host.now() - since
      else this.bufferWaitMillis += this.host.now() - since
    })))
  }
}
