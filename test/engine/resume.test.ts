/**
 * Resumable transfers (issue 13 item 2) between real engines over in-memory links: a transfer cut
 * after k chunks resumes from the receiver's partial — from the same peer or another one — and the
 * whole-asset hash stays the only gate (a damaged partial is dropped, its sources logged, the asset
 * fetched again from 0). A header naming another offset than asked is a protocol violation; a peer
 * without "resume/1" is asked from 0.
 */
import { describe, expect, it } from "@effect/vitest"
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as Frame from "@can-sync/core/Frame"
import * as InMemoryLink from "@can-sync/core/InMemoryLink"
import * as PeerManager from "@can-sync/core/PeerManager"
import type { AssetHash, CanStoreShape, EncodedFrame, PeerLink, Proto } from "@can-sync/core"
import { AssetMeta } from "@can-sync/core"
import { Effect, Exit, Fiber, Logger, Result, Scope, Stream } from "effect"
import { createHash } from "node:crypto"
import { open } from "node:fs/promises"
import { join } from "node:path"
import { awaitConverged, content, engineConfig, makePeer, peerAt, peerId, storeAt, tempDir, settledStats, until as waitUntil, Deadline } from "./harness.ts"
import type { Peer } from "./harness.ts"
import { digest, engineSide, hello, meta as rawMeta } from "./rawPeer.ts"

const MiB = 1024 * 1024
const CHUNK = EngineConfig.make({ localPeerId: peerId("x") }).chunkBytes
const SIZE = 8 * MiB
/** Chunks that cross before the link is cut: about 2.5 MiB, more than a partial's 1 MiB minimum. */
const CUT_AFTER = Math.ceil(2.5 * MiB / CHUNK)
/**
 * Sent but never kept when a link is cut: at most the receiver's queue of chunks between its
 * session and the store push (4), which the interruption drops.
 */
const SLACK = 4 * CHUNK

/** Waits here allow 30 s (a loaded machine moves these chunks slowly). */
const until = <E>(check: Effect.Effect<boolean, E>, waitingFor: string) => waitUntil(check, waitingFor, "30 seconds")


/**
 * What one peer sends over its links, decoded: content bytes, AssetHeaders, Wants. While `stalled`,
 * its AssetChunk sends after the first `cutAfter` wait forever (the link is about to be cut);
 * `cut` closes its current link.
 */
const sendsOf = () => {
  const seen = {
    chunkBytes: 0,
    chunks: 0,
    headers: [] as Array<{ readonly hash: string; readonly offset: number }>,
    wants: [] as Array<Proto.Want>,
    cutAfter: Number.POSITIVE_INFINITY,
    link: undefined as PeerLink | undefined
  }
  const wrap = (link: PeerLink): PeerLink => {
    seen.link = link
    return {
      ...link,
      send: (encoded: EncodedFrame) =>
        Effect.suspend(() => {
          const decoded = Frame.decode(Frame.join(encoded))
          if (Result.isSuccess(decoded)) {
            const frame = decoded.success
            if (frame._tag === "AssetChunk") {
              if (seen.chunks >= seen.cutAfter) return Effect.never
              seen.chunks++
              seen.chunkBytes += frame.message.data.length
            }
            if (frame._tag === "AssetHeader") seen.headers.push({ hash: frame.message.hash, offset: frame.message.offset })
            if (frame._tag === "Want" && frame.message.hashes.length > 0) seen.wants.push(frame.message)
          }
          return link.send(encoded)
        })
    }
  }
  const cut = Effect.suspend(() => {
    seen.cutAfter = Number.POSITIVE_INFINITY
    return seen.link === undefined ? Effect.void : seen.link.close
  })
  return { seen, wrap, cut }
}

/** `a` and `b` dial each other over `net`, each link watched by its sender's `sendsOf`. */
const link = (net: InMemoryLink.Network, a: Peer, sa: ReturnType<typeof sendsOf>, b: Peer, sb: ReturnType<typeof sendsOf>) =>
  Effect.all([
    a.manager.dial(b.id, net.connect(a.id, b.id).pipe(Effect.map(sa.wrap))),
    b.manager.dial(a.id, net.connect(b.id, a.id).pipe(Effect.map(sb.wrap)))
  ], { discard: true })

/** Wait until `receiver` has taken `chunks` chunks of content from `sender`. */
const received = (receiver: Peer, sender: Peer, chunks: number) =>
  until(receiver.manager.stats(sender.id).pipe(Effect.map((s) => s.chunkBytesReceived >= chunks * CHUNK)), `${chunks} chunks received by ${receiver.id}`)

const verifiedClean = (store: Peer["store"]) =>
  Stream.runCollect(store.verify).pipe(Effect.map((checks) => checks.length > 0 && checks.every((c) => c.ok)))

/** A peer whose store is wrapped (a store of an older version, say). */
const peerWith = (name: string, wrap: (store: CanStoreShape) => CanStoreShape) =>
  Effect.gen(function*() {
    const store = yield* storeAt(yield* tempDir(name))
    const id = peerId(name)
    const manager = yield* PeerManager.make(engineConfig(id), wrap(store))
    return { id, store, manager } satisfies Peer
  })

/** A partial of `data` in `store`, as a transfer from `from` cut after `bytes` leaves it; `damage` flips one byte of it. */
const leavePartial = (dir: string, store: CanStoreShape, data: Uint8Array, bytes: number, from: string, damage?: number) =>
  Effect.gen(function*() {
    const hash = sha(data)
    const cut = Stream.concat(Stream.make(data.subarray(0, bytes)), Stream.fail(new Deadline({ waitingFor: "nothing: the link dropped" })))
    yield* Effect.flip(store.push(hash, cut, AssetMeta.make(rawMeta), from, { resumeFrom: 0 }))
    expect(yield* store.partial!(hash)).toBe(bytes)
    if (damage !== undefined) {
      yield* Effect.promise(async () => {
        const file = await open(join(dir, "partial", hash), "r+")
        await file.write(Buffer.from([data[damage]! ^ 0xff]), 0, 1, damage)
        await file.close()
      })
    }
    return hash
  })

const sha = (data: Uint8Array) => createHash("sha256").update(data).digest("hex") as AssetHash

/** SIZE bytes of seeded content, whole (8 MiB). */
const bytesOf = (seed: number) =>
  Stream.runCollect(content(seed, SIZE)).pipe(Effect.map((chunks) => {
    const out = new Uint8Array(SIZE)
    let at = 0
    for (const c of chunks) {
      out.set(c, at)
      at += c.length
    }
    return out
  }))

/**
 * `a` ingests the asset of `seed`, a fresh peer b holds its first 2 MiB as a partial (from "z"),
 * and the two are linked until b stores it: what each side sent, and b.
 */
const sendOverPartial = (a: Peer, seed: number) =>
  Effect.gen(function*() {
    const dirB = yield* tempDir("b")
    const b = yield* peerAt("b", dirB)
    const data = yield* bytesOf(seed)
    yield* a.store.ingest(Stream.make(data))
    const hash = yield* leavePartial(dirB, b.store, data, 2 * MiB, "z")
    const [sa, sb] = [sendsOf(), sendsOf()]
    yield* link(yield* InMemoryLink.network(), a, sa, b, sb)
    yield* until(b.store.has(hash), "the asset stored at b")
    return { b, sa, sb }
  })

describe("resumable transfers", () => {
  it.live("a link cut after k chunks, redialed: the asset resumes from the receiver's partial; in total at most size + a few chunks cross", () =>
    Effect.gen(function*() {
      const a = yield* makePeer("a")
      const b = yield* makePeer("b")
      const { hash } = yield* a.store.ingest(content(1, SIZE))
      const [sa, sb] = [sendsOf(), sendsOf()]
      sa.seen.cutAfter = CUT_AFTER
      yield* link(yield* InMemoryLink.network(), a, sa, b, sb)
      yield* received(b, a, CUT_AFTER)
      yield* sa.cut
      expect(yield* awaitConverged([a.store, b.store], "60 seconds", { expectSize: 1 })).toBe(1)
      expect(sa.seen.headers.length).toBe(2)
      const resumedAt = sa.seen.headers[1]!.offset
      expect(resumedAt).toBeGreaterThanOrEqual(CUT_AFTER * CHUNK - SLACK)
      expect(sb.seen.wants.at(-1)).toMatchObject({ hashes: [hash], offsets: [resumedAt] })
      expect(sa.seen.chunkBytes).toBeLessThanOrEqual(SIZE + SLACK)
      expect(sa.seen.chunkBytes - CUT_AFTER * CHUNK).toBe(SIZE - resumedAt)
      expect(yield* verifiedClean(b.store)).toBe(true)
      expect(yield* b.store.partials).toEqual([])
      expect((yield* settledStats(b, a, (s) => s.assetsReceived >= 1)).assetsReceived).toBe(1)
    }).pipe(Effect.scoped), 90_000)

  it.live("resumed from another peer: cut from A, B sends only the bytes after the partial", () =>
    Effect.gen(function*() {
      const firstScope = yield* Scope.make()
      const a = yield* makePeer("a").pipe(Scope.provide(firstScope))
      const c = yield* makePeer("c")
      const r = yield* makePeer("r")
      const { hash } = yield* a.store.ingest(content(2, SIZE))
      yield* c.store.ingest(content(2, SIZE))
      const net = yield* InMemoryLink.network()
      const [sa, sr] = [sendsOf(), sendsOf()]
      sa.seen.cutAfter = CUT_AFTER
      yield* link(net, a, sa, r, sr).pipe(Scope.provide(firstScope))
      yield* received(r, a, CUT_AFTER)
      yield* Scope.close(firstScope, Exit.void) // A is gone for good
      const [sc, sr2] = [sendsOf(), sendsOf()]
      yield* link(net, c, sc, r, sr2)
      yield* until(r.store.has(hash), "the asset stored at r")
      expect(sc.seen.headers.map((h) => h.hash)).toEqual([hash])
      const resumedAt = sc.seen.headers[0]!.offset
      expect(resumedAt).toBeGreaterThanOrEqual(CUT_AFTER * CHUNK - SLACK)
      expect(sc.seen.chunkBytes).toBe(SIZE - resumedAt)
      expect(sa.seen.chunkBytes + sc.seen.chunkBytes).toBeLessThanOrEqual(SIZE + SLACK)
      expect(yield* verifiedClean(r.store)).toBe(true)
    }).pipe(Effect.scoped), 90_000)

  it.live("a damaged partial fails the whole-asset hash: it is dropped, the peers that sent it are logged, and the asset is fetched again from 0", () => {
    const warnings: Array<string> = []
    const capture = Logger.make((options) => {
      if (options.logLevel === "Warn") warnings.push(JSON.stringify(options.message))
    })
    return Effect.gen(function*() {
      const a = yield* makePeer("a")
      const dirB = yield* tempDir("b")
      const b = yield* peerAt("b", dirB)
      const data = yield* bytesOf(3)
      yield* a.store.ingest(Stream.make(data))
      const hash = yield* leavePartial(dirB, b.store, data, 2 * MiB, "z", 12_345)
      const [sa, sb] = [sendsOf(), sendsOf()]
      yield* link(yield* InMemoryLink.network(), a, sa, b, sb)
      yield* until(b.store.has(hash), "the asset stored at b")
      expect(sa.seen.headers.map((h) => h.offset)).toEqual([2 * MiB, 0])
      expect(sb.seen.wants.map((w) => w.offsets)).toEqual([[2 * MiB], []])
      const warning = warnings.find((w) => w.includes("a resumed asset failed the hash check"))
      expect(warning).toContain("z, a") // the sources: z sent the kept bytes, a the rest
      expect((yield* b.manager.stats(a.id)).verificationFailures).toBe(1)
      expect(yield* verifiedClean(b.store)).toBe(true)
      expect(yield* b.store.partials).toEqual([])
    }).pipe(Effect.scoped, Effect.provide(Logger.layer([capture])))
  }, 90_000)

  it.live("a peer without \"resume/1\" is asked from 0: no offsets, its header says 0, the partial is replaced", () =>
    Effect.gen(function*() {
      const old = yield* peerWith("a", (store) => ({ ...store, partial: undefined }))
      const { b, sa, sb } = yield* sendOverPartial(old, 4)
      expect(sb.seen.wants.map((w) => w.offsets)).toEqual([[]])
      expect(sa.seen.headers.map((h) => h.offset)).toEqual([0])
      expect(sa.seen.chunkBytes).toBe(SIZE)
      expect(yield* verifiedClean(b.store)).toBe(true)
      expect(yield* b.store.partials).toEqual([])
    }).pipe(Effect.scoped), 90_000)

  it.live("a sender whose store cannot read from an offset reads from 0 and sends only the bytes from the offset asked", () =>
    Effect.gen(function*() {
      const a = yield* peerWith("a", (store) => ({ ...store, readFrom: undefined }))
      const { b, sa } = yield* sendOverPartial(a, 6)
      expect(sa.seen.headers.map((h) => h.offset)).toEqual([2 * MiB])
      expect(sa.seen.chunkBytes).toBe(SIZE - 2 * MiB)
      expect(yield* verifiedClean(b.store)).toBe(true)
    }).pipe(Effect.scoped), 90_000)

  it.live("a header naming another offset than the one asked is a protocol violation", () =>
    Effect.gen(function*() {
      const { actor, dir, raw, store } = yield* engineSide()
      const data = yield* bytesOf(5)
      const hash = yield* leavePartial(dir, store, data, 2 * MiB, "raw")
      yield* raw.send(Frame.make("Hello", { ...hello().message, features: ["resume/1"] }))
      yield* raw.send(Frame.make("DigestChunk", { digests: [digest(hash, SIZE)], last: true }))
      yield* raw.next("Hello")
      expect((yield* raw.next("Want")).message).toEqual({ hashes: [hash], last: true, offsets: [2 * MiB] })
      yield* raw.send(Frame.make("AssetHeader", { hash, size: SIZE, meta: rawMeta, offset: MiB }))
      const failure = yield* Fiber.join(actor).pipe(
        Effect.timeoutOrElse({ duration: "20 seconds", orElse: () => Effect.fail(new Deadline({ waitingFor: "the session to end" })) })
      )
      expect(failure).toMatchObject({ _tag: "ProtocolViolation", frame: "AssetHeader" })
      expect(failure.message).toContain(`sent from byte ${MiB}, but asked from byte ${2 * MiB}`)
    }).pipe(Effect.scoped), 30_000)
})
