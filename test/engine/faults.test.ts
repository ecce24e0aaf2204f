/**
 * Stores that fail under the engine: a receiving store whose disk fills up mid-write, and a
 * sending store that cannot read for a while (a CAN service that is down). Real SQLite stores
 * on disk, wrapped to fail on cue; in every case nothing partial is kept, the failure is a typed
 * error the session reports, and the assets arrive once the store works again.
 */
import { StoreUnavailable } from "@can-sync/core/CanStore"
import type { CanStoreShape } from "@can-sync/core/CanStore"
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as PeerManager from "@can-sync/core/PeerManager"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { readdir } from "node:fs/promises"
import { join } from "node:path"
import type { Peer } from "./harness.ts"
import { awaitConverged, connect, content, engineConfig, hashSet, ingestMany, makePeer, peerId, storeAt, tempDir } from "./harness.ts"

/** A switch the test flips: while on, the wrapped operation fails. */
const fault = () => {
  let on = true
  let hits = 0
  return {
    get on() {
      return on
    },
    hit: () => {
      hits++
    },
    get hits() {
      return hits
    },
    clear: () => {
      on = false
    }
  }
}

/** A peer whose store's `push` reads part of the content, then fails as a full disk does. */
const peerWithFullDisk = (name: string, full: ReturnType<typeof fault>) =>
  Effect.gen(function*() {
    const dir = yield* tempDir(name)
    const store = yield* storeAt(dir)
    const failing: CanStoreShape = {
      ...store,
      push: (hash, stream, meta, origin) =>
        full.on
          ? stream.pipe(
            Stream.take(1),
            Stream.runDrain,
            Effect.andThen(Effect.sync(full.hit)),
            Effect.andThen(Effect.fail(new StoreUnavailable({ operation: "write temp file", message: "the disk is full (ENOSPC)" })))
          )
          : store.push(hash, stream, meta, origin)
    }
    const id = peerId(name)
    const manager = yield* PeerManager.make(engineConfig(id), failing)
    return { peer: { id, store, manager } satisfies Peer, dir }
  })

/** A peer whose store cannot read content (`read` fails at once, as an unreachable service does). */
const peerWithUnreadableStore = (name: string, down: ReturnType<typeof fault>, overrides?: Partial<EngineConfig.EngineConfigInput>) =>
  Effect.gen(function*() {
    const dir = yield* tempDir(name)
    const store = yield* storeAt(dir)
    const failing: CanStoreShape = {
      ...store,
      read: (hash) =>
        down.on
          ? Stream.fromEffect(Effect.sync(down.hit)).pipe(
            Stream.flatMap(() => Stream.fail(new StoreUnavailable({ operation: "read", message: "connection refused" })))
          )
          : store.read(hash)
    }
    const id = peerId(name)
    const manager = yield* PeerManager.make(engineConfig(id, overrides), failing)
    return { id, store, manager } satisfies Peer
  })

describe("stores that fail under the engine", () => {
  it.live("a full disk on the receiving side fails the session with the store's error; nothing partial is kept, and the assets arrive once there is room", () =>
    Effect.gen(function*() {
      const full = fault()
      const a = yield* makePeer("a")
      const { peer: b, dir } = yield* peerWithFullDisk("b", full)
      yield* ingestMany(a.store, 301, 3, 200_000)
      yield* connect(b, a) // b dials: its session record keeps the error and the restarts
      // b's session with a fails on the first push, and is restarted with backoff, again and again
      while (full.hits < 3) yield* Effect.sleep("20 millis")
      const [session] = yield* b.manager.sessions
      expect(session!.lastError).toContain("the disk is full (ENOSPC)")
      expect(session!.restarts).toBeGreaterThanOrEqual(1)
      expect((yield* hashSet(b.store)).size).toBe(0)
      expect(yield* Effect.promise(() => readdir(join(dir, "tmp")))).toEqual([])
      // room again: the next session stores everything
      full.clear()
      expect(yield* awaitConverged([a.store, b.store], "30 seconds", { expectSize: 3 })).toBe(3)
      const verified = yield* Stream.runCollect(b.store.verify)
      expect(Array.from(verified).every((r) => r.ok)).toBe(true)
    }).pipe(Effect.scoped))

  it.live("a sending store that cannot read for a while: the receiver is told, keeps the session, and gets the asset once the store is back", () =>
    Effect.gen(function*() {
      const down = fault()
      const a = yield* peerWithUnreadableStore("a", down)
      const b = yield* makePeer("b")
      const [hash] = yield* a.store.ingest(content(401, 50_000), { description: "while the store is down" }).pipe(
        Effect.map((r) => [r.hash])
      )
      yield* connect(b, a)
      // asked, refused for now, asked again a second later: still down
      while (down.hits < 2) yield* Effect.sleep("20 millis")
      expect((yield* hashSet(b.store)).has(hash!)).toBe(false)
      down.clear()
      expect(yield* awaitConverged([a.store, b.store], "30 seconds", { expectSize: 1 })).toBe(1)
      // all in the one session: a store failure is not the link's fault
      const [session] = yield* b.manager.sessions
      expect(session).toMatchObject({ peer: "a", state: "live", restarts: 0 })
    }).pipe(Effect.scoped))
})
