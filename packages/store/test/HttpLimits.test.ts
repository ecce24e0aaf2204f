/**
 * The CAN HTTP service's resource bounds (issue 12, item 8), measured by what the service holds
 * (its `load`, temp files, the store's watch counters), not by memory or time: uploads past the
 * cap and connections past the cap are refused with 503 and Retry-After, stalled and trickling
 * uploads are cut and give everything back, headers must come in time, and any number of SSE
 * followers share one poller of the index.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import type { Duration } from "effect"
import { request } from "node:http"
import type { ClientRequest, IncomingMessage } from "node:http"
import { connect } from "node:net"
import { readdir } from "node:fs/promises"
import { join } from "node:path"
import { headerJson } from "../src/CanHttpApi.ts"
import * as EmbeddedStore from "../src/EmbeddedStore.ts"
import * as HttpService from "../src/HttpService.ts"
import { sha256, tempDir } from "./fixtures/stores.ts"

const token = "limits-token"
const auth = { authorization: `Bearer ${token}` }

const serveWith = (options: Partial<HttpService.HttpServiceOptions>) =>
  Effect.gen(function*() {
    const dataDir = yield* tempDir("can-http-limits-")
    const store = yield* EmbeddedStore.make({ dataDir, watchInterval: "50 millis" })
    const service = yield* HttpService.serve(store, { port: 0, token, ...options })
    return { dataDir, store, service }
  })

/** Polls `check` every 20 ms until it holds; fails with `what` after 20 s. */
const until = <E>(what: string, check: Effect.Effect<boolean, E>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000; i++) {
      if (yield* check) return
      yield* Effect.sleep("20 millis")
    }
    return yield* Effect.die(new Error(`timed out after 20 s waiting until ${what}`))
  })

const tmpCount = (dataDir: string) => Effect.promise(() => readdir(join(dataDir, "tmp")).then((names) => names.length))

interface Answer {
  readonly status: number
  readonly headers: IncomingMessage["headers"]
  readonly body: { readonly error?: { readonly tag: string; readonly message: string } }
}

/** A POST whose body the test writes itself; `answer` completes with the response (or the socket's end). */
const upload = (url: string, path: string, headers: Record<string, string> = {}) => {
  let req: ClientRequest
  const answer = new Promise<Answer | "closed">((resolve) => {
    req = request(`${url}${path}`, { method: "POST", headers: { ...auth, ...headers } }, (res) => {
      let text = ""
      res.setEncoding("utf8").on("data", (chunk: string) => (text += chunk)).on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text === "" ? {} : JSON.parse(text) }))
      res.on("error", () => resolve("closed"))
    })
    req.on("error", () => resolve("closed"))
  })
  return { req: req!, answer }
}

/** A push of `content` under its hash, with valid metadata. */
const pushPath = (content: string) => `/sync/push/${sha256(content)}`
const pushHeaders = {
  "x-can-meta": headerJson({ description: "", tags: [], trashed: false, createdAt: 1, updatedAt: 1, origin: "peer-a" }),
  "x-can-origin": "peer-a"
}

const answerOf = (pending: { readonly answer: Promise<Answer | "closed"> }, deadline: Duration.Input = "20 seconds") =>
  Effect.promise(() => pending.answer).pipe(
    Effect.timeoutOrElse({ duration: deadline, orElse: () => Effect.die(new Error("no answer within the deadline")) })
  )

describe("HttpService resource bounds", () => {
  it.live("uploads past the cap are refused with 503 and Retry-After; stalled ones hold a temp file each, and give everything back when they close", () =>
    Effect.gen(function*() {
      const { dataDir, service } = yield* serveWith({ maxUploads: 4, uploadIdleTimeout: "5 minutes" })
      const stalled = Array.from({ length: 4 }, (_, i) => {
        const pending = upload(service.url, pushPath(`stalled ${i}`), pushHeaders)
        pending.req.write("x".repeat(1000)) // then nothing more
        return pending
      })
      yield* until("4 uploads are in progress", Effect.map(service.load, (load) => load.uploads === 4))
      yield* until("each holds one temp file", Effect.map(tmpCount(dataDir), (n) => n === 4))

      for (let i = 0; i < 6; i++) {
        const extra = upload(service.url, pushPath(`extra ${i}`), pushHeaders)
        extra.req.end("extra")
        const answer = yield* answerOf(extra)
        assert.notStrictEqual(answer, "closed")
        const { status, headers, body } = answer as Answer
        assert.deepStrictEqual({ status, retryAfter: headers["retry-after"], tag: body.error?.tag }, { status: 503, retryAfter: "1", tag: "ServiceBusy" })
      }
      assert.strictEqual((yield* service.load).uploads, 4)

      for (const pending of stalled) pending.req.destroy()
      yield* until("no upload is in progress", Effect.map(service.load, (load) => load.uploads === 0))
      yield* until("no temp file is left", Effect.map(tmpCount(dataDir), (n) => n === 0))
      yield* until("every connection is closed", Effect.map(service.load, (load) => load.connections === 0))

      const after = upload(service.url, pushPath("after"), pushHeaders)
      after.req.end("after")
      assert.strictEqual(((yield* answerOf(after)) as Answer).status, 200)
    }))

  it.live("an upload that goes silent, or trickles below the minimum rate, is cut with 408 and leaves nothing behind", () =>
    Effect.gen(function*() {
      const { dataDir, service, store } = yield* serveWith({ uploadIdleTimeout: "1 second", minUploadBytesPerSecond: 1024 })

      const silent = upload(service.url, pushPath("silent"), pushHeaders)
      silent.req.write("12345")
      const cutSilent = (yield* answerOf(silent)) as Answer
      assert.deepStrictEqual({ status: cutSilent.status, tag: cutSilent.body.error?.tag }, { status: 408, tag: "UploadTooSlow" })
      assert.match(cutSilent.body.error?.message ?? "", /nothing received for 1000 ms/)

      // 10 bytes every 200 ms: never silent for a second, but far below 1 KiB/s
      const trickle = upload(service.url, "/assets", {})
      const dripping = setInterval(() => trickle.req.write("0123456789"), 200)
      const cutTrickle = yield* answerOf(trickle).pipe(Effect.ensuring(Effect.sync(() => clearInterval(dripping))))
      assert.notStrictEqual(cutTrickle, "closed")
      assert.deepStrictEqual({ status: (cutTrickle as Answer).status, tag: (cutTrickle as Answer).body.error?.tag }, { status: 408, tag: "UploadTooSlow" })
      assert.match((cutTrickle as Answer).body.error?.message ?? "", /below the minimum rate/)
      trickle.req.destroy()

      yield* until("no upload is in progress", Effect.map(service.load, (load) => load.uploads === 0))
      yield* until("no temp file is left", Effect.map(tmpCount(dataDir), (n) => n === 0))
      assert.strictEqual(yield* store.currentSeq, 0)
    }))

  it.live("a request on a connection past the cap is answered 503 with Retry-After; once connections close, requests are served again", () =>
    Effect.gen(function*() {
      const { service } = yield* serveWith({ maxConnections: 3, keepAlive: "200 millis" })
      const followers = yield* Effect.promise(() =>
        Promise.all(Array.from({ length: 3 }, () => {
          const controller = new AbortController()
          return fetch(`${service.url}/sync/events`, { headers: auth, signal: controller.signal }).then((res) => ({ res, controller }))
        }))
      )
      for (const { res } of followers) assert.strictEqual(res.status, 200)
      yield* until("3 connections are open", Effect.map(service.load, (load) => load.connections === 3))
      const refused = yield* Effect.promise(() => fetch(`${service.url}/sync/info`, { headers: auth, signal: AbortSignal.timeout(10_000) }))
      assert.strictEqual(refused.status, 503)
      assert.strictEqual(refused.headers.get("retry-after"), "1")
      assert.strictEqual(((yield* Effect.promise(() => refused.json())) as Answer["body"]).error?.tag, "ServiceBusy")

      for (const { controller } of followers) controller.abort()
      yield* until("the connections are closed", Effect.map(service.load, (load) => load.connections === 0))
      const served = yield* Effect.promise(() => fetch(`${service.url}/sync/info`, { headers: auth, signal: AbortSignal.timeout(10_000) }))
      assert.strictEqual(served.status, 200)
    }))

  it.live("a client that does not finish its headers in time is disconnected", () =>
    Effect.gen(function*() {
      const { service } = yield* serveWith({ headersTimeout: "1 second" })
      const closed = yield* Effect.promise(() =>
        new Promise<string>((resolve) => {
          const socket = connect(service.port, "127.0.0.1", () => socket.write("POST /assets HTTP/1.1\r\nHost: x\r\n"))
          let received = ""
          socket.setEncoding("utf8").on("data", (text: string) => (received += text))
          socket.on("close", () => resolve(received))
          socket.on("error", () => undefined)
          setTimeout(() => {
            resolve("still open after 20 s")
            socket.destroy()
          }, 20_000).unref()
        })
      )
      assert.match(closed, /^(HTTP\/1\.1 408|)/)
      assert.notStrictEqual(closed, "still open after 20 s")
    }))

  it.live("50 SSE followers share one poller: idle, they read nothing from the index; a write by another process reaches all of them", () =>
    Effect.gen(function*() {
      const { dataDir, service, store } = yield* serveWith({ keepAlive: "10 seconds" })
      const clients = yield* Effect.promise(() =>
        Promise.all(Array.from({ length: 50 }, () => {
          const controller = new AbortController()
          return fetch(`${service.url}/sync/events`, { headers: auth, signal: controller.signal }).then((res) => ({ res, controller }))
        }))
      )
      yield* until("50 followers", Effect.map(store.watchStats, (w) => w.followers === 50))
      const before = yield* store.watchStats
      yield* until("the poller looked 10 more times", Effect.map(store.watchStats, (w) => w.polls >= before.polls + 10))
      const idle = yield* store.watchStats
      assert.strictEqual(idle.followerReads, before.followerReads, "idle followers do not query the index")

      // another process's write (a second store on the same directory) reaches every follower
      const hash = yield* Effect.scoped(Effect.flatMap(
        EmbeddedStore.make({ dataDir }),
        (other) => Effect.map(other.ingest(Stream.make(new TextEncoder().encode("from another process"))), (r) => r.hash)
      ))
      const firstEvents = yield* Effect.promise(() =>
        Promise.all(clients.map(async ({ res }) => {
          const reader = res.body!.getReader()
          const decoder = new TextDecoder()
          let text = ""
          while (!text.includes("event: asset")) {
            const next = await reader.read()
            if (next.done) break
            text += decoder.decode(next.value, { stream: true })
          }
          return text
        }))
      ).pipe(Effect.timeoutOrElse({ duration: "20 seconds", orElse: () => Effect.die(new Error("not every follower got the event in 20 s")) }))
      for (const text of firstEvents) assert.include(text, hash)
      const after = yield* store.watchStats
      assert.isAtMost(after.followerReads - idle.followerReads, 50 * 3, "each follower reads about once per change")

      for (const { controller } of clients) controller.abort()
      yield* until("no follower is left", Effect.map(store.watchStats, (w) => w.followers === 0))
      // with no follower the poller stops: a few intervals later it has looked at most once more
      const stopped = (yield* store.watchStats).polls
      yield* Effect.sleep("300 millis")
      assert.isAtMost((yield* store.watchStats).polls, stopped + 1)
    }))
})
