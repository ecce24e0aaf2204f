/**
 * Metadata at the edge of its range never breaks a store (issue 12, item 1): a row holding an
 * integer past 2^53 or a REAL timestamp (written by an older version, or by hand) still reads, so
 * one bad row cannot stop `ls`, `verify` or sync; and values out of the bounded range are refused
 * at the store's door (local edits, a peer's push and merge), so no such row is written again.
 */
import type { AssetHash, AssetMeta } from "@can-sync/core"
import { MetadataLimits } from "@can-sync/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Stream } from "effect"
import { DatabaseSync } from "node:sqlite"
import { join } from "node:path"
import * as EmbeddedStore from "../src/EmbeddedStore.ts"
import { tempDir } from "./fixtures/stores.ts"

const bytes = (text: string) => new TextEncoder().encode(text)

/** Writes straight into the index of a closed store, as another program (or an old version) could. */
const rawUpdate = (dataDir: string, sql: string, ...values: Array<string | number | bigint>) =>
  Effect.sync(() => {
    const db = new DatabaseSync(join(dataDir, "index.sqlite"))
    try {
      db.prepare(sql).run(...values)
    } finally {
      db.close()
    }
  })

/** A store holding one asset (closed again), its directory and the asset's hash. */
const storeWithOneAsset = Effect.gen(function*() {
  const dataDir = yield* tempDir("can-meta-bounds-")
  const hash = yield* Effect.scoped(Effect.gen(function*() {
    const store = yield* EmbeddedStore.make({ dataDir })
    return (yield* store.ingest(Stream.make(bytes("edge of range")), { description: "x" })).hash
  }))
  return { dataDir, hash }
})

/** Everything a reader does with a store: list, stat, the event log, verify. */
const readEverything = (store: EmbeddedStore.EmbeddedStoreShape, hash: AssetHash) =>
  Effect.gen(function*() {
    const page = yield* store.list()
    const record = yield* store.stat(hash)
    const events = yield* Stream.runCollect(store.events({ since: 0 }).pipe(Stream.take(1)))
    const verified = yield* Stream.runCollect(store.verify)
    return { page, record: Option.getOrThrow(record), events, verified }
  })

describe("metadata at the edge of its range", () => {
  it.live("an integer past 2^53 in the index reads as a number: list, stat, events and verify all work", () =>
    Effect.gen(function*() {
      const { dataDir, hash } = yield* storeWithOneAsset
      yield* rawUpdate(dataDir, "UPDATE assets SET updated_at = ?, created_at = ? WHERE hash = ?", 2n ** 60n, 2n ** 62n, hash)
      yield* rawUpdate(dataDir, "UPDATE changes SET at = ?", 2n ** 63n - 1n)
      const read = yield* Effect.scoped(Effect.flatMap(EmbeddedStore.make({ dataDir }), (store) => readEverything(store, hash)))
      assert.deepStrictEqual(read.page.digests.map((d) => d.hash), [hash])
      assert.isTrue(Number.isSafeInteger(read.record.meta.updatedAt))
      assert.isTrue(Number.isSafeInteger(read.record.meta.createdAt))
      assert.strictEqual(read.events.length, 1)
      assert.deepStrictEqual(read.verified.map((v) => v.ok), [true])
    }))

  it.live("a REAL or non-finite timestamp in the index reads as a number and a local edit still moves the version", () =>
    Effect.gen(function*() {
      const { dataDir, hash } = yield* storeWithOneAsset
      yield* rawUpdate(dataDir, "UPDATE assets SET updated_at = ? WHERE hash = ?", 1.5e300, hash)
      yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* EmbeddedStore.make({ dataDir })
        const before = Option.getOrThrow(yield* store.stat(hash)).meta
        assert.isTrue(Number.isSafeInteger(before.updatedAt))
        const edited = yield* store.editMeta(hash, { description: "after" })
        assert.isTrue(Number.isSafeInteger(edited.updatedAt))
        assert.strictEqual(Option.getOrThrow(yield* store.stat(hash)).meta.description, "after")
      }))
    }))

  it.live("out-of-range or oversized metadata is refused at every entry (edit, ingest, a peer's push and merge) and nothing is written", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("can-meta-refused-")
      const store = yield* EmbeddedStore.make({ dataDir })
      const { hash } = yield* store.ingest(Stream.make(bytes("honest")), { description: "honest" })
      const honest = Option.getOrThrow(yield* store.stat(hash))
      const seq = yield* store.currentSeq
      const peerMeta = (patch: Partial<AssetMeta>): AssetMeta => ({ ...honest.meta, origin: "peer-b", ...patch })
      const refusals = [
        ["merge updatedAt 2^53-1", store.mergeMeta(hash, peerMeta({ updatedAt: Number.MAX_SAFE_INTEGER }), "peer-b")],
        ["merge updatedAt 1.5e300", store.mergeMeta(hash, peerMeta({ updatedAt: 1.5e300 }), "peer-b")],
        ["merge createdAt 8.64e15+1", store.mergeMeta(hash, peerMeta({ createdAt: MetadataLimits.maxTimestamp + 1, updatedAt: Date.now() + 1000 }), "peer-b")],
        ["merge fractional updatedAt", store.mergeMeta(hash, peerMeta({ updatedAt: Date.now() + 0.5 }), "peer-b")],
        ["push 600 KB description", store.push(hash, Stream.make(bytes("honest")), peerMeta({ description: "d".repeat(600_000), updatedAt: Date.now() + 1000 }), "peer-b")],
        ["push a new asset with a 600 KB tag", store.push("0".repeat(64) as AssetHash, Stream.make(bytes("x")), peerMeta({ tags: ["t".repeat(600_000)] }), "peer-b")],
        ["edit 40 KB description", store.editMeta(hash, { description: "d".repeat(40_000) })],
        ["edit 129 tags", store.editMeta(hash, { tags: Array.from({ length: 129 }, (_, i) => `t${i}`) })],
        ["ingest with a 300-byte tag", store.ingest(Stream.make(bytes("new content")), { tags: ["t".repeat(300)] })]
      ] as const
      for (const [what, attempt] of refusals) {
        const failure = yield* Effect.flip(attempt as Effect.Effect<unknown, { readonly _tag: string; readonly message: string }>)
        assert.strictEqual(failure._tag, "InvalidInput", what)
        assert.match(failure.message, /^invalid metadata \(/, what)
      }
      // the total bound: each part within its own limit, together over it
      yield* store.editMeta(hash, { description: "d".repeat(MetadataLimits.maxDescriptionBytes) })
      const total = yield* Effect.flip(store.editMeta(hash, { tags: Array.from({ length: 128 }, (_, i) => `${i}`.padEnd(256, "t")) }))
      assert.strictEqual(total._tag, "InvalidInput")
      assert.match(total.message, /^invalid metadata \(total\)/)
      // nothing but the one valid edit was written; the unknown asset was not stored
      assert.strictEqual(yield* store.currentSeq, seq + 1)
      assert.isFalse(yield* store.has("0".repeat(64) as AssetHash))
      assert.deepStrictEqual((yield* store.list()).digests.map((d) => d.hash), [hash])
    }))

  it.live("a local edit of a version at the ceiling stays at the ceiling, an exact integer", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("can-meta-ceiling-")
      const store = yield* EmbeddedStore.make({ dataDir })
      const { hash } = yield* store.ingest(Stream.make(bytes("ceiling")))
      const current = Option.getOrThrow(yield* store.stat(hash)).meta
      const merged = yield* store.mergeMeta(hash, { ...current, updatedAt: MetadataLimits.maxTimestamp, origin: "peer-b" }, "peer-b")
      assert.isTrue(merged.applied)
      const edited = yield* store.editMeta(hash, { description: "still editable" })
      assert.strictEqual(edited.updatedAt, MetadataLimits.maxTimestamp)
      assert.strictEqual(Option.getOrThrow(yield* store.stat(hash)).meta.description, "still editable")
    }))
})
