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
import * as Stream from "effect/Stream"
import type { Scope } from "effect"
import { createHash, randomBytes } from "node:crypto"
import type { FileHandle } from "node:fs/promises"
import { mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises"
import { join } from "node:path"
import { errorCode, unavailable } from "./StoreFailure.ts"

/** Chunk size of reads handed to consumers. */
export const ReadChunkSize = 64 * 1024
/** Incoming chunks are gathered up to this size before each write to the temp file. */
const WriteBufferSize = 1024 * 1024

export interface Layout {
  readonly root: string
  readonly index: string
  readonly objects: string
  readonly tmp: string
}

export const layout = (dataDir: string): Layout => ({
  root: dataDir,
  index: join(dataDir, "index.sqlite"),
  objects: join(dataDir, "objects"),
  tmp: join(dataDir, "tmp")
})

export const shardDir = (layout: Layout, hash: AssetHash): string => join(layout.objects, hash.slice(0, 2))

export const objectPath = (layout: Layout, hash: AssetHash): string => join(shardDir(layout, hash), hash)

const tempName = (): string => `${process.pid}-${randomBytes(8).toString("hex")}.part`

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
}

/**
 * Write buffers from a small pool (thousands of small assets would otherwise allocate 2 MiB
 * each), returned when the scope closes. Acquire them before the file handles that read into or
 * write from them: scopes close in reverse, and a handle's close waits for its pending read or
 * write, so a buffer goes back only once no operation still uses it, even after an interruption.
 */
const writeBuffers = Effect.acquireRelease(
  Effect.sync(() => [takeWriteBuffer(), takeWriteBuffer()] as const),
  (pair) => Effect.sync(() => pair.forEach(returnWriteBuffer))
)

/** A new temp file, removed when the scope closes unless promoted first. */
const tempFile = (layout: Layout) =>
  Effect.gen(function*() {
    const path = join(layout.tmp, tempName())
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => open(path, "wx"), catch: unavailable("create temp file") }),
      (handle) =>
        Effect.promise(() => handle.close().catch(() => undefined)).pipe(
          Effect.andThen(removeIfPresent(path)),
          Effect.ignore
        )
    )
    return { path, handle }
  })

/**
 * Hashes a content stream chunk by chunk, refusing it as soon as it exceeds `maxBytes`. `sink`
 * sees every chunk after it is hashed; the stream is pulled only as fast as the sink completes.
 */
const hashStream = <E, E2>(
  content: Stream.Stream<Uint8Array, E>,
  maxBytes: number | undefined,
  sink: (chunk: Uint8Array) => Effect.Effect<void, E2>
): Effect.Effect<{ readonly hash: AssetHash; readonly size: number }, E | E2 | AssetTooLarge> =>
  Effect.suspend(() => {
    const hasher = createHash("sha256")
    let size = 0
    return Stream.runForEach(content, (chunk): Effect.Effect<void, E2 | AssetTooLarge> => {
      size += chunk.byteLength
      if (maxBytes !== undefined && size > maxBytes) return Effect.fail(new AssetTooLarge({ limit: maxBytes, size }))
      hasher.update(chunk)
      return sink(chunk)
    }).pipe(Effect.map(() => ({ hash: hasher.digest("hex") as AssetHash, size })))
  })

/** The hash and size of a content stream, storing nothing (for content already present). */
export const digest = <E>(content: Stream.Stream<Uint8Array, E>, maxBytes: number | undefined) =>
  hashStream(content, maxBytes, () => Effect.void)

/**
 * Streams content into a new temp file while hashing it, then fsyncs it. The temp file is removed
 * when the scope closes unless `promote` moved it into place first. Memory use is two write buffers.
 */
export const stage = <E>(
  layout: Layout,
  content: Stream.Stream<Uint8Array, E>,
  maxBytes: number | undefined
): Effect.Effect<Staged, E | AssetTooLarge | StoreUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    // two buffers: one fills (hashing on this thread) while the other is written (libuv pool)
    const buffers = yield* writeBuffers
    const { path, handle } = yield* tempFile(layout)
    let current = 0
    let filled = 0
    let inFlight: Fiber.Fiber<void, StoreUnavailable> | undefined
    const settle = Effect.suspend(() => {
      const pending = inFlight
      inFlight = undefined
      return pending === undefined ? Effect.void : Fiber.join(pending)
    })
    const startWrite = (bytes: Uint8Array) =>
      settle.pipe(
        Effect.andThen(Effect.forkChild(
          Effect.tryPromise({ try: () => writeFully(handle, bytes), catch: unavailable("write temp file") })
        )),
        Effect.map((fiber) => {
          inFlight = fiber
        })
      )
    const flush = Effect.suspend(() => {
      if (filled === 0) return Effect.void
      const bytes = buffers[current].subarray(0, filled)
      current = 1 - current
      filled = 0
      return startWrite(bytes)
    })
    const gather = (chunk: Uint8Array): Effect.Effect<void, StoreUnavailable> => {
      // A large chunk is written as is (stream chunks are immutable once emitted).
      if (filled === 0 && chunk.byteLength >= WriteBufferSize) return startWrite(chunk)
      const buffer = buffers[current]
      if (chunk.byteLength <= WriteBufferSize - filled) {
        buffer.set(chunk, filled)
        filled += chunk.byteLength
        return filled === WriteBufferSize ? flush : Effect.void
      }
      const room = WriteBufferSize - filled
      buffer.set(chunk.subarray(0, room), filled)
      filled = WriteBufferSize
      return flush.pipe(Effect.andThen(() => gather(chunk.subarray(room))))
    }
    const { hash, size } = yield* hashStream(content, maxBytes, gather)
    yield* flush
    yield* settle
    yield* Effect.tryPromise({ try: () => handle.sync(), catch: unavailable("fsync temp file") })
    return { hash, size, path }
  })

/**
 * Stages a file from disk, as `stage` does a stream, but reading straight into the two write
 * buffers: while one is written to the temp file the next is read and hashed, and nothing else
 * is allocated, so memory stays at two buffers whatever the file size. `onReadError` describes a
 * failure to read the source (the caller's problem, not the store's).
 */
export const stageFile = <E>(
  layout: Layout,
  source: string,
  maxBytes: number | undefined,
  onReadError: (error: unknown) => E
): Effect.Effect<Staged, E | AssetTooLarge | StoreUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const buffers = yield* writeBuffers
    const input = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => open(source, "r"), catch: onReadError }),
      (handle) => Effect.promise(() => handle.close().catch(() => undefined))
    )
    const { path, handle: output } = yield* tempFile(layout)
    const hasher = createHash("sha256")
    let size = 0
    let current = 0
    let inFlight: Fiber.Fiber<void, StoreUnavailable> | undefined
    const settle = Effect.suspend(() => (inFlight === undefined ? Effect.void : Fiber.join(inFlight)))
    for (;;) {
      // buffers[current] was last written two rounds ago, and that write was settled last round
      const buffer = buffers[current]
      const filled = yield* Effect.tryPromise({ try: () => readFully(input, buffer, size), catch: onReadError })
      if (filled === 0) break
      size += filled
      if (maxBytes !== undefined && size > maxBytes) return yield* new AssetTooLarge({ limit: maxBytes, size })
      const bytes = buffer.subarray(0, filled)
      hasher.update(bytes)
      yield* settle
      inFlight = yield* Effect.forkChild(
        Effect.tryPromise({ try: () => writeFully(output, bytes), catch: unavailable("write temp file") })
      )
      current = 1 - current
      if (filled < buffer.byteLength) break // end of file
    }
    yield* settle
    yield* Effect.tryPromise({ try: () => output.sync(), catch: unavailable("fsync temp file") })
    return { hash: hasher.digest("hex") as AssetHash, size, path }
  })

/** The hash and size of a file on disk, storing nothing (for content already present). */
export const digestFile = <E>(
  source: string,
  maxBytes: number | undefined,
  onReadError: (error: unknown) => E
): Effect.Effect<{ readonly hash: AssetHash; readonly size: number }, E | AssetTooLarge> =>
  Effect.scoped(Effect.gen(function*() {
    const [buffer] = yield* writeBuffers
    const input = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => open(source, "r"), catch: onReadError }),
      (handle) => Effect.promise(() => handle.close().catch(() => undefined))
    )
    const hasher = createHash("sha256")
    let size = 0
    for (;;) {
      const filled = yield* Effect.tryPromise({ try: () => readFully(input, buffer, size), catch: onReadError })
      size += filled
      if (maxBytes !== undefined && size > maxBytes) return yield* new AssetTooLarge({ limit: maxBytes, size })
      hasher.update(buffer.subarray(0, filled))
      if (filled < buffer.byteLength) break
    }
    return { hash: hasher.digest("hex") as AssetHash, size }
  }))

/** Fills `buffer` from `position` on; fewer bytes only at the end of the file. */
const readFully = async (handle: FileHandle, buffer: Buffer, position: number): Promise<number> => {
  let filled = 0
  while (filled < buffer.byteLength) {
    const { bytesRead } = await handle.read(buffer, filled, buffer.byteLength - filled, position + filled)
    if (bytesRead === 0) break
    filled += bytesRead
  }
  return filled
}

/** Write buffers kept for reuse (see `writeBuffers` for when one goes back). */
const writeBufferPool: Array<Buffer> = []
const MaxPooledWriteBuffers = 8
const takeWriteBuffer = (): Buffer => writeBufferPool.pop() ?? Buffer.allocUnsafe(WriteBufferSize)
const returnWriteBuffer = (buffer: Buffer): void => {
  if (writeBufferPool.length < MaxPooledWriteBuffers) writeBufferPool.push(buffer)
}

const writeFully = async (handle: FileHandle, bytes: Uint8Array): Promise<void> => {
  let offset = 0
  while (offset < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.byteLength - offset)
    offset += bytesWritten
  }
}

/** Moves a staged file to its object path and makes the rename durable. */
export const promote = Effect.fn("ContentFiles.promote")(function*(layout: Layout, staged: Staged) {
  const shard = shardDir(layout, staged.hash)
  const created = yield* Effect.tryPromise({
    try: () => mkdir(shard, { recursive: true }),
    catch: unavailable("create object directory")
  })
  yield* Effect.tryPromise({
    try: () => rename(staged.path, objectPath(layout, staged.hash)),
    catch: unavailable("move content into place")
  })
  yield* syncDirectory(shard)
  if (created !== undefined) yield* syncDirectory(layout.objects)
})

/** True when the object file exists with the expected size (a cheap check, no rehash). */
export const present = (layout: Layout, hash: AssetHash, size: number): Effect.Effect<boolean, StoreUnavailable> =>
  Effect.tryPromise({ try: () => stat(objectPath(layout, hash)), catch: (error) => error }).pipe(
    Effect.map((info) => info.isFile() && info.size === size),
    Effect.catch((error) => errorCode(error) === "ENOENT" ? Effect.succeed(false) : Effect.fail(unavailable("stat content file")(error)))
  )

/** The bytes of a file as a stream of chunks of at most `ReadChunkSize`. */
export const readFile = (path: string, operation: string): Stream.Stream<Uint8Array, StoreUnavailable> =>
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
    return Stream.paginate(0, (position: number) =>
      Effect.tryPromise({
        try: () => handle.read(Buffer.allocUnsafe(ReadChunkSize), 0, ReadChunkSize, position),
        catch: unavailable(operation)
      }).pipe(Effect.map(({ buffer, bytesRead }) =>
        bytesRead === 0
          ? [[], Option.none<number>()] as const
          : [[buffer.subarray(0, bytesRead)], Option.some(position + bytesRead)] as const
      )))
  }))

/** An object file found on disk: its hash (the file name), size and last write. */
export interface ObjectFile {
  readonly hash: AssetHash
  readonly path: string
  readonly size: number
  readonly modifiedAt: number
  readonly inode: number
}

/**
 * Every object file under `objects/`, shard by shard (for the orphan sweep: a process killed
 * between moving content into place and indexing it leaves a file no index row names).
 * Names that are not a SHA-256 hash are not ours and are skipped.
 */
export const objectFiles = (layout: Layout): Stream.Stream<ObjectFile, StoreUnavailable> =>
  Stream.fromEffect(Effect.tryPromise({ try: () => readdir(layout.objects), catch: unavailable("list objects") })).pipe(
    Stream.flatMap((shards) => Stream.fromIterable(shards.filter((shard) => /^[0-9a-f]{2}$/.test(shard)))),
    Stream.mapEffect((shard) =>
      Effect.tryPromise({
        try: async () => {
          const dir = join(layout.objects, shard)
          const files: Array<ObjectFile> = []
          for (const name of await readdir(dir)) {
            if (!/^[0-9a-f]{64}$/.test(name) || !name.startsWith(shard)) continue
            const path = join(dir, name)
            const info = await stat(path).catch(() => undefined)
            if (info?.isFile() === true) {
              files.push({ hash: name as AssetHash, path, size: info.size, modifiedAt: info.mtimeMs, inode: info.ino })
            }
          }
          return files
        },
        catch: unavailable("list objects")
      })),
    Stream.flatMap((files) => Stream.fromIterable(files))
  )

/**
 * Removes an orphaned object file, unless another process has just moved a fresh copy of the
 * same content into its place (an add or a push in progress, about to index it): the file is
 * first renamed into tmp/ (a dead process's leftovers there are removed at the next open), and
 * put back if it turns out not to be the one that was found. True if it was removed.
 */
export const removeOrphan = (layout: Layout, file: ObjectFile): Effect.Effect<boolean, StoreUnavailable> =>
  Effect.tryPromise({
    try: async () => {
      const quarantine = join(layout.tmp, tempName())
      try {
        await rename(file.path, quarantine)
      } catch (error) {
        if (errorCode(error) === "ENOENT") return false
        throw error
      }
      if ((await stat(quarantine)).ino !== file.inode) {
        await rename(quarantine, file.path) // same content whatever is there now: a hash names it
        return false
      }
      await unlink(quarantine)
      return true
    },
    catch: unavailable("remove orphaned content file")
  })

/** Rehashes an object file: `None` when it is whole, else what is wrong with it. */
export const check = Effect.fn("ContentFiles.check")(function*(layout: Layout, hash: AssetHash, size: number) {
  const found = yield* digestFile(objectPath(layout, hash), undefined, (error) => error).pipe(
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
