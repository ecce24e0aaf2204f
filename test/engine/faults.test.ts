/**
 * Stores that fail under the engine: a receiving store whose disk fills up mid-write, a sending
 * store that cannot read for a while (a CAN service that is down), and one whose files are damaged. Real SQLite stores
 * on disk, wrapped to fail on cue; in every case nothing partial is kept, the failure is a typed
 * error the session reports, and the assets arrive once the store works again.
 */
import { StoreUnavailable } from "@can-sync/core/CanStore"
import type { CanStoreShape } from "@can-sync/core/CanStore"
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as PeerManager from "@can-sync/core/PeerManager"
import { describe, expect, it } from "@effect/vitest"
import * as Fetcher from "../../packages/core/src/Fetcher.ts"
import * as Frame from "@can-sync/core/Frame"
import * as InMemoryLink from "@can-sync/core/InMemoryLink"
import * as PeerActor from "@can-sync/core/PeerActor"
import { Proto } from "@can-sync/core"
import { Effect, Logger, Queue, Result, Stream } from "effect"
import { TestClock } from "effect/testing"
import { createHash } from "node:crypto"
import { readdir, readFile, writeFile } from "node:fs/promises"
import { join } from "node:path"
import type { Peer } from "./harness.ts"
import { awaitConverged, connect, content, engineConfig, hashSet, ingestMany, makePeer, peerAt, peerId, storeAt, tempDir, tempStore, until } from "./harness.ts"

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

/** A peer whose store cannot read content (`read` and `readFrom` fail at once, as an unreachable service does). */
const peerWithUnreadableStore = (name: string, down: ReturnType<typeof fault>, overrides?: Partial<EngineConfig.EngineConfigInput>) =>
  Effect.gen(function*() {
    const dir = yield* tempDir(name)
    const store = yield* storeAt(dir)
    const refused = Stream.fromEffect(Effect.sync(down.hit)).pipe(
      Stream.flatMap(() => Stream.fail(new StoreUnavailable({ operation: "read", message: "connection refused" })))
    )
    const readFrom = store.readFrom
    const failing: CanStoreShape = {
      ...store,
      read: (hash) => down.on ? refused : store.read(hash),
      readFrom: readFrom === undefined ? undefined : (hash, offset) => down.on ? refused : readFrom(hash, offset)
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

  it.live("content damaged on the sender's disk is refused by the receiver's hash check, and the sender finds its own copy damaged", () => {
    const logged: Array<string> = []
    const capture = Logger.make((options) => {
      if (options.logLevel === "Error" || options.logLevel === "Warn") logged.push(`${options.logLevel} ${JSON.stringify(options.message)}`)
    })
    const damagedAt = (hash: string) => logged.some((line) => line.startsWith("Error") && line.includes("our copy is damaged") && line.includes(hash))
    return Effect.gen(function*() {
      const dirA = yield* tempDir("a")
      const a = yield* peerAt("a", dirA)
      const b = yield* makePeer("b")
      const large = yield* a.store.ingest(content(411, 3 * 128 * 1024 + 5)) // four chunk frames
      const small = yield* a.store.ingest(content(412, 1000))
      const whole = yield* a.store.ingest(content(413, 2000))
      // Same size, one byte flipped: the index still lists both, and a sends what its disk holds.
      for (const { hash } of [large, small]) {
        const path = join(dirA, "objects", hash.slice(0, 2), hash)
        const bytes = yield* Effect.promise(() => readFile(path))
        bytes[bytes.length >> 1]! ^= 0xff
        yield* Effect.promise(() => writeFile(path, bytes))
      }
      yield* connect(a, b)
      yield* until(b.store.has(whole.hash), "the undamaged asset stored at b")
      yield* until(Effect.sync(() => damagedAt(large.hash) && damagedAt(small.hash)), "a's checker to report both of its copies damaged")
      const atB = yield* hashSet(b.store)
      expect([atB.has(large.hash), atB.has(small.hash)]).toEqual([false, false])
      expect((yield* b.manager.stats(a.id)).verificationFailures).toBe(2)
      expect(logged.some((line) => line.includes("our copy is whole"))).toBe(false)
      const verified = yield* Stream.runCollect(b.store.verify)
      expect(Array.from(verified).every((r) => r.ok)).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(Logger.layer([capture])))
  }, 60_000)

  it.effect("an asset the peer cannot read is asked for again with backoff, 10 times at most in one session (TestClock)", () =>
    Effect.gen(function*() {
      const realSleep = (ms: number) => Effect.promise(() => new Promise<void>((r) => setTimeout(r, ms)))
      const store = yield* tempStore("e")
      const [engineEnd, rawEnd] = yield* InMemoryLink.pair(peerId("e"), peerId("raw"))
      yield* PeerActor.run(engineEnd, { config: EngineConfig.make({ localPeerId: peerId("e") }), store }).pipe(Effect.ignore, Effect.forkScoped)
      const wants = yield* Queue.unbounded<ReadonlyArray<string>>()
      yield* Effect.forkScoped(rawEnd.frames.pipe(
        Stream.runForEach((bytes) => {
          const f = Frame.decode(bytes)
          return Result.isSuccess(f) && f.success._tag === "Want" && f.success.message.hashes.length > 0
            ? Queue.offer(wants, f.success.message.hashes)
            : Effect.void
        }),
        Effect.ignore
      ))
      const send = (frame: Frame.Frame) => rawEnd.send(Frame.encode(frame))
      /** Move the test clock on until the engine asks again (or `rounds` pass): the asked hashes, if any. */
      const nextAsk = (rounds: number) =>
        Effect.gen(function*() {
          for (let i = 0; i < rounds; i++) {
            const got = yield* Queue.poll(wants)
            if (got._tag === "Some") return got.value
            yield* TestClock.adjust("40 seconds")
            yield* realSleep(20)
          }
          return undefined
        })
      const x = createHash("sha256").update("unreadable").digest("hex")
      const digest = { hash: x, size: 10, createdAt: 1, updatedAt: 1, metaOrigin: "raw-store" }
      yield* send(Frame.make("Hello", { protocolVersion: EngineConfig.PROTOCOL_VERSION, peerId: "raw", agent: "test", maxFrameBytes: 1 << 20 }))
      yield* send(Frame.make("DigestChunk", { digests: [digest], last: true }))
      let asks = 0
      while (true) {
        const asked = yield* nextAsk(asks > Fetcher.UNAVAILABLE_RETRIES ? 150 : 500)
        if (asked === undefined) break
        expect(asked).toEqual([x])
        asks++
        // The peer holds it but cannot read it now.
        yield* send(Frame.make("Error", { code: Proto.ErrorCode.STORE_FAILED, message: "read failed", hash: x, fatal: false }))
        if (asks > Fetcher.UNAVAILABLE_RETRIES + 1) break
      }
      expect(asks).toBe(Fetcher.UNAVAILABLE_RETRIES + 1) // the first ask and 10 more, then only the next reconcile asks
    }).pipe(Effect.scoped), 60_000)
})
