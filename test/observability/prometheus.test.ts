/**
 * Debian's own `prometheus` scrapes two real, syncing agents (`can-sync sync --admin-port`) on
 * their `/metrics`, and every query of the shipped Grafana dashboard, evaluated through
 * Prometheus' HTTP API, returns data. Needs the `prometheus` binary (`.ci/run` installs it and sets
 * CAN_SYNC_PROMETHEUS_TEST=1, which turns a missing binary into a failure instead of a skip).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { notYet } from "../kit/Eventually.ts"
import { freePort } from "../kit/Net.ts"
import { repoRoot, spawn } from "../kit/Process.ts"
import { Scenario, TEST_TIMEOUT } from "../e2e/Scenario.ts"

const prometheusBinary = (() => {
  try {
    return execFileSync("sh", ["-c", "command -v prometheus"], { encoding: "utf8" }).trim()
  } catch {
    return ""
  }
})()
const required = process.env.CAN_SYNC_PROMETHEUS_TEST === "1"
const version = (JSON.parse(readFileSync(join(repoRoot, "packages/cli/package.json"), "utf8")) as { version: string }).version
const missing = prometheusBinary === ""

interface Target {
  readonly expr: string
}
interface Panel {
  readonly title: string
  readonly type: string
  readonly targets?: ReadonlyArray<Target>
  readonly panels?: ReadonlyArray<Panel>
}

const dashboard = JSON.parse(readFileSync(join(repoRoot, "deploy/grafana/dashboards/can-sync.json"), "utf8")) as {
  readonly panels: ReadonlyArray<Panel>
  readonly templating?: { readonly list: ReadonlyArray<{ readonly query?: { readonly query?: string } | string }> }
}
/** Every query of the dashboard, its panels' and its variables', with Grafana's variables filled in. */
const queries: ReadonlyArray<{ readonly title: string; readonly expr: string }> = [
  ...dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr }))),
  ...(dashboard.templating?.list ?? []).flatMap((v) => {
    const q = typeof v.query === "string" ? v.query : v.query?.query
    // label_values(metric, label) is Grafana's: Prometheus answers it as the metric's series
    const metric = q === undefined ? undefined : /^label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,/.exec(q)?.[1]
    return metric === undefined ? [] : [{ title: "variable", expr: metric }]
  })
].map(({ title, expr }) => ({ title, expr: expr.replaceAll("$__rate_interval", "30s").replaceAll("$instance", ".*") }))

const SCRAPE = "1s"

interface QueryAnswer {
  readonly status: string
  readonly data?: { readonly result: ReadonlyArray<{ readonly metric: Record<string, string>; readonly value: [number, string] }> }
  readonly error?: string
}

const query = (base: string, expr: string) =>
  Effect.tryPromise(async () => {
    const response = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`, { signal: AbortSignal.timeout(5_000) })
    return (await response.json()) as QueryAnswer
  })

describe.skipIf(missing && !required)(
  `Prometheus scraping two agents (${missing ? "SKIPPED: no prometheus binary; apt-get install -y prometheus" : prometheusBinary})`,
  () => {
    it.live("answers every query of the Grafana dashboard with data", () =>
      Effect.gen(function*() {
        expect(prometheusBinary, "CAN_SYNC_PROMETHEUS_TEST=1 but `prometheus` is not installed (apt-get install -y prometheus)").not.toBe("")
        const scenario = yield* Scenario.make("prometheus")
        const signal = yield* scenario.signal()
        const dataA = scenario.path("a")
        const dataB = scenario.path("b")
        const [idA, idB] = [yield* scenario.id(dataA), yield* scenario.id(dataB)]
        const backfill = yield* scenario.smallFiles("backfill", "prometheus", 8)
        yield* scenario.add(dataA, backfill.map((f) => f.path))

        const a = yield* scenario.agent("a", { data: dataA, signal: signal.url, peers: [idB] })
        const b = yield* scenario.agent("b", { data: dataB, signal: signal.url, peers: [idA] })
        yield* scenario.live(a, b)
        yield* scenario.live(b, a)
        // /status names the lanes of each link (one, on loopback)
        expect(yield* a.peer(b)).toMatchObject({ lanes: 1 })

        // Every counter exists from the start, at 0 or more, and the agent says who it is.
        const exposition = yield* Effect.promise(() => fetch(`${a.adminUrl}/metrics`).then((r) => r.text()))
        expect(exposition).toMatch(/^# TYPE cansync_transfer_bytes_total counter$/m)
        expect(exposition).toContain(`cansync_errors_total{kind="auth"}`)
        expect(exposition).toContain(`cansync_agent_info{service_name="can-sync",service_instance_id="${idA}",service_version="${version}"} 1`)
        for (const name of ["process_memory_usage_bytes", "v8js_memory_heap_used_bytes", "nodejs_eventloop_delay_p99_seconds", "process_cpu_time_seconds_total"]) {
          expect(exposition, name).toMatch(new RegExp(`^${name}(\\{[^}]*\\})? [0-9.e+-]+$`, "m"))
        }
        expect(exposition).toMatch(new RegExp(`^cansync_backlog_assets\\{peer="${idB}",direction="sent"\\} \\d+$`, "m"))

        const port = yield* freePort
        const base = `http://127.0.0.1:${port}`
        const config = scenario.path("prometheus.yml")
        const hostPort = (url: string) => url.replace(/^http:\/\//, "")
        writeFileSync(config, [
          "global:",
          `  scrape_interval: ${SCRAPE}`,
          `  evaluation_interval: ${SCRAPE}`,
          "scrape_configs:",
          "  - job_name: can-sync",
          "    static_configs:",
          `      - targets: ["${hostPort(a.adminUrl)}", "${hostPort(b.adminUrl)}"]`,
          ""
        ].join("\n"))
        const prometheus = yield* spawn(prometheusBinary, [
          `--config.file=${config}`,
          `--storage.tsdb.path=${scenario.path("tsdb")}`,
          `--web.listen-address=127.0.0.1:${port}`
        ], { name: "prometheus", grace: "5 seconds" })
        scenario.procs.push(prometheus)

        yield* scenario.wait("Prometheus to scrape both agents", query(base, "up{job=\"can-sync\"} == 1").pipe(
          Effect.map((answer) => (answer.data?.result.length === 2 ? answer : notYet(answer)))
        ), "60 seconds")

        // A live change while Prometheus watches: propagation, echo suppression and throughput move.
        const live = yield* scenario.smallFiles("live", "prometheus-live", 3)
        yield* scenario.add(dataB, live.map((f) => f.path))
        yield* scenario.counters(a, b, (p) => p.assetsReceived >= 3)

        // Each query answers with at least one series (rates need two scrapes in their window).
        const answers = yield* scenario.wait("every dashboard query to return data", Effect.forEach(queries, (q) =>
          query(base, q.expr).pipe(Effect.map((answer) => ({ ...q, answer })))
        ).pipe(Effect.map((all) => {
          const empty = all.filter((q) => q.answer.status !== "success" || (q.answer.data?.result.length ?? 0) === 0)
          return empty.length === 0 ? all : notYet(empty.map((q) => `${q.title}: ${q.expr} -> ${q.answer.error ?? "no data"}`))
        })), "90 seconds", { interval: "1 second" })
        expect(answers.length).toBe(queries.length)

        // Each agent appears under its own peer id.
        const info = yield* query(base, "cansync_agent_info")
        expect(new Set(info.data?.result.map((r) => r.metric.service_instance_id))).toEqual(new Set([idA, idB]))
      }).pipe(Effect.scoped), TEST_TIMEOUT)
  }
)
