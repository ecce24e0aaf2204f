/**
 * The README's first quick-start command, `./scripts/demo.sh`, run as a user runs it (into a
 * temp dir instead of `.data/demo`): it must exit 0 after both stores converged, a file added to
 * alice reached bob, and bob's metadata edit reached alice.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { join } from "node:path"
import { tempDir } from "../kit/Files.ts"
import { repoRoot, run } from "../kit/Process.ts"

const DEMO_TIMEOUT = 180_000

describe("./scripts/demo.sh (quick start)", () => {
  it.live("converges two agents, carries a live add to bob and bob's metadata edit to alice, and exits 0", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("demo")
      const ran = yield* run("bash", [join(repoRoot, "scripts", "demo.sh")], {
        name: "demo.sh",
        env: { ...process.env, CAN_SYNC_DEMO_DIR: dir, NO_COLOR: "1" },
        deadline: DEMO_TIMEOUT - 5_000
      })
      const out = ran.stdout + ran.stderr
      expect(ran.code, out).toBe(0)
      expect(out).toMatch(/reconciled in \d+ ms/)
      const live = /([0-9a-f]{64}) reached bob in \d+ ms: added while syncing/.exec(out)
      expect(live, out).not.toBeNull()
      expect(out).toContain(`alice sees: ${live![1]}  edited on bob #reviewed`)
    }), DEMO_TIMEOUT)
})
