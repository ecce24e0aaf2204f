/**
 * Partials swept on their bounds (issue 13 item 2): the long-running writer's open (`lock`) drops
 * partials past their age, by checkpoint or, without one, by the file's mtime; a read-only open
 * drops nothing; and while the store stays open the sweep runs again every
 * `PartialSweepInterval` (Effect's TestClock drives the store's clock). Real store directories;
 * partials are written in the checkpoint format `Partials.ts` writes.
 */
import type { AssetHash } from "@can-sync/core"
import * as EmbeddedStore from "@can-sync/store/EmbeddedStore"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { TestClock } from "effect/testing"
import { createHash } from "node:crypto"
import { mkdir, readdir, utimes, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { tempDir } from "../kit/Files.ts"

const DAY = 24 * 3600 * 1000

const hashOf = (seed: string) => createHash("sha256").update(seed).digest("hex") as AssetHash

/** A partial of `bytes` bytes of `hash`, checkpointed at `updatedAt` (the format `Partials.checkpoint` writes). */
const leave = (dataDir: string, hash: AssetHash, bytes: number, updatedAt: number) =>
  Effect.promise(async () => {
    await mkdir(join(dataDir, "partial"), { recursive: true })
    await writeFile(join(dataDir, "partial", hash), new Uint8Array(bytes))
    await writeFile(join(dataDir, "partial", `${hash}.json`), JSON.stringify({ bytes, updatedAt, sources: [{ peer: "peer-a", from: 0, to: bytes }] }))
  })

/** A partial's bytes without a checkpoint (a crash before the first one), last written at `mtime`. */
const leaveUncheckpointed = (dataDir: string, hash: AssetHash, bytes: number, mtime: number) =>
  Effect.promise(async () => {
    await mkdir(join(dataDir, "partial"), { recursive: true })
    const path = join(dataDir, "partial", hash)
    await writeFile(path, new Uint8Array(bytes))
    await utimes(path, mtime / 1000, mtime / 1000)
  })

const filesIn = (dataDir: string) =>
  Effect.promise(() => readdir(join(dataDir, "partial")).then((names) => names.sort(), () => [] as Array<string>))

/** An empty store's directory, created as the CLI creates it. */
const storeDir = (prefix: string) =>
  Effect.gen(function*() {
    const dir = yield* tempDir(prefix)
    yield* Effect.scoped(EmbeddedStore.make({ dataDir: dir }))
    return dir
  })

/**
 * Waits in real time (the test's clock is TestClock) until `probe` holds, at most `deadline`
 * millis, failing with `what` and the last value seen.
 */
const untilReal = <A>(what: string, probe: Effect.Effect<A>, holds: (a: A) => boolean, deadline = 10_000) =>
  Effect.gen(function*() {
    const started = performance.now()
    while (true) {
      const seen = yield* probe
      if (holds(seen)) return seen
      if (performance.now() - started > deadline) return yield* Effect.die(new Error(`after ${deadline} ms still waiting for ${what}; last seen ${JSON.stringify(seen)}`))
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 25)))
    }
  })

describe("partials swept on their bounds", () => {
  it.live("the long-running writer's open drops partials past their age (by checkpoint, or by mtime without one); a read-only open drops nothing", () =>
    Effect.gen(function*() {
      const dir = yield* storeDir("partials-open")
      const now = Date.now()
      const [old, oldUncheckpointed, young] = [hashOf("old"), hashOf("old, no checkpoint"), hashOf("young")]
      yield* leave(dir, old, 3_000, now - 8 * DAY)
      yield* leaveUncheckpointed(dir, oldUncheckpointed, 2_000, now - 8 * DAY)
      yield* leave(dir, young, 5_000, now - 6 * DAY)
      const everything = [old, `${old}.json`, oldUncheckpointed, young, `${young}.json`].sort()

      yield* Effect.scoped(Effect.gen(function*() {
        const readOnly = yield* EmbeddedStore.make({ dataDir: dir, readOnly: true, lock: true })
        assert.strictEqual((yield* readOnly.partials).length, 3)
        assert.deepStrictEqual(yield* readOnly.sweepPartials, [], "a read-only store sweeps nothing")
      }))
      assert.deepStrictEqual(yield* filesIn(dir), everything)

      yield* Effect.scoped(Effect.gen(function*() {
        const agent = yield* EmbeddedStore.make({ dataDir: dir, lock: true })
        assert.deepStrictEqual((yield* agent.partials).map((p) => [p.hash, p.bytes]), [[young, 5_000]])
      }))
      assert.deepStrictEqual(yield* filesIn(dir), [young, `${young}.json`].sort())
    }).pipe(Effect.scoped))

  it.live("the count bound at open keeps the newest", () =>
    Effect.gen(function*() {
      const dir = yield* storeDir("partials-count")
      const now = Date.now()
      const hashes = [0, 1, 2].map((i) => hashOf(`partial ${i}`))
      for (const [i, hash] of hashes.entries()) yield* leave(dir, hash, 1_000, now - (3 - i) * 60_000)
      const agent = yield* EmbeddedStore.make({
        dataDir: dir,
        lock: true,
        partials: { maxCount: 2, maxBytes: 1024 ** 3, maxAge: Duration.days(7) }
      })
      assert.deepStrictEqual((yield* agent.partials).map((p) => p.hash).sort(), hashes.slice(1).sort())
    }).pipe(Effect.scoped))

  it.effect("while open, the long-running writer sweeps again every PartialSweepInterval (TestClock)", () =>
    Effect.gen(function*() {
      const start = Date.now()
      yield* TestClock.setTime(start)
      const dir = yield* storeDir("partials-hourly")
      const interval = Duration.toMillis(EmbeddedStore.PartialSweepInterval)
      // Seven days old minus half an interval: kept at open, past the age at the next sweep.
      const first = hashOf("first")
      yield* leave(dir, first, 4_000, start - 7 * DAY + interval / 2)
      const agent = yield* EmbeddedStore.make({ dataDir: dir, lock: true })
      const held = (hash: AssetHash) => agent.partial!(hash).pipe(Effect.orDie)
      assert.strictEqual(yield* held(first), 4_000, "kept by the open's sweep")

      yield* TestClock.adjust(EmbeddedStore.PartialSweepInterval)
      yield* untilReal("the sweep one interval after the open to drop the first partial", held(first), (bytes) => bytes === 0)

      // And again an interval later.
      const second = hashOf("second")
      yield* leave(dir, second, 6_000, start + interval - 7 * DAY + interval / 2)
      assert.strictEqual(yield* held(second), 6_000)
      yield* TestClock.adjust(EmbeddedStore.PartialSweepInterval)
      yield* untilReal("the sweep two intervals after the open to drop the second partial", held(second), (bytes) => bytes === 0)
      assert.deepStrictEqual(yield* filesIn(dir), [])
    }).pipe(Effect.scoped), 60_000)
})
