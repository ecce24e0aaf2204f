/**
 * Receive-side flow control. A data channel cannot slow its sender, so the receiver grants credit
 * (Credit frames, in bytes) as its consumer takes frames, and the sender sends only what it has
 * credit for. The receiver holds at most one window of unconsumed bytes; a sender exceeding its
 * credit is a protocol violation, so memory stays bounded whatever the peer does. Pure state.
 */
import * as Result from "effect/Result"
import { FramingViolation } from "./ChannelFraming.ts"

export class ReceiveWindow {
  readonly windowBytes: number
  /**
   * Grant credit back once this many consumed bytes have accumulated: an eighth of the window,
   * so credit returns early, yet at most a few grants per window.
   */
  private grantThreshold: number
  private grantedTotal = 0
  private receivedTotal = 0
  private consumedTotal = 0
  private ungranted = 0
  private peak = 0

  constructor(windowBytes: number) {
    this.windowBytes = windowBytes
    this.grantThreshold = Math.max(1, Math.floor(windowBytes / 8))
  }

  /**
   * Grant back after every frame the consumer takes: a lane of a striped link (Lanes.ts), whose
   * sender picks the lane by the bytes not yet given back, needs that count to be current; a slow
   * lane would otherwise look as loaded as a fast one until an eighth of its window was consumed.
   * Returns the credit to grant now (what was consumed and not yet given back).
   */
  grantEachFrame(): number {
    this.grantThreshold = 1
    return this.consumed(0)
  }

  /** The credit to grant when the link opens: one whole window. */
  initialGrant(): number {
    this.grantedTotal = this.windowBytes
    return this.windowBytes
  }

  /** Bytes of frames received but not yet taken by the consumer (whole or partial). */
  get buffered(): number {
    return this.receivedTotal - this.consumedTotal
  }

  /** The most `buffered` has ever been. */
  get peakBuffered(): number {
    return this.peak
  }

  /** Account for `bytes` of frame data that just arrived; refuses data beyond the credit granted. */
  received(bytes: number): Result.Result<void, FramingViolation> {
    this.receivedTotal += bytes
    if (this.receivedTotal > this.grantedTotal) {
      return Result.fail(
        new FramingViolation({
          detail: `peer sent ${this.receivedTotal - this.grantedTotal} bytes beyond the credit it was granted`
        })
      )
    }
    if (this.buffered > this.peak) this.peak = this.buffered
    return Result.void
  }

  /** The consumer took a frame of `bytes`; returns the credit to grant now (0: not yet). */
  consumed(bytes: number): number {
    this.consumedTotal += bytes
    this.ungranted += bytes
    if (this.ungranted < this.grantThreshold) return 0
    const grant = this.ungranted
    this.ungranted = 0
    this.grantedTotal += grant
    return grant
  }
}

/**
 * The sender's side: credit granted by the peer and not yet used. With frames at most half a
 * window, a blocked sender always has more than half a window outstanding at the receiver, which
 * is past the grant threshold (an eighth) once consumed: credit cannot deadlock.
 */
export class SendCredit {
  private available = 0
  private unreturned = 0

  get bytes(): number {
    return this.available
  }

  /**
   * Bytes sent that the peer has not yet given back as credit (its consumer has not taken them):
   * on a slow path they stay out longer.
   */
  get inFlight(): number {
    return this.unreturned
  }

  grant(bytes: number): void {
    this.available += bytes
    this.unreturned = Math.max(0, this.unreturned - bytes) // the first grant (the whole window) returns nothing
  }

  /** Use credit for a frame of `bytes` if there is enough; false means wait for a grant. */
  tryUse(bytes: number): boolean {
    if (this.available < bytes) return false
    this.available -= bytes
    this.unreturned += bytes
    return true
  }
}
