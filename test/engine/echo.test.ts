/**
 * Echo suppression and read repair, counted on the wire: a change that came from a peer is never
 * sent back to it — neither an asset (nor its metadata) it delivered, nor a metadata edit it made —
 * while a peer that shows an older version than ours is sent ours. Each test ends with a marker
 * edit in the other direction, so every frame the pusher could have sent before it was seen.
 */
import { describe, expect, it } from "@effect/vitest"
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as Frame from "@can-sync/core/Frame"
import * as InMemoryLink from "@can-sync/core/InMemoryLink"
import * as PeerActor from "@can-sync/core/PeerActor"
import type { AssetHash } from "@can-sync/core"
import { Effect, Queue, Result, Stream } from "effect"
import { asHash, awaitConverged, awaitLive, connect, ingestMany, makePeer, peerId, tempStore } from "./harness.ts"
import type { Peer, Tap } from "./harness.ts"

/** MetaUpdate frames sent, per direction, by hash. */
const metaCounter = () => {
  const sent = new Map<string, Array<string>>()
  const tap: Tap = (from, to, bytes) => {
    const f = Frame.decode(bytes)
    if (Result.isSuccess(f) && f.success._tag === "MetaUpdate") {
      const key = `${from}>${to}`
      sent.set(key, [...(sent.get(key) ?? []), f.success.message.hash])
    }
  }
  const between = (from: string, to: string) => sent.get(`${from}>${to}`) ?? []
  return { tap, between }
}

/** `from` edits `hash` and waits until `to` has that edit: every frame `from` queued before it has been sent. */
const marker = (from: Peer, to: Peer, hash: AssetHash, description: string) =>
  Effect.gen(function*() {
    yield* from.store.editMeta(hash, { description })
    while (true) {
      const got = yield* to.store.stat(hash)
      if (got._tag === "Some" && got.value.meta.description === description) return
      yield* Effect.sleep("10 millis")
    }
  }).pipe(Effect.timeout("20 seconds"))

describe("echo suppression", () => {
  it.live("assets a peer delivered are never offered back to it, nor is their metadata sent back", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      const wire = metaCounter()
      const [mark] = (yield* ingestMany(a.store, 501, 1)).map(asHash)
      yield* connect(a, b, { tap: wire.tap })
      yield* awaitLive(a, [b])
      yield* awaitConverged([a.store, b.store], "20 seconds", { expectSize: 1 })
      const fromB = new Set<string>(yield* ingestMany(b.store, 502, 20)) // live: AssetAdded at a, origin b
      yield* awaitConverged([a.store, b.store], "20 seconds", { expectSize: 21 })
      yield* marker(a, b, mark!, "marker after b's assets")
      expect(wire.between("a", "b").filter((h) => fromB.has(h))).toEqual([])
      expect(wire.between("b", "a").filter((h) => fromB.has(h)).length).toBe(20) // b did push them, with their metadata
      expect((yield* a.manager.stats(b.id)).echoesSuppressed).toBeGreaterThanOrEqual(20)
    }).pipe(Effect.scoped))

  it.live("a metadata edit a peer made is never sent back to it", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      const wire = metaCounter()
      const hashes = (yield* ingestMany(a.store, 511, 11)).map(asHash)
      const [mark, ...edited] = hashes
      yield* connect(a, b, { tap: wire.tap })
      yield* awaitLive(a, [b])
      yield* awaitConverged([a.store, b.store], "20 seconds", { expectSize: 11 })
      const before = (yield* a.manager.stats(b.id)).echoesSuppressed
      for (const h of edited) yield* b.store.editMeta(h, { description: `edited at b ${h.slice(0, 6)}` }) // MetaChanged at a, origin b
      yield* awaitConverged([a.store, b.store], "20 seconds")
      yield* marker(a, b, mark!, "marker after b's edits")
      const editedSet = new Set<string>(edited)
      expect(wire.between("a", "b").filter((h) => editedSet.has(h))).toEqual([])
      expect(wire.between("b", "a").filter((h) => editedSet.has(h)).length).toBe(10)
      expect((yield* a.manager.stats(b.id)).echoesSuppressed - before).toBe(10)
    }).pipe(Effect.scoped))
})

describe("read repair", () => {
  it.live("a peer that sends an older version of our metadata is answered with ours", () =>
    Effect.gen(function*() {
      const store = yield* tempStore("e")
      const [hash] = (yield* ingestMany(store, 521, 1)).map(asHash)
      const ours = yield* store.editMeta(hash!, { description: "newer here", tags: ["kept"] })
      const [engineEnd, rawEnd] = yield* InMemoryLink.pair(peerId("e"), peerId("raw"))
      yield* PeerActor.run(engineEnd, { config: EngineConfig.make({ localPeerId: peerId("e") }), store }).pipe(Effect.ignore, Effect.forkScoped)
      const frames = yield* Queue.unbounded<Frame.Frame>()
      yield* Effect.forkScoped(rawEnd.frames.pipe(
        Stream.runForEach((bytes) => Effect.fromResult(Frame.decode(bytes)).pipe(Effect.flatMap((f) => Queue.offer(frames, f)))),
        Effect.ignore
      ))
      const send = (frame: Frame.Frame) => rawEnd.send(Frame.encode(frame))
      yield* send(Frame.make("Hello", { protocolVersion: EngineConfig.PROTOCOL_VERSION, peerId: "raw", agent: "test", maxFrameBytes: 1 << 20 }))
      // The raw peer lists nothing (so the reconcile sends no metadata), then shows an old version of the asset.
      yield* send(Frame.make("DigestChunk", { digests: [], last: true }))
      const old = { description: "old", tags: [], trashed: false, createdAt: 1, updatedAt: 2, origin: "raw-store" }
      yield* send(Frame.make("MetaUpdate", { hash: hash!, meta: old }))
      const repair = yield* Effect.gen(function*() {
        while (true) {
          const f = yield* Queue.take(frames)
          if (f._tag === "MetaUpdate") return f.message
        }
      }).pipe(Effect.timeout("10 seconds"))
      expect(repair).toMatchObject({ hash, meta: { description: "newer here", tags: ["kept"], updatedAt: ours.updatedAt, origin: ours.origin } })
      const kept = yield* store.stat(hash!)
      expect(kept._tag === "Some" && kept.value.meta.description).toBe("newer here")
    }).pipe(Effect.scoped))
})
