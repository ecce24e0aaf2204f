/**
 * The embedded store's write buffers, from effect's Pool: a pair per write in flight, reused by
 * the next write, and back in the pool once a write ends — also one interrupted mid-file, whose
 * temp file is gone too. Promotion: a staged file moves into its shard (made when missing), and
 * a temp file never promoted is removed. Real files in a temp dir.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Pool, Stream } from "effect"
import { readdir, readFile, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import * as ContentFiles from "../src/ContentFiles.ts"
import { pseudoRandomChunks } from "./fixtures/pseudoRandom.ts"
import { sha256, tempDir } from "./fixtures/stores.ts"

const encoder = new TextEncoder()

const prepared = Effect.gen(function*() {
  const layout = ContentFiles.layout(yield* tempDir("can-content-files-"))
  yield* ContentFiles.prepare(layout)
  const buffers = yield* ContentFiles.writeBuffers
  return { layout, buffers }
})

describe("ContentFiles write buffers", () => {
  it.live("sequential writes reuse one buffer pair, and each is back once its write ends", () =>
    Effect.gen(function*() {
      const { layout, buffers } = yield* prepared
      for (let i = 0; i < 10; i++) {
        const text = `asset ${i}`
        const staged = yield* Effect.scoped(
          ContentFiles.stage(layout, buffers, Stream.make(encoder.encode(text)), undefined)
        )
        assert.strictEqual(staged.hash, sha256(text))
      }
      const stats = yield* Pool.stats(buffers)
      assert.deepStrictEqual({ idle: stats.idle, used: stats.used }, { idle: 1, used: 0 })
    }))

  it.live("concurrent writes hold a pair each", () =>
    Effect.gen(function*() {
      const { layout, buffers } = yield* prepared
      const held = yield* Effect.forEach([0, 1, 2], (i) =>
        Effect.forkChild(Effect.scoped(
          // each stream stays open until interrupted, so all three writes are in flight at once
          ContentFiles.stage(layout, buffers, Stream.concat(Stream.make(encoder.encode(`w${i}`)), Stream.never), undefined)
        )))
      let stats = yield* Pool.stats(buffers)
      for (let i = 0; i < 500 && stats.used < 3; i++) {
        yield* Effect.sleep("10 millis")
        stats = yield* Pool.stats(buffers)
      }
      assert.strictEqual(stats.used, 3, "three writes in flight hold three pairs")
      yield* Effect.forEach(held, Fiber.interrupt, { discard: true })
      const after = yield* Pool.stats(buffers)
      assert.deepStrictEqual({ idle: after.idle, used: after.used }, { idle: 3, used: 0 })
      assert.deepStrictEqual(yield* Effect.promise(() => readdir(layout.tmp)), [])
    }))

  it.live("a file stage interrupted mid-file returns its pair and leaves no temp file", () =>
    Effect.gen(function*() {
      const { layout, buffers } = yield* prepared
      const source = join(layout.root, "source.bin")
      yield* Effect.promise(() => writeFile(source, Buffer.concat(Array.from(pseudoRandomChunks("big", 48 * 1024 * 1024)))))
      const staging = yield* Effect.forkChild(Effect.scoped(
        ContentFiles.stageFile(layout, buffers, source, undefined, (error) => error)
      ))
      // interrupted once its temp file exists: reading and writing are under way
      let started = false
      for (let i = 0; i < 5000 && !started; i++) {
        started = (yield* Effect.promise(() => readdir(layout.tmp))).length > 0
        if (!started) yield* Effect.sleep("1 millis")
      }
      assert.isTrue(started, "the temp file appeared within 5 s")
      yield* Fiber.interrupt(staging)
      const stats = yield* Pool.stats(buffers)
      assert.deepStrictEqual({ idle: stats.idle, used: stats.used }, { idle: 1, used: 0 })
      assert.deepStrictEqual(yield* Effect.promise(() => readdir(layout.tmp)), [])
    }))
})

describe("ContentFiles promote", () => {
  const stageText = (layout: ContentFiles.Layout, buffers: ContentFiles.WriteBuffers, text: string) =>
    ContentFiles.stage(layout, buffers, Stream.make(encoder.encode(text)), undefined)

  it.live("a promoted file is in place once its scope closes; one never promoted is removed", () =>
    Effect.gen(function*() {
      const { layout, buffers } = yield* prepared
      const kept = yield* Effect.scoped(Effect.tap(stageText(layout, buffers, "kept"), (staged) => ContentFiles.promote(layout, staged)))
      const dropped = yield* Effect.scoped(stageText(layout, buffers, "dropped"))
      assert.strictEqual(yield* Effect.promise(() => readFile(ContentFiles.objectPath(layout, kept.hash), "utf8")), "kept")
      assert.isFalse(yield* ContentFiles.present(layout, dropped.hash, dropped.size))
      assert.deepStrictEqual(yield* Effect.promise(() => readdir(layout.tmp)), [])
    }))

  it.live("a shard directory that went missing is made again by the next promote into it", () =>
    Effect.gen(function*() {
      const { layout, buffers } = yield* prepared
      const first = yield* Effect.scoped(Effect.tap(stageText(layout, buffers, "same"), (staged) => ContentFiles.promote(layout, staged)))
      yield* Effect.promise(() => rm(ContentFiles.shardDir(layout, first.hash), { recursive: true }))
      assert.isFalse(yield* ContentFiles.present(layout, first.hash, first.size))
      yield* Effect.scoped(Effect.tap(stageText(layout, buffers, "same"), (staged) => ContentFiles.promote(layout, staged)))
      assert.isTrue(yield* ContentFiles.present(layout, first.hash, first.size))
      assert.deepStrictEqual(yield* Effect.promise(() => readdir(layout.tmp)), [])
    }))
})
