/**
 * The engine against a hostile peer (issue 12): metadata out of bounds skips that one asset or
 * edit and never ends the session; a peer cannot fill the disk (announced size and a maximum
 * asset size are enforced while streaming); one Want cannot amplify into many transfers. Every
 * hostile frame is real protobuf bytes through the real codec.
 */
import { describe, expect, it } from "@effect/vitest"
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as Frame from "@can-sync/core/Frame"
import { MetadataLimits, Proto } from "@can-sync/core"
import { Effect, Fiber, Stream } from "effect"
import { readdir } from "node:fs/promises"
import { join } from "node:path"
import { asHash, awaitLive, connect, content, hashSet, ingestMany, makePeer, until, Deadline } from "./harness.ts"
import { digest, engineSide, fakeHashes, hello, meta, sha } from "./rawPeer.ts"


/** The engine's session failure (the actor's fiber yields it), within 20 s. */
const ended = <A, E>(actor: Fiber.Fiber<A, E>) =>
  Fiber.join(actor).pipe(Effect.timeoutOrElse({ duration: "20 seconds", orElse: () => Effect.fail(new Deadline({ waitingFor: "the session to end" })) }))

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill)
/** Files the store has in its temp dir: partial content that was written to disk. */
const tempFiles = (dir: string) => Effect.promise(() => readdir(join(dir, "tmp")).catch(() => [] as Array<string>))

/** The raw peer holds `assets` and the engine holds nothing: returns once the engine has asked for them. */
const offering = (raw: Effect.Success<ReturnType<typeof engineSide>>["raw"], assets: ReadonlyArray<{ hash: string; size: number }>) =>
  Effect.gen(function*() {
    yield* raw.send(hello())
    yield* raw.send(Frame.make("DigestChunk", { digests: assets.map((a) => digest(a.hash, a.size)), last: true }))
    yield* raw.next("Hello")
    return (yield* raw.next("Want")).message
  })

const sendAsset = (raw: Effect.Success<ReturnType<typeof engineSide>>["raw"], data: Uint8Array, m: typeof meta = meta) =>
  Effect.gen(function*() {
    const hash = sha(data)
    yield* raw.send(Frame.make("AssetHeader", { hash, size: data.length, meta: m }))
    yield* raw.send(Frame.make("AssetChunk", { hash, data }))
    yield* raw.send(Frame.make("AssetEnd", { hash }))
  })

describe("metadata out of bounds (item 2)", () => {
  it.live("an asset whose metadata is out of bounds is skipped with a non-fatal METADATA_INVALID; the next asset still crosses and the session goes on", () =>
    Effect.gen(function*() {
      const { actor, dir, raw, store } = yield* engineSide()
      const bad = bytes(1000, 1)
      const good = bytes(1000, 2)
      const want = yield* offering(raw, [{ hash: sha(bad), size: 1000 }, { hash: sha(good), size: 1000 }])
      expect(want).toEqual({ hashes: [sha(bad), sha(good)], last: true, offsets: [] })
      // 600 KB of description fits a 1 MiB frame, but not MetadataLimits.
      yield* sendAsset(raw, bad, { ...meta, description: "x".repeat(600_000) })
      expect((yield* raw.next("Error")).message).toMatchObject({ code: Proto.ErrorCode.METADATA_INVALID, hash: sha(bad), fatal: false })
      yield* sendAsset(raw, good)
      yield* until(store.has(asHash(sha(good))), "the good asset stored")
      expect(yield* store.has(asHash(sha(bad)))).toBe(false)
      expect(yield* tempFiles(dir)).toEqual([])
      expect(actor.pollUnsafe()).toBeUndefined() // still running
    }).pipe(Effect.scoped))

  it.live("MetaUpdates with out-of-range timestamps or oversized tags are ignored: the store keeps its version and later edits still apply", () =>
    Effect.gen(function*() {
      const { actor, raw, store } = yield* engineSide()
      const data = bytes(100, 3)
      const hash = sha(data)
      yield* offering(raw, [{ hash, size: data.length }])
      yield* sendAsset(raw, data)
      yield* until(store.has(asHash(hash)), "the asset stored")
      const hostile = [
        { ...meta, description: "max safe", updatedAt: Number.MAX_SAFE_INTEGER },
        { ...meta, description: "not a date", createdAt: MetadataLimits.maxTimestamp + 1, updatedAt: 5 },
        { ...meta, description: "past any date", updatedAt: MetadataLimits.maxTimestamp + 1 },
        { ...meta, description: "never overtaken", updatedAt: MetadataLimits.maxTimestamp },
        { ...meta, description: "two days ahead", updatedAt: Date.now() + 2 * 24 * 3600 * 1000 },
        { ...meta, description: "negative", updatedAt: -5 },
        { ...meta, description: "big tag", tags: ["t".repeat(MetadataLimits.maxTagBytes + 1)], updatedAt: 6 },
        { ...meta, description: "many tags", tags: Array.from({ length: MetadataLimits.maxTags + 1 }, (_, i) => `t${i}`), updatedAt: 7 }
      ]
      for (const m of hostile) yield* raw.send(Frame.make("MetaUpdate", { hash, meta: m }))
      // An honest edit sent after them, older than most: it applies only if none of them did.
      yield* raw.send(Frame.make("MetaUpdate", { hash, meta: { ...meta, description: "honest", updatedAt: 2 } }))
      yield* until(store.stat(asHash(hash)).pipe(Effect.map((o) => o._tag === "Some" && o.value.meta.description === "honest")), "the honest edit applied")
      const stored = yield* store.stat(asHash(hash))
      expect(stored._tag === "Some" && stored.value.meta).toMatchObject({ description: "honest", updatedAt: 2, createdAt: 1 })
      expect(actor.pollUnsafe()).toBeUndefined()
    }).pipe(Effect.scoped))

  it.live("metadata that would not fit the peer's frames is never sent: that asset is skipped, every other asset crosses, one session throughout", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b", { maxFrameBytes: 16 * 1024 })
      // Within MetadataLimits, but its AssetHeader is larger than b's frame limit.
      const wide = yield* a.store.ingest(content(1, 500), { description: "d".repeat(20_000) })
      yield* ingestMany(a.store, 2, 20)
      yield* connect(a, b)
      yield* awaitLive(b, [a])
      const expected = new Set(yield* hashSet(a.store))
      expected.delete(wide.hash)
      yield* until(hashSet(b.store).pipe(Effect.map((h) => h.size >= expected.size)), "b holding every asset but the wide one")
      expect(yield* hashSet(b.store)).toEqual(expected)
      // Live: an edit that grows past b's frames is not sent either, and a small one still is.
      const [other] = [...expected]
      yield* a.store.editMeta(asHash(other!), { description: "e".repeat(20_000) })
      yield* ingestMany(a.store, 3, 1)
      yield* until(hashSet(b.store).pipe(Effect.map((h) => h.size >= expected.size + 1)), "b holding the live asset")
      expect((yield* a.manager.stats(b.id)).sessions).toBe(1)
      expect((yield* b.manager.stats(a.id)).sessions).toBe(1)
    }).pipe(Effect.scoped))
})

describe("disk bounds (item 3)", () => {
  it.live("a header announcing more than maxAssetBytes is a protocol violation before any byte is written", () =>
    Effect.gen(function*() {
      const { actor, dir, raw, store } = yield* engineSide({ maxAssetBytes: 1000 })
      const data = bytes(5000, 4)
      // The digest lies (10 bytes) so the engine asks; the header tells the truth.
      yield* offering(raw, [{ hash: sha(data), size: 10 }])
      yield* raw.send(Frame.make("AssetHeader", { hash: sha(data), size: data.length, meta }))
      yield* raw.send(Frame.make("AssetChunk", { hash: sha(data), data }))
      const failure = yield* ended(actor)
      expect(failure).toMatchObject({ _tag: "ProtocolViolation", frame: "AssetHeader" })
      expect(failure.message).toContain("more than the maximum asset size of 1000")
      expect(yield* store.has(asHash(sha(data)))).toBe(false)
      expect(yield* tempFiles(dir)).toEqual([])
    }).pipe(Effect.scoped))

  it.live("content past the size its header announced stops at the first byte over: PROTOCOL_VIOLATION, partial content discarded", () =>
    Effect.gen(function*() {
      const { actor, dir, raw, store } = yield* engineSide()
      const data = bytes(64 * 1024, 5)
      const hash = sha(data.subarray(0, 1000))
      yield* offering(raw, [{ hash, size: 1000 }])
      yield* raw.send(Frame.make("AssetHeader", { hash, size: 1000, meta }))
      yield* raw.send(Frame.make("AssetChunk", { hash, data: data.subarray(0, 1000) }))
      yield* raw.send(Frame.make("AssetChunk", { hash, data: data.subarray(0, 1) })) // byte 1,001
      for (let i = 0; i < 8; i++) yield* raw.send(Frame.make("AssetChunk", { hash, data })).pipe(Effect.ignore)
      const failure = yield* ended(actor)
      expect(failure).toMatchObject({ _tag: "ProtocolViolation", frame: "AssetChunk" })
      expect(failure.message).toContain("past the 1000 bytes its header announced")
      expect((yield* raw.next("Error")).message).toMatchObject({ code: Proto.ErrorCode.PROTOCOL_VIOLATION, fatal: true })
      expect(yield* store.has(asHash(hash))).toBe(false)
      expect(yield* tempFiles(dir)).toEqual([])
    }).pipe(Effect.scoped))

  it.live("an asset announced larger than maxAssetBytes is never asked for; the others are", () =>
    Effect.gen(function*() {
      const { raw } = yield* engineSide({ maxAssetBytes: 1000 })
      const [big, small] = fakeHashes(2, "sizes")
      expect(yield* offering(raw, [{ hash: big!, size: 1001 }, { hash: small!, size: 1000 }])).toEqual({ hashes: [small], last: true, offsets: [] })
    }).pipe(Effect.scoped))

  it("the default maximum asset size is 64 GiB and configurable", () => {
    expect(EngineConfig.make({ localPeerId: "x" as never }).maxAssetBytes).toBe(64 * 1024 ** 3)
    expect(EngineConfig.make({ localPeerId: "x" as never, maxAssetBytes: 5 }).maxAssetBytes).toBe(5)
  })
})

describe("amplification (item 7)", () => {
  it.live("a Want naming one asset 5,000 times (in frames of 1,000) is served once and is no window overrun; asked again after its answer, it is served again", () =>
    Effect.gen(function*() {
      const { actor, raw, store } = yield* engineSide()
      const { hash } = yield* store.ingest(Stream.make(bytes(4096, 6)))
      const [absent] = fakeHashes(1, "absent")
      yield* raw.send(hello())
      yield* raw.send(Frame.make("DigestChunk", { digests: [], last: true }))
      for (let i = 0; i < 5; i++) yield* raw.send(Frame.make("Want", { hashes: Array(1000).fill(hash), last: false }))
      yield* raw.send(Frame.make("Want", { hashes: [absent!], last: true }))
      // Wants are served in order: once `absent` is answered, every copy of `hash` has been.
      expect((yield* raw.next("Error")).message).toMatchObject({ code: Proto.ErrorCode.ASSET_NOT_FOUND, hash: absent })
      expect(raw.count("AssetHeader")).toBe(1)
      expect(raw.count("AssetEnd")).toBe(1)
      yield* raw.next("Done")
      yield* raw.send(Frame.make("Done", { assetsSent: 0, bytesSent: 0 }))
      yield* raw.send(Frame.make("Want", { hashes: [hash, hash], last: false }))
      yield* until(Effect.sync(() => raw.count("AssetEnd") >= 2), "the second AssetEnd")
      expect(raw.count("AssetHeader")).toBe(2)
      expect(actor.pollUnsafe()).toBeUndefined()
    }).pipe(Effect.scoped))

  it.live("a Want of more than 1,000 hashes in one frame is a protocol violation", () =>
    Effect.gen(function*() {
      const { actor, raw, store } = yield* engineSide()
      const { hash } = yield* store.ingest(Stream.make(bytes(4096, 7)))
      yield* raw.send(hello())
      yield* raw.send(Frame.make("DigestChunk", { digests: [], last: true }))
      yield* raw.send(Frame.make("Want", { hashes: Array(2000).fill(hash), last: false }))
      expect(yield* ended(actor)).toMatchObject({ _tag: "ProtocolViolation", frame: "Want", detail: "2000 hashes in one frame, more than 1000" })
      expect((yield* raw.next("Error")).message).toMatchObject({ code: Proto.ErrorCode.PROTOCOL_VIOLATION, fatal: true })
      expect(raw.count("AssetHeader")).toBe(0)
    }).pipe(Effect.scoped))
})
