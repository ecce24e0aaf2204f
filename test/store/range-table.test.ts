/**
 * The range fingerprint table saved in the index (`range_table`, issue 13 item 3): an open reads it
 * instead of scanning every row, catches up on the changes made since by any process, builds it
 * again by a scan when it is missing, of another format or far behind, and an index from before
 * the table (version 2) still opens, read-only too. Real SQLite files; the reference is a fresh
 * recomputation from the index's own digest list.
 */
import type { AssetHash } from "@can-sync/core"
import { LocalOrigin } from "@can-sync/core/Domain"
import * as Fingerprints from "@can-sync/core/Fingerprints"
import * as AssetIndex from "@can-sync/store/AssetIndex"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import { createHash } from "node:crypto"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { tempDir } from "../kit/Files.ts"

const hashOf = (seed: string) => createHash("sha256").update(seed).digest("hex") as AssetHash

const asset = (seed: string, at: number): AssetIndex.NewAsset => ({
  hash: hashOf(seed),
  size: seed.length,
  meta: { description: seed, tags: [], trashed: false, createdAt: at, updatedAt: at, origin: "store-x" }
})

const assets = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => asset(`${prefix} ${i}`, 1_000 + i))

/** Every 1- and 2-digit prefix, and the 4- and 5-digit prefixes of some items. */
const prefixesOf = (items: ReadonlyArray<{ readonly hash: string }>) => {
  const out = new Set<string>([""])
  for (let i = 0; i < 256; i++) {
    out.add(i.toString(16).padStart(2, "0"))
    if (i < 16) out.add(i.toString(16))
  }
  for (const { hash } of items.slice(0, 200)) for (const n of [4, 5]) out.add(hash.slice(0, n))
  return [...out]
}

const hex = (fp: Fingerprints.Fingerprint) => `${fp.count}:${Buffer.from(fp.sum).toString("hex")}`

/** The index's fingerprints equal a memory source over its digest list (absent content left out). */
const agrees = (index: AssetIndex.AssetIndex, what: string) =>
  Effect.gen(function*() {
    const digests = yield* index.digestsAfter(0, 1_000_000)
    const items = digests
      .map((d) => ({ hash: d.hash as string, size: d.size, updatedAt: d.updatedAt, origin: d.metaOrigin }))
      .sort((x, y) => (x.hash < y.hash ? -1 : x.hash > y.hash ? 1 : 0))
    const prefixes = prefixesOf(items)
    const expected = (yield* Fingerprints.memorySource(items).fingerprints(prefixes)).map(hex)
    const actual = (yield* index.ranges.fingerprints(prefixes)).map(hex)
    assert.deepStrictEqual(actual, expected, `fingerprints after ${what}`)
    return items.length
  })

/** The saved table's row, read with a separate connection (as another process would). */
const savedRow = (path: string) => {
  const db = new DatabaseSync(path, { readBigInts: true })
  try {
    const row = db.prepare("SELECT format, seq, state FROM range_table WHERE id = 1").get()
    return row === undefined ? undefined : { format: Number(row.format), seq: Number(row.seq), state: row.state as Uint8Array }
  } finally {
    db.close()
  }
}

const withDb = (path: string, body: (db: DatabaseSync) => void) =>
  Effect.sync(() => {
    const db = new DatabaseSync(path)
    try {
      body(db)
    } finally {
      db.close()
    }
  })

const withIndex = <A, E>(path: string, use: (index: AssetIndex.AssetIndex) => Effect.Effect<A, E>, options?: AssetIndex.OpenOptions) =>
  Effect.scoped(Effect.flatMap(AssetIndex.open(path, options), use))

describe("the range table saved in the index", () => {
  it.live("is saved once built; an open reads it instead of scanning, and catches up on changes made since", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir("range-table"), "index.sqlite")
      yield* withIndex(path, (index) =>
        Effect.gen(function*() {
          yield* index.insertMany(assets("a", 300), LocalOrigin, 1)
          assert.isUndefined(savedRow(path), "nothing saved before ranges are used")
          assert.strictEqual(yield* agrees(index, "the first build"), 300)
          const saved = savedRow(path)
          assert.deepStrictEqual([saved?.format, saved?.seq, saved?.state.length], [Fingerprints.TableFormat, yield* index.currentSeq, Fingerprints.EncodedTableBytes])
        }))

      // The saved table is what an open uses: a count changed in it by hand shows in the next open's fingerprint.
      const first = hashOf("a 0").slice(0, Fingerprints.BUCKET_DIGITS)
      const honest = savedRow(path)!
      const forged = new Uint8Array(honest.state)
      const bucket = Number.parseInt(first, 16)
      new DataView(forged.buffer).setUint32(4 * bucket, new DataView(forged.buffer).getUint32(4 * bucket, true) + 7, true)
      yield* withDb(path, (db) => db.prepare("UPDATE range_table SET state = ? WHERE id = 1").run(forged))
      yield* withIndex(path, (index) =>
        Effect.gen(function*() {
          const [whole] = yield* index.ranges.fingerprints([""])
          assert.strictEqual(whole!.count, 307, "the open read the saved table (no scan)")
        }))
      yield* withDb(path, (db) => db.prepare("UPDATE range_table SET state = ? WHERE id = 1").run(honest.state))

      // Changes by other writers after the save (inserts, an edit, content set aside) are caught up from the change table.
      yield* withIndex(path, (index) =>
        Effect.gen(function*() {
          yield* index.insertMany(assets("b", 40), LocalOrigin, 2)
          yield* index.updateMeta(hashOf("a 1"), (m) => Result.succeed({ ...m, description: "edited", updatedAt: m.updatedAt + 1 }), LocalOrigin, 3)
          yield* index.markAbsent(hashOf("a 2"), LocalOrigin, 4)
        }))
      yield* withIndex(path, (index) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* agrees(index, "a reopen after other writers' changes"), 339)
          // The first bucket's count is back to what the rows say (the forged 7 is gone with the honest table).
          const [bucketFp] = yield* index.ranges.fingerprints([first])
          assert.strictEqual(bucketFp!.count, (yield* index.ranges.items([first]))[0]!.length)
        }))
      // Closing saved the caught-up table.
      const closed = savedRow(path)!
      yield* withIndex(path, (index) => Effect.map(index.currentSeq, (seq) => assert.strictEqual(closed.seq, seq)))
    }).pipe(Effect.scoped), 60_000)

  it.live("a table of another format, or far behind (more than a quarter of the buckets changed), is built again by a scan", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir("range-table-stale"), "index.sqlite")
      yield* withIndex(path, (index) =>
        Effect.gen(function*() {
          yield* index.insertMany(assets("a", 100), LocalOrigin, 1)
          yield* agrees(index, "the first build")
        }))
      const before = savedRow(path)!
      // 40,000 inserts touch more than 16,384 of the 65,536 buckets.
      yield* withIndex(path, (index) => index.insertMany(assets("bulk", 40_000), LocalOrigin, 2))
      yield* withIndex(path, (index) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* agrees(index, "a bulk import by another writer"), 40_100)
        }))
      const after = savedRow(path)!
      assert.isAbove(after.seq, before.seq, "the rebuilt table is saved")

      yield* withDb(path, (db) => db.prepare("UPDATE range_table SET format = 999 WHERE id = 1").run())
      yield* withIndex(path, (index) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* agrees(index, "a saved table of another format"), 40_100)
        }))
      assert.strictEqual(savedRow(path)!.format, Fingerprints.TableFormat)
    }).pipe(Effect.scoped), 120_000)

  it.live("an index from before the table (version 2) opens read-only with the table built in memory, and a writable open adds it", () =>
    Effect.gen(function*() {
      const path = join(yield* tempDir("range-table-v2"), "index.sqlite")
      yield* withIndex(path, (index) => index.insertMany(assets("a", 50), LocalOrigin, 1))
      yield* withDb(path, (db) => {
        db.exec("DROP TABLE range_table")
        db.exec("PRAGMA user_version = 2")
      })
      yield* withIndex(path, (index) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* agrees(index, "a read-only open of a version-2 index"), 50)
        }), { readOnly: true })
      yield* withDb(path, (db) => {
        const version = db.prepare("PRAGMA user_version").get() as { user_version: number }
        assert.strictEqual(version.user_version, 2, "a read-only open writes nothing")
        assert.isUndefined(db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'range_table'").get())
      })
      yield* withIndex(path, (index) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* agrees(index, "the upgrade"), 50)
        }))
      assert.strictEqual(savedRow(path)?.format, Fingerprints.TableFormat)
      // A read-only open of the upgraded index reads the saved table.
      yield* withIndex(path, (index) => Effect.map(agrees(index, "a read-only open"), (n) => assert.strictEqual(n, 50)), { readOnly: true })
    }).pipe(Effect.scoped), 60_000)
})
