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
import { eventually } from "../kit/Eventually.ts"
import { tempDir } from "../kit/Files.ts"
import { freePort, httpStatus } from "../kit/Net.ts"
import { cleanEnv, cli, cliMain, repoRoot as root, runOk, spawn } from "../kit/Process.ts"
import * as Dockerfile from "./Dockerfile.ts"
import * as OtlpReceiver from "./OtlpReceiver.ts"

/** `can-sync ARGS` to completion; a non-zero exit fails the test. */
const cliOk = (args: ReadonlyArray<string>) => runOk(process.execPath, [cliMain, ...args], { name: `can-sync ${args[0] ?? ""}` })
/** A shell script to completion, in `cwd`. */
const sh = (script: string, env: NodeJS.ProcessEnv, cwd = root) => runOk("sh", ["-ec", script], { env, cwd, deadline: "100 seconds" })

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
        yield* sh(`${command} --prefer-offline --reporter=silent`, toolPath, app)
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
      const dir = yield* tempDir("identities")
      for (const sub of ["agents", "peers"]) mkdirSync(join(dir, sub))
      const map = mapper({ "/app/": `${root}/`, "/agents/": `${dir}/agents/`, "/peers/": `${dir}/peers/` })
      // Handing the volumes to the image's `node` user needs the image; everything else runs as written.
      const script = map(composeScript("identities")).replace(/^\s*chown .*$/m, "true")
      yield* sh(script, toolPath)
      const ids = readFileSync(join(dir, "peers", "ids"), "utf8").trim().split("\n")
      expect(ids).toHaveLength(3)
      for (const [i, agent] of ["a", "b", "c"].entries()) {
        expect(ids[i]).toMatch(/^[a-z2-7]{32}$/)
        const again = (yield* cliOk(["id", "--data", join(dir, "agents", agent)])).stdout.trim()
        expect(again).toBe(ids[i])
      }
    }), { timeout: 120_000 })

  it.live("the ENTRYPOINT with its CMD and ENV becomes ready, passes its HEALTHCHECK and exports telemetry", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.start
      const dir = yield* tempDir("entrypoint")
      const [app, data, peers] = [join(dir, "app"), join(dir, "data"), join(dir, "peers")]
      mkdirSync(peers)
      yield* buildStage(app)
      // The allow-list compose would mount: another agent's id (and this agent's own, which it ignores).
      const other = (yield* cliOk(["id", "--data", join(dir, "other")])).stdout.trim()
      const self = (yield* cliOk(["id", "--data", data])).stdout.trim()
      writeFileSync(join(peers, "ids"), `${self}\n${other}\n`)

      const signalPort = yield* freePort
      const signalServer = yield* cli(["signal", "--host", "127.0.0.1", "--port", String(signalPort)])
      yield* signalServer.waitFor("stdout", /signaling at/, "30 seconds")

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
      const agent = yield* spawn(process.execPath, argv.slice(1), { env, cwd: app, name: "agent-a", grace: "20 seconds" })

      const readyz = `http://127.0.0.1:${adminPort}/readyz`
      const status = yield* eventually(
        "/readyz to answer 200",
        agent.alive.pipe(Effect.andThen(httpStatus(readyz)), Effect.map((s) => (s === 200 ? s : undefined))),
        "60 seconds",
        { diagnostics: () => agent.tail() }
      )
      expect(status).toBe(200)
      expect(agent.running).toBe(true)

      // Docker runs HEALTHCHECK inside the container, with the image's environment.
      const healthcheck = image.healthcheck?.cmd ?? []
      expect(healthcheck[0]).toBe("node")
      yield* runOk(process.execPath, healthcheck.slice(1), { env })

      // The agent keeps its store and identity in the volume; a clean stop flushes its telemetry
      // (the exporter the image installed was loaded and worked).
      expect(existsSync(join(data, "identity.key"))).toBe(true)
      expect((yield* agent.stop("SIGTERM", "20 seconds")).code).toBe(0)
      const fromAgent = receiver.points().filter((p) => p.resource["service.instance.id"] === "agent-a")
      expect(fromAgent.map((p) => p.name)).toContain("cansync.store.assets")
      expect(receiver.spans().some((s) => s.resource["service.instance.id"] === "agent-a")).toBe(true)
      // Stopped, the image's healthcheck fails, as Docker would see it.
      const after = yield* runOk(process.execPath, healthcheck.slice(1), { env }).pipe(Effect.as("healthy"), Effect.orElseSucceed(() => "unhealthy"))
      expect(after).toBe("unhealthy")
    }), { timeout: 120_000 })
})
