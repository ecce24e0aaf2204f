/**
 * `--json` on the transport commands that print: `id --json` and `signal --json` print one JSON
 * object on stdout (the same facts as their plain line), through the real `can-sync` process.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { join } from "node:path"
import { tempDir } from "../../../test/kit/Files.ts"
import { cli, runCli } from "../../../test/kit/Process.ts"

describe("--json on id and signal", () => {
  it.live("id --json prints {peerId}, the id the plain form prints", () =>
    Effect.gen(function*() {
      const data = join(yield* tempDir("cli-id-json"), "a")
      const plain = yield* runCli(["id", "--data", data])
      const json = yield* runCli(["id", "--data", data, "--json"])
      expect(json.code).toBe(0)
      expect(JSON.parse(json.stdout)).toEqual({ peerId: plain.stdout.trim() })
    }).pipe(Effect.scoped))

  it.live("signal --json prints {url, host, port} once it listens", () =>
    Effect.gen(function*() {
      const server = yield* cli(["signal", "--port", "0", "--json"])
      const [line] = yield* server.waitFor("stdout", /^\{.*\}$/m, "30 seconds")
      const printed = JSON.parse(line!) as { url: string; host: string; port: number }
      expect(printed.host).toBe("127.0.0.1")
      expect(printed.url).toBe(`ws://127.0.0.1:${printed.port}`)
      expect(printed.port).toBeGreaterThan(0)
    }).pipe(Effect.scoped))
})
