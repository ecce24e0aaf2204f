/**
 * Splitting frames into data-channel messages and joining them again, and the receive window's
 * accounting: pure logic, no network.
 */
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import { ReceiveWindow, SendCredit } from "../src/FlowControl.ts"
import * as Framing from "../src/ChannelFraming.ts"

const frameOf = (size: number) => Uint8Array.from({ length: size }, (_, i) => (i * 31 + 7) & 255)
const MAX_MESSAGE = 64 * 1024

describe("ChannelFraming", () => {
  it("splits frames into messages no larger than the limit and joins them byte for byte", () => {
    for (const size of [0, 1, MAX_MESSAGE - 2, MAX_MESSAGE - 1, MAX_MESSAGE, MAX_MESSAGE + 1, 3 * MAX_MESSAGE + 17, 1_000_000]) {
      const frame = frameOf(size)
      const messages = Framing.split(frame, MAX_MESSAGE)
      expect(messages.every((m) => m.length <= MAX_MESSAGE)).toBe(true)
      expect(messages.length).toBe(Math.max(1, Math.ceil(size / (MAX_MESSAGE - 1))))
      const joiner = new Framing.Reassembler(2_000_000)
      const out: Array<Uint8Array> = []
      for (const message of messages) {
        const parsed = Result.getOrThrow(Framing.parse(message))
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

  it("carries control frames whole, distinguishable from data pieces, in the engine frame layout", () => {
    const message = Framing.control({ _tag: "Credit", message: { bytes: 0 } })
    expect([...message]).toEqual([Framing.CONTROL, 0x09, 0, 0, 0, 0])
    const parsed = Result.getOrThrow(Framing.parse(message))
    expect(parsed._tag).toBe("Control")
    expect(parsed._tag === "Control" && [...parsed.frame]).toEqual([0x09, 0, 0, 0, 0])
  })

  it("encodes and decodes every control frame, and refuses broken ones", () => {
    const frames: ReadonlyArray<Framing.ControlFrame> = [
      { _tag: "Credit", message: { bytes: 16 * 1024 * 1024 } },
      { _tag: "Ping", message: { nonce: 7, sentAt: 1_700_000_000_000 } },
      { _tag: "Pong", message: { nonce: 7, sentAt: 1_700_000_000_000 } },
      { _tag: "AuthProof", message: { peerId: "a".repeat(32), publicKey: new Uint8Array(32).fill(1), signature: new Uint8Array(64).fill(2) } }
    ]
    for (const frame of frames) {
      const parsed = Result.getOrThrow(Framing.parse(Framing.control(frame)))
      expect(parsed._tag === "Control" && Result.getOrThrow(Framing.decodeControl(parsed.frame))).toEqual(frame)
    }
    const refusal = (body: Array<number>) => Result.match(Framing.decodeControl(new Uint8Array(body)), { onSuccess: () => "", onFailure: (e) => e.detail })
    expect(refusal([0x01, 0, 0, 0, 0])).toBe("bad control frame: unknown type 0x1")
    expect(refusal([0x09, 0, 0, 0])).toBe("bad control frame: truncated")
    expect(refusal([0x09, 0, 0, 0, 5, 8])).toBe("bad control frame: Credit length 5 does not match")
    expect(refusal([0x09, 0, 0, 0, 1, 0xff])).toMatch(/^bad control frame: Credit: /)
    expect(refusal([0x0c, ...new Array(5000).fill(0)])).toBe("bad control frame: 5001 bytes, over 4096")
  })

  it("refuses a frame growing past the limit before buffering it", () => {
    const joiner = new Framing.Reassembler(100_000)
    const messages = Framing.split(frameOf(300_000), MAX_MESSAGE)
    let failure: string | undefined
    for (const message of messages) {
      const parsed = Result.getOrThrow(Framing.parse(message))
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
    expect(Result.isFailure(Framing.parse(new Uint8Array(0)))).toBe(true)
    const unknown = Framing.parse(new Uint8Array([7, 1, 2]))
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
