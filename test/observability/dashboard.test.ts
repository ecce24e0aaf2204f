/**
 * The Grafana dashboard cannot silently go blank: every metric its PromQL reads is the Prometheus
 * rendering of a metric the agents really export (found by exporting every core metric through
 * Telemetry.layer to a real OTLP receiver), every exported metric has a panel, and the agent's own
 * `/metrics` names each one as the Collector does (prometheus.test.ts runs the queries for real).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as Prometheus from "@can-sync/cli/Prometheus"
import { allCoreMetrics, exportedMetrics } from "./Exported.ts"
import { familyName, metricNamesIn, type OtlpMetricShape, seriesNames } from "./PromNames.ts"

const root = join(import.meta.dirname, "..", "..")

interface Target {
  readonly expr: string
  readonly datasource?: { readonly uid?: string }
}
interface Panel {
  readonly title: string
  readonly type: string
  readonly targets?: ReadonlyArray<Target>
  readonly panels?: ReadonlyArray<Panel>
  readonly datasource?: { readonly uid?: string }
}
interface Dashboard {
  readonly panels: ReadonlyArray<Panel>
  readonly templating?: { readonly list: ReadonlyArray<{ readonly name: string; readonly query?: unknown; readonly definition?: string }> }
}

const dashboard = JSON.parse(readFileSync(join(root, "deploy/grafana/dashboards/can-sync.json"), "utf8")) as Dashboard
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== "row")
const variableQueries = (dashboard.templating?.list ?? []).map((v) =>
  typeof v.query === "string" ? v.query : typeof v.query === "object" && v.query !== null && "query" in v.query ? String(v.query.query) : v.definition ?? "")
const queried = (panel: Panel) => (panel.targets ?? []).flatMap((t) => metricNamesIn(t.expr))

describe("PromNames: OTLP to Prometheus naming", () => {
  it("renders counters, gauges and histograms as the Collector's Prometheus exporter does", () => {
    const m = (name: string, unit: string, kind: OtlpMetricShape["kind"], monotonic = false) => ({ name, unit, kind, monotonic })
    expect(familyName(m("cansync.transfer.bytes", "By", "sum", true))).toBe("cansync_transfer_bytes_total")
    expect(familyName(m("cansync.transfer.assets", "{asset}", "sum", true))).toBe("cansync_transfer_assets_total")
    expect(familyName(m("http.server.request.size", "By", "sum", true))).toBe("http_server_request_size_bytes_total")
    expect(familyName(m("queue.depth", "{item}", "sum", false))).toBe("queue_depth")
    expect(familyName(m("cpu.utilization", "1", "gauge"))).toBe("cpu_utilization_ratio")
    expect(familyName(m("net.rate", "By/s", "gauge"))).toBe("net_rate_bytes_per_second")
    expect(seriesNames(m("cansync.reconcile.duration", "s", "histogram"))).toEqual([
      "cansync_reconcile_duration_seconds_bucket",
      "cansync_reconcile_duration_seconds_sum",
      "cansync_reconcile_duration_seconds_count"
    ])
  })

  it("finds the metric names in PromQL, not the functions, labels, ranges or variables", () => {
    expect(metricNamesIn(`histogram_quantile(0.99, sum by (le) (rate(a_bucket{instance=~"$instance"}[$__rate_interval])))`)).toEqual(["a_bucket"])
    expect(metricNamesIn(`sum(rate(x_sum[5m])) / sum(rate(x_count[5m])) * 1e3`)).toEqual(["x_sum", "x_count"])
    expect(metricNamesIn(`label_values(cansync_store_bytes, instance)`)).toEqual(["cansync_store_bytes"])
    expect(metricNamesIn(`sum without (peer) (y_total offset 5m) > bool 0`)).toEqual(["y_total"])
  })
})

describe("the Grafana dashboard", () => {
  it.live("queries only metrics the agents export, and shows every one of them", () =>
    Effect.gen(function*() {
      const exported = yield* exportedMetrics
      // Every core metric made it through the exporter, under its own name.
      expect(new Set(exported.map((m) => m.name))).toEqual(new Set(allCoreMetrics().map((m) => m.id)))
      const available = new Set(exported.flatMap(seriesNames))

      const used = new Set<string>()
      for (const panel of panels) {
        const names = queried(panel)
        expect(names.length, `panel "${panel.title}" queries no metric`).toBeGreaterThan(0)
        for (const name of names) {
          expect(available.has(name), `panel "${panel.title}" queries ${name}, which no agent exports`).toBe(true)
          used.add(name)
        }
      }
      for (const query of variableQueries) {
        for (const name of metricNamesIn(query)) expect(available.has(name), `variable query reads ${name}`).toBe(true)
      }
      for (const metric of exported) {
        expect(seriesNames(metric).some((n) => used.has(n)), `no panel shows ${metric.name} (${familyName(metric)})`).toBe(true)
      }
    }))

  it.live("names each metric on the agent's own /metrics as the Collector names it from OTLP", () =>
    Effect.gen(function*() {
      const exported = new Map((yield* exportedMetrics).map((m) => [m.name, m]))
      for (const metric of allCoreMetrics()) {
        const viaOtlp = exported.get(metric.id)
        expect(viaOtlp, metric.id).toBeDefined()
        if (viaOtlp !== undefined) expect(Prometheus.familyName(metric), metric.id).toBe(familyName(viaOtlp))
      }
    }))

  it("has the panels the issue asks for", () => {
    const exprs = (title: RegExp) => panels.filter((p) => title.test(p.title)).flatMap((p) => (p.targets ?? []).map((t) => t.expr))
    expect(exprs(/throughput per peer/i).join(" ")).toMatch(/cansync_transfer_bytes_total/)
    expect(exprs(/throughput per peer/i).join(" ")).toMatch(/by \([^)]*\bpeer\b/)
    expect(exprs(/connected peers/i).join(" ")).toMatch(/cansync_peers_connected/)
    const latency = exprs(/propagation latency/i).join(" ")
    for (const q of ["0.5", "0.9", "0.99"]) expect(latency).toContain(`histogram_quantile(${q}, sum by (le) (rate(cansync_propagation_latency_seconds_bucket`)
    expect(exprs(/reconcile duration/i).join(" ")).toMatch(/cansync_reconcile_duration_seconds_bucket/)
    expect(exprs(/errors/i).join(" ")).toMatch(/cansync_errors_total.*|by \(kind\)/)
    expect(exprs(/errors/i).join(" ")).toMatch(/sum by \(kind\) \(rate\(cansync_errors_total/)
    expect(exprs(/echoes suppressed/i).join(" ")).toMatch(/cansync_echo_suppressed_total/)
    expect(exprs(/store size/i).join(" ")).toMatch(/cansync_store_bytes/)
  })

  it("reads every panel from the provisioned Prometheus datasource", () => {
    const provisioned = readFileSync(join(root, "deploy/grafana/provisioning/datasources/prometheus.yaml"), "utf8")
    const uid = /^\s*uid:\s*(\S+)/m.exec(provisioned)?.[1]
    expect(uid).toBeDefined()
    for (const panel of panels) {
      expect(panel.datasource?.uid, panel.title).toBe(uid)
      for (const target of panel.targets ?? []) expect(target.datasource?.uid ?? uid, panel.title).toBe(uid)
    }
  })
})
