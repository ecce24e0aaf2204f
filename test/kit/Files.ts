/**
 * Scratch space for tests: temp dirs on tmpfs when there is one (the stores fsync per asset; on a
 * VM disk that alone makes the many-assets scenarios take minutes), removed when the scope closes.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { existsSync } from "node:fs"
import { mkdtemp, readdir, rm, stat } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"

export const scratchRoot = existsSync("/dev/shm") ? "/dev/shm" : tmpdir()

/** A fresh dir `can-sync-<prefix>-XXXXXX`, removed with everything in it when the scope closes. */
export const tempDir = (prefix: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(scratchRoot, `can-sync-${prefix}-`))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true, maxRetries: 3 }))
  )

/**
 * The size of the largest in-flight write in a store's `tmp/` or `partial/` (where a transfer from a
 * peer is written, kept if it is cut) — 0 when none: how far a receive has got.
 */
export const largestInFlight = (dataDir: string): Effect.Effect<number> =>
  Effect.promise(async () => {
    const sizes = await Promise.all(["tmp", "partial"].map(async (sub) => {
      const dir = join(dataDir, sub)
      const names = (await readdir(dir).catch(() => [])).filter((n) => !n.endsWith(".json") && !n.endsWith(".tmp"))
      return Promise.all(names.map((n) => stat(join(dir, n)).then((st) => st.size, () => 0)))
    }))
    return Math.max(0, ...sizes.flat())
  })
