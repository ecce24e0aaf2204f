/**
 * `pnpm bench`: runs every benchmark one after the other (they measure the same 2 cores, so never
 * at once), each as its own process writing `bench/results/<name>.json`, then gathers them into
 * `bench/results/all.json`. `pnpm bench store engine` runs a subset; `pnpm bench wan` the WAN matrix;
 * `pnpm bench million` a million assets (bench/million.ts: ~4 GB fixture in $TMPDIR, kept for the next run).
 */
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const all = ["store", "engine", "transport", "sync", "reconnect", "nat", "reconcile", "ratelimit", "wan"]
// `wan` runs issue 10's RTT × loss table (`--grid --cap 45`: agents, TCP and the bare library
// through the network lab's emulated link, ~25 minutes; it skips itself where namespaces cannot be
// made); `node bench/wan.ts` alone has the SCTP tuning matrix (hours). `million` runs only when
// named (bench/million.ts: building the 1M-asset fixture takes ~7 minutes and `verify` of it tens
// of minutes on 2 cores).
const args: Record<string, ReadonlyArray<string>> = { wan: ["--grid", "--cap", "45"] }
const chosen = process.argv.slice(2).length > 0 ? process.argv.slice(2) : all
const results: Record<string, unknown> = {}
let failed = false
mkdirSync(join(here, "results"), { recursive: true })
for (const name of chosen) {
  const script = join(here, `${name}.ts`)
  if (!existsSync(script)) {
    console.error(`bench: no ${name}.ts`)
    failed = true
    continue
  }
  console.error(`bench: ${name} ...`)
  const run = spawnSync(process.execPath, [script, ...(args[name] ?? [])], { stdio: ["ignore", "inherit", "inherit"] })
  if (run.status !== 0) {
    console.error(`bench: ${name} failed (exit ${run.status})`)
    failed = true
    continue
  }
  results[name] = JSON.parse(readFileSync(join(here, "results", `${name}.json`), "utf8"))
}
// A subset run refreshes its own entries and keeps the others' latest results.
const gathered: Record<string, unknown> = {}
for (const name of [...all, "wan", "million"]) {
  const file = join(here, "results", `${name}.json`)
  if (name in results) gathered[name] = results[name]
  else if (existsSync(file)) gathered[name] = JSON.parse(readFileSync(file, "utf8"))
}
const summary = { at: new Date().toISOString(), node: process.version, cpus: (await import("node:os")).cpus().length, results: gathered }
writeFileSync(join(here, "results", "all.json"), JSON.stringify(summary, null, 2) + "\n")
console.log(JSON.stringify(summary))
process.exit(failed ? 1 : 0)
