/**
 * The content half of the embedded store: asset files on disk, named by their SHA-256.
 * Layout: `objects/<first 2 hex>/<hash>` for content, `tmp/<pid>-<random>.part` while a write is in
 * flight. A write streams into a temp file while hashing, is fsynced, renamed into place and the
 * directory fsynced, so a crash leaves the whole file or only a temp file that the next open removes.
 */
import { AssetTooLarge, StoreUnavailable } from "@can-sync/core/CanStore"
import type { AssetHash } from "@can-sync/core/Domain"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Pool from "effect/Pool"
import * as Stream from "effect/Stream"
import type { Scope } from "effect"
import { createHash, randomBytes } from "node:crypto"
import type { FileHandle } from "node:fs/promises"
import { mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises"
import { join } from "node:path"
import { errorCode, unavailable } from "./StoreFailure.ts"

/**
 * Chunk size of reads handed to consumers. One read is one promise, one stream step and one hash
 * update: at 64 KiB a 256 MiB send spent more CPU on these than on the bytes (bench/sync.ts).
 */
export const ReadChunkSize = 1024 * 1024
/** Incoming chunks are gathered up to this size before each write to the temp file. */
const WriteBufferSize = 1024 * 1024

export interface Layout {
  readonly root: string
  readonly index: string
  readonly objects: string
  readonly tmp: string
  /** Whole content no index row names, set aside by `verify` (never deleted); `--rebuild-index` takes it back. */
  readonly quarantine: string
}

export const layout = (dataDir: string): Layout => ({
  root: dataDir,
  index: join(dataDir, "index.sqlite"),
  objects: join(dataDir, "objects"),
  tmp: join(dataDir, "tmp"),
  quarantine: join(dataDir, "quarantine")
})

export const shardDir = (layout: Layout, hash: AssetHash): string => join(layout.objects, hash.slice(0, 2))

export const objectPath = (layout: Layout, hash: AssetHash): string => join(shardDir(layout, hash), hash)

/**
 * Temp files are named by this process's pid, a random token drawn once, and a counter: unique
 * without drawing random bytes for every asset received.
 */
const tempToken = randomBytes(8).toString("hex")
let tempCount = 0
const tempName = (): string => `${process.pid}-${tempToken}${(tempCount++).toString(16).padStart(8, "0")}.part`

/** The pid encoded in a temp file name, if the name has our shape. */
const tempOwner = (name: string): number | undefined => {
  const match = /^(\d+)-[0-9a-f]+\.part$/.exec(name)
  return match === null ? undefined : Number(match[1])
}

const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return errorCode(error) === "EPERM"
  }
}

const removeIfPresent = (path: string) =>
  Effect.tryPromise({ try: () => unlink(path), catch: (error) => error }).pipe(
    Effect.catch((error) => errorCode(error) === "ENOENT" ? Effect.void : Effect.fail(error)),
    Effect.mapError(unavailable("remove temp file"))
  )

/**
 * Creates the directories and removes temp files left by processes that died mid-write. Temp
 * files of live processes are kept: a CLI opening the store must not break the agent's ingest.
 */
export const prepare = Effect.fn("ContentFiles.prepare")(function*(layout: Layout) {
  yield* Effect.tryPromise({
    try: async () => {
      await mkdir(layout.objects, { recursive: true })
      await mkdir(layout.tmp, { recursive: true })
      return await readdir(layout.tmp)
    },
    catch: unavailable("open data directory")
  }).pipe(
    Effect.flatMap((names) =>
      Effect.forEach(names, (name) => {
        const owner = tempOwner(name)
        return owner !== undefined && processAlive(owner) ? Effect.void : removeIfPresent(join(layout.tmp, name))
      }, { discard: true })
    )
  )
})

const syncDirectory = (path: string) =>
  Effect.tryPromise({
    try: async () => {
      const handle = await open(path, "r")
      try {
        await handle.sync()
      } finally {
        await handle.close()
      }
    },
    catch: unavailable("fsync directory")
  })

/** Content hashed and fully written to a temp file, fsynced, not yet in place. */
export interface Staged {
  readonly hash: AssetHash
  readonly size: number
  readonly path: string
  /** A resumed push (`Partials.stage`): where this push's content started, and the peers that sent the bytes before. */
  readonly resumedFrom?: number | undefined
  readonly sources?: ReadonlyArray<string> | undefined
  /** The temp file written: `promote` marks it moved, so its finalizer has nothing to remove. */
  readonly temp?: TempFile | undefined
}

/** Two write buffers: one fills (hashing on this thread) while the other is written (libuv pool). */
export type BufferPair = readonly [Buffer, Buffer]

/**
 * The store's write buffers, a pair per write in flight (thousands of small assets would
 * otherwise allocate 2 MiB each). Pairs are made on demand, up to `MaxBufferPairs` (a write beyond
 * that waits for a pair); one idle for `IdlePairLifetime` is freed. Closed with the store.
 */
export type WriteBuffers = Pool.Pool<BufferPair>

/** Writes (and file hashes) holding a buffer pair at once. */
const MaxBufferPairs = 64
const IdlePairLifetime = "1 minute"

export const writeBuffers: Effect.Effect<WriteBuffers, never, Scope.Scope> = Pool.makeWithTTL({
  acquire: Effect.sync((): BufferPair => [Buffer.allocUnsafe(WriteBufferSize), Buffer.allocUnsafe(WriteBufferSize)]),
  min: 0,
  max: MaxBufferPairs,
  timeToLive: IdlePairLifetime
})

/**
 * Borrows a pair until the scope closes. Borrow it before the file handles that read into or
 * write from it: scopes close in reverse, and a handle's close waits for its pending read or
 * write, so a pair goes back only once no operation still uses it, even after an interruption.
 */
export const borrow = (buffers: WriteBuffers) => Pool.get(buffers)

/** A file to read from, closed with the scope. */
const openSource = <E>(source: string, onReadError: (error: unknown) => E) =>
  Effect.acquireRelease(
    Effect.tryPromise({ try: () => open(source, "r"), catch: onReadError }),
    (handle) => Effect.promise(() => handle.close().catch(() => undefined))
  )

/** A temp file being written; `moved` once `promote` renamed it into place. */
export interface TempFile {
  readonly path: string
  readonly handle: FileHandle
  moved: boolean
}

/** A new temp file, closed when the scope closes and removed unless promoted first. */
const tempFile = (layout: Layout) =>
  Effect.gen(function*() {
    const path = join(layout.tmp, tempName())
    const file = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => open(path, "wx"), catch: unavailable("create temp file") }).pipe(
        Effect.map((handle): TempFile => ({ path, handle, moved: false }))
      ),
      (file) =>
        Effect.promise(() => file.handle.close().catch(() => undefined)).pipe(
          Effect.andThen(file.moved ? Effect.void : removeIfPresent(path)),
          Effect.ignore
        )
    )
    return file
  })

/**
 * SHA-256 and size of content seen piece by piece; `update` refuses it as soon as it exceeds
 * `maxBytes`.
 */
export const hashing = (maxBytes: number | undefined) => {
  const hasher = createHash("sha256")
  let size = 0
  return {
    update: (bytes: Uint8Array): Effect.Effect<void, AssetTooLarge> => {
      size += bytes.byteLength
      if (maxBytes !== undefined && size > maxBytes) return Effect.fail(new AssetTooLarge({ limit: maxBytes, size }))
      hasher.update(bytes)
      return Effect.void
    },
    result: () => ({ hash: hasher.digest("hex") as AssetHash, size })
  }
}

export type Sink<E> = (bytes: Uint8Array) => Effect.Effect<void, E>

/**
 * Hashes a content stream chunk by chunk. `sink` sees every chunk after it is hashed; the stream
 * is pulled only as fast as the sink completes.
 */
const hashStream = <E, E2>(content: Stream.Stream<Uint8Array, E>, maxBytes: number | undefined, sink: Sink<E2>) =>
  Effect.suspend(() => {
    const digest = hashing(maxBytes)
    return Stream.runForEach(content, (chunk) => Effect.andThen(digest.update(chunk), () => sink(chunk))).pipe(
      Effect.map(digest.result)
    )
  })

/**
 * Hashes a file, read into the pair's two buffers in turn; `sink` sees each filled part after
 * it is hashed. A buffer is read into again two rounds after the sink was given it, so the sink
 * must be done with a buffer once it has completed on the next one (`backgroundWriter` is).
 */
const hashFile = <E, E2>(
  input: FileHandle,
  pair: BufferPair,
  maxBytes: number | undefined,
  onReadError: (error: unknown) => E,
  sink: Sink<E2>
) =>
  Effect.gen(function*() {
    const digest = hashing(maxBytes)
    let position = 0
    for (let current = 0;; current = 1 - current) {
      const buffer = pair[current]
      const filled = yield* Effect.tryPromise({ try: () => readFully(input, buffer, position), catch: onReadError })
      position += filled
      if (filled > 0) {
        const bytes = buffer.subarray(0, filled)
        yield* digest.update(bytes)
        yield* sink(bytes)
      }
      if (filled < buffer.byteLength) break // end of file
    }
    return digest.result()
  })

/**
 * Writes to a file in the background, one write at a time: `write` waits for the previous write,
 * starts this one and returns, so the caller fills its other buffer meanwhile. `finish` waits for
 * the last write and fsyncs the file.
 */
const backgroundWriter = (handle: FileHandle) => {
  let inFlight: Fiber.Fiber<void, StoreUnavailable> | undefined
  const settle = Effect.suspend(() => {
    const pending = inFlight
    inFlight = undefined
    return pending === undefined ? Effect.void : Fiber.join(pending)
  })
  const write = (bytes: Uint8Array): Effect.Effect<void, StoreUnavailable> =>
    settle.pipe(
      Effect.andThen(Effect.forkChild(
        Effect.tryPromise({ try: () => writeFully(handle, bytes), catch: unavailable("write temp file") })
      )),
      Effect.map((fiber) => {
        inFlight = fiber
      })
    )
  const finish = settle.pipe(
    Effect.andThen(Effect.tryPromise({ try: () => handle.sync(), catch: unavailable("fsync temp file") }))
  )
  return { write, finish }
}

/**
 * Gathers stream chunks into the pair's buffers, handing each to `write` as it fills; `flush`
 * hands over the last, partial one. A large chunk arriving at a buffer boundary is written as it
 * is (stream chunks are immutable once emitted).
 */
export const gatherer = (pair: BufferPair, write: Sink<StoreUnavailable>) => {
  let current = 0
  let filled = 0
  const flush = Effect.suspend(() => {
    if (filled === 0) return Effect.void
    const bytes = pair[current].subarray(0, filled)
    current = 1 - current
    filled = 0
    return write(bytes)
  })
  const gather = (chunk: Uint8Array): Effect.Effect<void, StoreUnavailable> => {
    if (filled === 0 && chunk.byteLength >= WriteBufferSize) return write(chunk)
    const buffer = pair[current]
    const room = WriteBufferSize - filled
    if (chunk.byteLength <= room) {
      buffer.set(chunk, filled)
      filled += chunk.byteLength
      return filled === WriteBufferSize ? flush : Effect.void
    }
    buffer.set(chunk.subarray(0, room), filled)
    filled = WriteBufferSize
    return flush.pipe(Effect.andThen(() => gather(chunk.subarray(room))))
  }
  return { gather, flush }
}

/** The hash and size of a content stream, storing nothing (for content already present). */
export const digest = <E>(content: Stream.Stream<Uint8Array, E>, maxBytes: number | undefined) =>
  hashStream(content, maxBytes, () => Effect.void)

/**
 * Streams content into a new temp file while hashing it, then fsyncs it. The temp file is removed
 * when the scope closes unless `promote` moved it into place first. Memory use is one buffer pair.
 */
export const stage = <E>(
  layout: Layout,
  buffers: WriteBuffers,
  content: Stream.Stream<Uint8Array, E>,
  maxBytes: number | undefined
): Effect.Effect<Staged, E | AssetTooLarge | StoreUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const pair = yield* borrow(buffers)
    const temp = yield* tempFile(layout)
    const writer = backgroundWriter(temp.handle)
    const chunks = gatherer(pair, writer.write)
    const { hash, size } = yield* hashStream(content, maxBytes, chunks.gather)
    yield* chunks.flush
    yield* writer.finish
    return { hash, size, path: temp.path, temp }
  })

/**
 * Stages a file from disk, as `stage` does a stream, but reading straight into the buffer pair:
 * while one buffer is written to the temp file the other is read and hashed, and nothing else is
 * allocated. `onReadError` describes a failure to read the source (the caller's problem, not the
 * store's).
 */
export const stageFile = <E>(
  layout: Layout,
  buffers: WriteBuffers,
  source: string,
  maxBytes: number | undefined,
  onReadError: (error: unknown) => E
): Effect.Effect<Staged, E | AssetTooLarge | StoreUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const pair = yield* borrow(buffers)
    const input = yield* openSource(source, onReadError)
    const temp = yield* tempFile(layout)
    const writer = backgroundWriter(temp.handle)
    const { hash, size } = yield* hashFile(input, pair, maxBytes, onReadError, writer.write)
    yield* writer.finish
    return { hash, size, path: temp.path, temp }
  })

/** The hash and size of a file on disk, storing nothing (for content already present). */
export const digestFile = <E>(
  buffers: WriteBuffers,
  source: string,
  maxBytes: number | undefined,
  onReadError: (error: unknown) => E
): Effect.Effect<{ readonly hash: AssetHash; readonly size: number }, E | AssetTooLarge> =>
  Effect.scoped(Effect.gen(function*() {
    const pair = yield* borrow(buffers)
    const input = yield* openSource(source, onReadError)
    return yield* hashFile(input, pair, maxBytes, onReadError, () => Effect.void)
  }))

/** Fills `buffer` from `position` on; fewer bytes only at the end of the file. */
export const readFully = async (handle: FileHandle, buffer: Buffer, position: number): Promise<number> => {
  let filled = 0
  while (filled < buffer.byteLength) {
    const { bytesRead } = await handle.read(buffer, filled, buffer.byteLength - filled, position + filled)
    if (bytesRead === 0) break
    filled += bytesRead
  }
  return filled
}

/** Writes all of `bytes`, at `position` when given (else at the file's current position). */
export const writeFully = async (handle: FileHandle, bytes: Uint8Array, position?: number): Promise<void> => {
  let offset = 0
  while (offset < bytes.byteLength) {
    const at = position === undefined ? null : position + offset
    const { bytesWritten } = await handle.write(bytes, offset, bytes.byteLength - offset, at)
    offset += bytesWritten
  }
}

/** Moves a staged file to its object path and makes the rename durable. */
export const promote = Effect.fn("ContentFiles.promote")(function*(layout: Layout, staged: Staged) {
  const shard = shardDir(layout, staged.hash)
  const into = objectPath(layout, staged.hash)
  // The shard directory nearly always exists: it is made (and the objects directory fsynced
  // below) only when the rename into it finds it missing.
  const created = yield* Effect.tryPromise({
    try: async () => {
      try {
        await rename(staged.path, into)
        return undefined
      } catch (error) {
        if (errorCode(error) !== "ENOENT") throw error
        const made = await mkdir(shard, { recursive: true })
        await rename(staged.path, into)
        return made
      }
    },
    catch: unavailable("move content into place")
  })
  if (staged.temp !== undefined) staged.temp.moved = true
  yield* syncDirectory(shard)
  if (created !== undefined) yield* syncDirectory(layout.objects)
})

/** True when the object file exists with the expected size (a cheap check, no rehash). */
export const present = (layout: Layout, hash: AssetHash, size: number): Effect.Effect<boolean, StoreUnavailable> =>
  Effect.tryPromise({ try: () => stat(objectPath(layout, hash)), catch: (error) => error }).pipe(
    Effect.map((info) => info.isFile() && info.size === size),
    Effect.catch((error) => errorCode(error) === "ENOENT" ? Effect.succeed(false) : Effect.fail(unavailable("stat content file")(error)))
  )

/** The bytes of a file (from byte `start` on) as a stream of chunks of at most `ReadChunkSize`. */
export const readFile = (path: string, operation: string, start = 0): Stream.Stream<Uint8Array, StoreUnavailable> =>
  Stream.unwrap(Effect.gen(function*() {
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => open(path, "r"),
        catch: (error) =>
          errorCode(error) === "ENOENT"
            ? new StoreUnavailable({
              operation,
              message: `content file ${path} is missing although the index lists it (run verify)`
            })
            : unavailable(operation)(error)
      }),
      (handle) => Effect.promise(() => handle.close().catch(() => undefined))
    )
    const { size } = yield* Effect.tryPromise({ try: () => handle.stat(), catch: unavailable(operation) })
    // Sized to what is left (plus a byte, which also finds a file that grew): a 1 KiB asset
    // costs a 1 KiB buffer, not a 1 MiB one. A read shorter than asked met the end of the file,
    // so a small file takes one read, not a second one that finds nothing.
    const wanted = (position: number) => Math.min(ReadChunkSize, Math.max(0, size - position) + 1)
    return Stream.paginate(start, (position: number) => {
      const want = wanted(position)
      return Effect.tryPromise({
        try: () => handle.read(Buffer.allocUnsafe(want), 0, want, position),
        catch: unavailable(operation)
      }).pipe(Effect.map(({ buffer, bytesRead }) =>
        bytesRead === 0
          ? [[], Option.none<number>()] as const
          : [[buffer.subarray(0, bytesRead)], bytesRead < want ? Option.none<number>() : Option.some(position + bytesRead)] as const
      ))
    })
  }))

/**
 * The content of `hash` as a stream of chunks, checked as it is read: its SHA-256 and size must
 * be those of its name and index entry. Each chunk is held back until the next one is read, so on
 * damage the stream fails before its last chunk — a reader (an HTTP response with its
 * Content-Length, `cat`) ends short and with an error, never with the whole wrong content.
 */
export const readVerified = (
  layout: Layout,
  hash: AssetHash,
  size: number,
  operation: string
): Stream.Stream<Uint8Array, StoreUnavailable> =>
  Stream.unwrap(Effect.sync(() => {
    const hasher = createHash("sha256")
    let seen = 0
    let held: Uint8Array | undefined
    const damaged = (detail: string) =>
      new StoreUnavailable({
        operation,
        message: `content of ${hash} is damaged (${detail}): run \`can-sync verify\` to set it aside, and sync with a peer that has it`
      })
    const release = (): ReadonlyArray<Uint8Array> => {
      const out = held === undefined ? [] : [held]
      held = undefined
      return out
    }
    return readFile(objectPath(layout, hash), operation).pipe(
      Stream.mapEffect((chunk) => {
        seen += chunk.byteLength
        if (seen > size) return Effect.fail(damaged(`more than the ${size} bytes the index says`))
        hasher.update(chunk)
        const out = release()
        held = chunk
        return Effect.succeed(out)
      }),
      Stream.concat(Stream.fromEffect(Effect.suspend(() => {
        if (seen !== size) return Effect.fail(damaged(`${seen} bytes, the index says ${size}`))
        const actual = hasher.digest("hex")
        return actual === hash ? Effect.succeed(release()) : Effect.fail(damaged(`it hashes to ${actual}`))
      }))),
      Stream.flatMap((chunks) => Stream.fromIterable(chunks))
    )
  }))

/**
 * Moves a damaged object file to `quarantine/<hash>.damaged` (the suffix keeps `--rebuild-index`
 * from taking it for whole content); nothing to do when it is missing.
 */
export const setAsideDamaged = (layout: Layout, hash: AssetHash): Effect.Effect<void, StoreUnavailable> =>
  Effect.tryPromise({
    try: async () => {
      await mkdir(layout.quarantine, { recursive: true })
      await rename(objectPath(layout, hash), join(layout.quarantine, `${hash}.damaged`))
    },
    catch: (error) => error
  }).pipe(
    Effect.catch((error) => errorCode(error) === "ENOENT" ? Effect.void : Effect.fail(unavailable("set aside damaged content")(error)))
  )

/** An object file found on disk: its hash (the file name), size and last write. */
export interface ObjectFile {
  readonly hash: AssetHash
  readonly path: string
  readonly size: number
  readonly modifiedAt: number
  readonly inode: number
}

const contentFile = async (path: string, name: string): Promise<ObjectFile | undefined> => {
  const info = await stat(path).catch(() => undefined)
  return info?.isFile() === true
    ? { hash: name as AssetHash, path, size: info.size, modifiedAt: info.mtimeMs, inode: info.ino }
    : undefined
}

const namesIn = (dir: string): Promise<ReadonlyArray<string>> =>
  readdir(dir).catch((error) => (errorCode(error) === "ENOENT" ? [] : Promise.reject(error)))

/**
 * Every object file under `objects/`, shard by shard (for the orphan sweep: a process killed
 * between moving content into place and indexing it leaves a file no index row names).
 * Names that are not a SHA-256 hash are not ours and are skipped.
 */
export const objectFiles = (layout: Layout): Stream.Stream<ObjectFile, StoreUnavailable> =>
  Stream.fromEffect(Effect.tryPromise({ try: () => namesIn(layout.objects), catch: unavailable("list objects") })).pipe(
    Stream.flatMap((shards) => Stream.fromIterable(shards.filter((shard) => /^[0-9a-f]{2}$/.test(shard)))),
    Stream.mapEffect((shard) =>
      Effect.tryPromise({
        try: async () => {
          const dir = join(layout.objects, shard)
          const files: Array<ObjectFile> = []
          for (const name of await namesIn(dir)) {
            if (!/^[0-9a-f]{64}$/.test(name) || !name.startsWith(shard)) continue
            const file = await contentFile(join(dir, name), name)
            if (file !== undefined) files.push(file)
          }
          return files
        },
        catch: unavailable("list objects")
      })),
    Stream.flatMap((files) => Stream.fromIterable(files))
  )

/** Every content file set aside in `quarantine/` (named by the hash its name claims). */
export const quarantinedFiles = (layout: Layout): Stream.Stream<ObjectFile, StoreUnavailable> =>
  Stream.fromEffect(Effect.tryPromise({
    try: async () => {
      const files: Array<ObjectFile> = []
      for (const name of await namesIn(layout.quarantine)) {
        if (!/^[0-9a-f]{64}$/.test(name)) continue
        const file = await contentFile(join(layout.quarantine, name), name)
        if (file !== undefined) files.push(file)
      }
      return files
    },
    catch: unavailable("list quarantine")
  })).pipe(Stream.flatMap((files) => Stream.fromIterable(files)))

/** True when `objects/` holds at least one content file (a store whose index went missing). */
export const hasObjectFiles = (layout: Layout): Effect.Effect<boolean, StoreUnavailable> =>
  objectFiles(layout).pipe(Stream.take(1), Stream.runCount, Effect.map((n) => n > 0))

/**
 * Takes an orphaned object file out of `objects/` — into `quarantine/` when `keep`, else removed —
 * unless another process has just moved a fresh copy of the same content into its place (an add
 * or a push in progress, about to index it): the file is first renamed into tmp/ (a dead process's
 * leftovers there are removed at the next open), and put back if it turns out not to be the one
 * that was found. True if it was taken.
 */
export const takeOrphan = (layout: Layout, file: ObjectFile, keep: boolean): Effect.Effect<boolean, StoreUnavailable> =>
  Effect.gen(function*() {
    const held = join(layout.tmp, tempName())
    const moved = yield* Effect.tryPromise({ try: () => rename(file.path, held), catch: (error) => error }).pipe(
      Effect.as(true),
      Effect.catch((error) => errorCode(error) === "ENOENT" ? Effect.succeed(false) : Effect.fail(error))
    )
    if (!moved) return false
    return yield* Effect.tryPromise({
      try: async () => {
        if ((await stat(held)).ino !== file.inode) {
          await rename(held, file.path) // same content whatever is there now: a hash names it
          return false
        }
        if (keep) {
          await mkdir(layout.quarantine, { recursive: true })
          await rename(held, join(layout.quarantine, file.hash))
        } else {
          await unlink(held)
        }
        return true
      },
      catch: (error) => error
    })
  }).pipe(Effect.mapError(unavailable(keep ? "quarantine content file" : "remove orphaned content file")))

/** Moves a whole quarantined file back to its object path (before it is indexed again). */
export const restore = Effect.fn("ContentFiles.restore")(function*(layout: Layout, file: ObjectFile) {
  yield* Effect.tryPromise({
    try: async () => {
      await mkdir(shardDir(layout, file.hash), { recursive: true })
      await rename(file.path, objectPath(layout, file.hash))
    },
    catch: unavailable("restore quarantined content file")
  })
  yield* syncDirectory(shardDir(layout, file.hash))
})

/** Removes a file (a quarantined copy of content the index already holds). */
export const remove = (path: string): Effect.Effect<void, StoreUnavailable> => removeIfPresent(path)

/** Rehashes an object file (or the file at `path`): `None` when it is whole, else what is wrong with it. */
export const check = Effect.fn("ContentFiles.check")(function*(
  layout: Layout,
  buffers: WriteBuffers,
  hash: AssetHash,
  size: number,
  path: string = objectPath(layout, hash)
) {
  const found = yield* digestFile(buffers, path, undefined, (error) => error).pipe(
    Effect.map(Option.some),
    Effect.catch((error) =>
      errorCode(error) === "ENOENT" ? Effect.succeed(Option.none()) : Effect.fail(unavailable("verify")(error))
    )
  )
  if (Option.isNone(found)) return Option.some("content file is missing")
  const actual = found.value
  if (actual.size !== size) return Option.some(`content file has ${actual.size} bytes, the index says ${size}`)
  if (actual.hash !== hash) return Option.some(`content is damaged: it hashes to ${actual.hash}`)
  return Option.none<string>()
})
