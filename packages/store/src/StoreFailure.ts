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

// SQLite primary result codes (the low byte of an extended code).
const SQLITE_BUSY = 5
const SQLITE_LOCKED = 6
const SQLITE_IOERR = 10
const SQLITE_CORRUPT = 11
const SQLITE_FULL = 13
const SQLITE_CANTOPEN = 14
const SQLITE_READONLY = 8

/** A one-line explanation of a Node file-system or node:sqlite error. */
export const failureMessage = (error: unknown): string => {
  const message = baseMessage(error)
  const code = field(error, "code")
  switch (code) {
    case "ENOSPC":
      return `the disk is full (ENOSPC): ${message}`
    case "EDQUOT":
      return `the disk quota is exhausted (EDQUOT): ${message}`
    case "EACCES":
    case "EPERM":
      return `permission denied: ${message}`
    case "EROFS":
      return `the file system is read-only: ${message}`
    case "EMFILE":
    case "ENFILE":
      return `too many open files: ${message}`
    case "EIO":
      return `I/O error from the disk: ${message}`
  }
  const errcode = field(error, "errcode")
  if (typeof errcode === "number") {
    switch (errcode & 0xff) {
      case SQLITE_FULL:
        return `the disk is full (SQLite: ${message})`
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
        return `the index database is locked by another process and stayed locked past the busy timeout (SQLite: ${message})`
      case SQLITE_IOERR:
        return `I/O error writing the index database (SQLite: ${message})`
      case SQLITE_CORRUPT:
        return `the index database is corrupt (SQLite: ${message})`
      case SQLITE_CANTOPEN:
        return `cannot open the index database (SQLite: ${message})`
      case SQLITE_READONLY:
        return `the index database is read-only (SQLite: ${message})`
    }
    return `SQLite: ${message}`
  }
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
