/**
 * The README's first quick-start command, `./scripts/demo.sh`, run as a user runs it (into a
 * temp dir instead of `.data/demo`): it must exit 0 after both stores converged, a file added to
 * alice reached bob, and bob's metadata edit reached alice.
 */
import { spawn } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { repoRoot, scratchRoot } from "./harness.ts"

const DEMO_TIMEOUT = 180_000

describe("./scripts/demo.sh (quick start)", () => {
  const dirs: Array<string> = []
  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true })
  })

  it("converges two agents, carries a live add to bob and bob's metadata edit to alice, and exits 0", async () => {
    const dir = await mkdtemp(join(scratchRoot, "can-sync-demo-"))
    dirs.push(dir)
    const { code, out } = await new Promise<{ code: number | null; out: string }>((done, fail) => {
      const child = spawn("bash", [join(repoRoot, "scripts", "demo.sh")], {
        cwd: repoRoot,
        env: { ...process.env, CAN_SYNC_DEMO_DIR: dir, NO_COLOR: "1" },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let out = ""
      child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")))
      child.stderr.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")))
      const timer = setTimeout(() => {
        child.kill("SIGKILL")
        fail(new Error(`demo.sh did not finish within ${DEMO_TIMEOUT} ms:\n${out}`))
      }, DEMO_TIMEOUT - 5_000)
      child.once("close", (code) => {
        clearTimeout(timer)
        done({ code, out })
      })
    })
    expect(code, out).toBe(0)
    expect(out).toMatch(/reconciled in \d+ ms/)
    const live = /([0-9a-f]{64}) reached bob in \d+ ms: added while syncing/.exec(out)
    expect(live, out).not.toBeNull()
    expect(out).toContain(`alice sees: ${live![1]}  edited on bob #reviewed`)
  }, DEMO_TIMEOUT)
})
