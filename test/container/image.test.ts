/**
 * The container image, for real: deploy/Dockerfile is built with buildah (chroot isolation: no
 * container daemon runs here) on a stand-in for its pinned base, then run as a deployment runs it —
 * a signaling container and two agent containers, each agent in a network namespace of its own
 * behind a router namespace — using the image's own ENTRYPOINT, CMD, ENV, USER and HEALTHCHECK.
 * Takes minutes, so it runs when CAN_SYNC_IMAGE_TEST=1 (`.ci/run` sets it; it needs root, buildah
 * and debootstrap, which `.ci/run` installs).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { eventually, notYet } from "../kit/Eventually.ts"
import { tempDir } from "../kit/Files.ts"
import { repoRoot, run, runOk, spawn } from "../kit/Process.ts"
import type { Child } from "../kit/Process.ts"

const BASE = "localhost/can-sync-test-base:24"
const IMAGE = "localhost/can-sync:image-test"
const tag = `csimg${process.pid % 100_000}`

const why = process.env.CAN_SYNC_IMAGE_TEST !== "1"
  ? "CAN_SYNC_IMAGE_TEST=1 is not set (.ci/run sets it)"
  : process.getuid?.() !== 0
  ? "it needs root (network namespaces, buildah)"
  : undefined
if (why !== undefined) console.log(`container image test skipped: ${why}`)

interface ImageConfig {
  readonly User: string
  readonly Env: ReadonlyArray<string>
  readonly Entrypoint: ReadonlyArray<string>
  readonly Cmd: ReadonlyArray<string>
  readonly Healthcheck: { readonly Test: ReadonlyArray<string> }
}

const sh = (command: string, ...args: Array<string>) => runOk(command, args, { deadline: "60 seconds" })

/** A network namespace for the length of the scope; whatever still runs in it is killed at the end. */
const namespace = (name: string) =>
  Effect.acquireRelease(
    sh("ip", "netns", "add", name).pipe(Effect.andThen(sh("ip", "-n", name, "link", "set", "lo", "up")), Effect.as(name)),
    () =>
      run("sh", ["-c", `ip netns pids ${name} | xargs -r kill -9; ip netns del ${name}`], { deadline: "30 seconds" }).pipe(Effect.ignore)
  )

/** A container from the image for the length of the scope. */
const container = (name: string) =>
  Effect.acquireRelease(
    sh("buildah", "from", "--quiet", "--name", name, IMAGE).pipe(Effect.as(name)),
    () => run("buildah", ["rm", name], { deadline: "30 seconds" }).pipe(Effect.ignore)
  )

/** `buildah run` in container `name` inside namespace `ns` (a command of the container's own). */
const inContainer = (ns: string, name: string, user: string, argv: ReadonlyArray<string>, env: ReadonlyArray<string> = []) => [
  "netns", "exec", ns, "buildah", "run", "--isolation", "chroot", "--user", user,
  ...env.flatMap((e) => ["--env", e]), name, "--", ...argv
]

/** Router `hub` with one /24 per agent namespace; returns the hub's address on each link. */
const wire = (hub: string, agents: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    yield* sh("ip", "netns", "exec", hub, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    const gateways: Array<string> = []
    for (const [i, ns] of agents.entries()) {
      const net = `10.231.${i + 1}`
      const [outer, inner] = [`${tag}h${i}`, `${tag}a${i}`]
      yield* sh("ip", "link", "add", outer, "netns", hub, "type", "veth", "peer", "name", inner, "netns", ns)
      yield* sh("ip", "-n", hub, "addr", "add", `${net}.1/24`, "dev", outer)
      yield* sh("ip", "-n", hub, "link", "set", outer, "up")
      yield* sh("ip", "-n", ns, "addr", "add", `${net}.2/24`, "dev", inner)
      yield* sh("ip", "-n", ns, "link", "set", inner, "up")
      yield* sh("ip", "-n", ns, "route", "add", "default", "via", `${net}.1`)
      gateways.push(`${net}.1`)
    }
    return gateways
  })

const hashesIn = (ns: string, name: string, user: string) =>
  runOk("ip", inContainer(ns, name, user, ["can-sync", "ls", "--data", "/data", "--json"]), { deadline: "60 seconds" }).pipe(
    Effect.map((ran) => (JSON.parse(ran.stdout) as ReadonlyArray<{ readonly hash: string }>).map((a) => a.hash).sort())
  )

const diagnostics = (children: ReadonlyArray<Child>) => () =>
  children.map((c) => `--- ${c.name} (${c.running ? "running" : `exited ${JSON.stringify(c.exit)}`})\n${c.stderr.slice(-3000)}`).join("\n")

describe.skipIf(why !== undefined)("deploy/Dockerfile, built and run with buildah", () => {
  it.live("two agent containers and a signaling container converge; the HEALTHCHECK passes inside a running agent", () =>
    Effect.gen(function*() {
      const work = yield* tempDir("can-sync-image-")
      yield* runOk("bash", [join(repoRoot, "test/container/base-image.sh"), BASE, join(work, "base")], { deadline: "15 minutes" })
      yield* Effect.addFinalizer(() => run("buildah", ["rmi", "--force", IMAGE], { deadline: "60 seconds" }).pipe(Effect.ignore))
      yield* runOk("buildah", [
        "bud", "--isolation", "chroot", "--format", "docker", "--quiet", "-f", "deploy/Dockerfile",
        "--build-arg", `NODE_IMAGE=${BASE}`, "-t", IMAGE, "."
      ], { deadline: "15 minutes" })
      const inspected = yield* sh("buildah", "inspect", "--type", "image", IMAGE)
      const config = (JSON.parse(inspected.stdout) as { Docker: { config: ImageConfig } }).Docker.config
      expect(config.User).toBe("node")
      expect(config.Entrypoint).toEqual(["node", "/app/packages/cli/src/main.ts", "sync"])

      const [hub, nsA, nsB] = [yield* namespace(`${tag}-hub`), yield* namespace(`${tag}-a`), yield* namespace(`${tag}-b`)]
      const [gwA, gwB] = yield* wire(hub, [nsA, nsB])
      const [signal, agentA, agentB] = [yield* container(`${tag}-signal`), yield* container(`${tag}-a`), yield* container(`${tag}-b`)]
      const user = config.User

      // Each agent's key and peer id, and some content of its own, before anything syncs.
      const ids: Array<string> = []
      for (const [ns, name] of [[nsA, agentA], [nsB, agentB]] as const) {
        const ran = yield* runOk("ip", inContainer(ns, name, user, ["can-sync", "id", "--data", "/data"]))
        ids.push(/[a-z2-7]{32}/.exec(ran.stdout)?.[0] ?? "")
        yield* runOk("ip", inContainer(ns, name, user, [
          "sh", "-ec", "for n in 1 2 3; do head -c $((n * 700000)) /dev/urandom > /tmp/asset$n; done; can-sync add --data /data /tmp/asset1 /tmp/asset2 /tmp/asset3"
        ]))
      }
      const peers = join(work, "peers")
      // Like compose.yaml's `peers` volume: outside /data, which buildah mounts as the image's VOLUME.
      writeFileSync(peers, `${ids.join("\n")}\n`)
      for (const name of [agentA, agentB]) yield* sh("buildah", "copy", "--quiet", "--chown", "1000:1000", name, peers, "/peers/ids")
      const before = [yield* hashesIn(nsA, agentA, user), yield* hashesIn(nsB, agentB, user)]
      expect(before.map((h) => h.length)).toEqual([3, 3])

      const children: Array<Child> = []
      const start = (ns: string, name: string, argv: ReadonlyArray<string>, env: ReadonlyArray<string> = []): Effect.Effect<Child, never, Scope.Scope> =>
        spawn("ip", inContainer(ns, name, user, argv, env), { name, stop: "SIGKILL" }).pipe(Effect.tap((c) => Effect.sync(() => children.push(c))))
      yield* start(hub, signal, ["can-sync", "signal", "--host", "0.0.0.0", "--port", "7777"])
      // The agents run exactly the image's ENTRYPOINT + CMD; only the deployment's environment is added.
      const agentArgv = [...config.Entrypoint, ...config.Cmd]
      yield* start(nsA, agentA, agentArgv, [`CAN_SYNC_SIGNAL=ws://${gwA}:7777`, "CAN_SYNC_PEERS_FILE=/peers/ids"])
      yield* start(nsB, agentB, agentArgv, [`CAN_SYNC_SIGNAL=ws://${gwB}:7777`, "CAN_SYNC_PEERS_FILE=/peers/ids"])

      const all = [...before[0]!, ...before[1]!].sort()
      yield* eventually(
        "both agent containers to hold all six assets",
        Effect.gen(function*() {
          const now = [yield* hashesIn(nsA, agentA, user), yield* hashesIn(nsB, agentB, user)]
          return now.every((h) => JSON.stringify(h) === JSON.stringify(all)) ? true : notYet(now.map((h) => h.length))
        }),
        "120 seconds",
        { interval: "1 second", diagnostics: diagnostics(children) }
      )

      // The image's HEALTHCHECK command, run inside the agent's container: healthy while it serves…
      const [kind, ...check] = config.Healthcheck.Test
      expect(kind).toBe("CMD")
      const healthy = yield* run("ip", inContainer(nsA, agentA, user, check), { deadline: "30 seconds" })
      expect(healthy.code, healthy.stderr).toBe(0)
      // …and failing where no agent serves (the signaling container has no admin port).
      const unhealthy = yield* run("ip", inContainer(hub, signal, user, check), { deadline: "30 seconds" })
      expect(unhealthy.code).not.toBe(0)
      // The image runs can-sync's build of libdatachannel (vendor/datachannel), not upstream's.
      const library = yield* runOk("ip", inContainer(nsA, agentA, user, [
        "sh", "-ec", "cd /app/packages/transport && node -e \"import('node-datachannel').then((m) => console.log(m.default.getLibraryVersion()))\""
      ]))
      expect(library.stdout.trim()).toMatch(/-cansync\.\d+$/)
    }).pipe(Effect.scoped), 40 * 60_000)
})
