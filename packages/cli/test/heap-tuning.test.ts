/**
 * The agent's V8 heap settings (HeapTuning) do what they are there for, in a real Node process:
 * churning through 512 MiB of short-lived 1 MiB buffers (what a transfer does) takes several full
 * collections with V8's defaults (one per 64 MB of buffer growth) and at most one once tuned.
 * Counts collections, never time.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"

const tuning = fileURLToPath(new URL("../src/HeapTuning.ts", import.meta.url))

/** Full collections in a fresh process that allocates 512 buffers of 1 MiB, keeping the last 4. */
const fullCollections = (tuned: boolean): number => {
  const script = `
    import { PerformanceObserver, constants } from "node:perf_hooks"
    ${tuned ? `(await import(${JSON.stringify(tuning)})).tuneForStreaming()` : ""}
    let full = 0
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) full++
    }).observe({ entryTypes: ["gc"] })
    const kept = []
    for (let i = 0; i < 512; i++) {
      kept.push(Buffer.alloc(1024 * 1024, i))
      if (kept.length > 4) kept.shift()
      if (i % 16 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
    process.stdout.write(String(full))
  `
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 })
  return Number(out)
}

describe("HeapTuning", () => {
  it("buffer churn takes at most one full collection once tuned, several with V8's defaults", () => {
    const untuned = fullCollections(false)
    const tuned = fullCollections(true)
    expect(untuned).toBeGreaterThanOrEqual(3)
    expect(tuned).toBeLessThanOrEqual(1)
  })
})
