/**
 * Damaged content is never served as good, and is healed from a peer (issue 12, item 9): a read
 * checks the hash as it streams and fails before the last chunk on damage (so an HTTP response ends
 * short of its Content-Length); `verify` sets damaged or missing content aside and out of the
 * digest set, metadata kept; a good copy pushed later puts it back as a new change.
 */
import type { AssetHash } from "@can-sync/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Stream } from "effect"
import { readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { ReadChunkSize } from "../src/ContentFiles.ts"
import * as EmbeddedStore from "../src/EmbeddedStore.ts"
import * as HttpService from "../src/HttpService.ts"
import { sha256, tempDir } from "./fixtures/stores.ts"

/** Deterministic bytes spanning three read chunks (ContentFiles.ReadChunkSize). */
const content = Buffer.from(Array.from({ length: 3 * ReadChunkSize }, (_, i) => (i * 7919) % 251))

/** The same size, one byte different in the middle. */
const corrupted = (() => {
  const copy = Buffer.from(content)
  const middle = Math.floor(copy.length / 2)
  copy[middle] = copy[middle]! ^ 0xff
  return copy
})()

const objectPath = (dir: string, hash: string) => join(dir, "objects", hash.slice(0, 2), hash)

/** A store holding `content`, whose object file is then overwritten with same-size damage. */
const damagedStore = Effect.gen(function*() {
  const dir = yield* tempDir("can-healing-")
  const store = yield* EmbeddedStore.make({ dataDir: dir })
  const { hash } = yield* store.ingest(Stream.make(new Uint8Array(content)), { description: "kept" })
  yield* Effect.promise(() => writeFile(objectPath(dir, hash), corrupted))
  return { dir, store, hash }
})

/** The bytes a stream delivered before it ended, and how it ended. */
const drain = (stream: Stream.Stream<Uint8Array, { readonly _tag: string; readonly message: string }>) =>
  Effect.gen(function*() {
    let received = 0
    const end = yield* stream.pipe(
      Stream.runForEach((chunk) => Effect.sync(() => void (received += chunk.byteLength))),
      Effect.flip,
      Effect.option
    )
    return { received, end }
  })

describe("damaged content", () => {
  it.live("a read of same-size damaged content fails with a message naming the damage, before its last chunk", () =>
    Effect.gen(function*() {
      const { store, hash } = yield* damagedStore
      const { received, end } = yield* drain(store.read(hash))
      assert.isTrue(Option.isSome(end))
      const error = Option.getOrThrow(end)
      assert.strictEqual(error._tag, "StoreUnavailable")
      assert.match(error.message, new RegExp(`content of ${hash} is damaged \\(it hashes to ${sha256(corrupted)}\\)`))
      assert.isBelow(received, content.length)
      // a file longer than its entry fails as soon as it passes the size
      yield* Effect.promise(() => writeFile(objectPath(store.dataDir, hash), Buffer.concat([content, Buffer.from("x")])))
      const longer = yield* drain(store.read(hash))
      assert.match(Option.getOrThrow(longer.end).message, /more than the \d+ bytes the index says/)
      assert.isBelow(longer.received, content.length + 1)
    }))

  it.live("GET of damaged content ends short of its Content-Length (an aborted response, never the whole wrong asset)", () =>
    Effect.gen(function*() {
      const { store, hash } = yield* damagedStore
      const service = yield* HttpService.serve(store, { port: 0, token: "t" })
      const outcome = yield* Effect.promise(async () => {
        const res = await fetch(`${service.url}/assets/${hash}`, { headers: { authorization: "Bearer t" }, signal: AbortSignal.timeout(10_000) })
        const length = Number(res.headers.get("content-length"))
        let received = 0
        try {
          const reader = res.body!.getReader()
          for (;;) {
            const { done, value } = await reader.read()
            if (done) break
            received += value.byteLength
          }
          return { status: res.status, length, received, aborted: false }
        } catch {
          return { status: res.status, length, received, aborted: true }
        }
      })
      assert.deepStrictEqual({ status: outcome.status, length: outcome.length, aborted: outcome.aborted }, { status: 200, length: content.length, aborted: true })
      assert.isBelow(outcome.received, content.length)
    }))

  it.live("verify sets damaged content aside, out of the digest set with its metadata kept; a good copy pushed later puts it back as a new change", () =>
    Effect.gen(function*() {
      const { dir, store, hash } = yield* damagedStore
      const edited = yield* store.editMeta(hash, { description: "edited here, newer than the peer's" })
      const results = Array.from(yield* Stream.runCollect(store.verify))
      assert.deepStrictEqual(results.map((r) => r.ok), [false])
      assert.isFalse(yield* store.has(hash))
      assert.deepStrictEqual((yield* store.list()).digests, [])
      assert.isTrue((yield* Effect.promise(() => readFile(join(dir, "quarantine", `${hash}.damaged`)))).equals(corrupted))
      const seqBefore = yield* store.currentSeq

      // a peer's push of the good content, with an older version of the metadata
      const older = { ...edited, description: "the peer's older text", updatedAt: edited.updatedAt - 1000, origin: "peer-a" }
      const pushed = yield* store.push(hash as AssetHash, Stream.make(new Uint8Array(content)), older, "peer-a")
      assert.isTrue(pushed.alreadyExisted)
      assert.isTrue(yield* store.has(hash))
      const record = Option.getOrThrow(yield* store.stat(hash))
      assert.strictEqual(record.meta.description, "edited here, newer than the peer's")
      assert.isAbove(record.seq, seqBefore)
      assert.deepStrictEqual((yield* store.list({ since: seqBefore })).digests.map((d) => d.hash), [hash])
      assert.isTrue((yield* Effect.promise(() => readFile(objectPath(dir, hash)))).equals(content))
      assert.deepStrictEqual(Array.from(yield* Stream.runCollect(store.verify)), [{ hash, ok: true }])
    }))
})
