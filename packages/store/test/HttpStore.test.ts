/**
 * HttpStore, the CanStore client of the CAN HTTP service, end to end: client → real HttpService on
 * 127.0.0.1 → real EmbeddedStore in a temp dir. It passes the same contract suite as the embedded
 * store, maps service failures back to the same tagged errors, and its event stream survives a
 * service restart, delivering exactly the changes made while the service was down, once, in order.
 */
import type { AssetHash, StoreEvent } from "@can-sync/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Queue, Scope, Stream } from "effect"
import { createServer as createHttpServer } from "node:http"
import { createServer } from "node:net"
import type { AddressInfo } from "node:net"
import * as Api from "../src/CanHttpApi.ts"
import * as HttpService from "../src/HttpService.ts"
import * as HttpStore from "../src/HttpStore.ts"
import { canStoreContract } from "./contract.ts"
import { freshStore, servedStore, sha256 } from "./fixtures/stores.ts"

const token = "contract-token"
const encoder = new TextEncoder()

/** A fresh embedded store, served on a free port, and an HttpStore client of it. */
const stack = Effect.gen(function*() {
  const { store: embedded, service } = yield* servedStore({ prefix: "can-http-store-", token, keepAlive: "500 millis" })
  const client = yield* HttpStore.make({
    baseUrl: service.url,
    token,
    reconnect: { initial: "20 millis", max: "200 millis" }
  })
  return { embedded, service, client }
})

canStoreContract("HttpStore → HttpService → EmbeddedStore", Effect.map(stack, ({ client }) => client))

/** A port nothing listens on (bound once, then released). */
const freePort = Effect.promise(() =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
)

const text = (s: string) => Stream.make(encoder.encode(s))

describe("HttpStore", () => {
  it.live("make fails with StoreUnavailable when the service is unreachable or refuses the token", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const unreachable = yield* Effect.flip(HttpStore.make({ baseUrl: `http://127.0.0.1:${port}`, token }))
      assert.strictEqual(unreachable._tag, "StoreUnavailable")

      const { service } = yield* stack
      const refused = yield* Effect.flip(HttpStore.make({ baseUrl: service.url, token: "wrong" }))
      assert.strictEqual(refused._tag, "StoreUnavailable")
      assert.match(refused.message, /unauthorized/)
    }))

  it.live("has the storeId of the store behind the service", () =>
    Effect.gen(function*() {
      const { embedded, client } = yield* stack
      assert.strictEqual(client.storeId, embedded.storeId)
    }))

  it.live("service failures come back as the same tagged errors", () =>
    Effect.gen(function*() {
      const { client, embedded } = yield* stack
      const missing = sha256("not here")
      const notFound = yield* Effect.flip(Stream.runDrain(client.read(missing)))
      assert.strictEqual(notFound._tag, "AssetNotFound")
      assert.strictEqual((yield* Effect.flip(client.editMeta(missing, { trashed: true })))._tag, "AssetNotFound")

      const claimed = sha256("promised")
      const mismatch = yield* Effect.flip(
        client.push(claimed, text("delivered"), {
          description: "",
          tags: [],
          trashed: false,
          createdAt: 1,
          updatedAt: 1,
          origin: "peer"
        }, "peer")
      )
      assert.strictEqual(mismatch._tag, "HashMismatch")
      if (mismatch._tag === "HashMismatch") {
        assert.strictEqual(mismatch.expected, claimed)
        assert.strictEqual(mismatch.actual, sha256("delivered"))
      }
      assert.isFalse(yield* embedded.has(claimed))

      const invalid = yield* Effect.flip(client.has("not-a-hash" as AssetHash))
      assert.strictEqual(invalid._tag, "InvalidInput")
      const badPage = yield* Effect.flip(client.list({ limit: 0 }))
      assert.strictEqual(badPage._tag, "InvalidInput")
    }))

  it.live("an asset larger than the service's store accepts is refused with AssetTooLarge, and nothing is stored", () =>
    Effect.gen(function*() {
      const embedded = yield* freshStore("can-http-store-", { maxAssetBytes: 1024 })
      const service = yield* HttpService.serve(embedded, { port: 0, token })
      const client = yield* HttpStore.make({ baseUrl: service.url, token })
      const big = new Uint8Array(64 * 1024).fill(7)
      const error = yield* Effect.flip(client.ingest(Stream.make(big.subarray(0, 32 * 1024), big.subarray(32 * 1024))))
      assert.strictEqual(error._tag, "AssetTooLarge")
      assert.strictEqual(yield* embedded.currentSeq, 0)
    }))

  it.live("a content stream that fails mid-upload fails the ingest with its own error, and nothing is stored", () =>
    Effect.gen(function*() {
      const { client, embedded } = yield* stack
      const failing = Stream.make(encoder.encode("first half")).pipe(
        Stream.concat(Stream.fail({ _tag: "DiskGone" as const }))
      )
      const error = yield* Effect.flip(client.ingest(failing))
      assert.deepStrictEqual(error, { _tag: "DiskGone" })
      assert.strictEqual(yield* embedded.currentSeq, 0)
      // The service is still healthy afterwards.
      const ok = yield* client.ingest(text("second try"))
      assert.strictEqual(ok.hash, sha256("second try"))
    }))

  it.live("a network failure is StoreUnavailable", () =>
    Effect.gen(function*() {
      const embedded = yield* freshStore("can-http-store-")
      const scope = yield* Scope.make()
      const service = yield* HttpService.serve(embedded, { port: 0, token }).pipe(Scope.provide(scope))
      const client = yield* HttpStore.make({ baseUrl: service.url, token })
      yield* Scope.close(scope, Exit.void)
      const error = yield* Effect.flip(client.currentSeq)
      assert.strictEqual(error._tag, "StoreUnavailable")
      const readError = yield* Effect.flip(Stream.runDrain(client.read(sha256("x"))))
      assert.strictEqual(readError._tag, "StoreUnavailable")
    }))

  it.live("events reconnect after a service restart and deliver exactly the missed changes, once, in order", () =>
    Effect.gen(function*() {
      const embedded = yield* freshStore("can-http-store-", { watchInterval: "50 millis" })
      const first = yield* Scope.make()
      const service = yield* HttpService.serve(embedded, { port: 0, token, keepAlive: "200 millis" }).pipe(
        Scope.provide(first)
      )
      const client = yield* HttpStore.make({
        baseUrl: service.url,
        token,
        reconnect: { initial: "20 millis", max: "100 millis", idleTimeout: "2 seconds" }
      })
      const received = yield* Queue.bounded<StoreEvent>(64)
      const since = yield* embedded.currentSeq
      const subscriber = yield* Effect.forkChild(
        client.events({ since }).pipe(Stream.runForEach((event) => Queue.offer(received, event)))
      )
      const take = (n: number) =>
        Effect.forEach(Array.from({ length: n }), () => Queue.take(received)).pipe(Effect.timeout("15 seconds"))

      // Live before the outage.
      const before = yield* embedded.ingest(text("before the outage"))
      const [live] = yield* take(1)
      assert.strictEqual(live!.hash, before.hash)

      // The service goes down; the store keeps changing.
      yield* Scope.close(first, Exit.void)
      const missed: Array<AssetHash> = []
      for (let i = 0; i < 5; i++) missed.push((yield* embedded.ingest(text(`during the outage ${i}`))).hash)
      yield* embedded.editMeta(before.hash, { description: "edited while down" })
      yield* Effect.sleep("300 millis")
      assert.strictEqual(yield* Queue.size(received), 0, "nothing arrives while the service is down")

      // Back on the same port: the stream catches up by itself.
      yield* HttpService.serve(embedded, { port: service.port, token, keepAlive: "200 millis" })
      const caughtUp = yield* take(6)
      assert.deepStrictEqual(caughtUp.slice(0, 5).map((e) => e._tag), Array(5).fill("AssetAdded"))
      assert.deepStrictEqual(caughtUp.slice(0, 5).map((e) => e.hash), missed)
      assert.strictEqual(caughtUp[5]!._tag, "MetaChanged")
      assert.strictEqual(caughtUp[5]!.hash, before.hash)
      const seqs = [live!, ...caughtUp].map((e) => e.seq)
      assert.deepStrictEqual(seqs, [...seqs].sort((a, b) => a - b))
      assert.strictEqual(new Set(seqs).size, seqs.length)

      // And then live again, with nothing repeated in between.
      const after = yield* embedded.ingest(text("after the outage"))
      const [next] = yield* take(1)
      assert.strictEqual(next!.hash, after.hash)
      yield* Effect.sleep("300 millis")
      assert.strictEqual(yield* Queue.size(received), 0, "no duplicates")
      yield* Fiber.interrupt(subscriber)
    }))

  it.live("events resume from an explicit since and read content back through the client", () =>
    Effect.gen(function*() {
      const { client } = yield* stack
      const a = yield* client.ingest(text("alpha"), { description: "first" })
      const b = yield* client.ingest(text("beta"))
      const events = yield* client.events({ since: 0 }).pipe(
        Stream.take(2),
        Stream.runCollect,
        Effect.map((all) => Array.from(all)),
        Effect.timeout("15 seconds")
      )
      assert.deepStrictEqual(events.map((e) => e.hash), [a.hash, b.hash])
      const content = yield* client.read(a.hash).pipe(Stream.decodeText, Stream.mkString)
      assert.strictEqual(content, "alpha")
      const record = yield* client.stat(a.hash)
      assert.strictEqual(Option.getOrThrow(record).meta.description, "first")
    }))

  it.live("readFrom over a service that ignores Range leaves out the bytes before the offset; a 206 from elsewhere is refused", () =>
    Effect.gen(function*() {
      const content = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 256))
      const [ignoring, lying] = [sha256("served whole"), sha256("served from the wrong byte")]
      // A fake service: /sync/info, no range routes, and a pull route that answers ranges its own way.
      const server = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<ReturnType<typeof createHttpServer>>((resolve) => {
            const s = createHttpServer((req, res) => {
              if (req.url === Api.Routes.info) return res.end(JSON.stringify({ storeId: "fake", seq: 0 }))
              if (req.url === Api.paths.pull(ignoring)) return res.end(content)
              if (req.url === Api.paths.pull(lying)) {
                res.writeHead(206, { "content-range": `bytes 0-9999/10000` })
                return res.end(content)
              }
              res.writeHead(404, { "content-type": "application/json" })
              res.end(JSON.stringify({ error: { tag: "NotFound", message: "no such route" } }))
            })
            s.listen(0, "127.0.0.1", () => resolve(s))
          })
        ),
        (s) => Effect.promise(() => new Promise<void>((done) => s.close(() => done())))
      )
      const { port } = server.address() as AddressInfo
      const client = yield* HttpStore.make({ baseUrl: `http://127.0.0.1:${port}`, token })
      const tail = yield* Stream.runCollect(client.readFrom!(ignoring, 4_321)).pipe(Effect.map((chunks) => Buffer.concat(Array.from(chunks))))
      assert.isTrue(tail.equals(content.subarray(4_321)))
      const refused = yield* Effect.flip(Stream.runDrain(client.readFrom!(lying, 4_321)))
      assert.strictEqual(refused._tag, "StoreUnavailable")
      assert.match(refused.message, /asked for the bytes from 4321 on, got 206 bytes 0-9999\/10000/)
    }).pipe(Effect.scoped))
})
