/**
 * The index half of the embedded store: a SQLite database (node:sqlite, WAL) holding one row per
 * asset with its metadata (and whether its content is absent) and one row per change, numbered by `seq`. Several processes share it (the
 * agent and CLI commands), so every read-modify-write is one `BEGIN IMMEDIATE` transaction, run
 * synchronously so no other fiber can interleave on the connection. It also answers range
 * reconciliation (`ranges`): a fingerprint table per hash bucket, saved in the index with the
 * change it reflects (`range_table`) and recounted from the rows of the buckets the change table
 * says were written since, by this process or any other; a scan of every row only builds it when
 * none is saved or it is far behind.
 */
import type { AssetDigest, AssetHash, AssetMeta, AssetRecord, StoreEvent } from "@can-sync/core"
import type { StoreUnavailable } from "@can-sync/core"
import { MetadataLimits } from "@can-sync/core/Domain"
import * as Fingerprints from "@can-sync/core/Fingerprints"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Semaphore from "effect/Semaphore"
import { randomBytes } from "node:crypto"
import { statSync } from "node:fs"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { pathToFileURL } from "node:url"
import type { SQLOutputValue, StatementSync } from "node:sqlite"
import { unavailable } from "./StoreFailure.ts"

/** How long a statement waits for another process's write lock before failing. */
export const BusyTimeoutMillis = 5000

/**
 * 1: the tables below; 2: `assets.absent` (content set aside by verify, awaiting a good copy);
 * 3: `range_table` (`RangeTableSchema`).
 */
const SchemaVersion = 3
/**
 * Read-only opens need at least this version: a version-2 index lacks only the saved range
 * table, which such an open builds in memory instead (and cannot save).
 */
const ReadableVersion = 2

const Schema = `
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assets (
  hash TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  description TEXT NOT NULL,
  tags TEXT NOT NULL,
  trashed INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  origin TEXT NOT NULL,
  seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS assets_by_seq ON assets (seq);
CREATE TABLE IF NOT EXISTS changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  hash TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('asset', 'meta')),
  origin TEXT NOT NULL,
  at INTEGER NOT NULL
);
`

/**
 * The range fingerprint table (`Fingerprints.encode`, format `Fingerprints.TableFormat`) as of
 * change `seq`: every change up to `seq` is in it, later ones are recounted from the change table.
 * Rewritten whole (1.25 MiB), after a scan and every `SaveEveryChanges` changes and at close.
 */
const RangeTableSchema = `
CREATE TABLE IF NOT EXISTS range_table (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  format INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  state BLOB NOT NULL
);
`

type Row = Record<string, SQLOutputValue>

/**
 * An integer column as a number. Integers are read as BigInt (`readBigInts`), so a value past
 * 2^53 (written by an older version, or by hand) reads as the nearest safe integer instead of
 * failing every query that meets its row ("Value is too large to be represented as a JavaScript
 * number"); a non-finite REAL reads as 0.
 */
const num = (row: Row, key: string): number => numOf(row[key])
const numOf = (value: SQLOutputValue | undefined): number => {
  if (typeof value === "bigint") {
    return value > BigInt(Number.MAX_SAFE_INTEGER)
      ? Number.MAX_SAFE_INTEGER
      : value < BigInt(Number.MIN_SAFE_INTEGER)
      ? Number.MIN_SAFE_INTEGER
      : Number(value)
  }
  return typeof value === "number" && Number.isFinite(value) ? value : 0
}
/**
 * A metadata timestamp, clamped into [0, MetadataLimits.maxTimestamp]: a row written before the
 * bounds existed (2^53, 1.5e300) reads as a valid version, so it syncs and can be edited past.
 */
const timestamp = (row: Row, key: string): number => timestampOf(row[key])
const timestampOf = (value: SQLOutputValue | undefined): number =>
  Math.min(MetadataLimits.maxTimestamp, Math.max(0, Math.trunc(numOf(value))))

const str = (row: Row, key: string): string => strOf(row[key])
const strOf = (value: SQLOutputValue | undefined): string => typeof value === "string" ? value : ""

/**
 * Statements that read many rows return each as an array of its columns (`setReturnArrays`): a
 * million rows read as objects left an agent ~57 MiB larger for good (outside the V8 heap), and
 * 1.1 s slower; as arrays, 2 MiB (H-M2's measurement; a Node without the method reads objects).
 */
const asArrays = (statement: StatementSync): StatementSync => {
  if (typeof statement.setReturnArrays === "function") statement.setReturnArrays(true)
  return statement
}
/** The columns of a row read by an `asArrays` statement (or, on an older Node, as an object), in order. */
const cells = (row: unknown): ReadonlyArray<SQLOutputValue> =>
  Array.isArray(row) ? row : Object.values(row as Row)
const parseTags = (text: string): ReadonlyArray<string> => {
  try {
    const parsed: unknown = JSON.parse(text)
    return Array.isArray(parsed) ? parsed.filter((tag): tag is string => typeof tag === "string") : []
  } catch {
    return []
  }
}

const metaOf = (row: Row): AssetMeta => ({
  description: str(row, "description"),
  tags: parseTags(str(row, "tags")),
  trashed: num(row, "trashed") !== 0,
  createdAt: timestamp(row, "created_at"),
  updatedAt: timestamp(row, "updated_at"),
  origin: str(row, "origin")
})

const recordOf = (row: Row): AssetRecord => ({
  hash: str(row, "hash") as AssetHash,
  size: num(row, "size"),
  meta: metaOf(row),
  seq: num(row, "seq")
})

/** An index row: the asset's record, and whether its content is absent (set aside as damaged or missing). */
export interface IndexedAsset {
  readonly record: AssetRecord
  /**
   * Its content file was found damaged or missing and set aside: the asset keeps its metadata
   * but is out of the digest set (`digestsAfter`, `stats`), so a peer that holds it sends it again.
   */
  readonly absent: boolean
}

const indexedOf = (row: Row): IndexedAsset => ({ record: recordOf(row), absent: num(row, "absent") !== 0 })

const digestOf = (row: Row): AssetDigest => ({
  hash: str(row, "hash") as AssetHash,
  size: num(row, "size"),
  createdAt: timestamp(row, "created_at"),
  updatedAt: timestamp(row, "updated_at"),
  metaOrigin: str(row, "origin"),
  seq: num(row, "seq")
})

/** A new asset as the index records it. */
export interface NewAsset {
  readonly hash: AssetHash
  readonly size: number
  readonly meta: AssetMeta
}

/** A page of changes: the events, and the seq to continue after (the last change read). */
export interface ChangePage {
  readonly events: ReadonlyArray<StoreEvent>
  readonly last: number
}

export interface AssetIndex {
  readonly storeId: string
  readonly find: (hash: AssetHash) => Effect.Effect<Option.Option<IndexedAsset>, StoreUnavailable>
  /** Records a new asset and its change; false (nothing written) when the hash is already indexed. */
  readonly insert: (asset: NewAsset, origin: string, at: number) => Effect.Effect<boolean, StoreUnavailable>
  /** Records many new assets in one transaction (bulk import); returns how many were new. */
  readonly insertMany: (assets: Iterable<NewAsset>, origin: string, at: number) => Effect.Effect<number, StoreUnavailable>
  /**
   * Read-modify-write of an asset's metadata in one transaction: `decide` returns the new meta,
   * undefined to leave it (no change row), or a failure (nothing written). None when the asset
   * is not indexed.
   */
  readonly updateMeta: <E>(
    hash: AssetHash,
    decide: (current: AssetMeta) => Result.Result<AssetMeta | undefined, E>,
    origin: string,
    at: number
  ) => Effect.Effect<Option.Option<{ readonly meta: AssetMeta; readonly applied: boolean }>, StoreUnavailable | E>
  /** Digests of assets whose last change is after `since`, in seq order (absent content left out). */
  readonly digestsAfter: (since: number, limit: number) => Effect.Effect<ReadonlyArray<AssetDigest>, StoreUnavailable>
  /** Every index row whose last change is after `since`, in seq order, absent content included. */
  readonly recordsAfter: (since: number, limit: number) => Effect.Effect<ReadonlyArray<IndexedAsset>, StoreUnavailable>
  /**
   * Takes an asset's content out of the digest set (its file was damaged or missing); metadata
   * stays. Recorded as a change (which events skip, the content being absent), so other
   * processes' range fingerprints see it.
   */
  readonly markAbsent: (hash: AssetHash, origin: string, at: number) => Effect.Effect<void, StoreUnavailable>
  /**
   * Puts content back in the digest set once a good copy is in place, as a new change (so peers
   * and event followers see it again); false when it was not absent.
   */
  readonly markPresent: (hash: AssetHash, origin: string, at: number) => Effect.Effect<boolean, StoreUnavailable>
  /** Changes after `since`, in seq order, as events carrying the asset's current size/meta. */
  readonly changesAfter: (since: number, limit: number) => Effect.Effect<ChangePage, StoreUnavailable>
  readonly currentSeq: Effect.Effect<number, StoreUnavailable>
  /** Assets whose content is present and their bytes; counted again only after a change (by any process). */
  readonly stats: Effect.Effect<{ readonly assets: number; readonly bytes: number }, StoreUnavailable>
  /**
   * Fingerprints and items of hash prefixes over exactly the digest set (absent content left out,
   * each asset at its current metadata version). The bucket table is built by one scan on first
   * use; each `fingerprints` call then recounts the buckets of the hashes changed since (by any process).
   */
  readonly ranges: Fingerprints.RangeSource<StoreUnavailable>
}

/** Where a data directory keeps its index (ContentFiles' layout names the same file). */
export const pathIn = (dataDir: string): string => join(dataDir, "index.sqlite")

/**
 * Rows per statement while the range table is built, read row by row: pages read whole (`all`)
 * left a process 100-180 MB larger after a million rows (1,000- and 20,000-row pages).
 */
const BuildPageSize = 2_000
/**
 * A table that would recount more buckets than this from the change table (a saved table far
 * behind, or another process's bulk import) is built again by a scan: one read of each row
 * instead of a query per bucket.
 */
const RecountLimit = Fingerprints.BUCKETS / 4
/** The table in memory is saved in the index once it is this many changes past the saved one (also after a scan, and at close). */
const SaveEveryChanges = 10_000
/** The build gives the event loop back after this long (timers, sockets and sessions run meanwhile). */
const BuildSliceMillis = 50

/** A read-only open fails this way when the directory is read-only and the index has no `-shm` file. */
const SqliteCantOpen = 14

/**
 * Opens the index for reading only (for commands that only read, on a data directory this process
 * cannot write): WAL needs its `-shm` file, which a read-only directory without one cannot get,
 * so then it is opened `immutable` — unless an unmerged `-wal` file holds changes that would
 * then be missed, which is refused with the reason.
 */
const openReadOnly = (path: string): DatabaseSync => {
  try {
    const db = new DatabaseSync(path, { readOnly: true, timeout: BusyTimeoutMillis, readBigInts: true })
    try {
      db.prepare("SELECT 1 FROM sqlite_master LIMIT 1").get()
      return db
    } catch (error) {
      db.close()
      throw error
    }
  } catch (error) {
    const errcode = typeof error === "object" && error !== null && "errcode" in error ? error.errcode : undefined
    if (errcode !== SqliteCantOpen) throw error
    const wal = statSync(`${path}-wal`, { throwIfNoEntry: false })
    if (wal !== undefined && wal.size > 0) {
      throw new Error(
        `${path}-wal holds changes not yet merged into the index, and the directory is read-only so SQLite cannot ` +
          `read them; open the store once with write access (any can-sync command) to merge them`
      )
    }
    const url = pathToFileURL(path)
    url.searchParams.set("immutable", "1")
    return new DatabaseSync(url, { readOnly: true, readBigInts: true })
  }
}

export interface OpenOptions {
  /** Only read: nothing is created, no pragma or schema is written (a read-only data directory). */
  readonly readOnly?: boolean
}

/** Opens (creating if needed, unless `readOnly`) the index at `path`; closed with the scope. */
export const open = Effect.fn("AssetIndex.open")(function*(path: string, options: OpenOptions = {}) {
  const readOnly = options.readOnly === true
  const db = yield* Effect.acquireRelease(
    Effect.try({
      try: () => {
        if (readOnly) return openReadOnly(path)
        const db = new DatabaseSync(path, { timeout: BusyTimeoutMillis, readBigInts: true })
        let ready = false
        try {
          db.exec(`PRAGMA busy_timeout = ${BusyTimeoutMillis}`)
          db.exec("PRAGMA journal_mode = WAL")
          // FULL: a commit survives power loss, like the fsynced content files it points to.
          db.exec("PRAGMA synchronous = FULL")
          ready = true
        } finally {
          if (!ready) db.close()
        }
        return db
      },
      catch: unavailable("open index")
    }),
    (db) => Effect.sync(() => db.isOpen && db.close())
  )

  const transaction = <A>(body: () => A): A => {
    db.exec("BEGIN IMMEDIATE")
    let committed = false
    try {
      const result = body()
      db.exec("COMMIT")
      committed = true
      return result
    } finally {
      if (!committed && db.isTransaction) db.exec("ROLLBACK")
    }
  }
  const run = <A>(operation: string, body: () => A) => Effect.try({ try: body, catch: unavailable(operation) })

  const readStoreId = () => str(db.prepare("SELECT value FROM meta WHERE key = 'storeId'").get() ?? {}, "value")
  const readOnlyStoreId = () => {
    const version = num(db.prepare("PRAGMA user_version").get() ?? {}, "user_version")
    if (version < ReadableVersion) {
      throw new Error(`the index is in an older format (version ${version}); open the store once with write access to upgrade it`)
    }
    return readStoreId()
  }
  const storeId = yield* run("open index", () =>
    readOnly ? readOnlyStoreId() : transaction(() => {
      const version = num(db.prepare("PRAGMA user_version").get() ?? {}, "user_version")
      if (version < 1) db.exec(Schema)
      if (version < 2) db.exec("ALTER TABLE assets ADD COLUMN absent INTEGER NOT NULL DEFAULT 0")
      if (version < 3) db.exec(RangeTableSchema)
      if (version < SchemaVersion) db.exec(`PRAGMA user_version = ${SchemaVersion}`)
      db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('storeId', ?)").run(randomBytes(16).toString("hex"))
      return readStoreId()
    }))

  const selectAsset = db.prepare("SELECT * FROM assets WHERE hash = ?")
  const insertChange = db.prepare("INSERT INTO changes (hash, kind, origin, at) VALUES (?, ?, ?, ?)")
  const insertAsset = db.prepare(
    `INSERT INTO assets (hash, size, created_at, description, tags, trashed, updated_at, origin, seq)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
  )
  const updateAsset = db.prepare(
    `UPDATE assets SET created_at = ?, description = ?, tags = ?, trashed = ?, updated_at = ?, origin = ?, seq = ?
     WHERE hash = ?`
  )
  const selectDigests = db.prepare(
    "SELECT hash, size, created_at, updated_at, origin, seq FROM assets WHERE seq > ? AND absent = 0 ORDER BY seq LIMIT ?"
  )
  const setAbsent = db.prepare("UPDATE assets SET absent = 1 WHERE hash = ? AND absent = 0")
  const setPresent = db.prepare("UPDATE assets SET absent = 0, seq = ? WHERE hash = ? AND absent = 1")
  const selectRecords = db.prepare("SELECT * FROM assets WHERE seq > ? ORDER BY seq LIMIT ?")
  const selectChanges = db.prepare(
    `SELECT c.seq AS change_seq, c.hash AS change_hash, c.kind, c.origin AS change_origin, c.at,
            a.size, a.created_at, a.description, a.tags, a.trashed, a.updated_at, a.origin
     FROM changes c LEFT JOIN assets a ON a.hash = c.hash AND a.absent = 0
     WHERE c.seq > ? ORDER BY c.seq LIMIT ?`
  )
  const selectCurrentSeq = db.prepare("SELECT COALESCE(MAX(seq), 0) AS seq FROM changes")
  const selectRangeItems = db.prepare(
    "SELECT hash, size, updated_at, origin FROM assets WHERE hash >= ? AND hash < ? AND absent = 0 ORDER BY hash"
  )
  const selectItemsPage = asArrays(db.prepare(
    "SELECT rowid, hash, updated_at, origin, absent FROM assets WHERE rowid > ? ORDER BY rowid LIMIT ?"
  ))
  const selectBucketItems = asArrays(db.prepare(
    "SELECT hash, updated_at, origin FROM assets WHERE hash >= ? AND hash < ? AND absent = 0"
  ))
  const selectChangedBuckets = asArrays(db.prepare(
    `SELECT DISTINCT substr(hash, 1, ${Fingerprints.BUCKET_DIGITS}) FROM changes WHERE seq > ? AND seq <= ?`
  ))
  // A read-only open of a version-2 index has no saved table (and saves none).
  const savedTable = readOnly && db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'range_table'").get() === undefined
    ? undefined
    : db.prepare("SELECT format, seq, state FROM range_table WHERE id = 1")
  const saveTable = readOnly ? undefined : db.prepare("INSERT OR REPLACE INTO range_table (id, format, seq, state) VALUES (1, ?, ?, ?)")
  const selectStats = db.prepare("SELECT COUNT(*) AS assets, COALESCE(SUM(size), 0) AS bytes FROM assets WHERE absent = 0")

  const insertOne = (asset: NewAsset, origin: string, at: number): boolean => {
    if (selectAsset.get(asset.hash) !== undefined) return false
    const seq = Number(insertChange.run(asset.hash, "asset", origin, at).lastInsertRowid)
    const { meta } = asset
    insertAsset.run(
      asset.hash, asset.size, meta.createdAt, meta.description, JSON.stringify(meta.tags),
      meta.trashed ? 1 : 0, meta.updatedAt, meta.origin, seq
    )
    return true
  }

  // Range items carry what the digest gives: the same clamped updatedAt and origin (`digestOf`).
  const itemOf = (row: Row): Fingerprints.RangeItem => ({
    hash: str(row, "hash"),
    size: num(row, "size"),
    updatedAt: timestamp(row, "updated_at"),
    origin: str(row, "origin")
  })
  // Hashes are lowercase hex, so every hash starting with `prefix` sorts in [prefix, prefix + "g").
  const prefixItems = (prefix: string): ReadonlyArray<Fingerprints.RangeItem> =>
    selectRangeItems.all(prefix, `${prefix}g`).map(itemOf)
  /**
   * The bucket table, the newest change it reflects (every change up to `last` is in it) and the
   * newest change of the table saved in the index; loaded or built on first use.
   */
  let fingerprints: { readonly table: Fingerprints.Table; last: number; saved: number } | undefined
  /** The table saved in the index, if there is one this version reads. */
  const loadSaved = (): typeof fingerprints => {
    const row = savedTable?.get()
    if (row === undefined || num(row, "format") !== Fingerprints.TableFormat || !(row.state instanceof Uint8Array)) return undefined
    const table = Fingerprints.decodeTable(row.state)
    const seq = num(row, "seq")
    return table === undefined ? undefined : { table, last: seq, saved: seq }
  }
  /**
   * Saves the table in the index when it moved since it was saved. Only a cache of the rows: when
   * the write fails (another process holds the write lock past the timeout) it is tried again later.
   */
  const save = (): void => {
    if (saveTable === undefined || fingerprints === undefined || fingerprints.last === fingerprints.saved) return
    try {
      saveTable.run(Fingerprints.TableFormat, fingerprints.last, fingerprints.table.encode())
      fingerprints.saved = fingerprints.last
    } catch {
      // kept in memory; the next save writes it
    }
  }
  /** The items of one bucket (what `reset` counts), read as arrays. */
  function* bucketItems(bucket: string): Generator<Pick<Fingerprints.RangeItem, "hash" | "updatedAt" | "origin">> {
    for (const row of selectBucketItems.iterate(bucket, `${bucket}g`)) {
      const [hash, updatedAt, origin] = cells(row)
      yield { hash: strOf(hash), updatedAt: timestampOf(updatedAt), origin: strOf(origin) }
    }
  }
  /**
   * Builds the table by one scan of the index in rowid order, a page per statement, giving the
   * event loop back every `BuildSliceMillis`: at a million assets the scan takes seconds, and an agent's
   * sessions, timers and sockets keep running meanwhile. Rows read may already hold changes
   * after `last`: those buckets are recounted by the next `catchUp`. Saved once built.
   */
  const build = Effect.gen(function*() {
    const last = yield* run("fingerprint hash ranges", () => num(selectCurrentSeq.get() ?? {}, "seq"))
    const table = Fingerprints.makeTable()
    let after = 0
    let ran = performance.now()
    while (true) {
      // Each page's statement is read to its end here: no cursor stays open while other fibers write.
      const read = yield* run("fingerprint hash ranges", () => {
        let rows = 0
        for (const row of selectItemsPage.iterate(after, BuildPageSize)) {
          const [rowid, hash, updatedAt, origin, absent] = cells(row)
          rows++
          after = numOf(rowid)
          if (numOf(absent) === 0) table.add({ hash: strOf(hash), updatedAt: timestampOf(updatedAt), origin: strOf(origin) })
        }
        return rows
      })
      if (read < BuildPageSize) break
      if (performance.now() - ran > BuildSliceMillis) {
        yield* Effect.sleep(0)
        ran = performance.now()
      }
    }
    fingerprints = { table, last, saved: -1 }
    save()
  })
  /**
   * Recounts the buckets of the hashes changed since the table's `last` (by this process or
   * another); false when the table cannot catch up (a replaced index, or more than `RecountLimit`
   * buckets to recount) and is to be built again.
   */
  const catchUp = (state: NonNullable<typeof fingerprints>): boolean => {
    const last = num(selectCurrentSeq.get() ?? {}, "seq")
    if (last < state.last) return false
    if (last > state.last) {
      const buckets: Array<string> = []
      for (const row of selectChangedBuckets.iterate(state.last, last)) {
        buckets.push(strOf(cells(row)[0]))
        if (buckets.length > RecountLimit) return false
      }
      for (const bucket of buckets) state.table.reset(bucket, bucketItems(bucket))
      state.last = last
    }
    return true
  }
  /** One caller builds at a time: sessions starting together wait for the same build. */
  const building = yield* Semaphore.make(1)
  const currentTable: Effect.Effect<Fingerprints.Table, StoreUnavailable> = building.withPermits(1)(
    Effect.gen(function*() {
      for (let attempt = 0;; attempt++) {
        const table = yield* run("fingerprint hash ranges", () => {
          if (fingerprints === undefined && attempt === 0) fingerprints = loadSaved()
          if (fingerprints === undefined || !catchUp(fingerprints)) return undefined
          if (fingerprints.last - fingerprints.saved >= SaveEveryChanges) save()
          return fingerprints.table
        })
        if (table !== undefined) return table
        yield* build
      }
    })
  )
  // Closing saves the table the changes since moved (finalizers run last first: the index is still open).
  yield* Effect.addFinalizer(() => Effect.sync(() => db.isOpen && save()))
  /**
   * The last totals counted and the newest change then: counting is a scan of every row (~0.2-0.45 s
   * at a million assets, on an agent's event loop at each /status and metrics sample).
   */
  let counted: { readonly seq: number; readonly totals: { readonly assets: number; readonly bytes: number } } | undefined
  const rangeItems = (prefixes: ReadonlyArray<string>) => run("list hash ranges", () => prefixes.map(prefixItems))

  const index: AssetIndex = {
    storeId,
    find: (hash) =>
      run("look up asset", () => {
        const row = selectAsset.get(hash)
        return row === undefined ? Option.none() : Option.some(indexedOf(row))
      }),
    insert: (asset, origin, at) => run("index asset", () => transaction(() => insertOne(asset, origin, at))),
    insertMany: (assets, origin, at) =>
      run("index assets", () =>
        transaction(() => {
          let inserted = 0
          for (const asset of assets) if (insertOne(asset, origin, at)) inserted++
          return inserted
        })),
    updateMeta: <E>(hash: AssetHash, decide: (current: AssetMeta) => Result.Result<AssetMeta | undefined, E>, origin: string, at: number) =>
      run("update metadata", () =>
        transaction((): Result.Result<Option.Option<{ readonly meta: AssetMeta; readonly applied: boolean }>, E> => {
          const row = selectAsset.get(hash)
          if (row === undefined) return Result.succeed(Option.none())
          const current = metaOf(row)
          const decided = decide(current)
          if (Result.isFailure(decided)) return Result.fail(decided.failure)
          const next = decided.success
          if (next === undefined) return Result.succeed(Option.some({ meta: current, applied: false }))
          const seq = Number(insertChange.run(hash, "meta", origin, at).lastInsertRowid)
          updateAsset.run(
            next.createdAt, next.description, JSON.stringify(next.tags), next.trashed ? 1 : 0,
            next.updatedAt, next.origin, seq, hash
          )
          return Result.succeed(Option.some({ meta: next, applied: true }))
        })).pipe(Effect.flatMap(Effect.fromResult)),
    digestsAfter: (since, limit) => run("list", () => selectDigests.all(since, limit).map(digestOf)),
    recordsAfter: (since, limit) => run("list", () => selectRecords.all(since, limit).map(indexedOf)),
    markAbsent: (hash, origin, at) =>
      run("set aside content", () =>
        transaction(() => {
          if (Number(setAbsent.run(hash).changes) > 0) insertChange.run(hash, "asset", origin, at)
        })),
    markPresent: (hash, origin, at) =>
      run("restore content", () =>
        transaction(() => {
          const row = selectAsset.get(hash)
          if (row === undefined || num(row, "absent") === 0) return false
          const seq = Number(insertChange.run(hash, "asset", origin, at).lastInsertRowid)
          setPresent.run(seq, hash)
          return true
        })),
    changesAfter: (since, limit) =>
      run("read changes", () => {
        const rows = selectChanges.all(since, limit)
        const events: Array<StoreEvent> = []
        for (const row of rows) {
          // An asset row always exists for its changes; a missing one (a damaged index) or one whose
          // content is absent (set aside by verify) is skipped.
          if (row.size === null || row.size === undefined) continue
          const base = {
            hash: str(row, "change_hash") as AssetHash,
            seq: num(row, "change_seq"),
            origin: str(row, "change_origin"),
            at: num(row, "at")
          }
          events.push(
            str(row, "kind") === "asset"
              ? { _tag: "AssetAdded", ...base, size: num(row, "size") }
              : { _tag: "MetaChanged", ...base, meta: metaOf(row) }
          )
        }
        const lastRow = rows.at(-1)
        return { events, last: lastRow === undefined ? since : num(lastRow, "change_seq") }
      }),
    currentSeq: run("current seq", () => num(selectCurrentSeq.get() ?? {}, "seq")),
    stats: run("stats", () => {
      // Every write adds a change row: while the newest change is the same, so are the totals.
      // The sequence is read first, so totals newer than it are only recounted once more.
      const seq = num(selectCurrentSeq.get() ?? {}, "seq")
      if (counted !== undefined && counted.seq === seq) return counted.totals
      const row = selectStats.get() ?? {}
      const totals = { assets: num(row, "assets"), bytes: num(row, "bytes") }
      counted = { seq, totals }
      return totals
    }),
    ranges: {
      items: rangeItems,
      fingerprints: (prefixes) =>
        currentTable.pipe(
          Effect.flatMap((table) => Fingerprints.sourceOf(table, rangeItems).fingerprints(prefixes))
        )
    }
  }
  return index
})
