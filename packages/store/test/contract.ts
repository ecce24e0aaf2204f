/**
 * The CanStore contract: behaviour every CanStore implementation must show, written against the
 * `CanStoreShape` API only, so the embedded store and the HTTP client run the very same suite.
 * `makeStore` must give a fresh, empty store each time it runs (it runs once per test, in the
 * test's scope).
 */
import type { AssetHash, AssetMeta, CanStoreShape, StoreEvent } from "@can-sync/core"
import { LocalOrigin } from "@can-sync/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Option, Stream } from "effect"
import type { Scope } from "effect"
import { createHash, randomBytes } from "node:crypto"

const encoder = new TextEncoder()
const bytes = (text: string): Uint8Array => encoder.encode(text)
const sha256 = (data: Uint8Array): AssetHash => createHash("sha256").update(data).digest("hex") as AssetHash

/** `data` as a stream of chunks of at most `chunkSize` bytes. */
const chunked = (data: Uint8Array, chunkSize = 7): Stream.Stream<Uint8Array> =>
  Stream.fromIterable(Array.from({ length: Math.ceil(data.byteLength / chunkSize) }, (_, i) =>
    data.subarray(i * chunkSize, Math.min((i + 1) * chunkSize, data.byteLength))))

const readAll = (store: CanStoreShape, hash: AssetHash) =>
  Stream.runCollect(store.read(hash)).pipe(Effect.map((chunks) => Buffer.concat(Array.from(chunks))))

/** The first `n` events of a stream, failing the test rather than hanging when they never come. */
const takeEvents = (events: Stream.Stream<StoreEvent, unknown>, n: number) =>
  events.pipe(Stream.take(n), Stream.runCollect, Effect.map((chunk) => Array.from(chunk)), Effect.timeout("15 seconds"))

const peerMeta = (overrides: Partial<AssetMeta> = {}): AssetMeta => ({
  description: "from a peer",
  tags: ["peer"],
  trashed: false,
  createdAt: 1_000,
  updatedAt: 2_000,
  origin: "peer-store",
  ...overrides
})

const PeerId = "peer-a"

export const canStoreContract = (
  name: string,
  makeStore: Effect.Effect<CanStoreShape, unknown, Scope.Scope>
): void => {
  describe(name, () => {
    it.live("ingest stores content under its sha256; has, stat and read return it", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const content = bytes("the quick brown fox jumps over the lazy dog")
        const result = yield* store.ingest(chunked(content), { description: "fox", tags: ["a", "b"] })
        assert.strictEqual(result.hash, sha256(content))
        assert.strictEqual(result.size, content.byteLength)
        assert.isFalse(result.alreadyExisted)
        assert.isTrue(yield* store.has(result.hash))
        const record = Option.getOrThrow(yield* store.stat(result.hash))
        assert.strictEqual(record.hash, result.hash)
        assert.strictEqual(record.size, content.byteLength)
        assert.strictEqual(record.meta.description, "fox")
        assert.deepStrictEqual(record.meta.tags, ["a", "b"])
        assert.isFalse(record.meta.trashed)
        assert.strictEqual(record.meta.origin, store.storeId)
        assert.strictEqual(record.meta.createdAt, record.meta.updatedAt)
        assert.deepStrictEqual(new Uint8Array(yield* readAll(store, result.hash)), content)
      }))

    it.live("an empty asset is a valid asset", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const result = yield* store.ingest(Stream.empty)
        assert.strictEqual(result.hash, sha256(new Uint8Array(0)))
        assert.strictEqual(result.size, 0)
        assert.strictEqual((yield* readAll(store, result.hash)).byteLength, 0)
      }))

    it.live("ingesting the same content again stores it once and reports alreadyExisted", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const content = bytes("idempotent")
        const first = yield* store.ingest(chunked(content))
        const seq = yield* store.currentSeq
        const second = yield* store.ingest(chunked(content, 3))
        assert.isFalse(first.alreadyExisted)
        assert.isTrue(second.alreadyExisted)
        assert.strictEqual(second.hash, first.hash)
        assert.strictEqual(second.size, first.size)
        assert.strictEqual(yield* store.currentSeq, seq, "no new change for content already present")
        assert.strictEqual((yield* store.list()).digests.length, 1)
      }))

    it.live("re-ingesting existing content with a description or tags edits its metadata", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const content = bytes("described later")
        const { hash } = yield* store.ingest(chunked(content))
        const before = Option.getOrThrow(yield* store.stat(hash)).meta
        const again = yield* store.ingest(chunked(content), { description: "now described", tags: ["late"] })
        assert.isTrue(again.alreadyExisted)
        const after = Option.getOrThrow(yield* store.stat(hash)).meta
        assert.strictEqual(after.description, "now described")
        assert.deepStrictEqual(after.tags, ["late"])
        assert.isAbove(after.updatedAt, before.updatedAt)
        assert.strictEqual(after.createdAt, before.createdAt)
      }))

    it.live("concurrent ingests of the same content store it once", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const content = randomBytes(300_000)
        const results = yield* Effect.all(
          Array.from({ length: 4 }, () => store.ingest(chunked(content, 16_384))),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(results.filter((r) => !r.alreadyExisted).length, 1)
        for (const r of results) assert.strictEqual(r.hash, sha256(content))
        assert.strictEqual((yield* store.list()).digests.length, 1)
        assert.deepStrictEqual(yield* readAll(store, sha256(content)), Buffer.from(content))
      }))

    it.live("an ingest whose content differs from expectedHash fails with HashMismatch and stores nothing", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const content = bytes("actual content")
        const claimed = sha256(bytes("claimed content"))
        const error = yield* Effect.flip(store.ingest(chunked(content), { expectedHash: claimed }))
        assert.strictEqual(error._tag, "HashMismatch")
        if (error._tag === "HashMismatch") {
          assert.strictEqual(error.expected, claimed)
          assert.strictEqual(error.actual, sha256(content))
        }
        assert.isFalse(yield* store.has(sha256(content)))
        assert.isFalse(yield* store.has(claimed))
        assert.strictEqual(yield* store.currentSeq, 0)
        const ok = yield* store.ingest(chunked(content), { expectedHash: sha256(content) })
        assert.isFalse(ok.alreadyExisted, "the refused attempt left nothing behind")
      }))

    it.live("list pages through every asset in sequence order with since, limit, next and done", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const empty = yield* store.list()
        assert.deepStrictEqual(empty, { digests: [], next: 0, done: true })
        const hashes: Array<AssetHash> = []
        for (let i = 0; i < 5; i++) hashes.push((yield* store.ingest(chunked(bytes(`asset ${i}`)))).hash)

        const pages: Array<{ hashes: Array<string>; next: number; done: boolean }> = []
        let since = 0
        for (let guard = 0; guard < 10; guard++) {
          const page = yield* store.list({ since, limit: 2 })
          pages.push({ hashes: page.digests.map((d) => d.hash), next: page.next, done: page.done })
          if (page.digests.length > 0) assert.strictEqual(page.next, page.digests.at(-1)!.seq)
          since = page.next
          if (page.done) break
        }
        assert.deepStrictEqual(pages.map((p) => p.hashes.length), [2, 2, 1])
        assert.deepStrictEqual(pages.map((p) => p.done), [false, false, true])
        assert.deepStrictEqual(pages.flatMap((p) => p.hashes), hashes)

        const all = yield* store.list({ limit: 5 })
        assert.isTrue(all.done, "a page that holds the last digest is done")
        const seqs = all.digests.map((d) => d.seq)
        assert.deepStrictEqual(seqs, [...seqs].sort((a, b) => a - b))
        assert.strictEqual(new Set(seqs).size, seqs.length)
        assert.strictEqual(all.next, yield* store.currentSeq)
        for (const digest of all.digests) {
          const record = Option.getOrThrow(yield* store.stat(digest.hash))
          assert.strictEqual(digest.size, record.size)
          assert.strictEqual(digest.createdAt, record.meta.createdAt)
          assert.strictEqual(digest.updatedAt, record.meta.updatedAt)
          assert.strictEqual(digest.metaOrigin, record.meta.origin)
          assert.strictEqual(digest.seq, record.seq)
        }
        const past = yield* store.list({ since: all.next })
        assert.deepStrictEqual(past, { digests: [], next: all.next, done: true })
      }))

    it.live("list({since}) returns exactly the assets changed after since, metadata changes included", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const [a, b, c] = yield* Effect.forEach(["a", "b", "c"], (s) => store.ingest(chunked(bytes(`since ${s}`))))
        const mark = yield* store.currentSeq
        yield* store.editMeta(a!.hash, { description: "edited after the mark" })
        const d = yield* store.ingest(chunked(bytes("since d")))
        yield* store.mergeMeta(b!.hash, peerMeta({ updatedAt: Date.now() + 60_000 }), PeerId)

        const page = yield* store.list({ since: mark })
        assert.deepStrictEqual(page.digests.map((x) => x.hash), [a!.hash, d.hash, b!.hash])
        assert.isTrue(page.done)
        const edited = page.digests[0]!
        assert.strictEqual(edited.metaOrigin, store.storeId)
        assert.isAbove(edited.seq, mark)
        assert.isFalse(page.digests.some((x) => x.hash === c!.hash), "an unchanged asset is not listed again")
        assert.strictEqual(page.digests[2]!.metaOrigin, "peer-store")
      }))

    it.live("list refuses a page size below one and caps a huge one", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const zero = yield* Effect.flip(store.list({ limit: 0 }))
        assert.strictEqual(zero._tag, "InvalidInput")
        const negative = yield* Effect.flip(store.list({ since: -1 }))
        assert.strictEqual(negative._tag, "InvalidInput")
        yield* store.ingest(chunked(bytes("one")))
        const huge = yield* store.list({ limit: 1_000_000_000 })
        assert.strictEqual(huge.digests.length, 1)
        assert.isTrue(huge.done)
      }))

    it.live("a malformed hash is refused with InvalidInput", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const bad = "../not-a-hash" as AssetHash
        assert.strictEqual((yield* Effect.flip(store.has(bad)))._tag, "InvalidInput")
        assert.strictEqual((yield* Effect.flip(Stream.runDrain(store.read(bad))))._tag, "InvalidInput")
      }))

    it.live("currentSeq starts at 0, increases with every change and stays put when nothing changes", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const seqs = [yield* store.currentSeq]
        assert.strictEqual(seqs[0], 0)
        const { hash } = yield* store.ingest(chunked(bytes("seq")))
        seqs.push(yield* store.currentSeq)
        yield* store.editMeta(hash, { tags: ["x"] })
        seqs.push(yield* store.currentSeq)
        yield* store.push(sha256(bytes("pushed")), chunked(bytes("pushed")), peerMeta(), PeerId)
        seqs.push(yield* store.currentSeq)
        yield* store.mergeMeta(hash, peerMeta({ updatedAt: Date.now() + 60_000 }), PeerId)
        seqs.push(yield* store.currentSeq)
        for (let i = 1; i < seqs.length; i++) assert.isAbove(seqs[i]!, seqs[i - 1]!)

        const last = seqs.at(-1)!
        yield* store.ingest(chunked(bytes("seq")))
        yield* store.mergeMeta(hash, peerMeta({ updatedAt: 1 }), PeerId) // loses
        yield* store.editMeta(hash, {}) // changes nothing
        assert.strictEqual(yield* store.currentSeq, last)
      }))

    it.live("push stores content that hashes to its name, with the peer's metadata, and reports alreadyExisted", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const content = bytes("pushed by a peer")
        const hash = sha256(content)
        const meta = peerMeta()
        const first = yield* store.push(hash, chunked(content), meta, PeerId)
        assert.isFalse(first.alreadyExisted)
        const record = Option.getOrThrow(yield* store.stat(hash))
        assert.deepStrictEqual(record.meta, meta)
        assert.strictEqual(record.size, content.byteLength)
        assert.deepStrictEqual(new Uint8Array(yield* readAll(store, hash)), content)

        const again = yield* store.push(hash, chunked(content), meta, PeerId)
        assert.isTrue(again.alreadyExisted)

        const local = bytes("ingested here first")
        const { hash: localHash } = yield* store.ingest(chunked(local))
        const newer = peerMeta({ updatedAt: Date.now() + 60_000, description: "newer from peer" })
        const pushedExisting = yield* store.push(localHash, chunked(local), newer, PeerId)
        assert.isTrue(pushedExisting.alreadyExisted)
        assert.deepStrictEqual(Option.getOrThrow(yield* store.stat(localHash)).meta, newer, "a newer pushed version wins")
      }))

    it.live("push of content that does not hash to its name fails with HashMismatch and stores nothing", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const claimed = sha256(bytes("the real thing"))
        const error = yield* Effect.flip(store.push(claimed, chunked(bytes("a forgery")), peerMeta(), PeerId))
        assert.strictEqual(error._tag, "HashMismatch")
        assert.isFalse(yield* store.has(claimed))
        assert.strictEqual(yield* store.currentSeq, 0)

        const { hash } = yield* store.ingest(chunked(bytes("already here")))
        const before = yield* store.stat(hash)
        const seq = yield* store.currentSeq
        const onExisting = yield* Effect.flip(
          store.push(hash, chunked(bytes("not what is here")), peerMeta({ updatedAt: Date.now() + 60_000 }), PeerId)
        )
        assert.strictEqual(onExisting._tag, "HashMismatch")
        assert.deepStrictEqual(yield* store.stat(hash), before, "a refused push changes no metadata")
        assert.strictEqual(yield* store.currentSeq, seq)
        assert.deepStrictEqual(new Uint8Array(yield* readAll(store, hash)), bytes("already here"))
      }))

    it.live("editMeta stamps a newer version with this store's id and applies only the patched fields", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const { hash } = yield* store.ingest(chunked(bytes("to edit")), { description: "first", tags: ["t"] })
        const before = Option.getOrThrow(yield* store.stat(hash)).meta
        const edited = yield* store.editMeta(hash, { trashed: true })
        assert.isTrue(edited.trashed)
        assert.strictEqual(edited.description, "first")
        assert.deepStrictEqual(edited.tags, ["t"])
        assert.strictEqual(edited.origin, store.storeId)
        assert.isAbove(edited.updatedAt, before.updatedAt)
        assert.strictEqual(edited.createdAt, before.createdAt)
        assert.deepStrictEqual(Option.getOrThrow(yield* store.stat(hash)).meta, edited)

        // A version from the future (a peer with a fast clock) is still superseded by a local edit.
        const future = Date.now() + 3_600_000
        yield* store.mergeMeta(hash, { ...edited, updatedAt: future, origin: "fast-clock" }, PeerId)
        const after = yield* store.editMeta(hash, { description: "second" })
        assert.isAbove(after.updatedAt, future)
        assert.strictEqual(after.origin, store.storeId)
      }))

    it.live("mergeMeta applies a peer's version only when it wins under last-writer-wins, ties broken by origin", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const { hash } = yield* store.push(sha256(bytes("lww")), chunked(bytes("lww")), peerMeta({ origin: "m" }), PeerId)
          .pipe(Effect.as({ hash: sha256(bytes("lww")) }))
        const current = peerMeta({ origin: "m" })

        const older = yield* store.mergeMeta(hash, { ...current, updatedAt: current.updatedAt - 1, description: "older" }, PeerId)
        assert.isFalse(older.applied)
        assert.deepStrictEqual(older.meta, current)

        const same = yield* store.mergeMeta(hash, current, PeerId)
        assert.isFalse(same.applied, "the same version changes nothing")

        const tieLow = yield* store.mergeMeta(hash, { ...current, origin: "a", description: "tie, lower origin" }, PeerId)
        assert.isFalse(tieLow.applied)

        const tieHigh = { ...current, origin: "z", description: "tie, higher origin" }
        const won = yield* store.mergeMeta(hash, tieHigh, PeerId)
        assert.isTrue(won.applied)
        assert.deepStrictEqual(won.meta, tieHigh)

        const newer = { ...tieHigh, updatedAt: tieHigh.updatedAt + 10, origin: "b", tags: ["newer"], trashed: true }
        const applied = yield* store.mergeMeta(hash, newer, PeerId)
        assert.isTrue(applied.applied)
        assert.deepStrictEqual(Option.getOrThrow(yield* store.stat(hash)).meta, newer)
      }))

    it.live("editMeta, mergeMeta and read of a hash not in the store fail with AssetNotFound", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const missing = sha256(bytes("never stored"))
        assert.isFalse(yield* store.has(missing))
        assert.isTrue(Option.isNone(yield* store.stat(missing)))
        assert.strictEqual((yield* Effect.flip(Stream.runDrain(store.read(missing))))._tag, "AssetNotFound")
        assert.strictEqual((yield* Effect.flip(store.editMeta(missing, { description: "x" })))._tag, "AssetNotFound")
        assert.strictEqual((yield* Effect.flip(store.mergeMeta(missing, peerMeta(), PeerId)))._tag, "AssetNotFound")
      }))

    it.live("events carry seq and origin: LocalOrigin for local changes, the peer's id for pushes and merges", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const since = yield* store.currentSeq
        const collector = yield* Effect.forkChild(takeEvents(store.events({ since }), 4))
        const local = yield* store.ingest(chunked(bytes("local asset")))
        const pushedContent = bytes("peer asset")
        yield* store.push(sha256(pushedContent), chunked(pushedContent), peerMeta(), PeerId)
        const edited = yield* store.editMeta(local.hash, { description: "local edit" })
        const merged = peerMeta({ updatedAt: edited.updatedAt + 1, description: "peer edit" })
        yield* store.mergeMeta(local.hash, merged, PeerId)
        const events = yield* Fiber.join(collector)

        assert.deepStrictEqual(events.map((e) => [e._tag, e.hash, e.origin]), [
          ["AssetAdded", local.hash, LocalOrigin],
          ["AssetAdded", sha256(pushedContent), PeerId],
          ["MetaChanged", local.hash, LocalOrigin],
          ["MetaChanged", local.hash, PeerId]
        ])
        const [added, pushed, , peerEdit] = events
        assert.strictEqual(added!._tag === "AssetAdded" && added!.size, local.size)
        assert.strictEqual(pushed!._tag === "AssetAdded" && pushed!.size, pushedContent.byteLength)
        assert.deepStrictEqual(peerEdit!._tag === "MetaChanged" && peerEdit!.meta, merged)
        const seqs = events.map((e) => e.seq)
        for (let i = 1; i < seqs.length; i++) assert.isAbove(seqs[i]!, seqs[i - 1]!)
        assert.isAbove(seqs[0]!, since)
        assert.strictEqual(seqs.at(-1), yield* store.currentSeq)
      }))

    it.live("events() without since starts from now: earlier changes are not replayed", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const before = yield* store.ingest(chunked(bytes("before the subscription")))
        const collector = yield* Effect.forkChild(takeEvents(store.events(), 1))
        // The subscription starts at some instant we cannot observe: keep changing the store
        // (bounded) until the stream reports something.
        for (let i = 0; i < 200 && collector.pollUnsafe() === undefined; i++) {
          yield* store.ingest(chunked(bytes(`after ${i}`)))
          yield* Effect.sleep("25 millis")
        }
        const [first] = yield* Fiber.join(collector)
        assert.notStrictEqual(first!.hash, before.hash)
        assert.isAbove(first!.seq, Option.getOrThrow(yield* store.stat(before.hash)).seq)
      }))

    it.live("events({since}) replays exactly the changes after since, then continues live without duplicates", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const a = yield* store.ingest(chunked(bytes("replay a")))
        const mark = yield* store.currentSeq
        const b = yield* store.ingest(chunked(bytes("replay b")))
        yield* store.editMeta(a.hash, { tags: ["missed"] })
        const c = yield* store.ingest(chunked(bytes("replay c")))

        const collector = yield* Effect.forkChild(takeEvents(store.events({ since: mark }), 5))
        // Wait for the replayed part before changing the store again, so "live" really is live.
        const replayed = yield* takeEvents(store.events({ since: mark }), 3)
        assert.deepStrictEqual(replayed.map((e) => [e._tag, e.hash]), [
          ["AssetAdded", b.hash],
          ["MetaChanged", a.hash],
          ["AssetAdded", c.hash]
        ])
        const d = yield* store.ingest(chunked(bytes("replay d")))
        yield* store.ingest(chunked(bytes("replay d"))) // no change: must not appear
        yield* store.editMeta(b.hash, { trashed: true })
        const events = yield* Fiber.join(collector)

        assert.deepStrictEqual(events.map((e) => [e._tag, e.hash]), [
          ["AssetAdded", b.hash],
          ["MetaChanged", a.hash],
          ["AssetAdded", c.hash],
          ["AssetAdded", d.hash],
          ["MetaChanged", b.hash]
        ])
        const seqs = events.map((e) => e.seq)
        assert.strictEqual(new Set(seqs).size, seqs.length, "no duplicates")
        for (let i = 1; i < seqs.length; i++) assert.isAbove(seqs[i]!, seqs[i - 1]!)
        assert.isAbove(seqs[0]!, mark)

        const all = yield* takeEvents(store.events({ since: 0 }), 6)
        assert.deepStrictEqual([all[0]!._tag, all[0]!.hash], ["AssetAdded", a.hash])
        assert.deepStrictEqual(all.slice(1).map((e) => e.seq), seqs)
      }))

    it.live("a multi-MiB asset streamed in small chunks reads back identical, in bounded chunks", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const content = randomBytes(5 * 1024 * 1024 + 123)
        const result = yield* store.ingest(chunked(content, 4093))
        assert.strictEqual(result.hash, sha256(content))
        assert.strictEqual(result.size, content.byteLength)
        const chunks = Array.from(yield* Stream.runCollect(store.read(result.hash)))
        assert.isAbove(chunks.length, 1, "read streams the content in several chunks")
        assert.isAtMost(Math.max(...chunks.map((c) => c.byteLength)), 1024 * 1024)
        const back = Buffer.concat(chunks)
        assert.strictEqual(back.byteLength, content.byteLength)
        assert.isTrue(back.equals(content))
      }))

    it.live("readFrom, where the store has it, gives the content from any offset on, and nothing from its end", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        if (store.readFrom === undefined) return
        const content = randomBytes(3 * 1024 * 1024 + 77)
        const { hash } = yield* store.ingest(chunked(content, 65_536))
        const from = (offset: number) =>
          Stream.runCollect(store.readFrom!(hash, offset)).pipe(Effect.map((chunks) => Buffer.concat(Array.from(chunks))))
        for (const offset of [0, 1, 65_535, 1024 * 1024 + 3, content.byteLength - 1, content.byteLength]) {
          const tail = yield* from(offset)
          assert.isTrue(tail.equals(content.subarray(offset)), `from ${offset}: ${tail.byteLength} bytes`)
        }
        assert.strictEqual((yield* Effect.flip(Stream.runDrain(store.readFrom(sha256(bytes("absent")), 5))))._tag, "AssetNotFound")
      }))

    it.live("a failing content stream stores nothing and surfaces its own error", () =>
      Effect.gen(function*() {
        const store = yield* makeStore
        const failing = Stream.concat(chunked(bytes("partial content")), Stream.fail("source broke" as const))
        const error = yield* Effect.flip(store.ingest(failing))
        assert.strictEqual(error, "source broke")
        assert.strictEqual(yield* store.currentSeq, 0)
        assert.deepStrictEqual((yield* store.list()).digests, [])
      }))
  })
}
