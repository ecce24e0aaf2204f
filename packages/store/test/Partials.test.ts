/**
 * Partials of the embedded store (issue 13 item 2): an interrupted resumable push keeps what
 * arrived, checkpointed; a push resuming it re-hashes the kept bytes and the whole-asset hash is
 * still the only gate; a damaged partial fails that gate and is gone; a crash resumes from the last
 * checkpoint; partials are bounded in count, bytes and age, oldest first.
 */
import type { AssetHash } from "@can-sync/core"
import { AssetMeta } from "@can-sync/core"
import { describe, expect, it } from "@effect/vitest"
import { Data, Duration, Effect, Fiber, Stream } from "effect"
import { randomBytes } from "node:crypto"
import { copyFile, open, readdir, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { EmbeddedStore } from "../src/index.ts"
import * as ContentFiles from "../src/ContentFiles.ts"
import * as Partials from "../src/Partials.ts"
import { sha256, tempDir as freshDir } from "./fixtures/stores.ts"

const MiB = 1024 * 1024
const tempDir = freshDir("can-partials-")

const openStore = (dataDir: string, options: Partial<EmbeddedStore.EmbeddedStoreOptions> = {}) =>
  EmbeddedStore.make({ dataDir, watchInterval: "50 millis", ...options })

const meta = (): AssetMeta =>
  AssetMeta.make({ description: "peer's", tags: [], trashed: false, createdAt: 1, updatedAt: 1, origin: "peer-store" })

/** The link dropped: what a cut transfer's content stream fails with. */
class Cut extends Data.TaggedError("Cut")<{}> {}

/** `data` in 256 KiB chunks. */
const chunked = (data: Uint8Array) => {
  const chunks: Array<Uint8Array> = []
  for (let i = 0; i < data.length; i += 256 * 1024) chunks.push(data.subarray(i, Math.min(data.length, i + 256 * 1024)))
  return Stream.fromIterable(chunks)
}

/** `data`, then the link drops. */
const cutAfter = (data: Uint8Array) => Stream.concat(chunked(data), Stream.fail(new Cut()))

const partialDir = (dataDir: string) => Effect.promise(() => readdir(join(dataDir, "partial")).catch(() => [] as Array<string>))

describe("partials of interrupted pushes", () => {
  it.live("a cut resumable push keeps what arrived; a push from there re-hashes it, stores the asset whole, and leaves no partial", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* openStore(dir)
      const data = randomBytes(6 * MiB)
      const hash = sha256(data)
      const cut = yield* Effect.flip(store.push(hash, cutAfter(data.subarray(0, 3 * MiB)), meta(), "peer-a", { resumeFrom: 0 }))
      expect(cut._tag).toBe("Cut")
      expect(yield* store.partial!(hash)).toBe(3 * MiB)
      // Told the asset's size, the store looks on disk only when a partial of that size could exist.
      expect(yield* store.partial!(hash, data.length)).toBe(3 * MiB)
      expect(yield* store.partial!(hash, Partials.MinPartialBytes - 1)).toBe(0)
      expect(yield* store.has(hash)).toBe(false)
      expect((yield* store.partials).map((p) => ({ hash: p.hash, bytes: p.bytes, peers: p.peers }))).toEqual([
        { hash, bytes: 3 * MiB, peers: ["peer-a"] }
      ])

      const done = yield* store.push(hash, chunked(data.subarray(3 * MiB)), meta(), "peer-b", { resumeFrom: 3 * MiB })
      expect(done.alreadyExisted).toBe(false)
      expect(yield* store.has(hash)).toBe(true)
      expect(yield* store.partial!(hash)).toBe(0)
      expect(yield* partialDir(dir)).toEqual([])
      const verified = yield* Stream.runCollect(store.verify)
      expect(verified).toEqual([{ hash, ok: true }])
    }).pipe(Effect.scoped))

  it.live("a push without resumeFrom (an HTTP upload), or cut before 1 MiB, keeps nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* openStore(dir)
      const data = randomBytes(4 * MiB)
      const hash = sha256(data)
      yield* Effect.flip(store.push(hash, cutAfter(data.subarray(0, 3 * MiB)), meta(), "peer-a"))
      yield* Effect.flip(store.push(hash, cutAfter(data.subarray(0, MiB / 2)), meta(), "peer-a", { resumeFrom: 0 }))
      expect(yield* store.partial!(hash)).toBe(0)
      expect(yield* partialDir(dir)).toEqual([])
      expect(yield* Effect.promise(() => readdir(join(dir, "tmp")))).toEqual([])
    }).pipe(Effect.scoped))

  it.live("a damaged byte in the kept bytes fails the whole-asset hash: HashMismatch says it resumed and from whom, and the partial is gone", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* openStore(dir)
      const data = randomBytes(5 * MiB)
      const hash = sha256(data)
      yield* Effect.flip(store.push(hash, cutAfter(data.subarray(0, 2 * MiB)), meta(), "peer-a", { resumeFrom: 0 }))
      yield* Effect.promise(async () => {
        const file = await open(join(dir, "partial", hash), "r+")
        await file.write(Buffer.from([data[1000]! ^ 0xff]), 0, 1, 1000)
        await file.close()
      })
      const error = yield* Effect.flip(store.push(hash, chunked(data.subarray(2 * MiB)), meta(), "peer-b", { resumeFrom: 2 * MiB }))
      expect(error).toMatchObject({ _tag: "HashMismatch", expected: hash, resumedFrom: 2 * MiB, sources: ["peer-a", "peer-b"] })
      expect(yield* store.has(hash)).toBe(false)
      expect(yield* store.partial!(hash)).toBe(0)
      expect(yield* partialDir(dir)).toEqual([])
      // From 0 it arrives.
      yield* store.push(hash, chunked(data), meta(), "peer-b", { resumeFrom: 0 })
      expect(yield* store.has(hash)).toBe(true)
    }).pipe(Effect.scoped))

  it.live("asked to resume past what the partial holds, the push fails as a resumed mismatch (so the caller starts from 0)", () =>
    Effect.gen(function*() {
      const store = yield* openStore(yield* tempDir)
      const data = randomBytes(2 * MiB)
      const hash = sha256(data)
      const error = yield* Effect.flip(store.push(hash, chunked(data.subarray(MiB)), meta(), "peer-a", { resumeFrom: MiB }))
      expect(error).toMatchObject({ _tag: "HashMismatch", resumedFrom: MiB })
      expect(yield* store.has(hash)).toBe(false)
    }).pipe(Effect.scoped))

  it.live("a crash mid-push resumes from the last checkpoint (every 8 MiB, fsynced), the bytes after it cut off", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* openStore(dir)
      const data = randomBytes(24 * MiB)
      const hash = sha256(data)
      // 20 MiB arrive, then the link stalls: the push waits with two checkpoints written.
      const stalled = Stream.concat(chunked(data.subarray(0, 20 * MiB)), Stream.never)
      const push = yield* Effect.forkChild(store.push(hash, stalled, meta(), "peer-a", { resumeFrom: 0 }))
      const checkpointFile = join(dir, "partial", `${hash}.json`)
      const deadline = Date.now() + 30_000
      let seen = 0
      while (seen < 16 * MiB) {
        if (Date.now() > deadline) return yield* Effect.die(new Error(`the checkpoint never reached 16 MiB (last: ${seen})`))
        yield* Effect.sleep("20 millis")
        seen = yield* Effect.promise(() => readFile(checkpointFile, "utf8").then((t) => JSON.parse(t).bytes as number, () => 0))
      }
      // What a crash leaves: the files as they are now (the interruption below checkpoints again; put them back).
      const snapshot = join(dir, "snapshot")
      yield* Effect.promise(() => copyFile(checkpointFile, `${snapshot}.json`).then(() => copyFile(join(dir, "partial", hash), snapshot)))
      yield* Fiber.interrupt(push)
      yield* Effect.promise(() => copyFile(`${snapshot}.json`, checkpointFile).then(() => copyFile(snapshot, join(dir, "partial", hash))))
      const held = yield* store.partial!(hash)
      expect(held).toBe(16 * MiB)
      yield* store.push(hash, chunked(data.subarray(held)), meta(), "peer-a", { resumeFrom: held })
      expect(yield* store.has(hash)).toBe(true)
      expect(yield* partialDir(dir)).toEqual([])
    }).pipe(Effect.scoped))
})

describe("reading from an offset (the sending side of a resume)", () => {
  it.live("readFrom streams the bytes from the offset on; an absent asset is AssetNotFound", () =>
    Effect.gen(function*() {
      const store = yield* openStore(yield* tempDir)
      const data = randomBytes(300_000)
      const { hash } = yield* store.ingest(chunked(data))
      const tail = yield* Stream.runCollect(store.readFrom!(hash, 123_457))
      expect(Buffer.concat(tail)).toEqual(data.subarray(123_457))
      expect(yield* Stream.runCollect(store.readFrom!(hash, data.length))).toEqual([])
      const missing = yield* Effect.flip(Stream.runCollect(store.readFrom!(sha256("absent"), 0)))
      expect(missing._tag).toBe("AssetNotFound")
    }).pipe(Effect.scoped))
})

describe("partial bounds", () => {
  /** A partial of `size` bytes of fresh content, left by a cut push. */
  const leavePartial = (store: EmbeddedStore.EmbeddedStoreShape, size: number) =>
    Effect.gen(function*() {
      const data = randomBytes(size + 1)
      const hash = sha256(data)
      yield* Effect.flip(store.push(hash, cutAfter(data.subarray(0, size)), meta(), "peer-a", { resumeFrom: 0 }))
      return hash
    })

  it.live("at most maxCount partials and maxBytes of them: each cut push sweeps, dropping the oldest first", () =>
    Effect.gen(function*() {
      const store = yield* openStore(yield* tempDir, { partials: { maxCount: 2, maxBytes: 5 * MiB, maxAge: Duration.days(7) } })
      const held = (hashes: ReadonlyArray<AssetHash>) => Effect.forEach(hashes, (h) => store.partial!(h))
      const first = yield* leavePartial(store, 2 * MiB)
      yield* Effect.sleep("5 millis")
      const second = yield* leavePartial(store, 2 * MiB)
      yield* Effect.sleep("5 millis")
      const third = yield* leavePartial(store, 2 * MiB)
      expect(yield* held([first, second, third])).toEqual([0, 2 * MiB, 2 * MiB]) // count
      yield* Effect.sleep("5 millis")
      const big = yield* leavePartial(store, 4 * MiB)
      expect(yield* held([second, third, big])).toEqual([0, 0, 4 * MiB]) // bytes: 4 + 2 > 5
      expect((yield* store.partials).length).toBe(1)
    }).pipe(Effect.scoped))

  it.live("a partial older than maxAge is dropped by the sweep a locked open (the agent's) makes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const [old, young] = yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* openStore(dir)
        return [yield* leavePartial(store, 2 * MiB), yield* leavePartial(store, 2 * MiB)] as const
      }))
      // Age the first one's checkpoint by eight days.
      const path = join(dir, "partial", `${old}.json`)
      yield* Effect.promise(async () => {
        const checkpoint = JSON.parse(await readFile(path, "utf8"))
        await writeFile(path, JSON.stringify({ ...checkpoint, updatedAt: Date.now() - 8 * 24 * 3600 * 1000 }))
      })
      // A CLI's open (no lock) leaves partials alone; the agent's sweeps them.
      yield* Effect.scoped(Effect.gen(function*() {
        const cli = yield* openStore(dir)
        expect(yield* cli.partial!(old)).toBe(2 * MiB)
      }))
      const agent = yield* openStore(dir, { lock: true })
      expect(yield* agent.partial!(old)).toBe(0)
      expect(yield* agent.partial!(young)).toBe(2 * MiB)
      expect(yield* Partials.held(ContentFiles.layout(dir), young)).toBe(2 * MiB)
    }).pipe(Effect.scoped))
})
