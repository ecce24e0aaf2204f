/**
 * The CAN HTTP service against a hostile client (issue 12): metadata outside core's
 * `MetadataLimits` is refused with a typed 400 before any content is read, on every route that
 * takes metadata; and the event stream says so when asked to resume past the store's newest change.
 */
import { MetadataLimits } from "@can-sync/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Stream } from "effect"
import { headerJson } from "../src/CanHttpApi.ts"
import * as HttpStore from "../src/HttpStore.ts"
import { servedStore, sha256 } from "./fixtures/stores.ts"

const token = "hardening-token"
const auth = { authorization: `Bearer ${token}` }

const setup = Effect.map(
  servedStore({ prefix: "can-http-hardening-", token, keepAlive: "200 millis" }),
  ({ store, service }) => ({ store, url: service.url })
)

interface Reply {
  readonly status: number
  readonly body: unknown
}

const call = (url: string, init?: RequestInit) =>
  Effect.promise(async (): Promise<Reply> => {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) })
    const text = await res.text()
    return { status: res.status, body: text === "" ? undefined : JSON.parse(text) }
  })

const meta = (overrides: Record<string, unknown> = {}) => ({
  description: "honest",
  tags: ["t"],
  trashed: false,
  createdAt: 1_700_000_000_000,
  updatedAt: 1_700_000_000_000,
  origin: "peer-a",
  ...overrides
})

interface SseEvent {
  readonly id: string | undefined
  readonly event: string | undefined
  readonly data: unknown
}

/** The first `count` SSE events of `url` (comments skipped); fails after 10 s. */
const sseEvents = (url: string, headers: Record<string, string>, count: number) =>
  Effect.promise(async (): Promise<ReadonlyArray<SseEvent>> => {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), 10_000)
    const events: Array<SseEvent> = []
    try {
      const res = await fetch(url, { headers, signal: controller.signal })
      const reader = res.body!.getReader()
      const decoder = new TextDecoder()
      let buffer = ""
      while (events.length < count) {
        const next = await reader.read()
        if (next.done) break
        buffer += decoder.decode(next.value, { stream: true })
        let end: number
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const fields = new Map<string, string>()
          for (const line of buffer.slice(0, end).split("\n")) {
            if (line.startsWith(":")) continue
            const colon = line.indexOf(":")
            fields.set(line.slice(0, colon), line.slice(colon + 1).trimStart())
          }
          buffer = buffer.slice(end + 2)
          if (fields.has("data")) events.push({ id: fields.get("id"), event: fields.get("event"), data: JSON.parse(fields.get("data")!) })
        }
      }
      await reader.cancel().catch(() => undefined)
    } catch {
      // aborted at the deadline: the caller sees how many arrived
    } finally {
      clearTimeout(timer)
    }
    return events
  })

describe("HttpService against a hostile client", () => {
  it.live("metadata outside MetadataLimits, or a peer's version more than a day ahead of this clock, is a 400 MetadataInvalid naming the field, on push, sync/meta, ingest and edit; nothing is stored", () =>
    Effect.gen(function*() {
      const { store, url } = yield* setup
      const content = "pushed content"
      const hash = sha256(content)
      const cases: ReadonlyArray<readonly [string, string, RequestInit, string]> = [
        ["push updatedAt 2^53-1", `${url}/sync/push/${hash}`, {
          method: "POST",
          headers: { ...auth, "x-can-meta": headerJson(meta({ updatedAt: Number.MAX_SAFE_INTEGER })), "x-can-origin": "peer-a" },
          body: content
        }, "updatedAt"],
        ["push createdAt past the last date", `${url}/sync/push/${hash}`, {
          method: "POST",
          headers: { ...auth, "x-can-meta": headerJson(meta({ createdAt: MetadataLimits.maxTimestamp + 1 })), "x-can-origin": "peer-a" },
          body: content
        }, "createdAt"],
        ["push a 100 KB description", `${url}/sync/push/${hash}`, {
          method: "POST",
          headers: { ...auth, "x-can-meta": headerJson(meta({ description: "d".repeat(100_000) })), "x-can-origin": "peer-a" },
          body: content
        }, "description"],
        ["sync/meta updatedAt 1.5e300", `${url}/sync/meta`, {
          method: "POST",
          headers: { ...auth, "content-type": "application/json" },
          body: JSON.stringify({ hash, meta: meta({ updatedAt: 1.5e300 }), origin: "peer-a" })
        }, "updatedAt"],
        ["sync/meta two days ahead of this clock", `${url}/sync/meta`, {
          method: "POST",
          headers: { ...auth, "content-type": "application/json" },
          body: JSON.stringify({ hash, meta: meta({ updatedAt: Date.now() + 2 * 86_400_000 }), origin: "peer-a" })
        }, "updatedAt"],
        ["push at the last date (near the version ceiling)", `${url}/sync/push/${hash}`, {
          method: "POST",
          headers: { ...auth, "x-can-meta": headerJson(meta({ updatedAt: MetadataLimits.maxTimestamp })), "x-can-origin": "peer-a" },
          body: content
        }, "updatedAt"],
        ["ingest with a 300-byte tag", `${url}/assets?tag=${"t".repeat(300)}`, { method: "POST", headers: auth, body: content }, "tags"],
        ["edit a 600 KB description", `${url}/assets/${hash}/meta`, {
          method: "POST",
          headers: { ...auth, "content-type": "application/json" },
          body: JSON.stringify({ description: "d".repeat(600_000) })
        }, "description"]
      ]
      for (const [what, target, init, field] of cases) {
        const reply = yield* call(target, init)
        assert.strictEqual(reply.status, 400, what)
        const error = (reply.body as { error: { tag: string; field?: string; message: string } }).error
        assert.deepStrictEqual({ tag: error.tag, field: error.field }, { tag: "MetadataInvalid", field }, what)
        assert.match(error.message, /^invalid metadata/, what)
      }
      assert.isFalse(yield* store.has(hash))
      assert.strictEqual(yield* store.currentSeq, 0)
      assert.isTrue(Option.isNone(yield* store.stat(hash)))
    }))

  it.live("an SSE resume point past the store's newest change gets a reset event, then a replay from 0", () =>
    Effect.gen(function*() {
      const { store, url } = yield* setup
      const a = (yield* store.ingest(Stream.make(new TextEncoder().encode("reset a")))).hash
      const b = (yield* store.ingest(Stream.make(new TextEncoder().encode("reset b")))).hash
      for (const headers of [auth, { ...auth, "last-event-id": "500" }]) {
        const target = headers === auth ? `${url}/sync/events?since=500` : `${url}/sync/events`
        const events = yield* sseEvents(target, headers, 3)
        assert.deepStrictEqual(events.map((e) => e.event), ["reset", "asset", "asset"])
        assert.deepStrictEqual(events[0]!.data, { since: 500, seq: 2 })
        assert.strictEqual(events[0]!.id, "0")
        assert.deepStrictEqual(events.slice(1).map((e) => (e.data as { hash: string }).hash), [a, b])
      }
    }))

  it.live("an HttpStore following from past the service's newest change (a recreated store) receives every change from 0", () =>
    Effect.gen(function*() {
      const { store, url } = yield* setup
      const a = (yield* store.ingest(Stream.make(new TextEncoder().encode("client a")))).hash
      const b = (yield* store.ingest(Stream.make(new TextEncoder().encode("client b")))).hash
      const client = yield* HttpStore.make({ baseUrl: url, token })
      const events = yield* Stream.runCollect(client.events({ since: 500 }).pipe(Stream.take(2))).pipe(
        Effect.timeoutOrElse({ duration: "10 seconds", orElse: () => Effect.die(new Error("no events after a reset within 10 s")) })
      )
      assert.deepStrictEqual(Array.from(events, (e) => e.hash), [a, b])
    }))

  it.live("the embedded store's events from past its newest change replay from 0", () =>
    Effect.gen(function*() {
      const { store } = yield* setup
      const a = (yield* store.ingest(Stream.make(new TextEncoder().encode("embedded a")))).hash
      const events = yield* Stream.runCollect(store.events({ since: 99 }).pipe(Stream.take(1))).pipe(
        Effect.timeoutOrElse({ duration: "10 seconds", orElse: () => Effect.die(new Error("no replay within 10 s")) })
      )
      assert.deepStrictEqual(Array.from(events, (e) => e.hash), [a])
    }))
})
