/**
 * The CAN HTTP service as a plain HTTP client (fetch) sees it, over a real embedded store in a
 * temp dir and a real server on 127.0.0.1: auth, bad input answered with 4xx JSON (never 500,
 * never a partial asset), verified pushes, SSE replay-then-live, large streamed bodies, shutdown.
 */
import type { AssetHash } from "@can-sync/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, Stream } from "effect"
import { createHash } from "node:crypto"
import { headerJson } from "../src/CanHttpApi.ts"
import * as HttpService from "../src/HttpService.ts"
import { freshStore, servedStore, sha256 } from "./fixtures/stores.ts"

const token = "s3cret-token"
const auth = { authorization: `Bearer ${token}` }
const missingHash = sha256("never stored")


/** A real embedded store in a temp dir, served on a free port; both closed with the test's scope. */
const setup = Effect.map(
  servedStore({ prefix: "can-http-service-", token, keepAlive: "200 millis" }),
  ({ store, service }) => ({ store, url: service.url, port: service.port })
)

interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

const call = (url: string, init?: RequestInit) =>
  Effect.promise(async (): Promise<Reply> => {
    const res = await fetch(url, init)
    return { status: res.status, headers: res.headers, text: await res.text() }
  })

/** The body of a GET with `range`, as bytes. */
const bytesOf = (url: string, range: string) =>
  Effect.promise(async () => Buffer.from(await (await fetch(url, { headers: { ...auth, range } })).arrayBuffer()))

/** The JSON error envelope every failure carries. */
const errorOf = (reply: Reply): { readonly tag: string; readonly message: string } => {
  assert.match(reply.headers.get("content-type") ?? "", /application\/json/)
  const body: unknown = JSON.parse(reply.text)
  assert.isObject(body)
  const error = (body as { error?: { tag?: unknown; message?: unknown } }).error
  assert.isString(error?.tag)
  assert.isString(error?.message)
  return { tag: String(error?.tag), message: String(error?.message) }
}

const meta = (overrides: Partial<Record<string, unknown>> = {}) => ({
  description: "a cat",
  tags: ["pets"],
  trashed: false,
  createdAt: 1_700_000_000_000,
  updatedAt: 1_700_000_000_000,
  origin: "peer-a",
  ...overrides
})

/** Deterministic pseudo-random bytes, generated chunk by chunk and never held whole. */
const generated = (totalBytes: number, chunkBytes: number, seed: number) => {
  let produced = 0
  let state = seed >>> 0
  const hash = createHash("sha256")
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (produced >= totalBytes) {
        controller.close()
        return
      }
      const n = Math.min(chunkBytes, totalBytes - produced)
      const chunk = new Uint8Array(n)
      for (let i = 0; i < n; i++) {
        state = (Math.imul(state, 1664525) + 1013904223) >>> 0
        chunk[i] = state >>> 24
      }
      produced += n
      hash.update(chunk)
      controller.enqueue(chunk)
    }
  })
  return { stream, digest: () => hash.digest("hex") }
}

/** Reads a response body chunk by chunk, hashing it; returns its size and SHA-256. */
const hashBody = async (res: Response) => {
  const hash = createHash("sha256")
  let size = 0
  const reader = res.body!.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.length
    hash.update(value)
  }
  return { size, hash: hash.digest("hex") }
}

/** Collects SSE events (ignoring comments) until `count` arrived or `timeoutMs` passed. */
const readSse = async (res: Response, count: number, timeoutMs: number) => {
  const events: Array<{ id: string | undefined; event: string | undefined; data: unknown }> = []
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  let buffer = ""
  const deadline = Date.now() + timeoutMs
  while (events.length < count && Date.now() < deadline) {
    const next = await Promise.race([
      reader.read(),
      new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), Math.max(1, deadline - Date.now())))
    ])
    if (next === "timeout" || next.done) break
    buffer += decoder.decode(next.value, { stream: true })
    let end: number
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const fields = new Map<string, string>()
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue
        const colon = line.indexOf(":")
        fields.set(line.slice(0, colon), line.slice(colon + 1).trimStart())
      }
      if (fields.has("data")) {
        events.push({ id: fields.get("id"), event: fields.get("event"), data: JSON.parse(fields.get("data")!) })
      }
    }
  }
  await reader.cancel().catch(() => undefined)
  return events
}

const ingestText = (url: string, text: string, query = "") =>
  call(`${url}/assets${query}`, { method: "POST", headers: auth, body: text })

describe("HttpService", () => {
  it.live("GET /healthz answers without a token", () =>
    Effect.gen(function*() {
      const { url } = yield* setup
      const reply = yield* call(`${url}/healthz`)
      assert.strictEqual(reply.status, 200)
      assert.deepStrictEqual(JSON.parse(reply.text), { ok: true })
    }))

  it.live("every other route refuses a request without a token or with a wrong one: 401 JSON", () =>
    Effect.gen(function*() {
      const { url, store } = yield* setup
      const routes: ReadonlyArray<readonly [string, string]> = [
        ["GET", "/sync/info"],
        ["POST", "/sync/hashes"],
        ["GET", `/sync/pull/${missingHash}`],
        ["POST", `/sync/push/${missingHash}`],
        ["POST", "/sync/meta"],
        ["GET", "/sync/events"],
        ["POST", "/assets"],
        ["GET", `/assets/${missingHash}`],
        ["GET", `/assets/${missingHash}/meta`],
        ["POST", `/assets/${missingHash}/meta`]
      ]
      for (const [method, path] of routes) {
        for (const headers of [{}, { authorization: "Bearer wrong-token" }, { authorization: token }]) {
          const reply = yield* call(`${url}${path}`, {
            method,
            headers,
            ...(method === "POST" ? { body: "hello" } : {})
          })
          assert.strictEqual(reply.status, 401, `${method} ${path} with ${JSON.stringify(headers)}`)
          assert.strictEqual(errorOf(reply).tag, "Unauthorized")
        }
      }
      // Nothing was stored by the refused uploads.
      assert.strictEqual(yield* store.currentSeq, 0)
    }))

  it.live("the token is accepted in the query for SSE only", () =>
    Effect.gen(function*() {
      const { url } = yield* setup
      const controller = new AbortController()
      const sse = yield* Effect.promise(() =>
        fetch(`${url}/sync/events?token=${token}`, { signal: controller.signal })
      )
      assert.strictEqual(sse.status, 200)
      assert.match(sse.headers.get("content-type") ?? "", /text\/event-stream/)
      controller.abort()
      const wrong = yield* call(`${url}/sync/events?token=nope`)
      assert.strictEqual(wrong.status, 401)
      for (const path of ["/sync/info", "/sync/hashes", `/assets/${missingHash}/meta`]) {
        const reply = yield* call(`${url}${path}?token=${token}`, { method: path === "/sync/hashes" ? "POST" : "GET" })
        assert.strictEqual(reply.status, 401, path)
        assert.strictEqual(errorOf(reply).tag, "Unauthorized")
      }
    }))

  it.live("GET /sync/info names the store and its newest sequence", () =>
    Effect.gen(function*() {
      const { url, store } = yield* setup
      const before = JSON.parse((yield* call(`${url}/sync/info`, { headers: auth })).text)
      assert.deepStrictEqual(before, { storeId: store.storeId, seq: 0 })
      yield* ingestText(url, "one")
      const after = JSON.parse((yield* call(`${url}/sync/info`, { headers: auth })).text)
      assert.isAbove(after.seq, 0)
    }))

  it.live("malformed input is a 400 JSON error, never a 500", () =>
    Effect.gen(function*() {
      const { url, store } = yield* setup
      const stored = JSON.parse((yield* ingestText(url, "present")).text)
      const json = { ...auth, "content-type": "application/json" }
      const cases: ReadonlyArray<readonly [string, string, RequestInit]> = [
        ["bad JSON on /sync/meta", "/sync/meta", { method: "POST", headers: json, body: "{not json" }],
        ["schema-invalid meta on /sync/meta", "/sync/meta", {
          method: "POST",
          headers: json,
          body: JSON.stringify({ hash: stored.hash, meta: { description: 1 }, origin: "peer-a" })
        }],
        ["bad hash in /sync/meta", "/sync/meta", {
          method: "POST",
          headers: json,
          body: JSON.stringify({ hash: "abc", meta: meta(), origin: "peer-a" })
        }],
        ["bad JSON on an edit", `/assets/${stored.hash}/meta`, { method: "POST", headers: json, body: "[" }],
        ["schema-invalid edit", `/assets/${stored.hash}/meta`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({ tags: "not-an-array" })
        }],
        ["bad hash in a pull path", "/sync/pull/xyz", { headers: auth }],
        ["upper-case hash in a pull path", `/sync/pull/${stored.hash.toUpperCase()}`, { headers: auth }],
        ["bad hash in a download path", "/assets/not-a-hash", { headers: auth }],
        ["bad hash in a meta path", "/assets/1234/meta", { headers: auth }],
        ["bad hash in a push path", "/sync/push/1234", {
          method: "POST",
          headers: { ...auth, "x-can-meta": JSON.stringify(meta()), "x-can-origin": "peer-a" },
          body: "x"
        }],
        ["push without x-can-meta", `/sync/push/${sha256("x")}`, {
          method: "POST",
          headers: { ...auth, "x-can-origin": "peer-a" },
          body: "x"
        }],
        ["push with x-can-meta that is not JSON", `/sync/push/${sha256("x")}`, {
          method: "POST",
          headers: { ...auth, "x-can-meta": "{nope", "x-can-origin": "peer-a" },
          body: "x"
        }],
        ["push with schema-invalid x-can-meta", `/sync/push/${sha256("x")}`, {
          method: "POST",
          headers: { ...auth, "x-can-meta": JSON.stringify({ ...meta(), trashed: "no" }), "x-can-origin": "peer-a" },
          body: "x"
        }],
        ["push without x-can-origin", `/sync/push/${sha256("x")}`, {
          method: "POST",
          headers: { ...auth, "x-can-meta": JSON.stringify(meta()) },
          body: "x"
        }],
        ["negative since", "/sync/hashes?since=-1", { method: "POST", headers: auth }],
        ["since that is not a number", "/sync/hashes?since=abc", { method: "POST", headers: auth }],
        ["zero limit", "/sync/hashes?limit=0", { method: "POST", headers: auth }],
        ["fractional since on events", "/sync/events?since=1.5", { headers: auth }],
        ["garbage Last-Event-ID", "/sync/events", { headers: { ...auth, "last-event-id": "yesterday" } }],
        ["bad expected hash on ingest", "/assets?hash=zzz", { method: "POST", headers: auth, body: "x" }],
        ["a JSON body over the limit", `/assets/${stored.hash}/meta`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({ description: "x".repeat(2 * 1024 * 1024) })
        }]
      ]
      for (const [name, path, init] of cases) {
        const reply = yield* call(`${url}${path}`, init)
        assert.strictEqual(reply.status, 400, `${name}: ${reply.text}`)
        assert.strictEqual(errorOf(reply).tag, "InvalidInput", name)
      }
      // Only the one good ingest changed the store.
      const page = yield* store.list()
      assert.deepStrictEqual(page.digests.map((d) => d.hash), [stored.hash])
    }))

  it.live("an unknown route is a 404 JSON error", () =>
    Effect.gen(function*() {
      const { url } = yield* setup
      const reply = yield* call(`${url}/nope`, { headers: auth })
      assert.strictEqual(reply.status, 404)
      assert.strictEqual(errorOf(reply).tag, "RouteNotFound")
    }))

  it.live("a push whose content does not hash to its name is refused with 422, and nothing is stored", () =>
    Effect.gen(function*() {
      const { url, store } = yield* setup
      const claimed = sha256("what was promised")
      const reply = yield* call(`${url}/sync/push/${claimed}`, {
        method: "POST",
        headers: { ...auth, "x-can-meta": JSON.stringify(meta()), "x-can-origin": "peer-a" },
        body: "something else entirely"
      })
      assert.strictEqual(reply.status, 422)
      assert.strictEqual(errorOf(reply).tag, "HashMismatch")
      assert.isFalse(yield* store.has(claimed))
      assert.isFalse(yield* store.has(sha256("something else entirely")))
      assert.strictEqual(yield* store.currentSeq, 0)
      // An ingest with an expected hash is verified the same way.
      const ingest = yield* ingestText(url, "other bytes", `?hash=${claimed}`)
      assert.strictEqual(ingest.status, 422)
      assert.strictEqual(errorOf(ingest).tag, "HashMismatch")
      assert.strictEqual(yield* store.currentSeq, 0)
    }))

  it.live("a push stores verified content with the peer's metadata and says whether it already existed", () =>
    Effect.gen(function*() {
      const { url, store } = yield* setup
      const content = "pushed by a peer"
      const hash = sha256(content)
      const headers = {
        ...auth,
        // Non-ASCII travels as \u escapes: header bytes outside Latin-1 are refused by HTTP stacks.
        "x-can-meta": headerJson(meta({ description: "naïve café ✓" })),
        "x-can-origin": "peer-a"
      }
      const first = yield* call(`${url}/sync/push/${hash}`, { method: "POST", headers, body: content })
      assert.strictEqual(first.status, 200, first.text)
      assert.deepStrictEqual(JSON.parse(first.text), { hash, already_existed: false })
      const again = yield* call(`${url}/sync/push/${hash}`, { method: "POST", headers, body: content })
      assert.deepStrictEqual(JSON.parse(again.text), { hash, already_existed: true })

      const pulled = yield* call(`${url}/sync/pull/${hash}`, { headers: auth })
      assert.strictEqual(pulled.status, 200)
      assert.strictEqual(pulled.text, content)
      assert.strictEqual(pulled.headers.get("content-type"), "application/octet-stream")
      const pulledMeta = JSON.parse(pulled.headers.get("x-can-meta")!)
      assert.strictEqual(pulledMeta.description, "naïve café ✓")
      assert.strictEqual(pulledMeta.origin, "peer-a")

      const record = JSON.parse((yield* call(`${url}/assets/${hash}/meta`, { headers: auth })).text)
      assert.strictEqual(record.hash, hash)
      assert.strictEqual(record.size, Buffer.byteLength(content))
      assert.deepStrictEqual(record.meta.tags, ["pets"])
      const head = yield* call(`${url}/assets/${hash}`, { method: "HEAD", headers: auth })
      assert.strictEqual(head.status, 200)
      assert.strictEqual(head.headers.get("x-can-size"), String(Buffer.byteLength(content)))
      const events = yield* store.list()
      assert.strictEqual(events.digests.length, 1)
    }))

  it.live("a missing asset is a 404 JSON error on every route that names one", () =>
    Effect.gen(function*() {
      const { url } = yield* setup
      const json = { ...auth, "content-type": "application/json" }
      const cases: ReadonlyArray<readonly [string, RequestInit]> = [
        [`/sync/pull/${missingHash}`, { headers: auth }],
        [`/assets/${missingHash}`, { headers: auth }],
        [`/assets/${missingHash}/meta`, { headers: auth }],
        [`/assets/${missingHash}/meta`, { method: "POST", headers: json, body: JSON.stringify({ trashed: true }) }],
        ["/sync/meta", { method: "POST", headers: json, body: JSON.stringify({ hash: missingHash, meta: meta(), origin: "peer-a" }) }]
      ]
      for (const [path, init] of cases) {
        const reply = yield* call(`${url}${path}`, init)
        assert.strictEqual(reply.status, 404, path)
        assert.strictEqual(errorOf(reply).tag, "AssetNotFound")
      }
      const head = yield* call(`${url}/assets/${missingHash}`, { method: "HEAD", headers: auth })
      assert.strictEqual(head.status, 404)
    }))

  it.live("a Range of bytes=N- gets the bytes from N on (206, Content-Range); any other Range gets the whole asset", () =>
    Effect.gen(function*() {
      const { url, store } = yield* setup
      const content = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 31 + 7) % 251))
      const { hash } = yield* store.ingest(Stream.make(new Uint8Array(content)))
      for (const path of [`/sync/pull/${hash}`, `/assets/${hash}`]) {
        const part = yield* call(`${url}${path}`, { headers: { ...auth, range: "bytes=65536-" } })
        assert.strictEqual(part.status, 206, path)
        assert.strictEqual(part.headers.get("content-range"), "bytes 65536-99999/100000")
        assert.strictEqual(part.headers.get("content-length"), String(100_000 - 65_536))
        assert.isTrue((yield* bytesOf(`${url}${path}`, "bytes=65536-")).equals(content.subarray(65_536)))
        // from 0, past the end, with an end, a suffix, several ranges, or nonsense: the whole asset
        for (const range of ["bytes=0-", "bytes=100000-", "bytes=5-10", "bytes=-10", "bytes=5-,20-", "items=5-", "bytes=abc-"]) {
          const whole = yield* call(`${url}${path}`, { headers: { ...auth, range } })
          assert.strictEqual(whole.status, 200, `${path} ${range}`)
          assert.strictEqual(whole.headers.get("content-range"), null)
          assert.strictEqual(whole.headers.get("accept-ranges"), "bytes")
        }
        assert.isTrue((yield* bytesOf(`${url}${path}`, "bytes=5-10")).equals(content))
      }
    }))

  it.live("ingest takes description and tags from the query; edits and merges follow last-writer-wins", () =>
    Effect.gen(function*() {
      const { url } = yield* setup
      const json = { ...auth, "content-type": "application/json" }
      const ingested = JSON.parse((yield* ingestText(url, "tagged", "?description=hello%20world&tag=a&tag=b")).text)
      assert.strictEqual(ingested.hash, sha256("tagged"))
      assert.strictEqual(ingested.size, 6)
      assert.isFalse(ingested.already_existed)
      const record = JSON.parse((yield* call(`${url}/assets/${ingested.hash}/meta`, { headers: auth })).text)
      assert.strictEqual(record.meta.description, "hello world")
      assert.deepStrictEqual(record.meta.tags, ["a", "b"])

      const edited = yield* call(`${url}/assets/${ingested.hash}/meta`, {
        method: "POST",
        headers: json,
        body: JSON.stringify({ trashed: true })
      })
      assert.strictEqual(edited.status, 200, edited.text)
      const editedMeta = JSON.parse(edited.text).meta
      assert.isTrue(editedMeta.trashed)
      assert.strictEqual(editedMeta.description, "hello world")

      const older = yield* call(`${url}/sync/meta`, {
        method: "POST",
        headers: json,
        body: JSON.stringify({ hash: ingested.hash, meta: meta({ updatedAt: 1 }), origin: "peer-a" })
      })
      assert.strictEqual(JSON.parse(older.text).applied, false)
      const newer = yield* call(`${url}/sync/meta`, {
        method: "POST",
        headers: json,
        body: JSON.stringify({
          hash: ingested.hash,
          meta: meta({ updatedAt: editedMeta.updatedAt + 1000, description: "from a peer" }),
          origin: "peer-a"
        })
      })
      const merged = JSON.parse(newer.text)
      assert.isTrue(merged.applied)
      assert.strictEqual(merged.meta.description, "from a peer")
    }))

  it.live("POST /sync/hashes pages digests in change order", () =>
    Effect.gen(function*() {
      const { url } = yield* setup
      const hashes: Array<string> = []
      for (let i = 0; i < 5; i++) hashes.push(JSON.parse((yield* ingestText(url, `asset ${i}`)).text).hash)
      const seen: Array<string> = []
      let since = 0
      for (let pages = 0; pages < 10; pages++) {
        const page = JSON.parse((yield* call(`${url}/sync/hashes?since=${since}&limit=2`, { method: "POST", headers: auth })).text)
        seen.push(...page.assets.map((a: { hash: string }) => a.hash))
        since = page.next
        if (page.done) break
      }
      assert.deepStrictEqual(seen, hashes)
    }))

  it.live("GET /sync/events replays the changes after since (or Last-Event-ID), then goes live", () =>
    Effect.gen(function*() {
      const { url } = yield* setup
      const a = JSON.parse((yield* ingestText(url, "event a")).text).hash
      const b = JSON.parse((yield* ingestText(url, "event b")).text).hash
      const replay = yield* Effect.promise(() => fetch(`${url}/sync/events?since=0`, { headers: auth }))
      assert.strictEqual(replay.status, 200)
      const live = Effect.promise(() => readSse(replay, 3, 10_000))
      const reading = yield* Effect.forkChild(live)
      yield* Effect.sleep("100 millis")
      const c = JSON.parse((yield* ingestText(url, "event c")).text).hash
      const events = yield* Fiber.join(reading)
      assert.deepStrictEqual(events.map((e) => (e.data as { hash: string }).hash), [a, b, c])
      assert.deepStrictEqual(events.map((e) => e.event), ["asset", "asset", "asset"])
      assert.deepStrictEqual(events.map((e) => Number(e.id)), events.map((e) => (e.data as { seq: number }).seq))
      assert.strictEqual((events[0]!.data as { _tag: string })._tag, "AssetAdded")

      // Last-Event-ID wins over the URL's since: a reconnecting EventSource resumes where it was.
      const firstSeq = (events[0]!.data as { seq: number }).seq
      const resumed = yield* Effect.promise(() =>
        fetch(`${url}/sync/events?since=0`, { headers: { ...auth, "last-event-id": String(firstSeq) } })
      )
      const after = yield* Effect.promise(() => readSse(resumed, 2, 10_000))
      assert.deepStrictEqual(after.map((e) => (e.data as { hash: string }).hash), [b, c])
    }))

  it.live("a large upload streams in and reads back identical", () =>
    Effect.gen(function*() {
      const { url, store } = yield* setup
      const size = 48 * 1024 * 1024
      const upload = generated(size, 256 * 1024, 42)
      const init: RequestInit & { duplex: "half" } = {
        method: "POST",
        headers: auth,
        body: upload.stream,
        duplex: "half"
      }
      const reply = yield* call(`${url}/assets?description=big`, init)
      assert.strictEqual(reply.status, 200, reply.text)
      const result = JSON.parse(reply.text)
      const expected = upload.digest() as AssetHash
      assert.strictEqual(result.hash, expected)
      assert.strictEqual(result.size, size)
      assert.isTrue(yield* store.has(expected))

      const download = yield* Effect.promise(async () => {
        const res = await fetch(`${url}/assets/${expected}`, { headers: auth })
        return { status: res.status, length: res.headers.get("content-length"), body: await hashBody(res) }
      })
      assert.strictEqual(download.status, 200)
      assert.strictEqual(download.length, String(size))
      assert.deepStrictEqual(download.body, { size, hash: expected })
    }))

  it.live("a second service on a port in use fails with ServeError", () =>
    Effect.gen(function*() {
      const { store, port } = yield* setup
      const exit = yield* Effect.exit(HttpService.serve(store, { port, token }))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const error = exit.cause.reasons.find((r) => r._tag === "Fail")
        assert.strictEqual(error?._tag === "Fail" ? error.error._tag : undefined, "ServeError")
      }
    }))

  it.live("an asset over the store's size limit is refused with 413, and nothing is stored", () =>
    Effect.gen(function*() {
      const store = yield* freshStore("can-http-service-", { maxAssetBytes: 1024 })
      const { url } = yield* HttpService.serve(store, { port: 0, token })
      const reply = yield* call(`${url}/assets`, { method: "POST", headers: auth, body: new Uint8Array(64 * 1024) })
      assert.strictEqual(reply.status, 413)
      assert.strictEqual(errorOf(reply).tag, "AssetTooLarge")
      assert.strictEqual(yield* store.currentSeq, 0)
    }))

  it.live("refuses to start without a token", () =>
    Effect.gen(function*() {
      const store = yield* freshStore("can-http-service-")
      const error = yield* Effect.flip(HttpService.serve(store, { port: 0, token: "" }))
      assert.strictEqual(error._tag, "ServeError")
    }))

  it.live("closing the scope ends open SSE streams, lets in-flight uploads finish, then frees the port", () =>
    Effect.gen(function*() {
      const store = yield* freshStore("can-http-service-", { watchInterval: "50 millis" })
      const scope = yield* Scope.make()
      const { url, port } = yield* HttpService.serve(store, { port: 0, token, shutdownGrace: "30 seconds" }).pipe(
        Scope.provide(scope)
      )
      const sse = yield* Effect.promise(() => fetch(`${url}/sync/events`, { headers: auth }))
      const ended = Effect.promise(async () => {
        const reader = sse.body!.getReader()
        for (let i = 0; i < 1000; i++) {
          const next = await reader.read().catch(() => ({ done: true as const }))
          if (next.done) return true
        }
        return false
      })
      const watching = yield* Effect.forkChild(ended)

      // An upload still sending its body when the service is told to stop.
      let sent = 0
      const slowBody = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent >= 5) return controller.close()
          await new Promise((resolve) => setTimeout(resolve, 50))
          controller.enqueue(new Uint8Array(1000).fill(++sent))
        }
      })
      const init: RequestInit & { duplex: "half" } = { method: "POST", headers: auth, body: slowBody, duplex: "half" }
      const uploading = yield* Effect.forkChild(call(`${url}/assets`, init))
      yield* Effect.sleep("60 millis")

      yield* Scope.close(scope, Exit.void)
      assert.isTrue(yield* Fiber.join(watching), "the SSE response ended")
      const upload = yield* Fiber.join(uploading)
      assert.strictEqual(upload.status, 200, upload.text)
      assert.isTrue(yield* store.has(JSON.parse(upload.text).hash))

      const refused = yield* Effect.promise(() => fetch(`${url}/healthz`).then(() => false, () => true))
      assert.isTrue(refused, "nothing listens any more")
      // The port is free again: a new service binds it.
      const again = yield* HttpService.serve(store, { port, token })
      assert.strictEqual(again.port, port)
      assert.strictEqual((yield* call(`${again.url}/healthz`)).status, 200)
    }))
})
