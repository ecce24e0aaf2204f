/**
 * A lost index is not a lost store (issue 12): the content files name themselves by their SHA-256,
 * so a store whose `index.sqlite` went missing refuses to open as an empty store (which would show
 * nothing and, under `verify`, used to delete every content file as an orphan), and
 * `rebuildIndex` puts every whole content file back, with metadata any peer's real version beats.
 */
import { StoreUnavailable } from "@can-sync/core"
import type { AssetHash } from "@can-sync/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Stream } from "effect"
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import * as EmbeddedStore from "../src/EmbeddedStore.ts"
import { sha256, tempDir } from "./fixtures/stores.ts"

const bytes = (text: string) => new TextEncoder().encode(text)
const open = (dataDir: string, rebuildIndex?: boolean) =>
  EmbeddedStore.make({ dataDir, ...(rebuildIndex === undefined ? {} : { rebuildIndex }) })
const contentOf = (store: EmbeddedStore.EmbeddedStoreShape, hash: AssetHash) =>
  Stream.runCollect(store.read(hash)).pipe(Effect.map((chunks) => Buffer.concat(Array.from(chunks)).toString()))

/** A store with three assets whose index file is then deleted (every content file stays). */
const storeThatLostItsIndex = Effect.gen(function*() {
  const dir = yield* tempDir("can-index-loss-")
  const texts = ["first asset", "second asset", "third asset"]
  const hashes = yield* Effect.scoped(Effect.gen(function*() {
    const store = yield* open(dir)
    const out: Array<AssetHash> = []
    for (const text of texts) out.push((yield* store.ingest(Stream.make(bytes(text)), { description: text })).hash)
    return out
  }))
  yield* Effect.promise(async () => {
    for (const name of await readdir(dir)) if (name.startsWith("index.sqlite")) await rm(join(dir, name))
  })
  return { dir, texts, hashes }
})

describe("a store whose index is lost", () => {
  it.live("refuses to open as an empty store, says how to rebuild, and touches no content file", () =>
    Effect.gen(function*() {
      const { dir, hashes } = yield* storeThatLostItsIndex
      const error = yield* Effect.flip(Effect.scoped(open(dir)))
      assert.instanceOf(error, StoreUnavailable)
      assert.include(error.message, "index")
      assert.include(error.message, "can-sync verify --rebuild-index")
      assert.deepStrictEqual((yield* Effect.promise(() => readdir(dir))).filter((n) => n.startsWith("index")), [])
      for (const hash of hashes) {
        const shard = yield* Effect.promise(() => readdir(join(dir, "objects", hash.slice(0, 2))))
        assert.include(shard, hash)
      }
    }))

  it.live("rebuildIndex indexes every whole content file again; any real metadata version wins over the rebuilt one", () =>
    Effect.gen(function*() {
      const { dir, texts, hashes } = yield* storeThatLostItsIndex
      const store = yield* open(dir, true)
      assert.deepStrictEqual(yield* store.rebuildIndex, { indexed: 3, bytes: texts.join("").length, damaged: 0 })
      for (const [i, hash] of hashes.entries()) assert.strictEqual(yield* contentOf(store, hash), texts[i])
      assert.isTrue(Array.from(yield* Stream.runCollect(store.verify)).every((r) => r.ok))
      // The rebuilt metadata is version 0: a peer's version of the description, however old, replaces it.
      const rebuilt = Option.getOrThrow(yield* store.stat(hashes[0]!)).meta
      assert.strictEqual(rebuilt.updatedAt, 0)
      const peers = { ...rebuilt, description: texts[0]!, updatedAt: 1, origin: "a-peer" }
      const merged = yield* store.mergeMeta(hashes[0]!, peers, "a-peer")
      assert.isTrue(merged.applied)
      // Rebuilding again finds nothing more to do; the store now opens normally.
      assert.deepStrictEqual(yield* store.rebuildIndex, { indexed: 0, bytes: 0, damaged: 0 })
    }).pipe(Effect.scoped))

  it.live("rebuildIndex takes back whole content from quarantine/ and leaves damaged content there", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("can-index-quarantine-")
      const whole = sha256("set aside by verify")
      const damaged = sha256("what the name promises")
      yield* Effect.promise(async () => {
        await mkdir(join(dir, "quarantine"), { recursive: true })
        await writeFile(join(dir, "quarantine", whole), "set aside by verify")
        await writeFile(join(dir, "quarantine", damaged), "something else")
      })
      const store = yield* open(dir)
      assert.deepStrictEqual(yield* store.rebuildIndex, { indexed: 1, bytes: "set aside by verify".length, damaged: 1 })
      assert.strictEqual(yield* contentOf(store, whole), "set aside by verify")
      assert.deepStrictEqual(yield* Effect.promise(() => readdir(join(dir, "quarantine"))), [damaged])
      assert.strictEqual(yield* Effect.promise(() => readFile(join(dir, "quarantine", damaged), "utf8")), "something else")
    }).pipe(Effect.scoped))
})
