/**
 * Splitting frames into data-channel messages and joining them again, and the receive window's
 * accounting: pure logic, no network.
 */
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import { ReceiveWindow, SendCredit } from "../src/FlowControl.ts"
import * as Wire from "../src/ChannelFraming.ts"

const frameOf = (size: number) => Uint8Array.from({ length: size }, (_, i) => (i * 31 + 7) & 255)
const MAX_MESSAGE = 64 * 1024

describe("Wire", () => {
  it("splits frames into messages no larger than the limit and joins them byte for byte", () => {
    for (const size of [0, 1, MAX_MESSAGE - 2, MAX_MESSAGE - 1, MAX_MESSAGE, MAX_MESSAGE + 1, 3 * MAX_MESSAGE + 17, 1_000_000]) {
      const frame = frameOf(size)
      const messages = Wire.split(frame, MAX_MESSAGE)
      expect(messages.every((m) => m.length <= MAX_MESSAGE)).toBe(true)
      expect(messages.length).toBe(Math.max(1, Math.ceil(size / (MAX_MESSAGE - 1))))
      const joiner = new Wire.Reassembler(2_000_000)
      const out: Array<Uint8Array> = []
      for (const message of messages) {
        const parsed = Result.getOrThrow(Wire.parse(message))
        expect(parsed._tag).toBe("Piece")
        if (parsed._tag !== "Piece") continue
        const joined = Result.getOrThrow(joiner.push(parsed.payload, parsed.last))
        if (joined !== undefined) out.push(joined)
      }
      expect(out.length).toBe(1)
      expect(Buffer.from(out[0]!).equals(Buffer.from(frame))).toBe(true)
      expect(joiner.buffered).toBe(0)
    }
  })

  it("carries control frames whole, distinguishable from data pieces", () => {
    const parsed = Result.getOrThrow(Wire.parse(Wire.control(new Uint8Array([9, 0, 0, 0, 0]))))
    expect(parsed._tag).toBe("Control")
    expect(parsed._tag === "Control" && [...parsed.frame]).toEqual([9, 0, 0, 0, 0])
  })

  it("refuses a frame growing past the limit before buffering it", () => {
    const joiner = new Wire.Reassembler(100_000)
    const messages = Wire.split(frameOf(300_000), MAX_MESSAGE)
    let failure: string | undefined
    for (const message of messages) {
      const parsed = Result.getOrThrow(Wire.parse(message))
      if (parsed._tag !== "Piece") continue
      const r = joiner.push(parsed.payload, parsed.last)
      if (Result.isFailure(r)) {
        failure = r.failure.detail
        break
      }
    }
    expect(failure).toMatch(/exceeds the limit of 100000/)
    expect(joiner.buffered).toBeLessThanOrEqual(100_000)
  })

  it("refuses empty messages and unknown kinds", () => {
    expect(Result.isFailure(Wire.parse(new Uint8Array(0)))).toBe(true)
    const unknown = Wire.parse(new Uint8Array([7, 1, 2]))
    expect(Result.isFailure(unknown) && unknown.failure.detail).toMatch(/unknown message kind 0x7/)
  })
})

describe("Receive window", () => {
  it("holds at most one window of unconsumed bytes from a sender that respects its credit", () => {
    const window = new ReceiveWindow(1000)
    const credit = new SendCredit()
    credit.grant(window.initialGrant())
    let sent = 0
    // the sender sends 100-byte frames while it has credit; the consumer takes one frame per two sent
    const inFlight: Array<number> = []
    for (let step = 0; step < 1000; step++) {
      if (credit.tryUse(100)) {
        expect(Result.isSuccess(window.received(100))).toBe(true)
        inFlight.push(100)
        sent += 100
      }
      if (step % 2 === 0 && inFlight.length > 0) {
        const grant = window.consumed(inFlight.shift()!)
        if (grant > 0) credit.grant(grant)
      }
      expect(window.buffered).toBeLessThanOrEqual(1000)
    }
    expect(sent).toBeGreaterThan(10_000)
    expect(window.peakBuffered).toBeLessThanOrEqual(1000)
  })

  it("grants credit back in batches of an eighth of the window, not per frame", () => {
    const window = new ReceiveWindow(1000)
    window.initialGrant()
    window.received(600)
    expect(window.consumed(50)).toBe(0)
    expect(window.consumed(50)).toBe(0)
    expect(window.consumed(50)).toBe(150)
  })

  it("treats bytes beyond the granted credit as a protocol violation", () => {
    const window = new ReceiveWindow(1000)
    window.initialGrant()
    expect(Result.isSuccess(window.received(1000))).toBe(true)
    const over = window.received(1)
    expect(Result.isFailure(over) && over.failure.detail).toMatch(/1 bytes beyond the credit/)
  })

  it("cannot deadlock when frames are at most half a window", () => {
    // the worst case: a frame of half a window that does not fit the remaining credit
    const window = new ReceiveWindow(1000)
    const credit = new SendCredit()
    credit.grant(window.initialGrant())
    const frames = [300, 500, 500, 499, 500, 1, 500]
    const queued: Array<number> = []
    for (const size of frames) {
      while (!credit.tryUse(size)) {
        // blocked: the consumer drains; some grant must arrive before the queue is empty
        expect(queued.length).toBeGreaterThan(0)
        const grant = window.consumed(queued.shift()!)
        if (grant > 0) credit.grant(grant)
      }
      window.received(size)
      queued.push(size)
    }
  })
})
