/**
 * deploy/compose.yaml as Debian's own `docker-compose` (1.29, installed by `.ci/run`) reads it:
 * `docker-compose config` validates the file against its schema without a container engine. The
 * file avoids what only Compose v2 accepts (a top-level `name:`), so both read it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { join } from "node:path"
import { repoRoot, run } from "../kit/Process.ts"

const available = (() => {
  try {
    execFileSync("docker-compose", ["version"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()
if (!available) console.log("compose test skipped: no docker-compose on PATH (`apt-get install docker-compose`; .ci/run installs it)")

describe.skipIf(!available)("deploy/compose.yaml", () => {
  it.live("is valid for Debian's docker-compose, every service resolved", () =>
    Effect.gen(function*() {
      const ran = yield* run("docker-compose", ["-f", join(repoRoot, "deploy", "compose.yaml"), "config", "--services"], {
        deadline: "60 seconds",
        cwd: join(repoRoot, "deploy")
      })
      expect(ran.code, ran.stderr).toBe(0)
      expect(ran.stdout.split("\n").filter((s) => s !== "").sort()).toEqual(
        ["agent-a", "agent-b", "agent-c", "coturn", "grafana", "identities", "otel-collector", "prometheus", "signal"]
      )
    }))
})
