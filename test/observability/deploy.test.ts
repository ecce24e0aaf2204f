/**
 * The deploy/ files, checked without a container engine: the Dockerfile's shape (multi-stage,
 * slim Node >= 22, non-root, /data volume, node-based healthcheck on the admin port, `sync`
 * entrypoint) and the wiring between compose.yaml, the Collector, Prometheus and Grafana configs.
 */
import { describe, expect, it } from "@effect/vitest"
import { Yaml } from "effect/encoding"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import * as Dockerfile from "./Dockerfile.ts"

const root = join(import.meta.dirname, "..", "..")
const deploy = join(root, "deploy")
const read = (path: string) => readFileSync(join(deploy, path), "utf8")

type Yamlish = { readonly [key: string]: unknown }
const isRecord = (u: unknown): u is Yamlish => typeof u === "object" && u !== null && !Array.isArray(u)
const record = (u: unknown): Yamlish => (isRecord(u) ? u : {})
const strings = (u: unknown): Array<string> => (Array.isArray(u) ? u.map(String) : typeof u === "string" ? [u] : [])
const flagValue = (args: ReadonlyArray<string>, flag: string) => {
  const at = args.indexOf(flag)
  return at >= 0 ? args[at + 1] : undefined
}

const image = Dockerfile.parse(read("Dockerfile"))
const compose = record(Yaml.parse(read("compose.yaml")))
const services = record(compose.services)
const service = (name: string) => record(services[name])
const collector = record(Yaml.parse(read("otel-collector.yaml")))
const prometheus = record(Yaml.parse(read("prometheus.yml")))
const datasources = record(Yaml.parse(read("grafana/provisioning/datasources/prometheus.yaml")))
const dashboardProviders = record(Yaml.parse(read("grafana/provisioning/dashboards/can-sync.yaml")))
const dashboard = JSON.parse(read("grafana/dashboards/can-sync.json")) as { readonly uid: string; readonly panels: ReadonlyArray<{ readonly datasource?: { readonly uid?: string } }> }

/** What a service runs, as Docker would: an `entrypoint` override drops the image's CMD. */
const argv = (name: string): Array<string> => {
  const s = service(name)
  if (s.image !== "can-sync:local") return []
  if (s.entrypoint !== undefined) return [...strings(s.entrypoint), ...strings(s.command)]
  return [...image.entrypoint, ...(s.command !== undefined ? strings(s.command) : image.cmd)]
}
const environment = (name: string): Record<string, string> => ({
  ...(service(name).image === "can-sync:local" ? image.env : {}),
  ...Object.fromEntries(Object.entries(record(service(name).environment)).map(([k, v]) => [k, String(v)]))
})
/** A flag's value on the command line, else its CAN_SYNC_* environment fallback. */
const setting = (name: string, flag: string, variable: string) => flagValue(argv(name), flag) ?? environment(name)[variable]
/** Services that run the agent: `main.ts sync`. */
const agents = Object.keys(services).filter((name) => argv(name).join(" ").includes("main.ts sync"))
const hostPort = (url: string) => {
  const u = new URL(url)
  return { host: u.hostname, port: u.port }
}
/** `./x:/y[:ro]` bind mounts of a service, as [source relative to deploy/, target]. */
const binds = (name: string) =>
  strings(service(name).volumes).filter((v) => v.startsWith("./")).map((v) => {
    const [source = "", target = ""] = v.split(":")
    return [source, target] as const
  })

describe("deploy/Dockerfile", () => {
  it("is multi-stage on a slim Node >= 22 base pinned by digest and installs production dependencies with pnpm", () => {
    expect(image.stages.length).toBeGreaterThanOrEqual(2)
    for (const stage of image.stages) {
      const m = /^node:(\d+)(?:\.[\d.]+)?-slim@sha256:[0-9a-f]{64}$/.exec(stage.from)
      expect(m, stage.from).not.toBeNull()
      expect(Number(m?.[1])).toBeGreaterThanOrEqual(22)
    }
    const build = image.stages[0]?.instructions.map((i) => i.args).join("\n") ?? ""
    expect(build).toMatch(/pnpm install --frozen-lockfile --prod/)
  })

  it("copies only paths that exist in the repository", () => {
    for (const stage of image.stages) {
      for (const ins of stage.instructions.filter((i) => i.keyword === "COPY" && !i.args.includes("--from"))) {
        const parts = ins.args.split(/\s+/).filter((p) => !p.startsWith("--"))
        for (const source of parts.slice(0, -1)) expect(existsSync(join(root, source)), `COPY ${source}`).toBe(true)
      }
    }
    expect(read("Dockerfile.dockerignore")).toMatch(/^\*\*\/node_modules$/m)
  })

  it("runs `can-sync sync` as a non-root user with /data as a volume", () => {
    expect(image.entrypoint).toEqual(["node", "/app/packages/cli/src/main.ts", "sync"])
    expect(existsSync(join(root, "packages/cli/src/main.ts"))).toBe(true)
    expect(image.user).toBeDefined()
    expect(["root", "0", "0:0"]).not.toContain(image.user)
    expect(image.volumes).toContain("/data")
    expect(flagValue(image.cmd, "--data")).toBe("/data")
    expect(image.env.CAN_SYNC_DATA).toBe("/data")
  })

  it("checks health with node itself, on the admin port the command opens", () => {
    const adminPort = flagValue(image.cmd, "--admin-port")
    expect(adminPort).toBeDefined()
    expect(image.env.CAN_SYNC_ADMIN_PORT).toBe(adminPort)
    expect(image.exposed).toContain(adminPort)
    expect(image.healthcheck?.cmd[0]).toBe("node")
    expect(image.healthcheck?.cmd.join(" ")).toMatch(/\/healthz/)
    expect(image.healthcheck?.cmd.join(" ")).toMatch(/CAN_SYNC_ADMIN_PORT/)
  })
})

describe("deploy/compose.yaml", () => {
  it("runs a signaling server, two or three agents, a Collector, Prometheus and Grafana", () => {
    for (const name of ["signal", "otel-collector", "prometheus", "grafana"]) expect(services[name], name).toBeDefined()
    expect(agents.length).toBeGreaterThanOrEqual(2)
    expect(agents.length).toBeLessThanOrEqual(3)
  })

  it("runs every agent as the image is built, with the signaling server, its own volume and the allow-list", () => {
    const signalPort = flagValue(strings(service("signal").command), "--port")
    const volumes = new Set<string>()
    for (const name of agents) {
      const s = service(name)
      expect(s.entrypoint, `${name} keeps the image's ENTRYPOINT`).toBeUndefined()
      expect(s.command, `${name} keeps the image's CMD`).toBeUndefined()
      expect(setting(name, "--data", "CAN_SYNC_DATA")).toBe("/data")
      expect(setting(name, "--admin-port", "CAN_SYNC_ADMIN_PORT")).toBe(flagValue(image.cmd, "--admin-port"))
      expect(hostPort(setting(name, "--signal", "CAN_SYNC_SIGNAL") ?? "")).toEqual({ host: "signal", port: signalPort })
      const data = strings(s.volumes).find((v) => v.endsWith(":/data"))
      expect(data, name).toBeDefined()
      volumes.add(data ?? "")
      const peersFile = setting(name, "--peers-file", "CAN_SYNC_PEERS_FILE") ?? ""
      expect(strings(s.volumes).some((v) => v.startsWith("peers:") && peersFile.startsWith(`${v.split(":")[1]}/`)), name).toBe(true)
    }
    expect(volumes.size).toBe(agents.length)
    // The identities service creates a key in every agent's volume.
    const identities = strings(service("identities").volumes)
    for (const v of volumes) expect(identities.some((i) => i.startsWith(v.replace(":/data", ":")))).toBe(true)
  })

  it("points every agent's OTLP export at the Collector's OTLP/HTTP receiver, one instance id each", () => {
    const http = String(record(record(record(record(collector.receivers).otlp).protocols).http).endpoint)
    const instances = new Set<string>()
    for (const name of agents) {
      const env = environment(name)
      const target = hostPort(env.OTEL_EXPORTER_OTLP_ENDPOINT ?? "")
      expect(target.host).toBe("otel-collector")
      expect(target.port).toBe(http.split(":").at(-1))
      const id = /service\.instance\.id=([^,]+)/.exec(String(env.OTEL_RESOURCE_ATTRIBUTES))?.[1]
      expect(id, name).toBeDefined()
      instances.add(id ?? "")
    }
    expect(instances.size).toBe(agents.length)
  })

  it("mounts config files that exist, where each program reads them", () => {
    for (const name of Object.keys(services)) {
      for (const [source] of binds(name)) expect(existsSync(join(deploy, source)), `${name}: ${source}`).toBe(true)
    }
    const collectorConfig = strings(service("otel-collector").command).find((a) => a.startsWith("--config="))?.slice("--config=".length)
    expect(binds("otel-collector")).toContainEqual(["./otel-collector.yaml", collectorConfig])
    const promConfig = strings(service("prometheus").command).find((a) => a.startsWith("--config.file="))?.slice("--config.file=".length)
    expect(binds("prometheus")).toContainEqual(["./prometheus.yml", promConfig])
    expect(binds("grafana")).toContainEqual(["./grafana/provisioning", "/etc/grafana/provisioning"])
  })
})

describe("the Collector, Prometheus and Grafana configs", () => {
  it("defines every component the Collector's pipelines use, and exports metrics for Prometheus", () => {
    const pipelines = record(record(collector.service).pipelines)
    for (const [name, pipeline] of Object.entries(pipelines)) {
      for (const kind of ["receivers", "processors", "exporters"]) {
        for (const component of strings(record(pipeline)[kind])) {
          expect(record(collector[kind])[component], `${name} ${kind} ${component}`).toBeDefined()
        }
      }
    }
    expect(strings(record(pipelines.metrics).exporters)).toContain("prometheus")
    expect(strings(record(pipelines.traces).receivers)).toContain("otlp")
  })

  it("has Prometheus scrape the Collector's Prometheus exporter, keeping the agents' job and instance labels", () => {
    const exporter = String(record(record(collector.exporters).prometheus).endpoint)
    const jobs = (prometheus.scrape_configs as Array<unknown>).map(record)
    const job = jobs.find((j) => strings((j.static_configs as Array<unknown>).flatMap((c) => strings(record(c).targets))).some((t) => t.startsWith("otel-collector:")))
    expect(job).toBeDefined()
    const targets = (job?.static_configs as Array<unknown>).flatMap((c) => strings(record(c).targets))
    expect(targets).toContain(`otel-collector:${exporter.split(":").at(-1)}`)
    expect(job?.honor_labels).toBe(true)
  })

  it("provisions the datasource the dashboard uses and loads the dashboard from its mount", () => {
    const ds = (datasources.datasources as Array<unknown>).map(record)
    const prom = ds.find((d) => d.type === "prometheus")
    expect(hostPort(String(prom?.url))).toEqual({ host: "prometheus", port: "9090" })
    const uids = new Set(dashboard.panels.map((p) => p.datasource?.uid).filter((u) => u !== undefined))
    expect([...uids]).toEqual([prom?.uid])
    const provider = (dashboardProviders.providers as Array<unknown>).map(record)[0]
    const path = String(record(provider?.options).path)
    expect(binds("grafana")).toContainEqual(["./grafana/dashboards", path])
    expect(existsSync(join(deploy, "grafana/dashboards", `${dashboard.uid}.json`))).toBe(true)
  })
})
