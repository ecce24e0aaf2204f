/**
 * Range reconciliation when a peer's store is a CAN HTTP service (issue 13): the agent's engine
 * sees an HttpStore, whose `ranges` reach the service's range routes, and reconciles by RangeRound
 * frames with a peer over an embedded store — missing assets both ways and a metadata edit made
 * apart, without any DigestChunk. A service whose store keeps no ranges gives a client without
 * them, and the session falls back to the full digest exchange.
 */
import type { CanStoreShape } from "@can-sync/core"
import * as PeerManager from "@can-sync/core/PeerManager"
import * as HttpService from "@can-sync/store/HttpService"
import * as HttpStore from "@can-sync/store/HttpStore"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Peer } from "./harness.ts"
import { awaitConverged, connect, DIGEST_CHUNK, engineConfig, frameCounter, ingestMany, peerId, RANGE_ROUND, tempStore } from "./harness.ts"

const token = "http-ranges-token"

/** A peer whose engine reaches its embedded store through the CAN HTTP service (ranges hidden from the service when `ranges` is false). */
const servicePeer = (name: string, ranges: boolean) =>
  Effect.gen(function*() {
    const id = peerId(name)
    const store = yield* tempStore(name)
    const served: CanStoreShape = ranges ? store : { ...store, ranges: undefined }
    const service = yield* HttpService.serve(served, { port: 0, token, keepAlive: "1 second" })
    const client = yield* HttpStore.make({ baseUrl: service.url, token, reconnect: { initial: "20 millis", max: "200 millis" } })
    expect(client.ranges !== undefined).toBe(ranges)
    const manager = yield* PeerManager.make(engineConfig(id), client)
    return { id, store, manager } satisfies Peer
  })

const embeddedPeer = (name: string) =>
  Effect.gen(function*() {
    const id = peerId(name)
    const store = yield* tempStore(name)
    return { id, store, manager: yield* PeerManager.make(engineConfig(id), store) } satisfies Peer
  })


describe("range reconciliation with a store behind the CAN HTTP service", () => {
  it.live("client → service ranges against an embedded peer: differences both ways and an edit made apart, no DigestChunk", () =>
    Effect.gen(function*() {
      const a = yield* servicePeer("a", true)
      const b = yield* embeddedPeer("b")
      const shared = yield* ingestMany(a.store, 41, 250)
      yield* ingestMany(b.store, 41, 250)
      yield* ingestMany(a.store, 42, 9) // only a
      yield* ingestMany(b.store, 43, 6) // only b
      const edited = yield* a.store.editMeta(shared[17]!, { description: "edited behind the service" })
      const frames = frameCounter()
      yield* connect(a, b, { tap: frames.tap })
      expect(yield* awaitConverged([a.store, b.store], "60 seconds", { expectSize: 265 })).toBe(265)
      const record = yield* b.store.stat(shared[17]!)
      expect(record._tag === "Some" && record.value.meta.updatedAt).toBe(edited.updatedAt)
      expect(frames.count(DIGEST_CHUNK)).toBe(0)
      expect(frames.count(RANGE_ROUND)).toBeGreaterThan(2)
    }).pipe(Effect.scoped), 90_000)

  it.live("a service without ranges: the session falls back to the full digest exchange and converges", () =>
    Effect.gen(function*() {
      const a = yield* servicePeer("a", false)
      const b = yield* embeddedPeer("b")
      yield* ingestMany(a.store, 44, 20)
      yield* ingestMany(b.store, 45, 15)
      const frames = frameCounter()
      yield* connect(a, b, { tap: frames.tap })
      expect(yield* awaitConverged([a.store, b.store], "60 seconds", { expectSize: 35 })).toBe(35)
      expect(frames.count(RANGE_ROUND)).toBe(0)
      expect(frames.count(DIGEST_CHUNK)).toBeGreaterThanOrEqual(2)
    }).pipe(Effect.scoped), 90_000)
})
