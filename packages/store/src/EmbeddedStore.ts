/**
 * The embedded CAN store: a `CanStoreShape` over a data directory holding a SQLite index
 * (`AssetIndex`) and content files (`ContentFiles`). The agent and CLI commands may open the same
 * directory at once; `events` follows the index's change table, woken by this process's writes
 * and, for writes made by other processes, by one poll of the newest sequence every
 * `watchInterval`, shared by every follower (it runs only while there is one).
 */
// By module, not the package index: `can-sync add` loads this without the sync engine.
import { AssetNotFound, HashMismatch, InvalidInput, StoreUnavailable } from "@can-sync/core/CanStore"
import type { AssetTooLarge, CanStoreShape, IngestOptions, PushOptions, StoreError } from "@can-sync/core/CanStore"
import { isAssetHash, LocalOrigin, metaWins, nextVersion, validateMeta, validatePatch } from "@can-sync/core/Domain"
import type { AssetHash, AssetMeta, MetadataInvalid, MetaPatch, StoreEvent } from "@can-sync/core/Domain"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as RcRef from "effect/RcRef"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type { Scope } from "effect"
import { constants, existsSync } from "node:fs"
import { access } from "node:fs/promises"
import * as AssetIndex from "./AssetIndex.ts"
import * as ContentFiles from "./ContentFiles.ts"
import * as DataDirLock from "./DataDirLock.ts"
import * as Partials from "./Partials.ts"
import { errorCode } from "./StoreFailure.ts"

export interface EmbeddedStoreOptions {
  readonly dataDir: string
  /** Content larger than this is refused with AssetTooLarge. Default: no limit. */
  readonly maxAssetBytes?: number
  /** How often `events` looks for changes made by other processes. Default: 250 millis. */
  readonly watchInterval?: Duration.Input
  /**
   * Open even though `index.sqlite` is missing while `objects/` holds content, to rebuild the
   * index (`rebuildIndex`). Without it such a store refuses to open: a fresh, empty index beside
   * the content would show an empty store, and its orphan sweep would set all the content aside.
   */
  readonly rebuildIndex?: boolean
  /**
   * Hold the data-directory lock (`DataDirLock`) while open: for long-running writers (the agent,
   * `serve`), so a second one on the same directory is refused with the holder's pid.
   */
  readonly lock?: boolean
  /**
   * Only read (nothing created or written: writes fail with StoreUnavailable). `"auto"`: only
   * when the data directory cannot be written (a read-only mount or permissions), for commands
   * that only read.
   */
  readonly readOnly?: boolean | "auto"
  /** Bounds of the partials interrupted transfers leave to resume from. Default: `Partials.DefaultBounds`. */
  readonly partials?: Partials.Bounds
}

export interface EmbeddedStoreShape extends CanStoreShape {
  readonly dataDir: string
  /**
   * `ingest` of a file on this machine, read straight into the store's write buffers: the lean
   * path `can-sync add` takes (memory stays at two 1 MiB buffers whatever the file size). A file
   * that cannot be read fails with InvalidInput.
   */
  readonly ingestFile: (
    path: string,
    options?: IngestOptions
  ) => Effect.Effect<{ readonly hash: AssetHash; readonly size: number; readonly alreadyExisted: boolean }, InvalidInput | HashMismatch | AssetTooLarge | StoreUnavailable>
  readonly stats: Effect.Effect<{ readonly assets: number; readonly bytes: number }, StoreError>
  /** How `events` followers are being fed (observability; tests check that idle followers cost nothing). */
  readonly watchStats: Effect.Effect<WatchStats>
  /**
   * Rehash every asset: one element per asset. Damaged or missing content is set aside and leaves
   * the digest set (metadata kept), so a peer's copy replaces it at the next reconcile.
   */
  readonly verify: Stream.Stream<VerifiedAsset, StoreError>
  /**
   * Sets aside content files that no index entry names and that were last written before
   * `olderThan` ago (what a process killed between moving content into place and indexing it
   * leaves behind): whole ones move to `quarantine/`, never deleted; ones whose content no longer
   * matches their name are removed. Younger ones may be an add in progress in another process.
   */
  readonly sweepOrphans: (olderThan: Duration.Input) => Effect.Effect<OrphanSweep, StoreError>
  /**
   * Indexes every whole content file no index entry names, in `objects/` and `quarantine/`: the
   * content files name themselves by their SHA-256, so a lost or damaged index is rebuilt from
   * them. Rebuilt metadata is empty with version 0, so any peer's real version wins over it.
   */
  readonly rebuildIndex: Effect.Effect<IndexRebuild, StoreError>
  /** The partials interrupted transfers left (resumed by the next transfer of the same asset). */
  readonly partials: Effect.Effect<ReadonlyArray<Partials.PartialInfo>, StoreError>
  /**
   * Drops partials past the bounds (count, bytes, age), oldest first; done by the long-running
   * writer (`lock`) at open and every `PartialSweepInterval` while open, after each interrupted
   * push, and by `can-sync verify`. Nothing in a read-only store.
   */
  readonly sweepPartials: Effect.Effect<ReadonlyArray<Partials.PartialInfo>, StoreError>
}

/** The shared change watcher: followers now, polls of the newest sequence, change reads by followers. */
export interface WatchStats {
  readonly followers: number
  readonly polls: number
  readonly followerReads: number
}

/** One asset as `verify` found it: whole, or what is wrong with it. */
export interface VerifiedAsset {
  readonly hash: AssetHash
  readonly ok: boolean
  readonly problem?: string
}

export interface OrphanSweep {
  /** Whole content files moved to quarantine/ (and their bytes). */
  readonly quarantined: number
  readonly bytes: number
  /** Files whose content did not match their name, removed. */
  readonly removed: number
}

export interface IndexRebuild {
  /** Content files indexed again (and their bytes). */
  readonly indexed: number
  readonly bytes: number
  /** Files whose content does not match their name, left in (or moved to) quarantine/. */
  readonly damaged: number
}

/** Content to receive: how to only hash it, and how to stage it into a temp file. */
interface Content<E> {
  /** How to only hash it; absent when the content is not the whole asset (a resumed push's tail). */
  readonly digest: Effect.Effect<{ readonly hash: AssetHash; readonly size: number }, E | AssetTooLarge> | undefined
  readonly stage: Effect.Effect<ContentFiles.Staged, E | HashMismatch | AssetTooLarge | StoreUnavailable, Scope.Scope>
}

/** Largest page `list` returns, whatever the caller asks for. */
export const MaxPageSize = 10_000
const DefaultPageSize = 1000
/** Changes read per query while following events (bounds memory per subscriber). */
const EventPageSize = 256
/** Assets `verify` checks at once (each holds a write-buffer pair, 2 MiB). */
const VerifyConcurrency = 8

/** Assets rehashed per index page in `verify`. */
const VerifyPageSize = 256

/** How often the long-running writer (`lock`) sweeps the partials to their bounds while the store is open. */
export const PartialSweepInterval = Duration.hours(1)

const sameTags = (a: ReadonlyArray<string>, b: ReadonlyArray<string>) =>
  a.length === b.length && a.every((tag, i) => tag === b[i])

const validHash = (hash: string, what: string): Effect.Effect<AssetHash, InvalidInput> =>
  isAssetHash(hash)
    ? Effect.succeed(hash)
    : Effect.fail(new InvalidInput({ message: `${what} is not a SHA-256 hash (64 lowercase hex characters): ${JSON.stringify(hash)}` }))

const validSeq = (value: number, what: string): Effect.Effect<number, InvalidInput> =>
  Number.isSafeInteger(value) && value >= 0
    ? Effect.succeed(value)
    : Effect.fail(new InvalidInput({ message: `${what} must be a non-negative integer, got ${value}` }))

/** Metadata outside `MetadataLimits` is the contract's InvalidInput (its message names the field). */
const asInvalidInput = (error: MetadataInvalid) => new InvalidInput({ message: error.message })

/** Metadata checked against `MetadataLimits` before anything is read or written. */
const validMeta = (meta: AssetMeta): Effect.Effect<AssetMeta, InvalidInput> =>
  Effect.fromResult(validateMeta(meta)).pipe(Effect.mapError(asInvalidInput))

/** What the store's operations share: its files, its index and the wake-up for event followers. */
interface Parts {
  readonly storeId: string
  readonly layout: ContentFiles.Layout
  readonly buffers: ContentFiles.WriteBuffers
  readonly index: AssetIndex.AssetIndex
  readonly maxAssetBytes: number | undefined
  readonly watchInterval: Duration.Duration
  /** Wakes this process's event followers after each write; sliding, so publishing never waits. */
  readonly written: PubSub.PubSub<void>
  /** The one poller of the index for other processes' writes, running while any follower holds it. */
  readonly watcher: RcRef.RcRef<void>
  readonly watch: { followers: number; polls: number; followerReads: number }
  readonly readOnly: boolean
  readonly partialBounds: Partials.Bounds
  /**
   * Hashes a resumable push of this process is writing now (one writer per partial; the sweep
   * leaves them), each with a signal that its push ended and what arrived is checkpointed.
   */
  readonly activePartials: Map<string, Deferred.Deferred<void>>
}

/** How long `partial` waits for a push of the same hash that is still ending (then it says 0). */
const PartialSettleTimeout = Duration.seconds(2)

const notify = (parts: Parts) => PubSub.publish(parts.written, undefined)

/** True when this process may not create files in `dir` (read-only mount, permissions); false if it does not exist. */
const unwritable = (dir: string): Effect.Effect<boolean> =>
  Effect.promise(() =>
    access(dir, constants.W_OK).then(
      () => false,
      (error: unknown) => errorCode(error) !== "ENOENT"
    )
  )

/**
 * Looks at the newest change sequence every `interval` and wakes the followers when it moved (a
 * write by another process; this process's own writes wake them directly). One per store, however
 * many follow: 200 idle SSE clients cost one cheap query per interval, not 200.
 */
const pollForChanges = (
  index: AssetIndex.AssetIndex,
  interval: Duration.Duration,
  written: PubSub.PubSub<void>,
  watch: { polls: number }
) =>
  Effect.gen(function*() {
    let last = yield* index.currentSeq
    while (true) {
      yield* Effect.sleep(interval)
      watch.polls++
      const seq = yield* index.currentSeq
      if (seq !== last) {
        last = seq
        yield* PubSub.publish(written, undefined)
      }
    }
  }).pipe(
    // a failing look (a locked or vanished index) is retried at the next interval, not fatal
    Effect.tapError((error) => Effect.logWarning(`watching the index for changes failed: ${error.message}`)),
    Effect.retry({ schedule: Schedule.spaced(interval) })
  )

/** Opens the directory, the index and the write buffers (closed with the scope). */
const openParts = (options: EmbeddedStoreOptions) =>
  Effect.gen(function*() {
    const layout = ContentFiles.layout(options.dataDir)
    const readOnly = options.readOnly === "auto" ? yield* unwritable(options.dataDir) : options.readOnly === true
    if (readOnly && !existsSync(layout.index)) {
      return yield* new StoreUnavailable({
        operation: "open index",
        message: `${options.dataDir} holds no store index (index.sqlite) and is opened read-only, so none can be created`
      })
    }
    if (!readOnly && (yield* unwritable(options.dataDir))) {
      return yield* new StoreUnavailable({
        operation: "open data directory",
        message: `${options.dataDir} cannot be written (a read-only mount, or permissions), and this needs to write to it ` +
          `(ls, cat and meta without edits can read it as it is)`
      })
    }
    if (!readOnly) yield* ContentFiles.prepare(layout)
    if (options.lock === true && !readOnly) yield* DataDirLock.acquire(options.dataDir)
    if (options.rebuildIndex !== true && !existsSync(layout.index) && (yield* ContentFiles.hasObjectFiles(layout))) {
      return yield* new StoreUnavailable({
        operation: "open index",
        message: `the index ${layout.index} is missing but ${layout.objects} holds content: ` +
          `rebuild it with \`can-sync verify --rebuild-index --data ${options.dataDir}\``
      })
    }
    const index = yield* AssetIndex.open(layout.index, { readOnly })
    const buffers = yield* ContentFiles.writeBuffers
    const written = yield* Effect.acquireRelease(PubSub.sliding<void>(16), PubSub.shutdown)
    const watchInterval = Duration.fromInputUnsafe(options.watchInterval ?? "250 millis")
    const watch = { followers: 0, polls: 0, followerReads: 0 }
    const watcher = yield* RcRef.make({
      acquire: Effect.forkScoped(pollForChanges(index, watchInterval, written, watch)).pipe(Effect.asVoid)
    })
    const parts: Parts = {
      storeId: index.storeId,
      layout,
      buffers,
      index,
      maxAssetBytes: options.maxAssetBytes,
      watchInterval,
      written,
      watcher,
      watch,
      readOnly,
      partialBounds: options.partials ?? Partials.DefaultBounds,
      activePartials: new Map()
    }
    return parts
  })

// ---------------------------------------------------------------------------------------------
// Receiving content: ingest (a stream or a local file) and push
// ---------------------------------------------------------------------------------------------

/** Content as a stream (from a peer, an HTTP body, ...). */
const streamed = <E>(parts: Parts, content: Stream.Stream<Uint8Array, E>): Content<E> => ({
  digest: ContentFiles.digest(content, parts.maxAssetBytes),
  stage: ContentFiles.stage(parts.layout, parts.buffers, content, parts.maxAssetBytes)
})

/** Content of a file on this machine; a file that cannot be read is InvalidInput. */
const fromFile = (parts: Parts, path: string): Content<InvalidInput> => {
  const unreadable = (error: unknown) =>
    new InvalidInput({ message: `cannot read ${path}: ${error instanceof Error ? error.message : String(error)}` })
  return {
    digest: ContentFiles.digestFile(parts.buffers, path, parts.maxAssetBytes, unreadable),
    stage: ContentFiles.stageFile(parts.layout, parts.buffers, path, parts.maxAssetBytes, unreadable)
  }
}

/**
 * Receives content: hashes it, and when it is new stores the file and indexes it with what
 * `describe` says. Content already indexed is only hashed (no file written) when its hash is
 * known up front; otherwise its temp file is dropped, unless it repairs a missing file.
 */
const receive = <E>(
  parts: Parts,
  content: Content<E>,
  expected: AssetHash | undefined,
  describe: (now: number) => { readonly meta: AssetMeta; readonly origin: string }
): Effect.Effect<{ readonly hash: AssetHash; readonly size: number; readonly stored: boolean }, E | HashMismatch | AssetTooLarge | StoreUnavailable> =>
  Effect.gen(function*() {
    const { index, layout } = parts
    const known = expected === undefined ? Option.none() : yield* index.find(expected)
    if (
      Option.isSome(known) && !known.value.absent && content.digest !== undefined &&
      (yield* ContentFiles.present(layout, known.value.record.hash, known.value.record.size))
    ) {
      const { hash, size } = yield* content.digest
      if (hash !== expected) return yield* new HashMismatch({ expected: known.value.record.hash, actual: hash })
      return { hash, size, stored: false }
    }
    const staged = yield* content.stage
    if (expected !== undefined && staged.hash !== expected) {
      return yield* new HashMismatch({ expected, actual: staged.hash, resumedFrom: staged.resumedFrom, sources: staged.sources })
    }
    const { hash, size } = staged
    const existing = yield* index.find(hash)
    if (Option.isSome(existing)) {
      // Indexed already; if its file was set aside (verify), went missing or was truncated, this
      // content repairs it, and content set aside joins the digest set again.
      const { absent, record } = existing.value
      if (absent || !(yield* ContentFiles.present(layout, hash, record.size))) yield* ContentFiles.promote(layout, staged)
      if (absent) {
        const now = yield* Clock.currentTimeMillis
        if (yield* index.markPresent(hash, describe(now).origin, now)) yield* notify(parts)
      }
      return { hash, size, stored: false }
    }
    yield* ContentFiles.promote(layout, staged)
    const now = yield* Clock.currentTimeMillis
    const { meta, origin } = describe(now)
    // Another writer may have indexed the same content meanwhile: then ours is a no-op.
    const stored = yield* index.insert({ hash, size, meta }, origin, now)
    if (stored) yield* notify(parts)
    return { hash, size, stored }
  }).pipe(Effect.scoped)

/** Local content: new content gets fresh metadata; known content takes the given description and tags as an edit. */
const ingestContent = <E>(parts: Parts, content: Content<E>, ingestOptions: IngestOptions | undefined) =>
  Effect.gen(function*() {
    const expected = ingestOptions?.expectedHash === undefined
      ? undefined
      : yield* validHash(ingestOptions.expectedHash, "expectedHash")
    const description = ingestOptions?.description
    const tags = ingestOptions?.tags
    yield* Effect.fromResult(validatePatch({ description, tags })).pipe(Effect.mapError(asInvalidInput))
    const received = yield* receive(parts, content, expected, (now) => ({
      meta: {
        description: description ?? "",
        tags: [...(tags ?? [])],
        trashed: false,
        createdAt: now,
        updatedAt: now,
        origin: parts.storeId
      },
      origin: LocalOrigin
    }))
    if (!received.stored && (description !== undefined || tags !== undefined)) {
      yield* editMeta(parts)(received.hash, { description, tags }).pipe(
        Effect.catchTag("AssetNotFound", () => vanished("ingest", received.hash))
      )
    }
    return { hash: received.hash, size: received.size, alreadyExisted: !received.stored }
  })

/**
 * A peer's content into `hash`'s partial (`Partials.stage`), continuing its first `from` bytes;
 * an interrupted push keeps what arrived and sweeps the partials to their bounds.
 */
const resumable = <E>(parts: Parts, hash: AssetHash, content: Stream.Stream<Uint8Array, E>, from: number, origin: string): Content<E> => ({
  digest: from === 0 ? ContentFiles.digest(content, parts.maxAssetBytes) : undefined,
  stage: Effect.acquireRelease(
    Effect.sync(() => {
      const ended = Deferred.makeUnsafe<void>()
      parts.activePartials.set(hash, ended)
      return ended
    }),
    // Runs after the partial's own finalizer (it checkpoints what arrived): then it can be resumed.
    (ended, exit) =>
      Effect.sync(() => {
        parts.activePartials.delete(hash)
        Deferred.doneUnsafe(ended, Effect.void)
      }).pipe(Effect.andThen(exit._tag === "Success" ? Effect.void : sweepPartials(parts).pipe(Effect.ignore)))
  ).pipe(Effect.andThen(Partials.stage(parts.layout, parts.buffers, hash, content, parts.maxAssetBytes, from, origin)))
})

const sweepPartials = (parts: Parts) =>
  Effect.gen(function*() {
    if (parts.readOnly) return []
    const dropped = yield* Partials.sweep(parts.layout, parts.partialBounds, yield* Clock.currentTimeMillis, parts.activePartials)
    if (dropped.length > 0) yield* Effect.logInfo(`dropped ${dropped.length} partial transfer(s) past the bounds (count, bytes, age)`)
    return dropped
  })

/** A peer's content under the hash it names, with the peer's metadata (merged when the content is known). */
const push = (parts: Parts) =>
<E>(hash: AssetHash, content: Stream.Stream<Uint8Array, E>, meta: AssetMeta, origin: string, pushOptions?: PushOptions) =>
  Effect.gen(function*() {
    const valid = yield* validHash(hash, "hash")
    // Checked before a byte is read: metadata outside the bounds is refused with its content.
    yield* validMeta(meta)
    const from = pushOptions?.resumeFrom
    if (from !== undefined && (!Number.isSafeInteger(from) || from < 0)) {
      return yield* new InvalidInput({ message: `resumeFrom must be a non-negative integer, got ${from}` })
    }
    // One writer per partial: a second push of the same hash meanwhile (or a read-only store) is not
    // resumable; nor is a fresh one smaller than a partial worth keeping (it costs a few file operations).
    const small = from === 0 && pushOptions?.size !== undefined && !Partials.worthKeeping(pushOptions.size)
    const incoming = from === undefined || small || parts.readOnly || parts.activePartials.has(valid)
      ? (from ?? 0) > 0
        ? undefined
        : streamed(parts, content)
      : resumable(parts, valid, content, from, origin)
    if (incoming === undefined) {
      return yield* new HashMismatch({ expected: valid, actual: "(no partial to resume here)", resumedFrom: from, sources: [] })
    }
    const received = yield* receive(parts, incoming, valid, () => ({ meta, origin }))
    if (!received.stored) {
      yield* mergeMeta(parts)(valid, meta, origin).pipe(
        Effect.catchTag("AssetNotFound", () => vanished("push", valid))
      )
    }
    return { alreadyExisted: !received.stored }
  }).pipe(Effect.withSpan("EmbeddedStore.push", { attributes: { hash, origin } }))

const vanished = (operation: string, hash: AssetHash) =>
  Effect.fail(new StoreUnavailable({ operation, message: `asset ${hash} vanished from the index` }))

// ---------------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------------

/** Replaces an asset's metadata with what `decide` returns (nothing: no change; a failure: nothing written). */
const updateMeta = (
  parts: Parts,
  hash: AssetHash,
  decide: (current: AssetMeta, now: number) => Result.Result<AssetMeta | undefined, MetadataInvalid>,
  origin: string
) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const result = yield* parts.index.updateMeta(hash, (current) => decide(current, now), origin, now).pipe(
      Effect.mapError((e) => e._tag === "MetadataInvalid" ? asInvalidInput(e) : e)
    )
    if (Option.isNone(result)) return yield* new AssetNotFound({ hash })
    if (result.value.applied) yield* notify(parts)
    return result.value
  })

const editMeta = (parts: Parts) =>
  Effect.fn("EmbeddedStore.editMeta")(function*(hash: AssetHash, patch: MetaPatch) {
    const valid = yield* validHash(hash, "hash")
    yield* Effect.fromResult(validatePatch(patch)).pipe(Effect.mapError(asInvalidInput))
    const { meta } = yield* updateMeta(parts, valid, (current, now) => {
      const description = patch.description ?? current.description
      const tags = patch.tags ?? current.tags
      const trashed = patch.trashed ?? current.trashed
      if (description === current.description && sameTags(tags, current.tags) && trashed === current.trashed) {
        return Result.succeed(undefined) // an edit that changes nothing is not a new version
      }
      // The whole record is checked: the total counts the fields the patch keeps.
      return validateMeta({
        ...current,
        description,
        tags: [...tags],
        trashed,
        updatedAt: nextVersion(current.updatedAt, now),
        origin: parts.storeId
      })
    }, LocalOrigin)
    return meta
  })

const mergeMeta = (parts: Parts) =>
  Effect.fn("EmbeddedStore.mergeMeta")(function*(hash: AssetHash, meta: AssetMeta, origin: string) {
    const valid = yield* validHash(hash, "hash")
    const checked = yield* validMeta(meta)
    // The winner's version replaces the whole record, createdAt included, so peers converge.
    return yield* updateMeta(parts, valid, (current) => Result.succeed(metaWins(checked, current) ? checked : undefined), origin)
  })

// ---------------------------------------------------------------------------------------------
// Reading: content, pages of digests, the event stream
// ---------------------------------------------------------------------------------------------

const read = (parts: Parts) => (hash: AssetHash): Stream.Stream<Uint8Array, AssetNotFound | StoreError> =>
  Stream.unwrap(Effect.gen(function*() {
    const valid = yield* validHash(hash, "hash")
    const found = yield* parts.index.find(valid)
    if (Option.isNone(found) || found.value.absent) return yield* new AssetNotFound({ hash })
    return ContentFiles.readVerified(parts.layout, valid, found.value.record.size, "read")
  }))

/** From `offset` on, unverified (a resumed transfer: its receiver checks the whole hash). */
const readFrom = (parts: Parts) => (hash: AssetHash, offset: number): Stream.Stream<Uint8Array, AssetNotFound | StoreError> =>
  Stream.unwrap(Effect.gen(function*() {
    const valid = yield* validHash(hash, "hash")
    const start = yield* validSeq(offset, "offset")
    const found = yield* parts.index.find(valid)
    if (Option.isNone(found) || found.value.absent) return yield* new AssetNotFound({ hash })
    return ContentFiles.readFile(ContentFiles.objectPath(parts.layout, valid), "read", start)
  }))

const list = (parts: Parts) =>
  Effect.fn("EmbeddedStore.list")(function*(listOptions?: { readonly since?: number; readonly limit?: number }) {
    const since = yield* validSeq(listOptions?.since ?? 0, "since")
    const asked = listOptions?.limit ?? DefaultPageSize
    if (!Number.isSafeInteger(asked) || asked < 1) {
      return yield* new InvalidInput({ message: `limit must be a positive integer, got ${asked}` })
    }
    const limit = Math.min(asked, MaxPageSize)
    const rows = yield* parts.index.digestsAfter(since, limit + 1)
    const digests = rows.length > limit ? rows.slice(0, limit) : rows
    const last = digests.at(-1)
    return { digests, next: last === undefined ? since : last.seq, done: rows.length <= limit }
  })

/** Follows the index's change table, woken by this process's writes or, for other processes', by the poll. */
const events = (parts: Parts) => (eventOptions?: { readonly since?: number }): Stream.Stream<StoreEvent, StoreError> =>
  Stream.unwrap(Effect.gen(function*() {
    // The shared poller runs while this stream does; subscribe before reading the start point,
    // so no write falls between the two.
    yield* RcRef.get(parts.watcher)
    yield* Effect.acquireRelease(
      Effect.sync(() => void parts.watch.followers++),
      () => Effect.sync(() => void parts.watch.followers--)
    )
    const wake = yield* PubSub.subscribe(parts.written)
    const current = yield* parts.index.currentSeq
    const asked = eventOptions?.since === undefined ? current : yield* validSeq(eventOptions.since, "since")
    // Past the newest change (a recreated store): following from there would skip what comes first.
    const start = asked > current ? 0 : asked
    if (asked > current) yield* Effect.logWarning(`events since ${asked} is past the store's newest change ${current}: replaying from 0`)
    const idle = PubSub.takeAll(wake)
    return Stream.paginate(start, (cursor: number) =>
      parts.index.changesAfter(cursor, EventPageSize).pipe(
        Effect.tap(() => Effect.sync(() => void parts.watch.followerReads++)),
        Effect.flatMap((page) =>
          page.last > cursor
            ? Effect.succeed([page.events, Option.some(page.last)] as const)
            : idle.pipe(Effect.as([[], Option.some(cursor)] as const))
        )
      ))
  }))

// ---------------------------------------------------------------------------------------------
// Maintenance: verify and the orphan sweep
// ---------------------------------------------------------------------------------------------

/**
 * Rehashes every asset. Damaged or missing content is set aside (the file to
 * `quarantine/<hash>.damaged`) and taken out of the digest set, metadata kept, so the next
 * reconcile with a peer that holds the asset fetches a good copy; until then it stays reported.
 */
const verify = (parts: Parts): EmbeddedStoreShape["verify"] =>
  Stream.paginate(0, (since: number) =>
    parts.index.recordsAfter(since, VerifyPageSize).pipe(Effect.map((rows) => {
      const last = rows.at(-1)
      return [rows, last === undefined ? Option.none<number>() : Option.some(last.record.seq)] as const
    }))).pipe(
      Stream.mapEffect(({ absent, record }): Effect.Effect<VerifiedAsset, StoreUnavailable> =>
        absent
          ? Effect.succeed({ hash: record.hash, ok: false, problem: "content set aside by an earlier verify, awaiting a good copy from a peer" })
          : ContentFiles.check(parts.layout, parts.buffers, record.hash, record.size).pipe(Effect.flatMap(Option.match({
            onNone: (): Effect.Effect<VerifiedAsset, StoreUnavailable> => Effect.succeed({ hash: record.hash, ok: true }),
            onSome: (problem) =>
              ContentFiles.setAsideDamaged(parts.layout, record.hash).pipe(
                Effect.andThen(Clock.currentTimeMillis),
                Effect.flatMap((now) => parts.index.markAbsent(record.hash, LocalOrigin, now)),
                Effect.as({ hash: record.hash, ok: false, problem })
              )
          }))), { concurrency: VerifyConcurrency }) // in index order still; a file at a time left the disk idle between small files
    )

const sweepOrphans = (parts: Parts) =>
  Effect.fn("EmbeddedStore.sweepOrphans")(function*(olderThan: Duration.Input) {
    const cutoff = (yield* Clock.currentTimeMillis) - Duration.toMillis(Duration.fromInputUnsafe(olderThan))
    let quarantined = 0
    let bytes = 0
    let removed = 0
    yield* ContentFiles.objectFiles(parts.layout).pipe(Stream.runForEach((file) =>
      Effect.gen(function*() {
        if (file.modifiedAt >= cutoff || Option.isSome(yield* parts.index.find(file.hash))) return
        const whole = Option.isNone(yield* ContentFiles.check(parts.layout, parts.buffers, file.hash, file.size))
        if (!(yield* ContentFiles.takeOrphan(parts.layout, file, whole))) return
        if (!whole) {
          removed++
          return yield* Effect.logWarning(`removed a damaged content file no index entry names: ${file.hash}`)
        }
        quarantined++
        bytes += file.size
        yield* Effect.logInfo(`moved ${file.hash} (${file.size} bytes, in no index entry) to quarantine/`)
      })))
    return { quarantined, bytes, removed }
  })

/** Metadata for content found on disk with no index row: empty, version 0 (any real version wins). */
const rebuiltMeta = (storeId: string, file: ContentFiles.ObjectFile): AssetMeta => ({
  description: "",
  tags: [],
  trashed: false,
  createdAt: Math.trunc(file.modifiedAt),
  updatedAt: 0,
  origin: storeId
})

const rebuildIndex = (parts: Parts): EmbeddedStoreShape["rebuildIndex"] =>
  Effect.gen(function*() {
    let indexed = 0
    let bytes = 0
    let damaged = 0
    const adopt = (file: ContentFiles.ObjectFile, quarantined: boolean) =>
      Effect.gen(function*() {
        const found = yield* parts.index.find(file.hash)
        if (Option.isSome(found) && !found.value.absent) {
          if (quarantined) yield* ContentFiles.remove(file.path) // a copy of indexed content
          return
        }
        const problem = yield* ContentFiles.check(parts.layout, parts.buffers, file.hash, file.size, file.path)
        if (Option.isSome(found)) {
          // Content verify set aside, whole again (put back by hand): it rejoins the digest set.
          if (Option.isSome(problem) || file.size !== found.value.record.size) return
          if (quarantined) yield* ContentFiles.restore(parts.layout, file)
          if (yield* parts.index.markPresent(file.hash, LocalOrigin, yield* Clock.currentTimeMillis)) {
            indexed++
            bytes += file.size
          }
          return
        }
        if (Option.isSome(problem)) {
          damaged++
          if (!quarantined) yield* ContentFiles.takeOrphan(parts.layout, file, true)
          return yield* Effect.logWarning(`not indexed: ${file.path}: ${problem.value}`)
        }
        if (quarantined) yield* ContentFiles.restore(parts.layout, file)
        const now = yield* Clock.currentTimeMillis
        if (yield* parts.index.insert({ hash: file.hash, size: file.size, meta: rebuiltMeta(parts.storeId, file) }, LocalOrigin, now)) {
          indexed++
          bytes += file.size
        }
      })
    yield* ContentFiles.objectFiles(parts.layout).pipe(Stream.runForEach((file) => adopt(file, false)))
    yield* ContentFiles.quarantinedFiles(parts.layout).pipe(Stream.runForEach((file) => adopt(file, true)))
    if (indexed > 0) yield* notify(parts)
    return { indexed, bytes, damaged }
  }).pipe(Effect.withSpan("EmbeddedStore.rebuildIndex"))

/** Opens the store in `options.dataDir` (creating it on first use); closed with the scope. */
export const make = (options: EmbeddedStoreOptions): Effect.Effect<EmbeddedStoreShape, StoreUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const parts = yield* openParts(options)
    const { index } = parts
    const store: EmbeddedStoreShape = {
      storeId: parts.storeId,
      dataDir: options.dataDir,
      ingest: (content, ingestOptions) =>
        ingestContent(parts, streamed(parts, content), ingestOptions).pipe(Effect.withSpan("EmbeddedStore.ingest")),
      ingestFile: (path, ingestOptions) =>
        ingestContent(parts, fromFile(parts, path), ingestOptions).pipe(
          Effect.withSpan("EmbeddedStore.ingestFile", { attributes: { path } })
        ),
      // Content set aside by verify is not had: a peer's copy is wanted.
      has: Effect.fn("EmbeddedStore.has")(function*(hash: AssetHash) {
        const found = yield* index.find(yield* validHash(hash, "hash"))
        return Option.isSome(found) && !found.value.absent
      }),
      stat: Effect.fn("EmbeddedStore.stat")(function*(hash: AssetHash) {
        const found = yield* index.find(yield* validHash(hash, "hash"))
        return Option.isSome(found) && !found.value.absent ? Option.some(found.value.record) : Option.none()
      }),
      read: read(parts),
      readFrom: readFrom(parts),
      list: list(parts),
      currentSeq: index.currentSeq,
      push: push(parts),
      editMeta: editMeta(parts),
      mergeMeta: mergeMeta(parts),
      events: events(parts),
      stats: index.stats,
      watchStats: Effect.sync(() => ({ ...parts.watch })),
      verify: verify(parts),
      sweepOrphans: sweepOrphans(parts),
      rebuildIndex: rebuildIndex(parts),
      // Range reconciliation from the index's bucket table, kept current with every process's writes.
      ranges: index.ranges,
      partial: Effect.fn("EmbeddedStore.partial")(function*(hash: AssetHash, size?: number) {
        const valid = yield* validHash(hash, "hash")
        // A push this small is never kept as a partial (see `push`): nothing to look up on disk.
        if (size !== undefined && !Partials.worthKeeping(size)) return 0
        // A push cut off a moment ago (its link dropped, the peer redials at once) is still saving
        // what arrived: wait for it, briefly, rather than ask for the whole asset again.
        const ending = parts.activePartials.get(valid)
        if (ending !== undefined) yield* Deferred.await(ending).pipe(Effect.timeout(PartialSettleTimeout), Effect.ignore)
        return parts.readOnly || parts.activePartials.has(valid) ? 0 : yield* Partials.held(parts.layout, valid)
      }),
      partials: Partials.list(parts.layout),
      sweepPartials: sweepPartials(parts)
    }
    // The long-running writer (the agent, serve) sweeps at open and then hourly (an agent left
    // running for weeks still drops partials past their age); one-shot commands leave its partials
    // alone, except `verify`, which sweeps on purpose.
    if (options.lock === true && !parts.readOnly) {
      yield* sweepPartials(parts)
      const sweep = sweepPartials(parts).pipe(
        Effect.catch((error) => Effect.logWarning(`sweeping partial transfers failed: ${error.message}`))
      )
      // At 1, 2, 3... intervals after the open's sweep.
      yield* Effect.forkScoped(
        Effect.sleep(PartialSweepInterval).pipe(Effect.andThen(Effect.repeat(sweep, Schedule.spaced(PartialSweepInterval))))
      )
    }
    return store
  }).pipe(Effect.withSpan("EmbeddedStore.make"))
