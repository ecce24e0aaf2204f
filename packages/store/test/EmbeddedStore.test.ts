/**
 * The embedded store: the shared CanStore contract on a fresh data directory per test, plus what
 * only a store on local disk must guarantee: crash safety under SIGKILL, persistence across reopen,
 * several processes on one data directory, size limits, verify, and bounded memory on 1 GiB.
 */
import type { AssetHash } from "@can-sync/core"
import { AssetMeta, LocalOrigin } from "@can-sync/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Option, Stream } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdir, readdir, readFile, rename, stat, truncate, unlink, utimes, writeFile } from "node:fs/promises"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { EmbeddedStore } from "../src/index.ts"
import * as ContentFiles from "../src/ContentFiles.ts"
import { failureMessage } from "../src/StoreFailure.ts"
import { canStoreContract } from "./contract.ts"
import { pseudoRandomSha256 } from "./fixtures/pseudoRandom.ts"
import { sha256, tempDir as freshDir } from "./fixtures/stores.ts"

const IngestFixture = fileURLToPath(new URL("./fixtures/ingest.ts", import.meta.url))

const bytes = (text: string) => new TextEncoder().encode(text)

const tempDir = freshDir("can-store-")

const openStore = (dataDir: string, options: Partial<EmbeddedStore.EmbeddedStoreOptions> = {}) =>
  EmbeddedStore.make({ dataDir, watchInterval: "50 millis", ...options })

const failureText = (error: { readonly message?: unknown }) => String(error.message)

const tmpEntries = (dataDir: string) => Effect.promise(() => readdir(join(dataDir, "tmp")))

/** Polls `check` every 10 ms, at most `attempts` times; fails with `what` if it never holds. */
const waitUntil = (what: string, check: () => boolean | Promise<boolean>, attempts = 1000) =>
  Effect.gen(function*() {
    for (let i = 0; i < attempts; i++) {
      if (yield* Effect.promise(async () => check())) return
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.fail(new Error(`timed out waiting until ${what}`))
  })

interface Child {
  readonly process: ChildProcess
  /** stdout so far, one parsed JSON value per line */
  readonly lines: Array<unknown>
  readonly stderr: () => string
  readonly closed: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}

/** Runs the ingest fixture as a separate OS process; SIGKILLed with the scope if still running. */
const startFixture = (...args: Array<string>) =>
  Effect.acquireRelease(
    Effect.sync((): Child => {
      const child = spawn(process.execPath, [IngestFixture, ...args], { stdio: ["ignore", "pipe", "pipe"] })
      const lines: Array<unknown> = []
      let partial = ""
      let stderr = ""
      child.stdout.setEncoding("utf8").on("data", (text: string) => {
        partial += text
        const complete = partial.split("\n")
        partial = complete.pop() ?? ""
        for (const line of complete) if (line.trim() !== "") lines.push(JSON.parse(line))
      })
      child.stderr.setEncoding("utf8").on("data", (text: string) => {
        stderr += text
      })
      const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once("close", (code, signal) => resolve({ code, signal }))
      )
      return { process: child, lines, stderr: () => stderr, closed }
    }),
    (child) =>
      Effect.promise(() => {
        if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill("SIGKILL")
        return child.closed
      })
  )

/** Runs the fixture to completion and returns its stdout lines; fails on a non-zero exit. */
const runFixture = (...args: Array<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const child = yield* startFixture(...args)
    const { code } = yield* Effect.promise(() => child.closed).pipe(Effect.timeout("5 minutes"))
    if (code !== 0) return yield* Effect.fail(new Error(`fixture ${args.join(" ")} exited ${code}: ${child.stderr()}`))
    return child.lines
  }))

/** Kills a child with SIGKILL and waits until it is reaped (so its pid is really gone). */
const kill = (child: Child) =>
  Effect.promise(() => {
    child.process.kill("SIGKILL")
    return child.closed
  })

const field = (value: unknown, key: string): unknown =>
  typeof value === "object" && value !== null ? (value as Record<string, unknown>)[key] : undefined

canStoreContract(
  "EmbeddedStore satisfies the CanStore contract",
  Effect.flatMap(tempDir, (dir) => openStore(dir))
)

describe("EmbeddedStore", () => {
  it.live("assets, metadata and the store id persist across close and reopen", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const content = bytes("kept on disk")
      const first = yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* openStore(dir)
        const { hash } = yield* store.ingest(Stream.make(content), { description: "kept", tags: ["disk"] })
        const meta = yield* store.editMeta(hash, { trashed: true })
        return { storeId: store.storeId, hash, meta, seq: yield* store.currentSeq }
      }))
      const store = yield* openStore(dir)
      assert.strictEqual(store.storeId, first.storeId)
      assert.strictEqual(yield* store.currentSeq, first.seq)
      const record = Option.getOrThrow(yield* store.stat(first.hash))
      assert.deepStrictEqual(record.meta, first.meta)
      const back = Buffer.concat(Array.from(yield* Stream.runCollect(store.read(first.hash))))
      assert.isTrue(back.equals(content))
      assert.deepStrictEqual(yield* store.stats, { assets: 1, bytes: content.byteLength })
    }))

  it.live("content is laid out as objects/<first 2 hex>/<hash> beside index.sqlite", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* openStore(dir)
      const content = bytes("where does it live")
      const { hash } = yield* store.ingest(Stream.make(content))
      const onDisk = yield* Effect.promise(() => readFile(join(dir, "objects", hash.slice(0, 2), hash)))
      assert.isTrue(onDisk.equals(Buffer.from(content)))
      assert.isTrue((yield* Effect.promise(() => stat(join(dir, "index.sqlite")))).isFile())
      assert.deepStrictEqual(yield* tmpEntries(dir), [])
    }))

  it.live("a process killed mid-ingest leaves no asset, and the next open empties tmp/", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.scoped(openStore(dir)) // the directory exists before the child starts
      const child = yield* startFixture("slow", dir)
      yield* waitUntil("the child is ingesting", () => child.lines.length > 0)
      // Wait until bytes really sit in the temp file, so the kill lands mid-write.
      yield* waitUntil("the temp file has content", async () => {
        const names = await readdir(join(dir, "tmp"))
        if (names.length === 0) return false
        return (await stat(join(dir, "tmp", names[0]!)).catch(() => ({ size: 0 }))).size > 0
      })
      const { signal } = yield* kill(child)
      assert.strictEqual(signal, "SIGKILL")
      assert.strictEqual((yield* tmpEntries(dir)).length, 1, "the killed process left its temp file")

      const store = yield* openStore(dir)
      assert.deepStrictEqual(yield* tmpEntries(dir), [], "open removes temp files of dead processes")
      assert.strictEqual(yield* store.currentSeq, 0)
      assert.deepStrictEqual((yield* store.list()).digests, [])
      assert.deepStrictEqual(yield* store.stats, { assets: 0, bytes: 0 })
    }))

  it.live("a process killed at an arbitrary moment of many ingests leaves every indexed asset whole", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const child = yield* startFixture("many", dir, "arbitrary")
      yield* waitUntil("a few assets are in", () => child.lines.length >= 5)
      yield* Effect.sleep(`${Math.floor(Math.random() * 50)} millis`)
      yield* kill(child)
      const reported = child.lines.map((line) => field(line, "hash"))

      const store = yield* openStore(dir)
      assert.deepStrictEqual(yield* tmpEntries(dir), [])
      const listed = (yield* store.list({ limit: 10_000 })).digests.map((d) => d.hash)
      for (const hash of reported) assert.include(listed, hash, "every ingest that reported success is indexed")
      const checks = Array.from(yield* Stream.runCollect(store.verify))
      assert.strictEqual(checks.length, listed.length)
      assert.deepStrictEqual(checks.filter((c) => !c.ok), [], "no indexed asset is partial")
    }))

  it.live("opening the store beside a live writer keeps that writer's temp file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.scoped(openStore(dir))
      const child = yield* startFixture("slow", dir)
      yield* waitUntil("the child has a temp file", async () => (await readdir(join(dir, "tmp"))).length > 0)
      yield* Effect.scoped(openStore(dir))
      assert.strictEqual((yield* tmpEntries(dir)).length, 1, "a CLI open must not break the agent's ingest")
      assert.isNull(child.process.exitCode)
      yield* kill(child)
    }))

  it.live("another process's ingest reaches this process's events stream as a local change", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* openStore(dir)
      const since = yield* store.currentSeq
      const collector = yield* Effect.forkChild(
        store.events({ since }).pipe(Stream.take(1), Stream.runCollect, Effect.timeout("30 seconds"))
      )
      const text = "added by a CLI process while the agent runs"
      const [reported] = yield* runFixture("one", dir, text)
      const [event] = Array.from(yield* Fiber.join(collector))
      assert.strictEqual(event!._tag, "AssetAdded")
      assert.strictEqual(event!.hash, sha256(bytes(text)))
      assert.strictEqual(field(reported, "hash"), event!.hash)
      assert.strictEqual(event!.origin, LocalOrigin)
      assert.strictEqual(event!._tag === "AssetAdded" && event!.size, bytes(text).byteLength)
      assert.isTrue(yield* store.has(event!.hash))
    }))

  it.live("events without since, opened by a second store on the same directory, see the first store's writes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const writer = yield* openStore(dir)
      const watcher = yield* openStore(dir)
      const collector = yield* Effect.forkChild(
        watcher.events({ since: yield* watcher.currentSeq }).pipe(Stream.take(2), Stream.runCollect, Effect.timeout("30 seconds"))
      )
      const { hash } = yield* writer.ingest(Stream.make(bytes("written by the other store")))
      yield* writer.mergeMeta(hash, AssetMeta.make({
        description: "peer", tags: [], trashed: false, createdAt: 1, updatedAt: Date.now() + 1000, origin: "zz"
      }), "peer-b")
      const events = Array.from(yield* Fiber.join(collector))
      assert.deepStrictEqual(events.map((e) => [e._tag, e.origin]), [["AssetAdded", LocalOrigin], ["MetaChanged", "peer-b"]])
    }))

  it.live("content larger than maxAssetBytes is refused as soon as the limit is passed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* openStore(dir, { maxAssetBytes: 1000 })
      const endless = Stream.forever(Stream.make(new Uint8Array(100).fill(1)))
      const error = yield* Effect.flip(store.ingest(endless))
      assert.strictEqual(error._tag, "AssetTooLarge")
      if (error._tag === "AssetTooLarge") {
        assert.strictEqual(error.limit, 1000)
        assert.strictEqual(error.size, 1100)
      }
      const tooBig = new Uint8Array(1001).fill(2)
      const pushError = yield* Effect.flip(store.push(sha256(tooBig), Stream.make(tooBig), AssetMeta.make({
        description: "", tags: [], trashed: false, createdAt: 1, updatedAt: 1, origin: "p"
      }), "peer"))
      assert.strictEqual(pushError._tag, "AssetTooLarge")
      assert.deepStrictEqual(yield* tmpEntries(dir), [])
      assert.strictEqual(yield* store.currentSeq, 0)

      const atLimit = yield* store.ingest(Stream.make(new Uint8Array(1000).fill(3)))
      assert.strictEqual(atLimit.size, 1000, "exactly the limit is accepted")
    }))

  it.live("ingestFile stores a file as ingest does a stream, across the write-buffer boundaries", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = yield* tempDir
      const store = yield* openStore(join(dir, "store"))
      const mib = 1024 * 1024
      // empty, small, exactly one and two write buffers, and a ragged tail after several
      for (const size of [0, 1, 4096, mib - 1, mib, mib + 1, 2 * mib, 3 * mib + 12_345]) {
        const content = Uint8Array.from({ length: size }, (_, i) => (i * 31 + size) & 255)
        const path = join(source, `file-${size}`)
        yield* Effect.promise(() => writeFile(path, content))
        const added = yield* store.ingestFile(path, { description: `size ${size}`, tags: ["file"] })
        assert.deepStrictEqual(added, { hash: sha256(content), size, alreadyExisted: false }, `size ${size}`)
        const stored = yield* Effect.promise(() => readFile(join(dir, "store", "objects", added.hash.slice(0, 2), added.hash)))
        assert.isTrue(Buffer.from(content).equals(stored), `content of size ${size}`)
        const record = Option.getOrThrow(yield* store.stat(added.hash))
        assert.strictEqual(record.meta.description, `size ${size}`)
        // the same bytes as a stream are the same asset
        const again = yield* store.ingest(Stream.make(content))
        assert.deepStrictEqual(again, { hash: added.hash, size, alreadyExisted: true })
      }
      assert.deepStrictEqual(yield* tmpEntries(join(dir, "store")), [])
    }))

  it.live("ingestFile: an unreadable path is InvalidInput, a wrong expected hash or size limit stores nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* openStore(join(dir, "store"), { maxAssetBytes: 2 * 1024 * 1024 })
      const missing = yield* Effect.flip(store.ingestFile(join(dir, "no-such-file")))
      assert.strictEqual(missing._tag, "InvalidInput")
      assert.match(failureText(missing), /cannot read .*no-such-file: .*ENOENT/)
      const directory = yield* Effect.flip(store.ingestFile(dir))
      assert.strictEqual(directory._tag, "InvalidInput")
      assert.match(failureText(directory), /EISDIR/)

      const path = join(dir, "three-mib")
      yield* Effect.promise(() => writeFile(path, new Uint8Array(3 * 1024 * 1024).fill(9)))
      const tooLarge = yield* Effect.flip(store.ingestFile(path))
      assert.strictEqual(tooLarge._tag, "AssetTooLarge")

      const small = join(dir, "small")
      yield* Effect.promise(() => writeFile(small, "small"))
      const wrong = yield* Effect.flip(store.ingestFile(small, { expectedHash: sha256(bytes("other")) }))
      assert.strictEqual(wrong._tag, "HashMismatch")
      assert.strictEqual(yield* store.currentSeq, 0)
      assert.deepStrictEqual(yield* tmpEntries(join(dir, "store")), [])

      // with the right expected hash, and again once present (hashed only, nothing written)
      const right = yield* store.ingestFile(small, { expectedHash: sha256(bytes("small")) })
      assert.deepStrictEqual(right, { hash: sha256(bytes("small")), size: 5, alreadyExisted: false })
      const present = yield* store.ingestFile(small, { expectedHash: sha256(bytes("small")) })
      assert.isTrue(present.alreadyExisted)
      yield* Effect.promise(() => writeFile(small, "changed"))
      const changed = yield* Effect.flip(store.ingestFile(small, { expectedHash: sha256(bytes("small")) }))
      assert.strictEqual(changed._tag, "HashMismatch")
    }))

  it.live("verify reports a damaged and a missing content file, and passes the whole ones", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* openStore(dir)
      const [whole, damaged, missing] = yield* Effect.forEach(
        ["whole", "to be damaged", "to be deleted"],
        (text) => store.ingest(Stream.make(bytes(text)))
      )
      const pathOf = (hash: string) => join(dir, "objects", hash.slice(0, 2), hash)
      yield* Effect.promise(() => writeFile(pathOf(damaged!.hash), "tO be damaged"))
      yield* Effect.promise(() => unlink(pathOf(missing!.hash)))

      const results = new Map(Array.from(yield* Stream.runCollect(store.verify)).map((r) => [r.hash, r]))
      assert.strictEqual(results.size, 3)
      assert.deepStrictEqual(results.get(whole!.hash), { hash: whole!.hash, ok: true })
      assert.isFalse(results.get(damaged!.hash)!.ok)
      assert.match(results.get(damaged!.hash)!.problem ?? "", /damaged/)
      assert.isFalse(results.get(missing!.hash)!.ok)
      assert.match(results.get(missing!.hash)!.problem ?? "", /missing/)

      // Both are set aside: out of the digest set (a peer's copy is wanted), metadata kept.
      for (const set of [damaged!, missing!]) {
        assert.strictEqual((yield* Effect.flip(Stream.runDrain(store.read(set.hash))))._tag, "AssetNotFound")
        assert.isFalse(yield* store.has(set.hash))
      }
      assert.deepStrictEqual((yield* store.list()).digests.map((d) => d.hash), [whole!.hash])
      assert.deepStrictEqual(yield* store.stats, { assets: 1, bytes: "whole".length })
      assert.strictEqual(yield* Effect.promise(() => readFile(join(dir, "quarantine", `${damaged!.hash}.damaged`), "utf8")), "tO be damaged")
      const again1 = new Map(Array.from(yield* Stream.runCollect(store.verify)).map((r) => [r.hash, r]))
      assert.match(again1.get(missing!.hash)!.problem ?? "", /set aside by an earlier verify/)

      // Receiving the content again (a local re-add, or a peer's push) restores the lost file.
      const again = yield* store.ingest(Stream.make(bytes("to be deleted")))
      assert.isTrue(again.alreadyExisted)
      const repaired = Array.from(yield* Stream.runCollect(store.verify)).find((r) => r.hash === missing!.hash)
      assert.deepStrictEqual(repaired, { hash: missing!.hash, ok: true })
    }))

  it.live("sweepOrphans sets whole unindexed old content aside in quarantine/ (never deletes it), removes damaged ones, keeps young and indexed ones", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const store = yield* openStore(dir)
      const kept = yield* store.ingest(Stream.make(bytes("indexed")))
      const pathOf = (hash: string) => join(dir, "objects", hash.slice(0, 2), hash)
      // what a process killed between moving content into place and indexing it leaves behind
      const orphan = sha256(bytes("orphan"))
      const young = sha256(bytes("young orphan"))
      const damaged = sha256(bytes("what the name says"))
      yield* Effect.promise(async () => {
        for (const [hash, text] of [[orphan, "orphan"], [young, "young orphan"], [damaged, "something else"]] as const) {
          await mkdir(dirname(pathOf(hash)), { recursive: true })
          await writeFile(pathOf(hash), text)
        }
        const hourAgo = new Date(Date.now() - 3_600_000)
        for (const hash of [orphan, damaged, kept.hash]) await utimes(pathOf(hash), hourAgo, hourAgo) // kept: old, but indexed
        await writeFile(join(dir, "objects", "not-ours.txt"), "left alone")
      })
      const swept = yield* store.sweepOrphans("10 minutes")
      assert.deepStrictEqual(swept, { quarantined: 1, bytes: "orphan".length, removed: 1 })
      const exists = (path: string) => Effect.promise(() => stat(path).then(() => true, () => false))
      assert.isFalse(yield* exists(pathOf(orphan)))
      assert.strictEqual(yield* Effect.promise(() => readFile(join(dir, "quarantine", orphan), "utf8")), "orphan")
      assert.isFalse(yield* exists(pathOf(damaged)))
      assert.isTrue(yield* exists(pathOf(young)))
      assert.isTrue(yield* exists(pathOf(kept.hash)))
      assert.isTrue(yield* exists(join(dir, "objects", "not-ours.txt")))
      assert.deepStrictEqual(Array.from(yield* Stream.runCollect(store.verify)), [{ hash: kept.hash, ok: true }])
      // the same content added later is stored again, whole
      const again = yield* store.ingest(Stream.make(bytes("orphan")))
      assert.deepStrictEqual(again, { hash: orphan, size: 6, alreadyExisted: false })
      assert.strictEqual(yield* Effect.promise(() => readFile(pathOf(orphan), "utf8")), "orphan")
    }))

  it.live("an orphan replaced by a fresh copy between listing and removal is put back, not taken", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* openStore(dir) // lays out the directory
      const layout = ContentFiles.layout(dir)
      const hash = sha256(bytes("raced"))
      const path = join(dir, "objects", hash.slice(0, 2), hash)
      yield* Effect.promise(async () => {
        await mkdir(dirname(path), { recursive: true })
        await writeFile(path, "raced")
      })
      const [found] = Array.from(yield* Stream.runCollect(ContentFiles.objectFiles(layout)))
      assert.strictEqual(found?.hash, hash)
      // another process moves a fresh copy of the same content into place (a new inode)
      yield* Effect.promise(async () => {
        await writeFile(join(dir, "tmp", "fresh"), "raced")
        await rename(join(dir, "tmp", "fresh"), path)
      })
      assert.isFalse(yield* ContentFiles.takeOrphan(layout, found!, true))
      assert.strictEqual(yield* Effect.promise(() => readFile(path, "utf8")), "raced")
      assert.deepStrictEqual(yield* tmpEntries(dir), [])
      // the copy that is there now, found again, is taken (into quarantine/)
      const [again] = Array.from(yield* Stream.runCollect(ContentFiles.objectFiles(layout)))
      assert.isTrue(yield* ContentFiles.takeOrphan(layout, again!, true))
      assert.isFalse(yield* Effect.promise(() => stat(path).then(() => true, () => false)))
      assert.strictEqual(yield* Effect.promise(() => readFile(join(dir, "quarantine", hash), "utf8")), "raced")
      assert.deepStrictEqual(yield* tmpEntries(dir), [])
    }))

  it.live("a data directory that cannot be created fails with StoreUnavailable", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = join(dir, "a-file")
      yield* Effect.promise(() => writeFile(file, "not a directory"))
      const error = yield* Effect.flip(Effect.scoped(openStore(join(file, "store"))))
      assert.strictEqual(error._tag, "StoreUnavailable")
      assert.strictEqual(error.operation, "open data directory")
    }))

  it("disk-full and locked-database errors say so", () => {
    const enospc = Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" })
    assert.match(failureMessage(enospc), /disk is full/)
    const sqliteFull = Object.assign(new Error("database or disk is full"), { code: "ERR_SQLITE_ERROR", errcode: 13 })
    assert.match(failureMessage(sqliteFull), /disk is full/)
    const busy = Object.assign(new Error("database is locked"), { code: "ERR_SQLITE_ERROR", errcode: 5 })
    assert.match(failureMessage(busy), /locked by another process/)
  })

  it.live("ingestFile of a 1 GiB file in a child process peaks under 150 MB of RSS: two write buffers, nothing per chunk", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const source = yield* tempDir
      const size = 1024 * 1024 * 1024
      const path = join(source, "one-gibibyte")
      // sparse: reads as zeros from the page cache, so the test costs no disk writes of its own
      yield* Effect.promise(() => writeFile(path, "").then(() => truncate(path, size)))
      const [report] = yield* runFixture("file", dir, path)
      const maxRss = Number(field(report, "maxRssBytes"))
      const rssAtStart = Number(field(report, "rssAtStartBytes"))
      assert.isBelow(maxRss, 150_000_000, `peak RSS of the ingesting process: ${maxRss} bytes`)
      assert.isBelow(maxRss - rssAtStart, 24 * 1024 * 1024, `RSS added by the ingest: ${maxRss - rssAtStart} bytes`)
      const zeros = Buffer.alloc(1024 * 1024)
      const hasher = createHash("sha256")
      for (let i = 0; i < 1024; i++) hasher.update(zeros)
      assert.deepStrictEqual([field(report, "hash"), field(report, "size")], [hasher.digest("hex"), size])
    }), 300_000)

  it.live("a 1 GiB ingest in a child process stays under 200 MB of RSS and hashes like an independent hash", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const seed = "one-gibibyte"
      const size = 1024 * 1024 * 1024
      const [report] = yield* runFixture("generated", dir, seed, String(size))
      const maxRss = Number(field(report, "maxRssBytes"))
      const rssAtStart = Number(field(report, "rssAtStartBytes"))
      assert.isBelow(maxRss, 200 * 1024 * 1024, `peak RSS of the ingesting process: ${maxRss} bytes`)
      // Most of that is Node + Effect + type stripping (~120 MiB); the ingest itself adds a few
      // buffers, whatever the size. (The producer recycles its chunks, so this measures the store.)
      assert.isBelow(maxRss - rssAtStart, 64 * 1024 * 1024, `RSS added by the ingest: ${maxRss - rssAtStart} bytes`)
      assert.strictEqual(field(report, "size"), size)
      const expected = pseudoRandomSha256(seed, size)
      assert.strictEqual(field(report, "hash"), expected)

      const store = yield* openStore(dir)
      const record = Option.getOrThrow(yield* store.stat(expected as AssetHash))
      assert.strictEqual(record.size, size)
      assert.strictEqual((yield* Effect.promise(() => stat(join(dir, "objects", expected.slice(0, 2), expected)))).size, size)
    }), 300_000)
})
