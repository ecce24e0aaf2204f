/**
 * Where tests leave what a person should look at (a screenshot of the status page, a capture of
 * the terminal): `CAN_SYNC_TEST_OUTPUT` (default: can-sync-test-output under the OS temp dir), and
 * also docs/img when `CAN_SYNC_DOCS_IMG=1` — how the images under docs/ are taken, by the tests.
 */
import { mkdir, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { repoRoot } from "../kit/Process.ts"

export const outputDir = (): string => process.env.CAN_SYNC_TEST_OUTPUT ?? join(tmpdir(), "can-sync-test-output")

/** Writes `name` to the output dir (and docs/img when asked); returns the paths written. */
export const save = async (name: string, data: string | Uint8Array): Promise<ReadonlyArray<string>> => {
  const dirs = [outputDir(), ...(process.env.CAN_SYNC_DOCS_IMG === "1" ? [join(repoRoot, "docs", "img")] : [])]
  return Promise.all(dirs.map(async (dir) => {
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, name), data)
    return join(dir, name)
  }))
}
