/**
 * Partials: the content of interrupted resumable pushes, kept so a transfer resumes where it stopped.
 * Layout: `partial/<hash>` (the bytes) beside `partial/<hash>.json` (the checkpoint: how many bytes are
 * fsynced, which peer sent which range). A push checkpoints every `CheckpointBytes` and when it is
 * interrupted, so a crash resumes from the last checkpoint; a resumed push re-hashes the bytes it keeps.
 * Bounded in count, bytes and age (`sweep`, oldest first); nothing here ever reaches `objects/` unchecked.
 */
import { HashMismatch, StoreUnavailable } from "@can-sync/core/CanStore"
import type { AssetTooLarge } from "@can-sync/core/CanStore"
import type { AssetHash } from "@can-sync/core/Domain"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type { Scope } from "effect"
import type { FileHandle } from "node:fs/promises"
import { mkdir, open, readdir, readFile, rename, stat, unlink, writeFile } from "node:fs/promises"
import { join } from "node:path"
import * as ContentFiles from "./ContentFiles.ts"
import { errorCode, unavailable } from "./StoreFailure.ts"

/** A push fsyncs its partial and writes the checkpoint each time this many more bytes have arrived. */
export const CheckpointBytes = 8 * 1024 * 1024
/** An interrupted push shorter than this is not worth keeping (small assets simply start again). */
export const MinPartialBytes = 1024 * 1024

/** Whether this many bytes of an asset are worth keeping as a partial (a smaller asset never has one). */
export const worthKeeping = (bytes: number): boolean => bytes >= MinPartialBytes

/** How many partials, how many bytes of them and how old, at most (`sweep`). */
export interface Bounds {
  readonly maxCount: number
  readonly maxBytes: number
  readonly maxAge: Duration.Duration
}

export const DefaultBounds: Bounds = { maxCount: 64, maxBytes: 16 * 1024 ** 3, maxAge: Duration.days(7) }

/** One range of a partial and the peer that sent it. */
const Source = Schema.Struct({ peer: Schema.String, from: Schema.Number, to: Schema.Number })
type Source = typeof Source.Type

/** The checkpoint file: bytes fsynced, their sources, when it was written. */
const Checkpoint = Schema.fromJsonString(Schema.Struct({
  bytes: Schema.Number,
  updatedAt: Schema.Number,
  sources: Schema.Array(Source)
}))
type Checkpoint = typeof Checkpoint.Type

export const dir = (layout: ContentFiles.Layout): string => join(layout.root, "partial")
const dataPath = (layout: ContentFiles.Layout, hash: AssetHash) => join(dir(layout), hash)
const checkpointPath = (layout: ContentFiles.Layout, hash: AssetHash) => join(dir(layout), `${hash}.json`)

const ignoreMissing = <A>(fallback: A) => (error: unknown) =>
  errorCode(error) === "ENOENT" ? Effect.succeed(fallback) : Effect.fail(error)

const removeFile = (path: string) =>
  Effect.tryPromise({ try: () => unlink(path), catch: (error) => error }).pipe(
    Effect.catch(ignoreMissing(undefined)),
    Effect.mapError(unavailable("remove partial"))
  )

/** The checkpoint of `hash`'s partial, if one was written and can be read. */
const readCheckpoint = (layout: ContentFiles.Layout, hash: AssetHash) =>
  Effect.tryPromise({ try: () => readFile(checkpointPath(layout, hash), "utf8"), catch: (error) => error }).pipe(
    Effect.map((text) => Schema.decodeUnknownOption(Checkpoint)(text)),
    Effect.catch(ignoreMissing(Option.none<Checkpoint>())),
    Effect.mapError(unavailable("read partial checkpoint"))
  )

const fileSize = (path: string) =>
  Effect.tryPromise({ try: () => stat(path), catch: (error) => error }).pipe(
    Effect.map((info) => info.size),
    Effect.catch(ignoreMissing(0)),
    Effect.mapError(unavailable("stat partial"))
  )

/** What a partial of `hash` holds for sure: its checkpoint, cut to the bytes the file has (0: nothing to resume). */
const kept = (layout: ContentFiles.Layout, hash: AssetHash) =>
  Effect.gen(function*() {
    const checkpoint = yield* readCheckpoint(layout, hash)
    if (Option.isNone(checkpoint)) return { bytes: 0, sources: [] as ReadonlyArray<Source> }
    const bytes = Math.min(checkpoint.value.bytes, yield* fileSize(dataPath(layout, hash)))
    return { bytes, sources: checkpoint.value.sources }
  })

/** Bytes of `hash` a resumable push may continue from (0: none). */
export const held = (layout: ContentFiles.Layout, hash: AssetHash): Effect.Effect<number, StoreUnavailable> =>
  Effect.map(kept(layout, hash), (k) => k.bytes)

/** Removes `hash`'s partial and its checkpoint. */
export const discard = (layout: ContentFiles.Layout, hash: AssetHash): Effect.Effect<void, StoreUnavailable> =>
  Effect.andThen(removeFile(checkpointPath(layout, hash)), removeFile(dataPath(layout, hash)))

/** Sources cut at `end` (the bytes before a resume), then `peer` from `end` to `to`; one entry per run of a peer. */
const withRange = (sources: ReadonlyArray<Source>, end: number, peer: string, to: number): Array<Source> => {
  const out: Array<Source> = []
  for (const s of sources) if (s.from < end) out.push({ peer: s.peer, from: s.from, to: Math.min(s.to, end) })
  const last = out.at(-1)
  if (last !== undefined && last.peer === peer && last.to === end) out[out.length - 1] = { peer, from: last.from, to }
  else if (to > end) out.push({ peer, from: end, to })
  return out
}

/** fsync the partial, then write its checkpoint (a temp file renamed over the old one). */
const checkpoint = (layout: ContentFiles.Layout, hash: AssetHash, handle: FileHandle, bytes: number, sources: ReadonlyArray<Source>) =>
  Effect.tryPromise({
    try: async () => {
      await handle.sync()
      const path = checkpointPath(layout, hash)
      const text = Schema.encodeSync(Checkpoint)({ bytes, updatedAt: Date.now(), sources })
      await writeFile(`${path}.tmp`, text)
      await rename(`${path}.tmp`, path)
    },
    catch: unavailable("checkpoint partial")
  })

/** Reads `bytes` bytes from the start of `handle` into the hasher (a resume re-hashes what it keeps). */
const rehash = (handle: FileHandle, buffer: Buffer, bytes: number, digest: ReturnType<typeof ContentFiles.hashing>) =>
  Effect.gen(function*() {
    for (let position = 0; position < bytes;) {
      const want = Math.min(buffer.byteLength, bytes - position)
      const filled = yield* Effect.tryPromise({
        try: () => ContentFiles.readFully(handle, buffer.subarray(0, want), position),
        catch: unavailable("re-hash partial")
      })
      if (filled === 0) break
      yield* digest.update(buffer.subarray(0, filled))
      position += filled
    }
  })

/**
 * Streams `content` into `hash`'s partial as a resumable push from peer `peer`: from byte 0, or after
 * the first `from` bytes it keeps (re-hashed first; a partial holding fewer fails with HashMismatch,
 * so the caller starts again from 0). Hashes the whole asset as it goes. When the content ends the
 * partial is handed over as `Staged` (promote moves it into place); whatever happens after, the
 * partial is removed with the scope. An interrupted push instead keeps what arrived, checkpointed.
 */
export const stage = <E>(
  layout: ContentFiles.Layout,
  buffers: ContentFiles.WriteBuffers,
  hash: AssetHash,
  content: Stream.Stream<Uint8Array, E>,
  maxBytes: number | undefined,
  from: number,
  peer: string
): Effect.Effect<ContentFiles.Staged, E | HashMismatch | AssetTooLarge | StoreUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const pair = yield* ContentFiles.borrow(buffers)
    yield* Effect.tryPromise({ try: () => mkdir(dir(layout), { recursive: true }), catch: unavailable("create partial directory") })
    const before = from > 0 ? yield* kept(layout, hash) : { bytes: 0, sources: [] }
    if (before.bytes < from) {
      yield* discard(layout, hash)
      return yield* new HashMismatch({ expected: hash, actual: `(a partial of ${before.bytes} bytes, ${from} asked)`, resumedFrom: from, sources: [] })
    }
    const path = dataPath(layout, hash)
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => open(path, from > 0 ? "r+" : "w"), catch: unavailable("open partial") }),
      (handle) => Effect.promise(() => handle.close().catch(() => undefined))
    )
    const digest = ContentFiles.hashing(maxBytes)
    yield* rehash(handle, pair[0], from, digest)
    yield* Effect.tryPromise({ try: () => handle.truncate(from), catch: unavailable("truncate partial") })
    // The checkpoint says no more than the file now holds (a crash before the next one resumes from
    // here), and a resume dates it now: a partial being written is never among the oldest, which a
    // sweep by another process (`can-sync verify`, which cannot see this push) drops first.
    if (from === 0) yield* removeFile(checkpointPath(layout, hash))
    else yield* checkpoint(layout, hash, handle, from, withRange(before.sources, from, peer, from))
    let position = from // bytes handed to writes
    let written = from // bytes whose write completed
    let checkpointed = from
    let arrived = false
    const sources = () => withRange(before.sources, from, peer, written)
    // The write in flight is a plain promise, started at once: a push cut off (interrupted) mid-write
    // still completes and counts it, so the finalizer keeps what really reached the file.
    let inFlight: Promise<void> | undefined
    let writeFailure: unknown = undefined
    let chunks: ReturnType<typeof ContentFiles.gatherer> | undefined
    /** Waits for the write in flight, whatever its outcome (`written` counts it only if it completed). */
    const drain = Effect.suspend(() => (inFlight === undefined ? Effect.void : Effect.promise(() => inFlight!)))
    // Cut off: what arrived (the write in flight, the bytes gathered) is written and checkpointed.
    // Runs before the handle closes (finalizers run in reverse).
    yield* Effect.addFinalizer((exit) => {
      if (arrived || Exit.isSuccess(exit)) return discard(layout, hash).pipe(Effect.ignore)
      return Effect.gen(function*() {
        yield* drain
        if (chunks !== undefined) yield* chunks.flush.pipe(Effect.ignore)
        yield* drain
        if (!worthKeeping(written)) return yield* discard(layout, hash)
        yield* checkpoint(layout, hash, handle, written, sources())
      }).pipe(Effect.ignore)
    })
    const settle = Effect.suspend(() => {
      const pending = inFlight
      return pending === undefined ? Effect.void : Effect.promise(() => pending).pipe(Effect.andThen(Effect.suspend(() => {
        if (inFlight === pending) inFlight = undefined
        return writeFailure === undefined ? Effect.void : Effect.fail(unavailable("write partial")(writeFailure))
      })))
    }).pipe(Effect.andThen(Effect.suspend(() =>
      written - checkpointed >= CheckpointBytes
        ? checkpoint(layout, hash, handle, written, sources()).pipe(Effect.andThen(Effect.sync(() => void (checkpointed = written))))
        : Effect.void
    )))
    // Uninterruptible (it waits only for the previous write): a buffer handed over is always written,
    // even by a push cut off at that moment, so the finalizer never loses a full buffer.
    const write = (bytes: Uint8Array): Effect.Effect<void, StoreUnavailable> =>
      settle.pipe(
        Effect.andThen(Effect.sync(() => {
          const at = position
          position += bytes.byteLength
          inFlight = ContentFiles.writeFully(handle, bytes, at).then(
            () => void (written = at + bytes.byteLength),
            (error: unknown) => void (writeFailure = error)
          )
        })),
        Effect.uninterruptible
      )
    const gathered = ContentFiles.gatherer(pair, write)
    chunks = gathered
    yield* Stream.runForEach(content, (chunk) => Effect.andThen(digest.update(chunk), () => gathered.gather(chunk)))
    yield* gathered.flush
    yield* settle
    yield* Effect.tryPromise({ try: () => handle.sync(), catch: unavailable("fsync partial") })
    arrived = true
    const { hash: actual, size } = digest.result()
    const staged: ContentFiles.Staged = { hash: actual, size, path, resumedFrom: from, sources: [...new Set(sources().map((s) => s.peer))] }
    return staged
  })

/** One partial on disk, as `list` and `sweep` see it. */
export interface PartialInfo {
  readonly hash: AssetHash
  readonly bytes: number
  readonly updatedAt: number
  readonly peers: ReadonlyArray<string>
}

const isHash = (name: string) => /^[0-9a-f]{64}$/.test(name)

/** Every partial with its checkpoint (a data file without one counts 0 bytes, dated by its file). */
export const list = (layout: ContentFiles.Layout): Effect.Effect<ReadonlyArray<PartialInfo>, StoreUnavailable> =>
  Effect.gen(function*() {
    const names = yield* Effect.tryPromise({ try: () => readdir(dir(layout)), catch: (error) => error }).pipe(
      Effect.catch(ignoreMissing([] as Array<string>)),
      Effect.mapError(unavailable("list partials"))
    )
    const hashes = new Set(names.map((n) => n.replace(/\.json$/, "")).filter(isHash) as Array<AssetHash>)
    return yield* Effect.forEach(hashes, (hash) =>
      Effect.gen(function*() {
        const checkpoint = yield* readCheckpoint(layout, hash)
        if (Option.isSome(checkpoint)) {
          const { bytes, sources, updatedAt } = checkpoint.value
          return { hash, bytes, updatedAt, peers: [...new Set(sources.map((s) => s.peer))] }
        }
        const info = yield* Effect.tryPromise({ try: () => stat(dataPath(layout, hash)), catch: (error) => error }).pipe(
          Effect.map((i) => i.mtimeMs),
          Effect.catch(ignoreMissing(0)),
          Effect.mapError(unavailable("stat partial"))
        )
        return { hash, bytes: 0, updatedAt: info, peers: [] as ReadonlyArray<string> }
      }))
  })

/**
 * Drops partials older than `bounds.maxAge`, then the oldest until at most `maxCount` and `maxBytes`
 * remain; `busy` ones (a push writing them now) are left alone. Returns what was dropped.
 */
export const sweep = (
  layout: ContentFiles.Layout,
  bounds: Bounds,
  now: number,
  busy: { readonly has: (hash: string) => boolean } = new Set()
): Effect.Effect<ReadonlyArray<PartialInfo>, StoreUnavailable> =>
  Effect.gen(function*() {
    const all = (yield* list(layout)).filter((p) => !busy.has(p.hash)).sort((a, b) => b.updatedAt - a.updatedAt)
    const dropped: Array<PartialInfo> = []
    let count = 0
    let bytes = 0
    for (const partial of all) {
      const tooOld = now - partial.updatedAt > Duration.toMillis(bounds.maxAge)
      if (tooOld || count + 1 > bounds.maxCount || bytes + partial.bytes > bounds.maxBytes) {
        yield* discard(layout, partial.hash)
        dropped.push(partial)
        continue
      }
      count++
      bytes += partial.bytes
    }
    return dropped
  })
