/**
 * The store commands: `serve`, `add`, `ls`, `cat`, `meta`, `verify`. Each opens the embedded store
 * of `--data` for the length of the command; output formats here are a contract users script against.
 * Imports are by module, not package index, and the HTTP service loads only for `serve`: a
 * one-shot command starts in a fraction of the time and memory of the agent.
 */
import * as NodeSink from "@effect/platform-node/NodeSink"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { InvalidInput } from "@can-sync/core/CanStore"
import type { CanStoreShape } from "@can-sync/core/CanStore"
import { AssetHash, validateMeta, validatePatch } from "@can-sync/core/Domain"
import type { AssetRecord, MetadataInvalid, MetaPatch } from "@can-sync/core/Domain"
import * as AssetIndex from "@can-sync/store/AssetIndex"
import * as EmbeddedStore from "@can-sync/store/EmbeddedStore"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as References from "effect/References"
import * as Schedule from "effect/Schedule"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { Argument, Command, Flag } from "effect/cli"
import { randomBytes } from "node:crypto"
import { constants, createReadStream } from "node:fs"
import { access, stat } from "node:fs/promises"
import { dataFlag, existingDataFlag, jsonFlag, port, tokenFlag } from "./SharedFlags.ts"
import { CliFailure, UsageError } from "./Errors.ts"
import { printable } from "./Printable.ts"

const withStore = <A, E>(
  dataDir: string,
  use: (store: EmbeddedStore.EmbeddedStoreShape) => Effect.Effect<A, E>,
  options: { readonly rebuildIndex?: boolean; readonly readOnly?: "auto" } = {}
) => Effect.scoped(Effect.flatMap(EmbeddedStore.make({ dataDir, ...options }), use))

/** Commands that only read open a data directory they cannot write (a read-only mount) read-only. */
const readOnlyWhenUnwritable = { readOnly: "auto" } as const

/** Metadata outside core's MetadataLimits asked for on the command line: a usage error (exit 2). */
const usage = (error: MetadataInvalid) => new UsageError({ reason: error.message })

/** A description and tags within the bounds, checked before anything is read or stored. */
const checkPatch = (patch: MetaPatch) => Effect.fromResult(validatePatch(patch)).pipe(Effect.mapError(usage))

const parseHash = (input: string) =>
  Schema.decodeUnknownEffect(AssetHash)(input.trim().toLowerCase()).pipe(
    Effect.mapError(() => new InvalidInput({ message: `not an asset hash (64 hex characters): ${input}` }))
  )

/** Digests `ls` reads per page (and records it writes per write to stdout). */
const LsPageSize = 5000

/**
 * Every record of the store, one page (in change order) per element: a million assets stream in
 * pages of `LsPageSize`, never all in memory.
 */
export const recordPages = (store: CanStoreShape): Stream.Stream<ReadonlyArray<AssetRecord>, unknown> =>
  Stream.paginate(0, (since: number) =>
    store.list({ since, limit: LsPageSize }).pipe(
      Effect.map((page) => [[page.digests], page.done ? Option.none<number>() : Option.some(page.next)] as const)
    )).pipe(
      Stream.mapEffect((digests) =>
        Effect.forEach(digests, (digest) => store.stat(digest.hash)).pipe(Effect.map((found) => found.flatMap(Option.toArray)))
      )
    )

/**
 * The same pages read straight from the store's index (a second, read-only connection), one query
 * per page: what `ls` reads, as `list` and a `stat` per asset cost ~26 µs an asset in lookups by hash.
 */
const indexPages = (dataDir: string): Stream.Stream<ReadonlyArray<AssetRecord>, unknown> =>
  Stream.unwrap(Effect.map(AssetIndex.open(AssetIndex.pathIn(dataDir), { readOnly: true }), (index) =>
    Stream.paginate(0, (since: number) =>
      index.recordsAfter(since, LsPageSize).pipe(Effect.map((rows) => {
        const last = rows.at(-1)
        // Content set aside by verify is not listed, as `list` leaves it out.
        const present = rows.filter((row) => !row.absent).map((row) => row.record)
        return [[present], last === undefined || rows.length < LsPageSize ? Option.none<number>() : Option.some(last.record.seq)] as const
      }))
    )))

/** Every record of the store, in change order. */
export const allRecords = (store: CanStoreShape): Stream.Stream<AssetRecord, unknown> =>
  recordPages(store).pipe(Stream.flatMap((records) => Stream.fromIterable(records)))

/** Writes text to stdout as it comes, waiting when the pipe is full (a million lines never queue up in memory). */
const toStdout = <E>(text: Stream.Stream<string, E>) =>
  Stream.run(
    Stream.encodeText(text),
    NodeSink.fromWritable({
      evaluate: () => process.stdout,
      onError: (error) => new InvalidInput({ message: `cannot write to stdout: ${String(error)}` }),
      endOnDone: false
    })
  )

const tagsFlag = Flag.String("tag").pipe(Flag.withDescription("A tag (repeatable)"), Flag.atLeast(0))

export const serve = Command.make("serve", {
  data: dataFlag,
  host: Flag.String("host").pipe(Flag.withDescription("Address to listen on"), Flag.withDefault("127.0.0.1")),
  port: Flag.Int("port").pipe(Flag.withDescription("Port to listen on"), port, Flag.withDefault(7650)),
  token: tokenFlag
}, ({ data, host, port, token }) =>
  Effect.scoped(Effect.gen(function*() {
    const bearer = Option.match(token, { onNone: () => randomBytes(24).toString("base64url"), onSome: Redacted.value })
    if (Option.isNone(token)) yield* Console.error(`can-sync: no --token given; this run's token: ${bearer}`)
    // the one writer of this directory beside one-shot commands: a second serve or agent is refused
    const store = yield* EmbeddedStore.make({ dataDir: data, lock: true })
    const HttpService = yield* Effect.promise(() => import("@can-sync/store/HttpService"))
    const server = yield* HttpService.serve(store, { host, port, token: bearer })
    yield* Console.log(`serving ${data} at ${server.url}`)
    return yield* Effect.never
  }))).pipe(Command.withDescription("Serve the CAN store over HTTP (with SSE events)"))

export const add = Command.make("add", {
  data: dataFlag,
  files: Argument.String("file").pipe(Argument.withDescription("Files to add"), Argument.atLeast(1)),
  description: Flag.String("description").pipe(Flag.withDescription("Description of the assets"), Flag.optional),
  tags: tagsFlag
}, ({ data, files, description, tags }) =>
  // the metadata and every file are checked before any is added: a typo in the last one adds none of them
  checkPatch({ description: Option.getOrUndefined(description), tags }).pipe(
    Effect.andThen(Effect.forEach(files, readable)),
    Effect.flatMap((kinds) =>
      withStore(data, (store) => {
        let added = 0
        return Effect.forEach(files, (file, i) => {
          const options = { description: Option.getOrUndefined(description), tags: tags.length > 0 ? tags : undefined }
          // a regular file is read straight into the store's buffers; a pipe (`<(cmd)`) streams
          const adding = kinds[i] === "file" ? store.ingestFile(file, options) : store.ingest(readStream(file), options)
          return adding.pipe(Effect.flatMap((result) => Console.log(`${result.hash}  ${file}`)), Effect.tap(() => Effect.sync(() => void added++)))
        }, { discard: true }).pipe(
          // say exactly what a signal left undone (what was added is printed above, and kept)
          Effect.onInterrupt(() => Console.error(`can-sync: added ${added} of ${files.length} file(s); not added: ${files.slice(added).join(", ")}`))
        )
      })
    )
  )
).pipe(Command.withDescription("Add files to the store; prints \"<hash>  <file>\" per file"))

const unreadable = (file: string) => (error: unknown) =>
  new InvalidInput({ message: `cannot read ${file}: ${error instanceof Error ? error.message : String(error)}` })

/** "file" for a regular file, "stream" for a pipe or device; InvalidInput if it cannot be read. */
const readable = (file: string): Effect.Effect<"file" | "stream", InvalidInput> =>
  Effect.tryPromise({
    try: async () => {
      await access(file, constants.R_OK)
      return await stat(file)
    },
    catch: unreadable(file)
  }).pipe(Effect.flatMap((info) =>
    info.isFile()
      ? Effect.succeed("file" as const)
      : info.isDirectory()
      ? Effect.fail(new InvalidInput({ message: `cannot read ${file}: EISDIR: it is a directory` }))
      : Effect.succeed("stream" as const)
  ))

const readStream = (file: string) =>
  NodeStream.fromReadable<Uint8Array, InvalidInput>({
    evaluate: () => createReadStream(file, { highWaterMark: 1024 * 1024 }),
    onError: unreadable(file)
  })

/** `[trashed]  description #tag #tag`, each part only when there is one; control characters escaped. */
const formatMeta = (meta: AssetRecord["meta"]): ReadonlyArray<string> => {
  const label = [meta.description.trim(), ...meta.tags.map((tag) => `#${tag}`)].filter((part) => part !== "").join(" ")
  return [meta.trashed ? "[trashed]" : "", printable(label)].filter((part) => part !== "")
}

/** An ISO time, or the raw number when it is no representable date (a peer may send any value). */
const formatTime = (millis: number): string => {
  const date = new Date(millis)
  return Number.isNaN(date.getTime()) ? String(millis) : date.toISOString()
}

/** One `ls` line: `hash  size  created  [trashed]  description #tags`. */
const formatRecord = (r: AssetRecord): string =>
  [r.hash, String(r.size), formatTime(r.meta.createdAt), ...formatMeta(r.meta)].join("  ")

/**
 * `ls`: one line per record, written a page at a time; `--json` is the same one-line JSON array as
 * `JSON.stringify` of every record, written as it is read (at 200k assets it held ~0.5 GB before).
 */
export const ls = Command.make("ls", { data: existingDataFlag, json: jsonFlag }, ({ data, json }) =>
  withStore(data, (store) => Effect.scoped(Effect.suspend(() => {
    const pages = indexPages(store.dataDir).pipe(Stream.filter((records) => records.length > 0))
    if (!json) return toStdout(Stream.map(pages, (records) => records.map((r) => `${formatRecord(r)}\n`).join("")))
    let first = true
    const body = Stream.map(pages, (records) => {
      const text = (first ? "" : ",") + records.map((r) => JSON.stringify(r)).join(",")
      first = false
      return text
    })
    return toStdout(Stream.make("[").pipe(Stream.concat(body), Stream.concat(Stream.make("]\n"))))
  })), readOnlyWhenUnwritable)
).pipe(Command.withDescription("List assets: one per line (hash, size, created, description, tags), or a JSON array"))

export const cat = Command.make("cat", {
  data: existingDataFlag,
  hash: Argument.String("hash").pipe(Argument.withDescription("Asset hash"))
}, ({ data, hash }) =>
  withStore(data, (store) =>
    parseHash(hash).pipe(
      Effect.flatMap((h) =>
        Stream.run(store.read(h), NodeSink.fromWritable({
          evaluate: () => process.stdout,
          onError: (error) => new InvalidInput({ message: `cannot write to stdout: ${String(error)}` }),
          endOnDone: false
        }))
      )
    ), readOnlyWhenUnwritable)
).pipe(Command.withDescription("Write an asset's content to stdout"))

export const meta = Command.make("meta", {
  data: existingDataFlag,
  hash: Argument.String("hash").pipe(Argument.withDescription("Asset hash")),
  description: Flag.String("description").pipe(Flag.withDescription("New description"), Flag.optional),
  tags: tagsFlag,
  trash: Flag.Boolean("trash").pipe(Flag.withDescription("Move to trash"), Flag.withDefault(false)),
  untrash: Flag.Boolean("untrash").pipe(Flag.withDescription("Take out of the trash"), Flag.withDefault(false)),
  clearTags: Flag.Boolean("clear-tags").pipe(Flag.withDescription("Remove every tag (--tag replaces them)"), Flag.withDefault(false)),
  json: jsonFlag
}, ({ data, hash, description, tags, trash, untrash, clearTags, json }) =>
  withStore(data, (store) =>
    Effect.gen(function*() {
      if (trash && untrash) return yield* new InvalidInput({ message: "--trash and --untrash exclude each other" })
      if (clearTags && tags.length > 0) return yield* new InvalidInput({ message: "--clear-tags and --tag exclude each other" })
      const h = yield* parseHash(hash)
      const patch = {
        description: Option.getOrUndefined(description),
        tags: tags.length > 0 ? tags : clearTags ? [] : undefined,
        trashed: trash ? true : untrash ? false : undefined
      }
      const changes = patch.description !== undefined || patch.tags !== undefined || patch.trashed !== undefined
      if (changes) yield* checkEdit(store, h, patch)
      const record = changes
        ? { hash: h, meta: yield* store.editMeta(h, patch) }
        : yield* store.stat(h).pipe(Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new InvalidInput({ message: `asset ${h} not found` })),
          onSome: (r) => Effect.succeed(r)
        })))
      const m = record.meta
      yield* Console.log(json
        ? JSON.stringify({ hash: h, ...m })
        : [h, ...formatMeta(m)].join("  "))
    }), readOnlyWhenUnwritable)
).pipe(Command.withDescription("Show or edit an asset's metadata (description, tags, trashed)"))

/**
 * An edit within the bounds: its own fields, then the whole record it makes (the total counts the
 * fields it keeps). The store checks again as it writes; this only words a refusal as a usage error.
 */
const checkEdit = (store: CanStoreShape, hash: AssetHash, patch: MetaPatch) =>
  Effect.gen(function*() {
    yield* checkPatch(patch)
    const current = yield* store.stat(hash)
    if (Option.isNone(current)) return
    const meta = current.value.meta
    yield* Effect.fromResult(validateMeta({
      ...meta,
      description: patch.description ?? meta.description,
      tags: patch.tags ?? meta.tags
    })).pipe(Effect.mapError(usage))
  })

/** stderr is a terminal: progress is one line redrawn every second; otherwise a line every 30 s. */
const ProgressEvery = { terminal: "1 second", log: "30 seconds" } as const

/**
 * Runs `work` while reporting `describe()` on stderr (stdout keeps only the command's own lines):
 * on a terminal one line redrawn every second and cleared at the end; otherwise, for logs and
 * pipes, a `can-sync verify: ...` line every 30 s, so a short run prints nothing extra.
 */
const withProgress = (describe: () => string) => <A, E, R>(work: Effect.Effect<A, E, R>) => {
  const terminal = process.stderr.isTTY === true
  const report = Effect.sync(() =>
    void process.stderr.write(terminal ? `\r\x1b[Kverifying: ${describe()}` : `can-sync verify: ${describe()}\n`)
  )
  const every = terminal ? ProgressEvery.terminal : ProgressEvery.log
  return Effect.scoped(Effect.gen(function*() {
    // Finalizers run last first: the reporter stops, then the line is cleared.
    if (terminal) yield* Effect.addFinalizer(() => Effect.sync(() => void process.stderr.write("\r\x1b[K")))
    yield* Effect.forkScoped(Effect.sleep(every).pipe(Effect.andThen(report), Effect.repeat(Schedule.spaced(every))))
    return yield* work
  }))
}

/** A content file in no index entry is an orphan once it is this old (younger: an add in progress). */
const OrphanAge = "10 minutes"

const rebuildIndexFlag = Flag.Boolean("rebuild-index").pipe(
  Flag.withDescription("First index every whole content file no index entry names (a lost index, quarantine/)"),
  Flag.withDefault(false)
)

export const verify = Command.make("verify", { data: existingDataFlag, rebuildIndex: rebuildIndexFlag }, ({ data, rebuildIndex }) =>
  withStore(data, (store) =>
    Effect.gen(function*() {
      if (rebuildIndex) {
        const rebuilt = yield* store.rebuildIndex
        yield* Console.log(
          `${rebuilt.indexed} content file(s) indexed again (${rebuilt.bytes} bytes)` +
            (rebuilt.damaged > 0 ? `, ${rebuilt.damaged} damaged left in quarantine/` : "")
        )
      }
      let checked = 0
      let damaged = 0
      const { assets } = yield* store.stats
      yield* Stream.runForEach(store.verify, (r) =>
        Effect.suspend(() => {
          checked++
          if (r.ok) return Effect.void
          damaged++
          return Console.log(`DAMAGED  ${r.hash}  ${r.problem ?? ""}`.trimEnd())
        })).pipe(withProgress(() => `${checked} of ${assets} assets checked, ${damaged} damaged`))
      yield* Console.log(`${checked} assets checked, ${damaged} damaged`)
      if (damaged > 0) {
        yield* Console.log(
          "damaged content is set aside (quarantine/) and no longer offered; a sync with a peer that holds it fetches a good copy"
        )
      }
      // At a million assets the sweep reads every content file's name (minutes): say what runs.
      const swept = yield* Effect.result(store.sweepOrphans(OrphanAge)).pipe(
        withProgress(() => `${checked} assets checked, ${damaged} damaged; looking for unindexed content files in objects/`)
      )
      if (Result.isSuccess(swept) && swept.success.quarantined > 0) {
        const { quarantined, bytes } = swept.success
        yield* Console.log(
          `${quarantined} unindexed content file(s) moved to quarantine/ (${bytes} bytes; \`verify --rebuild-index\` indexes them)`
        )
      }
      if (Result.isSuccess(swept) && swept.success.removed > 0) {
        yield* Console.log(`${swept.success.removed} damaged unindexed content file(s) removed`)
      }
      // Partial transfers (interrupted pushes kept to resume): those past the bounds are dropped;
      // a line only when there are any, so a store without them prints what it always did (the
      // sweep's own log line would only repeat it on stderr).
      const partials = yield* Effect.result(Effect.all([store.sweepPartials, store.partials])).pipe(
        Effect.provideService(References.MinimumLogLevel, "Warn")
      )
      if (Result.isSuccess(partials)) {
        const [dropped, kept] = partials.success
        const bytes = (list: ReadonlyArray<{ readonly bytes: number }>) => list.reduce((n, p) => n + p.bytes, 0)
        if (kept.length > 0 || dropped.length > 0) {
          yield* Console.log(
            `${kept.length} partial transfer(s) kept to resume (${bytes(kept)} bytes)` +
              (dropped.length > 0 ? `, ${dropped.length} past the bounds (count, bytes, age) dropped (${bytes(dropped)} bytes)` : "")
          )
        }
      }
      // damage is the verdict that matters: a failing sweep does not hide it
      if (damaged > 0) return yield* Effect.fail(new CliFailure(`${damaged} damaged asset(s)`))
      if (Result.isFailure(swept)) return yield* Effect.fail(swept.failure)
      if (Result.isFailure(partials)) return yield* Effect.fail(partials.failure)
    }), { rebuildIndex })
).pipe(Command.withDescription("Rehash every asset (exits non-zero if any is damaged or missing; such content is set aside for a peer's copy to replace); set aside unindexed content in quarantine/; --rebuild-index indexes it again"))
