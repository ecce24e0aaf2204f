/**
 * Test harness for the sync engine: embedded stores in temp dirs (removed afterwards),
 * deterministic content, peers that dial each other over in-memory links (the PeerManager path
 * the agent takes), and "wait until every store holds the same assets with the same metadata"
 * with a deadline instead of sleeps.
 */
import * as Backoff from "@can-sync/core/Backoff"
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as Frame from "@can-sync/core/Frame"
import * as InMemoryLink from "@can-sync/core/InMemoryLink"
import * as PeerManager from "@can-sync/core/PeerManager"
import type { AssetHash, CanStoreShape, PeerId, PeerLink, PeerStats, StoreUnavailable } from "@can-sync/core"
import { EmbeddedStore } from "@can-sync/store"
import { Data, Effect, Stream } from "effect"
import type { Duration, Scope } from "effect"
import { existsSync } from "node:fs"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"

export type Store = EmbeddedStore.EmbeddedStoreShape

export const peerId = (name: string) => name as PeerId

/**
 * Stores live on tmpfs when there is one: these tests measure the engine, and two fsyncs per
 * asset on a VM disk (~8 ms) would make the thousands-of-assets scenarios take minutes.
 */
export const scratchRoot = existsSync("/dev/shm") ? "/dev/shm" : tmpdir()

/** A fresh temp dir, removed (with everything in it) when the scope closes. */
export const tempDir = (name: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(scratchRoot, `can-sync-engine-${name}-`))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )

/** An embedded store in a fresh temp dir; the dir is removed when the scope closes. */
export const tempStore = (name: string): Effect.Effect<Store, StoreUnavailable, Scope.Scope> =>
  tempDir(name).pipe(Effect.flatMap(storeAt))

/** The embedded store in `dir` (opened again after a restart), closed with the scope. */
export const storeAt = (dir: string) => EmbeddedStore.make({ dataDir: dir, watchInterval: "50 millis" })

/** Deterministic pseudo-random bytes (xorshift), generated chunk by chunk: never whole in memory. */
export const content = (seed: number, size: number, chunk = 64 * 1024): Stream.Stream<Uint8Array> =>
  Stream.suspend(() => {
    let x = (seed * 2654435761) >>> 0 || 1
    let left = size
    return Stream.fromIterable({
      *[Symbol.iterator]() {
        while (left > 0) {
          const n = Math.min(chunk, left)
          const out = new Uint8Array(n)
          const words = new Uint32Array(out.buffer, 0, n >>> 2)
          for (let i = 0; i < words.length; i++) {
            x ^= x << 13
            x >>>= 0
            x ^= x >>> 17
            x ^= x << 5
            x >>>= 0
            words[i] = x
          }
          for (let i = words.length * 4; i < n; i++) out[i] = (x = (x * 1103515245 + 12345) >>> 0) & 0xff
          left -= n
          yield out
        }
      }
    })
  })

/** Ingest `count` small distinct assets (seeded by `seed`), returning their hashes. */
export const ingestMany = (store: CanStoreShape, seed: number, count: number, size = 256) =>
  Effect.forEach(
    Array.from({ length: count }, (_, i) => i),
    (i) => store.ingest(content(seed * 1_000_003 + i, size + (i % 17)), { description: `asset ${seed}/${i}` }).pipe(Effect.map((r) => r.hash)),
    { concurrency: 4 }
  )

/** Every digest of a store, by paging `list`. */
export const allDigests = (store: CanStoreShape) =>
  Effect.gen(function*() {
    const out = []
    let since = 0
    while (true) {
      const page = yield* store.list({ since, limit: 5000 })
      out.push(...page.digests)
      if (page.done || page.digests.length === 0) return out
      since = page.next
    }
  })

export const hashSet = (store: CanStoreShape) =>
  allDigests(store).pipe(Effect.map((ds) => new Set<string>(ds.map((d) => d.hash))))

/** hash → JSON of [description, tags, trashed, updatedAt, origin]: what must be identical everywhere. */
export const snapshot = (store: CanStoreShape) =>
  Effect.gen(function*() {
    const out = new Map<string, string>()
    for (const d of yield* allDigests(store)) {
      const rec = yield* store.stat(d.hash)
      if (rec._tag === "Some") {
        const m = rec.value.meta
        out.set(d.hash, JSON.stringify([m.description, m.tags, m.trashed, m.updatedAt, m.origin]))
      }
    }
    return out
  })

export class NotConverged extends Data.TaggedError("NotConverged")<{ readonly detail: string }> {}

const describeDiff = (snaps: ReadonlyArray<Map<string, string>>) => {
  const sizes = snaps.map((s) => s.size).join(" / ")
  const first = snaps[0]!
  let differing = 0
  for (const s of snaps.slice(1)) {
    for (const [h, v] of s) if (first.get(h) !== v) differing++
    for (const h of first.keys()) if (!s.has(h)) differing++
  }
  return `sizes ${sizes}, ${differing} differing entries`
}

/** hash → "updatedAt|origin": the metadata version of every asset, cheap to read (one `list`). */
export const versions = (store: CanStoreShape) =>
  allDigests(store).pipe(Effect.map((ds) => new Map(ds.map((d) => [d.hash as string, `${d.updatedAt}|${d.metaOrigin}`]))))

const sameMaps = (maps: ReadonlyArray<Map<string, string>>) => {
  const first = maps[0]!
  return maps.every((m) => m.size === first.size && [...m].every(([h, v]) => first.get(h) === v))
}

/**
 * Poll (cheaply: digests and versions only) until every store holds the same hashes at the same
 * metadata versions, then check the full metadata once; fail after `deadline`. Uses real time:
 * run it under `it.live`.
 */
export const awaitConverged = (stores: ReadonlyArray<Store>, deadline: Duration.Input = "60 seconds", opts?: { readonly expectSize?: number }) =>
  Effect.gen(function*() {
    let lastSeqs = ""
    while (true) {
      // Cheap first: asset counts and change sequences; compare versions only when something moved.
      const counts = yield* Effect.forEach(stores, (s) => s.stats.pipe(Effect.map((x) => x.assets)))
      const seqs = (yield* Effect.forEach(stores, (s) => s.currentSeq)).join(",")
      const countsAgree = counts.every((c) => c === counts[0]) && (opts?.expectSize === undefined || counts[0] === opts.expectSize)
      if (countsAgree && seqs !== lastSeqs) {
        lastSeqs = seqs
        if (sameMaps(yield* Effect.forEach(stores, versions))) {
          const full = yield* Effect.forEach(stores, snapshot)
          if (sameMaps(full)) return full[0]!.size
        }
      }
      yield* Effect.sleep("100 millis")
    }
  }).pipe(
    Effect.timeoutOrElse({
      duration: deadline,
      orElse: () => Effect.gen(function*() {
        const snaps = yield* Effect.forEach(stores, snapshot)
        return yield* new NotConverged({ detail: describeDiff(snaps) })
      })
    })
  )

export interface Peer {
  readonly id: PeerId
  readonly store: Store
  readonly manager: PeerManager.PeerManagerShape
}

export const engineConfig = (id: PeerId, overrides?: Partial<EngineConfig.EngineConfigInput>) =>
  EngineConfig.make({ localPeerId: id, pollInterval: "1 hour", restartBackoff: Backoff.exponential({ base: "20 millis", cap: "500 millis" }), ...overrides })

/** A peer: a temp store and a PeerManager over it, both closed with the scope. */
export const makePeer = (name: string, overrides?: Partial<EngineConfig.EngineConfigInput>) =>
  tempDir(name).pipe(Effect.flatMap((dir) => peerAt(name, dir, overrides)))

/** A peer over the store in `dir`: what a restarted agent opens. */
export const peerAt = (name: string, dir: string, overrides?: Partial<EngineConfig.EngineConfigInput>) =>
  Effect.gen(function*() {
    const id = peerId(name)
    const store = yield* storeAt(dir)
    const manager = yield* PeerManager.make(engineConfig(id, overrides), store)
    return { id, store, manager } satisfies Peer
  })

/** Optional observation of every frame sent on a link (tests count echoes with it). */
export type Tap = (from: PeerId, to: PeerId, frame: Uint8Array) => void

const tapped = (link: PeerLink, from: PeerId, tap: Tap | undefined): PeerLink =>
  tap === undefined ? link : { ...link, send: (frame) => Effect.sync(() => tap(from, link.remotePeer, Frame.join(frame))).pipe(Effect.andThen(link.send(frame))) }

/** `self` dials `peer` over `net`: one in-memory link per attempt, met by the peer's own dial. */
export const dialOver = (net: InMemoryLink.Network, self: Peer, peer: Peer, tap?: Tap) =>
  self.manager.dial(peer.id, net.connect(self.id, peer.id).pipe(Effect.map((link) => tapped(link, self.id, tap))))

/**
 * `a` and `b` dial each other over a fresh in-memory network, as two agents do over the transport:
 * each attempt of one meets an attempt of the other, so a failed session is redialed by both.
 * `capacity` is the links' per-direction frame buffer.
 */
export const connect = (a: Peer, b: Peer, options?: { readonly capacity?: number; readonly tap?: Tap }) =>
  Effect.gen(function*() {
    const net = yield* InMemoryLink.network({ capacity: options?.capacity ?? 16 })
    yield* dialOver(net, a, b, options?.tap)
    yield* dialOver(net, b, a, options?.tap)
    return net
  })

/** Wait (real time) until `peer` has a live session with each of `others`. */
export const awaitLive = (peer: Peer, others: ReadonlyArray<Peer>, deadline: Duration.Input = "30 seconds") =>
  Effect.gen(function*() {
    while (true) {
      const sessions = yield* peer.manager.sessions
      const live = new Set(sessions.filter((s) => s.state === "live").map((s) => s.peer))
      if (others.every((o) => live.has(o.id))) return
      yield* Effect.sleep("20 millis")
    }
  }).pipe(Effect.timeout(deadline))

export const asHash = (h: string) => h as AssetHash

/** A wait in an engine test did not end in time; says what it waited for. */
export class Deadline extends Data.TaggedError("Deadline")<{ readonly waitingFor: string }> {
  override get message() {
    return `timed out waiting for ${this.waitingFor}`
  }
}

/** Poll `check` until it holds; fail after `deadline` saying what was awaited. */
export const until = <E>(check: Effect.Effect<boolean, E>, waitingFor: string, deadline: Duration.Input = "20 seconds") =>
  Effect.gen(function*() {
    while (!(yield* check)) yield* Effect.sleep("10 millis")
  }).pipe(Effect.timeoutOrElse({ duration: deadline, orElse: () => Effect.fail(new Deadline({ waitingFor })) }))

/**
 * `peer`'s counters for `other` once `settled` holds: a session counts an asset a moment after the
 * store holds it (when the store's push has returned), so stores converge first.
 */
export const settledStats = (peer: Peer, other: Peer, settled: (stats: PeerStats) => boolean) =>
  until(peer.manager.stats(other.id).pipe(Effect.map(settled)), `${peer.id}'s counters for ${other.id} to settle`).pipe(
    Effect.andThen(peer.manager.stats(other.id))
  )

/** Frame type bytes the range tests count. */
export const RANGE_ROUND = 0x0f
export const DIGEST_CHUNK = 0x02

/** Frames of each type sent on a link, counted by a tap (`connect(a, b, { tap })`). */
export const frameCounter = () => {
  const counts = new Map<number, number>()
  return {
    tap: (_from: unknown, _to: unknown, frame: Uint8Array) => counts.set(frame[0]!, (counts.get(frame[0]!) ?? 0) + 1),
    count: (type: number) => counts.get(type) ?? 0
  }
}
