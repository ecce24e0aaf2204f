/**
 * Range reconciliation behind the CAN HTTP service (issue 13): the service answers range
 * fingerprints and items of its store (`/sync/ranges/*`), bounded per request and validating every
 * input; HttpStore provides `ranges` through them, splitting its calls to fit, and gives exactly
 * what the store behind the service gives. A service whose store keeps no ranges answers them 404,
 * and its clients then have no `ranges` (the engine lists every digest).
 */
import type { CanStoreShape } from "@can-sync/core"
import * as Fingerprints from "@can-sync/core/Fingerprints"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { randomBytes } from "node:crypto"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import * as Api from "../src/CanHttpApi.ts"
import * as HttpService from "../src/HttpService.ts"
import * as HttpStore from "../src/HttpStore.ts"
import { freshStore } from "./fixtures/stores.ts"

const token = "ranges-token"
const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" }

interface Reply {
  readonly status: number
  readonly body: unknown
}

const post = (url: string, body: string, headers: Record<string, string> = auth) =>
  Effect.promise(async (): Promise<Reply> => {
    const res = await fetch(url, { method: "POST", headers, body, signal: AbortSignal.timeout(10_000) })
    const text = await res.text()
    return { status: res.status, body: text === "" ? undefined : JSON.parse(text) }
  })

const tagOf = (reply: Reply): unknown =>
  typeof reply.body === "object" && reply.body !== null && "error" in reply.body
    ? (reply.body.error as { readonly tag?: unknown }).tag
    : undefined

const byHash = (x: Fingerprints.RangeItem, y: Fingerprints.RangeItem) => (x.hash < y.hash ? -1 : x.hash > y.hash ? 1 : 0)

/** `n` random items (a few origins), in hash order: more than one items response holds. */
const randomItems = (n: number): Array<Fingerprints.RangeItem> => {
  const origins = ["a".repeat(32), "b".repeat(32), "c".repeat(31)]
  return Array.from({ length: n }, (_, i) => ({
    hash: randomBytes(32).toString("hex"),
    size: i,
    updatedAt: 1_700_000_000_000 + i,
    origin: origins[i % 3]!
  })).sort(byHash)
}

/** A served store (embedded, with its `ranges` replaced or hidden) and an HttpStore client of it. */
const served = (ranges: "embedded" | "none" | Fingerprints.RangeSource) =>
  Effect.gen(function*() {
    const embedded = yield* freshStore("can-http-ranges-", { watchInterval: "50 millis" })
    const store: CanStoreShape = ranges === "embedded" ? embedded : { ...embedded, ranges: ranges === "none" ? undefined : ranges }
    const service = yield* HttpService.serve(store, { port: 0, token, keepAlive: "1 second" })
    const client = yield* HttpStore.make({ baseUrl: service.url, token })
    return { embedded, store, service, client }
  })

const hex = (fp: Fingerprints.Fingerprint) => `${fp.count}:${Buffer.from(fp.sum).toString("hex")}`

/** Every prefix of 0–3 digits (4,369: more than one request holds) and the 4- to 6-digit prefixes of some items. */
const manyPrefixes = (items: ReadonlyArray<Fingerprints.RangeItem>) => {
  const out = [""]
  for (const digits of [1, 2, 3]) {
    for (let i = 0; i < 16 ** digits; i++) out.push(i.toString(16).padStart(digits, "0"))
  }
  for (const item of items.slice(0, 200)) for (const n of [4, 5, 6]) out.push(item.hash.slice(0, n))
  return out
}

describe("range reconciliation through the CAN HTTP service", () => {
  it.live("HttpStore's ranges give exactly the store's fingerprints and items, across many requests and a range larger than one response", () =>
    Effect.gen(function*() {
      const items = randomItems(3 * Api.RangeLimits.maxItems + 123)
      const memory = Fingerprints.memorySource(items)
      const { client } = yield* served(memory)
      const ranges = client.ranges
      assert.isDefined(ranges, "the service answers range requests")
      if (ranges === undefined) return
      const prefixes = manyPrefixes(items)
      assert.isAbove(prefixes.length, Api.RangeLimits.maxPrefixes)
      const expected = (yield* memory.fingerprints(prefixes)).map(hex)
      const actual = (yield* ranges.fingerprints(prefixes)).map(hex)
      assert.deepStrictEqual(actual, expected)
      // "" holds every item (more than three responses' worth): asked as its children, joined in order.
      const [all, first, deep] = yield* ranges.items(["", items[0]!.hash.slice(0, 1), items[7]!.hash.slice(0, 5)])
      assert.deepStrictEqual(all, items)
      assert.deepStrictEqual(first, items.filter((i) => i.hash.startsWith(items[0]!.hash.slice(0, 1))))
      assert.deepStrictEqual(deep, items.filter((i) => i.hash.startsWith(items[7]!.hash.slice(0, 5))))
      // Many small ranges at once: answered over several responses, each list in its place.
      const small = items.slice(0, 3_000).map((i) => i.hash.slice(0, 6))
      const lists = yield* ranges.items(small)
      assert.strictEqual(lists.length, small.length)
      lists.forEach((list, k) => assert.deepStrictEqual(list, items.filter((i) => i.hash.startsWith(small[k]!))))
    }).pipe(Effect.scoped), 60_000)

  it.live("over an embedded store: the client's ranges equal the store's after ingests and an edit", () =>
    Effect.gen(function*() {
      const { embedded, client } = yield* served("embedded")
      const hashes = yield* Effect.forEach(Array.from({ length: 40 }, (_, i) => i), (i) =>
        embedded.ingest(Stream.make(new TextEncoder().encode(`http range asset ${i}`))).pipe(Effect.map((r) => r.hash)))
      yield* embedded.editMeta(hashes[3]!, { description: "edited" })
      const own = embedded.ranges
      const remote = client.ranges
      assert.isDefined(own)
      assert.isDefined(remote)
      if (own === undefined || remote === undefined) return
      const prefixes = ["", "0", "a", "f", ...hashes.map((h) => h.slice(0, 4)), ...hashes.map((h) => h.slice(0, 7))]
      assert.deepStrictEqual((yield* remote.fingerprints(prefixes)).map(hex), (yield* own.fingerprints(prefixes)).map(hex))
      assert.deepStrictEqual(yield* remote.items(prefixes), yield* own.items(prefixes))
    }).pipe(Effect.scoped), 60_000)

  it.live("hostile requests are refused with a typed 400, unauthenticated ones with 401; nothing is answered past the bounds", () =>
    Effect.gen(function*() {
      const items = randomItems(Api.RangeLimits.maxItems + 500)
      const { service } = yield* served(Fingerprints.memorySource(items))
      const fingerprints = `${service.url}${Api.Routes.rangeFingerprints}`
      const itemsUrl = `${service.url}${Api.Routes.rangeItems}`
      const refused = [
        JSON.stringify({ prefixes: ["G"] }),
        JSON.stringify({ prefixes: ["0".repeat(65)] }),
        JSON.stringify({ prefixes: [1] }),
        JSON.stringify({ prefixes: "abc" }),
        JSON.stringify({}),
        "not json",
        JSON.stringify({ prefixes: Array.from({ length: Api.RangeLimits.maxPrefixes + 1 }, () => "00000") }),
        // 17 times the whole space: past the bucket span one request may cover.
        JSON.stringify({ prefixes: Array.from({ length: 17 }, () => "") })
      ]
      for (const url of [fingerprints, itemsUrl]) {
        for (const body of refused) {
          const reply = yield* post(url, body)
          assert.strictEqual(reply.status, 400, `${url} ${body.slice(0, 40)}`)
          assert.strictEqual(tagOf(reply), "InvalidInput")
        }
        const anonymous = yield* post(url, JSON.stringify({ prefixes: [""] }), { "content-type": "application/json" })
        assert.strictEqual(anonymous.status, 401)
      }
      // More items than one response holds: nothing for "" (ask its children), the leading prefixes that fit otherwise.
      const whole = yield* post(itemsUrl, JSON.stringify({ prefixes: [""] }))
      assert.strictEqual(whole.status, 200)
      assert.deepStrictEqual(whole.body, { lists: [] })
      const halves = yield* post(itemsUrl, JSON.stringify({ prefixes: Array.from("0123456789abcdef") }))
      const lists = (halves.body as { lists: ReadonlyArray<ReadonlyArray<unknown>> }).lists
      assert.isAbove(lists.length, 0)
      assert.isBelow(lists.length, 16)
      assert.isAtMost(lists.reduce((n, l) => n + l.length, 0), Api.RangeLimits.maxItems)
    }).pipe(Effect.scoped), 60_000)

  it.live("a service whose store keeps no ranges answers 404; its client has no ranges", () =>
    Effect.gen(function*() {
      const { service, client } = yield* served("none")
      assert.isUndefined(client.ranges)
      const reply = yield* post(`${service.url}${Api.Routes.rangeFingerprints}`, JSON.stringify({ prefixes: [""] }))
      assert.strictEqual(reply.status, 404)
    }).pipe(Effect.scoped), 60_000)

  it.live("a service that answers range requests wrongly fails the client's calls with StoreUnavailable, never wrong items", () =>
    Effect.gen(function*() {
      const hash = (prefix: string) => prefix + "0".repeat(64 - prefix.length)
      const item = (h: string) => ({ hash: h, size: 1, updatedAt: 1, origin: "x" })
      // A fake service: honest /sync/info and probe, then one kind of wrong answer per prefix asked.
      const lies: Record<string, unknown> = {
        a: { lists: [[item(hash("b"))]] }, // an item outside its prefix
        c: { lists: [[item(hash("c1")), item(hash("c0"))]] }, // out of hash order
        d: { lists: [[], []] }, // more lists than prefixes
        e: { lists: [Array.from({ length: Api.RangeLimits.maxItems + 1 }, (_, i) => item(hash(`e${i.toString(16).padStart(4, "0")}`)))] },
        f: { lists: [[{ hash: "not a hash", size: 1, updatedAt: 1, origin: "x" }]] }
      }
      const server = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<ReturnType<typeof createServer>>((resolve) => {
            const s = createServer((req, res) => {
              let body = ""
              req.on("data", (chunk: Buffer) => (body += chunk.toString()))
              req.on("end", () => {
                res.setHeader("content-type", "application/json")
                if (req.url === Api.Routes.info) return res.end(JSON.stringify({ storeId: "liar", seq: 0 }))
                const prefixes = (JSON.parse(body) as { prefixes: ReadonlyArray<string> }).prefixes
                if (req.url === Api.Routes.rangeFingerprints) {
                  // the probe is honest; real requests get one fingerprint too few
                  return res.end(JSON.stringify({ fingerprints: prefixes.slice(1).map(() => ({ count: 0, sum: "0".repeat(32) })) }))
                }
                res.end(JSON.stringify(lies[prefixes[0]!] ?? { lists: [] }))
              })
            })
            s.listen(0, "127.0.0.1", () => resolve(s))
          })
        ),
        (s) => Effect.promise(() => new Promise<void>((done) => s.close(() => done())))
      )
      const { port } = server.address() as AddressInfo
      const client = yield* HttpStore.make({ baseUrl: `http://127.0.0.1:${port}`, token })
      const ranges = client.ranges
      assert.isDefined(ranges)
      if (ranges === undefined) return
      const refused = yield* Effect.flip(ranges.fingerprints(["0", "1"]))
      assert.strictEqual(refused._tag, "StoreUnavailable")
      for (const prefix of Object.keys(lies)) {
        const failure = yield* Effect.flip(ranges.items([prefix]))
        assert.strictEqual(failure._tag, "StoreUnavailable", prefix)
      }
      // "No list" for a whole hash cannot be split further: refused, not looped on.
      const deep = yield* Effect.flip(ranges.items([hash("9")]))
      assert.strictEqual(deep._tag, "StoreUnavailable")
    }).pipe(Effect.scoped), 60_000)
})
