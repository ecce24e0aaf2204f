/**
 * The data-directory lock (issue 12, item 10): a store opened with `lock` holds `<data>/lock`
 * naming its pid; a second locked open of the directory is refused with the holder's pid, a lock
 * left by a dead process (or garbage) is taken over, and closing the store removes the file.
 * One-shot opens (no `lock`) share the directory with the holder, as the CLI does with the agent.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope, Stream } from "effect"
import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { readFile, writeFile } from "node:fs/promises"
import { hostname } from "node:os"
import { join } from "node:path"
import * as EmbeddedStore from "../src/EmbeddedStore.ts"
import { tempDir } from "./fixtures/stores.ts"

const lockedStore = (dataDir: string) => EmbeddedStore.make({ dataDir, lock: true })

/** A live process other than this one (a `sleep`), killed with the scope. */
const liveProcess = Effect.acquireRelease(
  Effect.sync(() => spawn("sleep", ["60"], { stdio: "ignore" })),
  (child) => Effect.sync(() => child.kill("SIGKILL"))
).pipe(Effect.map((child) => child.pid!))

/** The pid of a process that has exited. */
const deadPid = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const child = spawn("true", [], { stdio: "ignore" })
    child.once("exit", () => resolve(child.pid!))
  })
)

const lockFile = (dataDir: string) => join(dataDir, "lock")

describe("the data-directory lock", () => {
  it.live("a locked store names its pid in <data>/lock; a second locked open is refused naming it; the lock goes with the store", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("can-lock-")
      const scope = yield* Scope.make()
      yield* Scope.provide(lockedStore(dataDir), scope)
      assert.strictEqual((yield* Effect.promise(() => readFile(lockFile(dataDir), "utf8"))).split("\n")[0], String(process.pid))
      const second = yield* Effect.flip(Effect.scoped(lockedStore(dataDir)))
      assert.strictEqual(second._tag, "StoreUnavailable")
      assert.include(second.message, `pid ${process.pid}`)
      // a one-shot open (no lock) shares the directory with the holder
      yield* Effect.scoped(Effect.flatMap(EmbeddedStore.make({ dataDir }), (store) => store.ingest(Stream.make(new Uint8Array([1])))))
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(existsSync(lockFile(dataDir)))
      yield* Effect.scoped(lockedStore(dataDir))
    }))

  it.live("a lock held by another live process is refused with that process's pid and left in place", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("can-lock-live-")
      yield* Effect.scoped(EmbeddedStore.make({ dataDir }))
      const pid = yield* liveProcess
      yield* Effect.promise(() => writeFile(lockFile(dataDir), `${pid}\n${hostname()}\n`))
      const refused = yield* Effect.flip(Effect.scoped(lockedStore(dataDir)))
      assert.strictEqual(refused._tag, "StoreUnavailable")
      assert.include(refused.message, `another can-sync process (pid ${pid})`)
      assert.strictEqual(yield* Effect.promise(() => readFile(lockFile(dataDir), "utf8")), `${pid}\n${hostname()}\n`)
    }))

  it.live("a lock left by a dead process, or one that names no pid, is taken over", () =>
    Effect.gen(function*() {
      const dataDir = yield* tempDir("can-lock-stale-")
      yield* Effect.scoped(EmbeddedStore.make({ dataDir }))
      for (const stale of [`${yield* deadPid}\n${hostname()}\n`, "garbage"]) {
        yield* Effect.promise(() => writeFile(lockFile(dataDir), stale))
        yield* Effect.scoped(Effect.gen(function*() {
          yield* lockedStore(dataDir)
          assert.strictEqual((yield* Effect.promise(() => readFile(lockFile(dataDir), "utf8"))).split("\n")[0], String(process.pid))
        }))
        assert.isFalse(existsSync(lockFile(dataDir)))
      }
    }))
})
