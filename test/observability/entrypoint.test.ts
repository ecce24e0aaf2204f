/**
 * The container's command without a container engine: the Dockerfile's build stage is replayed
 * into a temp /app (its COPYs, its `pnpm install`), then its ENTRYPOINT + CMD + ENV (with compose's
 * agent environment) run from there, with only paths and hosts mapped (/app, /data, /peers → temp
 * dirs, the signal and collector hosts → local stand-ins, the admin port → a free one). `/readyz`
 * must answer 200 and the HEALTHCHECK command pass. Compose's `identities` script runs too.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Yaml } from "effect/encoding"
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { basename, delimiter, dirname, join } from "node:path"
import * as Dockerfile from "./Dockerfile.ts"
import * as OtlpReceiver from "./OtlpReceiver.ts"
import { cleanEnv, cli, cliMain, eventually, freePort, httpStatus, root, run, start, tempDir } from "./Processes.ts"

const deploy = join(root, "deploy")
const image = Dockerfile.parse(readFileSync(join(deploy, "Dockerfile"), "utf8"))
type Yamlish = { readonly [key: string]: unknown }
const record = (u: unknown): Yamlish => (typeof u === "object" && u !== null && !Array.isArray(u) ? (u as Yamlish) : {})
const services = record(record(Yaml.parse(readFileSync(join(deploy, "compose.yaml"), "utf8"))).services)
const composeEnv = (name: string): Record<string, string> =>
  Object.fromEntries(Object.entries(record(record(services[name]).environment)).map(([k, v]) => [k, String(v)]))
/** Compose turns `$$` into `$` before the shell sees it. */
const composeScript = (name: string) => {
  const entrypoint = record(services[name]).entrypoint
  return (Array.isArray(entrypoint) ? String(entrypoint.at(-1)) : "").replaceAll("$$", "$")
}

/** pnpm 10, from PATH or the project's own toolchain directory. */
const pnpmDir = [...(process.env.PATH ?? "").split(delimiter), join(root, ".tooling", "node_modules", ".bin")]
  .find((d) => d !== "" && existsSync(join(d, "pnpm"))) ?? ""
const toolPath = cleanEnv({ PATH: [dirname(process.execPath), pnpmDir, process.env.PATH ?? ""].join(delimiter), CI: "true" })

/**
 * Replays the Dockerfile's build stage into `app` (its WORKDIR): every COPY from the context, and
 * its `pnpm install` (with the local store instead of the cache mount). The runtime stage copies
 * that /app as it is.
 */
const buildStage = (app: string) =>
  Effect.gen(function*() {
    const [build] = image.stages
    expect(build?.instructions.find((i) => i.keyword === "WORKDIR")?.args).toBe("/app")
    for (const ins of build?.instructions ?? []) {
      if (ins.keyword === "COPY" && !ins.args.includes("--from")) {
        const parts = ins.args.split(/\s+/).filter((p) => !p.startsWith("--"))
        const dest = parts.at(-1) ?? ""
        for (const source of parts.slice(0, -1)) {
          const target = dest.endsWith("/") ? join(app, dest, basename(source)) : join(app, dest)
          cpSync(join(root, source), target, { recursive: true })
        }
      }
      if (ins.keyword === "RUN" && ins.args.includes("pnpm install")) {
        const command = ins.args.replace(/--mount=\S+/g, "").replace(/--store-dir\s+\S+/g, "").trim()
        yield* run(["sh", "-ec", `${command} --prefer-offline --reporter=silent`], toolPath, app)
      }
    }
    const runtime = image.stages.at(-1)?.instructions ?? []
    expect(runtime.some((i) => i.keyword === "COPY" && /--from=build\s+\/app\s+\/app/.test(i.args))).toBe(true)
  })

/** Replaces every occurrence of each key (longest first) in a string. */
const mapper = (mapping: Record<string, string>) => {
  const keys = Object.keys(mapping).sort((a, b) => b.length - a.length)
  return (s: string) => keys.reduce((acc, key) => acc.split(key).join(mapping[key] ?? key), s)
}

describe("the container's command, run as the Dockerfile and compose.yaml say", () => {
  it.live("compose's identities script gives every agent a key and lists their peer ids", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("can-sync-identities")
      for (const sub of ["agents", "peers"]) mkdirSync(join(dir, sub))
      const map = mapper({ "/app/": `${root}/`, "/agents/": `${dir}/agents/`, "/peers/": `${dir}/peers/` })
      // Handing the volumes to the image's `node` user needs the image; everything else runs as written.
      const script = map(composeScript("identities")).replace(/^\s*chown .*$/m, "true")
      yield* run(["sh", "-ec", script], toolPath)
      const ids = readFileSync(join(dir, "peers", "ids"), "utf8").trim().split("\n")
      expect(ids).toHaveLength(3)
      for (const [i, agent] of ["a", "b", "c"].entries()) {
        expect(ids[i]).toMatch(/^[a-z2-7]{32}$/)
        const again = (yield* cli(["id", "--data", join(dir, "agents", agent)])).stdout.trim()
        expect(again).toBe(ids[i])
      }
    }), { timeout: 120_000 })

  it.live("the ENTRYPOINT with its CMD and ENV becomes ready, passes its HEALTHCHECK and exports telemetry", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.start
      const dir = yield* tempDir("can-sync-entrypoint")
      const [app, data, peers] = [join(dir, "app"), join(dir, "data"), join(dir, "peers")]
      mkdirSync(peers)
      yield* buildStage(app)
      // The allow-list compose would mount: another agent's id (and this agent's own, which it ignores).
      const other = (yield* cli(["id", "--data", join(dir, "other")])).stdout.trim()
      const self = (yield* cli(["id", "--data", data])).stdout.trim()
      writeFileSync(join(peers, "ids"), `${self}\n${other}\n`)

      const signalPort = yield* freePort
      const signalServer = yield* start([process.execPath, cliMain, "signal", "--host", "127.0.0.1", "--port", String(signalPort)], cleanEnv())
      yield* eventually("the signaling server", Effect.sync(() => (signalServer.output().stdout.includes("signaling at") ? true : undefined)))

      const imagePort = image.env.CAN_SYNC_ADMIN_PORT ?? ""
      const adminPort = String(yield* freePort)
      const collector = new URL(composeEnv("agent-a").OTEL_EXPORTER_OTLP_ENDPOINT ?? "")
      const signal = new URL(composeEnv("agent-a").CAN_SYNC_SIGNAL ?? "")
      const map = mapper({
        "/app/": `${app}/`,
        "/data": data,
        "/peers/": `${peers}/`,
        [`${signal.protocol}//${signal.host}`]: `ws://127.0.0.1:${signalPort}`,
        [`${collector.protocol}//${collector.host}`]: receiver.url
      })
      const mapPort = (s: string) => (s === imagePort ? adminPort : s)
      const argv = [...image.entrypoint, ...image.cmd].map(map).map(mapPort)
      expect(argv[0]).toBe("node")
      expect(argv[1]).toBe(join(app, "packages", "cli", "src", "main.ts"))
      const env = cleanEnv(Object.fromEntries(
        Object.entries({ ...image.env, ...composeEnv("agent-a") }).map(([k, v]) => [k, mapPort(map(v))])
      ))
      const agent = yield* start([process.execPath, ...argv.slice(1)], env, app)

      const readyz = `http://127.0.0.1:${adminPort}/readyz`
      const status = yield* eventually("/readyz to answer 200", Effect.map(httpStatus(readyz), (s) => (s === 200 ? s : undefined)), 60)
      expect(status).toBe(200)
      expect(agent.exitCode()).toBeUndefined()

      // Docker runs HEALTHCHECK inside the container, with the image's environment.
      const healthcheck = image.healthcheck?.cmd ?? []
      expect(healthcheck[0]).toBe("node")
      yield* run([process.execPath, ...healthcheck.slice(1)], env)

      // The agent keeps its store and identity in the volume; a clean stop flushes its telemetry
      // (the OpenTelemetry packages the image installed were loaded and worked).
      expect(existsSync(join(data, "identity.key"))).toBe(true)
      expect(yield* agent.stop()).toBe(0)
      const fromAgent = receiver.points().filter((p) => p.resource["service.instance.id"] === "agent-a")
      expect(fromAgent.map((p) => p.name)).toContain("cansync.store.assets")
      expect(receiver.spans().some((s) => s.resource["service.instance.id"] === "agent-a")).toBe(true)
      // Stopped, the image's healthcheck fails, as Docker would see it.
      const after = yield* run([process.execPath, ...healthcheck.slice(1)], env).pipe(Effect.as("healthy"), Effect.orElseSucceed(() => "unhealthy"))
      expect(after).toBe("unhealthy")
    }), { timeout: 120_000 })
})
