/**
 * How failures of the file system and of SQLite become `StoreUnavailable`: the operation that
 * failed plus a message a user can act on (a full disk says the disk is full, a locked database
 * says another process holds it). The embedded store's modules all translate errors here.
 */
import { StoreUnavailable } from "@can-sync/core/CanStore"

const field = (error: unknown, key: string): unknown =>
  typeof error === "object" && error !== null && key in error ? (error as Record<string, unknown>)[key] : undefined

const baseMessage = (error: unknown): string =>
  error instanceof Error ? error.message : typeof error === "string" ? error : String(error)

/** Node system error codes a user can act on, and what they mean. */
const systemErrors: ReadonlyMap<string, (message: string) => string> = new Map([
  ["ENOSPC", (m) => `the disk is full (ENOSPC): ${m}`],
  ["EDQUOT", (m) => `the disk quota is exhausted (EDQUOT): ${m}`],
  ["EACCES", (m) => `permission denied: ${m}`],
  ["EPERM", (m) => `permission denied: ${m}`],
  ["EROFS", (m) => `the file system is read-only: ${m}`],
  ["EMFILE", (m) => `too many open files: ${m}`],
  ["ENFILE", (m) => `too many open files: ${m}`],
  ["EIO", (m) => `I/O error from the disk: ${m}`]
])

const locked = (m: string) =>
  `the index database is locked by another process and stayed locked past the busy timeout (SQLite: ${m})`

/** SQLite primary result codes (the low byte of an extended code), and what they mean. */
const sqliteErrors: ReadonlyMap<number, (message: string) => string> = new Map([
  [13, (m) => `the disk is full (SQLite: ${m})`], // SQLITE_FULL
  [5, locked], // SQLITE_BUSY
  [6, locked], // SQLITE_LOCKED
  [10, (m) => `I/O error writing the index database (SQLite: ${m})`], // SQLITE_IOERR
  [11, (m) => `the index database is corrupt (SQLite: ${m})`], // SQLITE_CORRUPT
  [14, (m) => `cannot open the index database (SQLite: ${m})`], // SQLITE_CANTOPEN
  [8, (m) => `the index database is read-only (SQLite: ${m})`] // SQLITE_READONLY
])

/** A one-line explanation of a Node file-system or node:sqlite error. */
export const failureMessage = (error: unknown): string => {
  const message = baseMessage(error)
  const code = field(error, "code")
  const system = typeof code === "string" ? systemErrors.get(code) : undefined
  if (system !== undefined) return system(message)
  const errcode = field(error, "errcode")
  if (typeof errcode === "number") return (sqliteErrors.get(errcode & 0xff) ?? ((m: string) => `SQLite: ${m}`))(message)
  return message
}

/** The error code of a Node system error (`ENOENT`, ...), if it has one. */
export const errorCode = (error: unknown): string | undefined => {
  const code = field(error, "code")
  return typeof code === "string" ? code : undefined
}

/** `catch` handler for Effect.try / Effect.tryPromise: the failure as StoreUnavailable. */
export const unavailable = (operation: string) => (error: unknown): StoreUnavailable =>
  new StoreUnavailable({ operation, message: failureMessage(error) })
