/**
 * RateLimit: the token bucket on the TestClock (what passes at once, what waits and for how long,
 * debt from a frame larger than the burst), the per-peer and agent buckets a link passes through,
 * and the rate syntax of --max-send-rate / --max-recv-rate.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/testing/TestClock"
import { parseRate, tokenBucket } from "../src/RateLimit.ts"

describe("RateLimit", () => {
  it.effect("a bucket lets its burst pass at once, then holds takers to its rate, in turn", () =>
    Effect.gen(function*() {
      const bucket = tokenBucket(1_000_000) // burst: 100,000 bytes (0.1 s)
      yield* bucket.take(100_000) // the burst: no wait
      const next = yield* Effect.forkChild(bucket.take(1))
      const after = yield* Effect.forkChild(bucket.take(1))
      yield* TestClock.adjust("1 millis")
      // the first taker finds the bucket empty but not in debt: it passes (1 byte owed); the second
      // waits its turn and that byte's microsecond
      expect(next.pollUnsafe()).toBeDefined()
      yield* Fiber.join(after)
    }))

  it.effect("a frame larger than the burst passes into debt, which the next taker waits out", () =>
    Effect.gen(function*() {
      const bucket = tokenBucket(100_000) // burst: 65,536 (the floor)
      yield* bucket.take(300_000) // into debt: 65,536 - 300,000
      const next = yield* Effect.forkChild(bucket.take(1))
      yield* TestClock.adjust("2300 millis")
      expect(next.pollUnsafe()).toBeUndefined() // still owes about 464 bytes' worth (4.6 ms)
      yield* TestClock.adjust("50 millis")
      expect(next.pollUnsafe()).toBeDefined()
    }))

  it.effect("over a long run a bucket passes its rate, not more", () =>
    Effect.gen(function*() {
      const bucket = tokenBucket(1_000_000)
      let passed = 0
      const taker = yield* Effect.forkChild(Effect.forever(Effect.andThen(bucket.take(64 * 1024), Effect.sync(() => {
        passed += 64 * 1024
      }))))
      for (let i = 0; i < 300; i++) yield* TestClock.adjust("100 millis")
      yield* Fiber.interrupt(taker)
      // 30 s at 1 MB/s, plus the burst and one frame
      expect(passed).toBeGreaterThanOrEqual(30_000_000)
      expect(passed).toBeLessThanOrEqual(30_000_000 + 100_000 + 2 * 64 * 1024)
    }))

  it("reads rates with and without units", () => {
    expect(parseRate("10MB/s")).toBe(10_000_000)
    expect(parseRate("10 MB/s")).toBe(10_000_000)
    expect(parseRate("512KiB/s")).toBe(524_288)
    expect(parseRate("2.5mb")).toBe(2_500_000)
    expect(parseRate("1GiB/s")).toBe(1024 ** 3)
    expect(parseRate("1000000")).toBe(1_000_000)
    expect(parseRate("0")).toBeUndefined()
    expect(parseRate("-1MB/s")).toBeUndefined()
    expect(parseRate("10 Mbit/s")).toBeUndefined()
    expect(parseRate("fast")).toBeUndefined()
    expect(parseRate("")).toBeUndefined()
  })
})
