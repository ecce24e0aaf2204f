/**
 * `can-sync verify` and partial transfers (issue 13 item 2): as a user meets it, a real CLI process
 * on a real store directory. verify drops the partials past their bounds and adds one line saying
 * how many it keeps to resume (and their bytes) and how many it dropped; a store without partials
 * prints exactly what it always did. Partials are written in the checkpoint format of `Partials.ts`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { createHash } from "node:crypto"
import { mkdir, readdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { EmbeddedStore } from "@can-sync/store"
import { tempDir } from "../kit/Files.ts"
import { cleanEnv, repoRoot, runCli } from "../kit/Process.ts"

const DAY = 24 * 3600 * 1000

const hashOf = (seed: string) => createHash("sha256").update(seed).digest("hex")

/** A partial of `bytes` bytes of `hash`, checkpointed at `updatedAt`. */
const leave = (dataDir: string, hash: string, bytes: number, updatedAt: number) =>
  Effect.promise(async () => {
    await mkdir(join(dataDir, "partial"), { recursive: true })
    await writeFile(join(dataDir, "partial", hash), new Uint8Array(bytes))
    await writeFile(join(dataDir, "partial", `${hash}.json`), JSON.stringify({ bytes, updatedAt, sources: [{ peer: "peer-a", from: 0, to: bytes }] }))
  })

const verify = (dataDir: string, home: string) =>
  runCli(["verify", "--data", dataDir], { cwd: repoRoot, env: cleanEnv({ XDG_DATA_HOME: home }), deadline: "60 seconds" })

describe("can-sync verify and partial transfers", () => {
  it.live("reports the partials it keeps (count, bytes) and drops those past the bounds; without partials, the output is unchanged", () =>
    Effect.gen(function*() {
      const root = yield* tempDir("verify-partials")
      const data = join(root, "data")
      yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* EmbeddedStore.make({ dataDir: data })
        yield* store.ingest(Stream.make(new TextEncoder().encode("one asset\n")))
      }))

      const plain = yield* verify(data, root)
      expect({ code: plain.code, stdout: plain.stdout, stderr: plain.stderr }).toEqual({ code: 0, stdout: "1 assets checked, 0 damaged\n", stderr: "" })

      const now = Date.now()
      const [old, young, younger] = [hashOf("old"), hashOf("young"), hashOf("younger")]
      yield* leave(data, old, 3_000, now - 8 * DAY)
      yield* leave(data, young, 5_000, now - 2 * DAY)
      yield* leave(data, younger, 7_000, now - 60_000)

      const first = yield* verify(data, root)
      expect({ code: first.code, stdout: first.stdout, stderr: first.stderr }).toEqual({
        code: 0,
        stdout: "1 assets checked, 0 damaged\n" +
          "2 partial transfer(s) kept to resume (12000 bytes), 1 past the bounds (count, bytes, age) dropped (3000 bytes)\n",
        stderr: ""
      })
      const left = yield* Effect.promise(() => readdir(join(data, "partial")))
      expect(left.sort()).toEqual([young, `${young}.json`, younger, `${younger}.json`].sort())

      const again = yield* verify(data, root)
      expect({ code: again.code, stdout: again.stdout, stderr: again.stderr }).toEqual({
        code: 0,
        stdout: "1 assets checked, 0 damaged\n2 partial transfer(s) kept to resume (12000 bytes)\n",
        stderr: ""
      })
    }).pipe(Effect.scoped), 180_000)
})
