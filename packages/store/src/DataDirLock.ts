/**
 * The data-directory lock: a long-running writer (the sync agent, `serve`) holds `<data>/lock`,
 * a file created exclusively and naming its pid, for as long as its store is open, so a second
 * one on the same directory is refused with the holder's pid. One-shot commands (`add`, `ls`, ...)
 * share the store with the holder and take no lock. A lock left by a dead process is taken over.
 */
import { StoreUnavailable } from "@can-sync/core/CanStore"
import * as Effect from "effect/Effect"
import type { Scope } from "effect"
import { hostname } from "node:os"
import { readFile, rename, unlink, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { randomBytes } from "node:crypto"
import { errorCode, failureMessage } from "./StoreFailure.ts"

/** The lock file's name inside the data directory. */
export const LockFileName = "lock"

/** What the lock file says: who holds it. */
interface Holder {
  readonly pid: number
  readonly host: string
}

/** Data directories this process holds (a second open in the same process is refused too). */
const heldHere = new Set<string>()

const parse = (text: string): Holder | undefined => {
  const [pidLine, hostLine] = text.split("\n")
  const pid = Number(pidLine)
  return Number.isSafeInteger(pid) && pid > 0 ? { pid, host: hostLine ?? "" } : undefined
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return errorCode(error) === "EPERM" // it exists, under another user
  }
}

const lockError = (dataDir: string, message: string) =>
  new StoreUnavailable({ operation: "lock data directory", message: `${dataDir}: ${message}` })

/**
 * A lock file whose holder is gone: a pid no process has (or this process's own pid, left by an
 * earlier life of a container's pid 1, since this process does not hold it), on this host.
 */
const stale = (holder: Holder | undefined): boolean =>
  holder === undefined || (holder.host === hostname() && (holder.pid === process.pid || !alive(holder.pid)))

/** Creates the lock file naming this process; false if one exists. */
const create = async (path: string): Promise<boolean> => {
  try {
    await writeFile(path, `${process.pid}\n${hostname()}\n`, { flag: "wx" })
    return true
  } catch (error) {
    if (errorCode(error) === "EEXIST") return false
    throw error
  }
}

/** The holder named by the lock file; undefined when it is unreadable or gone. */
const readHolder = async (path: string): Promise<{ readonly text: string; readonly holder: Holder | undefined } | undefined> => {
  try {
    const text = await readFile(path, "utf8")
    return { text, holder: parse(text) }
  } catch (error) {
    if (errorCode(error) === "ENOENT") return undefined
    throw error
  }
}

/**
 * Moves a stale lock file aside and removes it, unless it changed since it was read (another
 * process took it over first): the rename is atomic, so of two processes taking over one lock,
 * one moves the stale file and the other finds nothing to move and retries from the start.
 */
const removeStale = async (path: string, seen: string): Promise<void> => {
  const aside = `${path}.stale-${process.pid}-${randomBytes(4).toString("hex")}`
  try {
    await rename(path, aside)
  } catch (error) {
    if (errorCode(error) === "ENOENT") return
    throw error
  }
  const moved = await readFile(aside, "utf8").catch(() => seen)
  if (moved !== seen) {
    // A fresh lock replaced the stale one between our read and our rename: put it back.
    await rename(aside, path).catch(() => undefined)
    return
  }
  await unlink(aside).catch(() => undefined)
}

/**
 * Takes the lock of `dataDir` until the scope closes; fails with StoreUnavailable naming the pid
 * (and host) of a live holder.
 */
export const acquire = (dataDir: string): Effect.Effect<void, StoreUnavailable, Scope.Scope> => {
  const path = join(dataDir, LockFileName)
  const take = Effect.tryPromise({
    try: async (): Promise<Holder | "taken"> => {
      for (let attempt = 0; attempt < 5; attempt++) {
        if (await create(path)) return "taken"
        const found = await readHolder(path)
        if (found === undefined) continue // released meanwhile
        if (!stale(found.holder)) return found.holder!
        await removeStale(path, found.text)
      }
      throw new Error(`the lock file ${path} keeps changing: another process is starting on it`)
    },
    catch: (error) => lockError(dataDir, `cannot take the lock file: ${failureMessage(error)}`)
  })
  return Effect.acquireRelease(
    Effect.gen(function*() {
      if (heldHere.has(path)) {
        return yield* lockError(dataDir, `this process (pid ${process.pid}) already has the store open`)
      }
      const result = yield* take
      if (result !== "taken") {
        const where = result.host === hostname() ? "" : ` on host ${result.host}`
        return yield* lockError(
          dataDir,
          `another can-sync process (pid ${result.pid}${where}) is using this data directory; stop it first ` +
            `(if it is gone, remove ${path})`
        )
      }
      heldHere.add(path)
    }),
    () =>
      Effect.promise(async () => {
        heldHere.delete(path)
        const found = await readHolder(path).catch(() => undefined)
        if (found?.holder?.pid === process.pid) await unlink(path).catch(() => undefined)
      })
  )
}
