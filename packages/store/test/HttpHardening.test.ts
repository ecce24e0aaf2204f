/**
 * The CAN HTTP service against a hostile client (issue 12): metadata outside core's
 * `MetadataLimits` is refused with a typed 400 before any content is read, on every route that
 * takes metadata; and the event stream says so when asked to resume past the store's newest change.
 */
import { MetadataLimits } from "@can-sync/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { headerJson } from "../src/CanHttpApi.ts"
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

describe("HttpService against a hostile client", () => {
  it.live("metadata outside MetadataLimits is a 400 MetadataInvalid naming the field, on push, sync/meta, ingest and edit; nothing is stored", () =>
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
})
