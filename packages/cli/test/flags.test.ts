/**
 * `sync`'s flags are checked while the command line parses: a bad value fails as a CLI
 * InvalidValue naming the flag and what it expects (main.ts prints it as one usage line), an
 * environment fallback is checked like the flag, and what passes arrives parsed (a Duration, a
 * Redacted token).
 */
import { NodeServices } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Layer, Option, Redacted } from "effect"
import type { Flag } from "effect/cli"
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { existingDataFlag } from "../src/SharedFlags.ts"
import { syncFlags } from "../src/SyncCommand.ts"

/** Parses one flag from `--name value` pairs, with `env` as the environment. */
const parse = <A>(flag: Flag.Flag<A>, flags: Record<string, ReadonlyArray<string>>, env: Record<string, string> = {}) =>
  flag.parse({ arguments: [], flags }).pipe(
    Effect.map(([, value]) => value),
    Effect.provide(Layer.mergeAll(NodeServices.layer, ConfigProvider.layer(ConfigProvider.fromUnknown(env))))
  )

const refusal = <A>(flag: Flag.Flag<A>, flags: Record<string, ReadonlyArray<string>>, env: Record<string, string> = {}) =>
  Effect.flip(parse(flag, flags, env)).pipe(Effect.map((error) => ({ tag: error._tag, message: error.message })))

/** A scratch directory, removed with the test's scope. */
const scratchDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "can-sync-flags-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

describe("sync's flags", () => {
  it.effect("--signal takes a ws:// or wss:// URL, from the flag or CAN_SYNC_SIGNAL", () =>
    Effect.gen(function*() {
      expect(yield* parse(syncFlags.signal, { signal: ["wss://signal.example:443/x"] })).toBe("wss://signal.example:443/x")
      expect(yield* parse(syncFlags.signal, {}, { CAN_SYNC_SIGNAL: "ws://127.0.0.1:7777" })).toBe("ws://127.0.0.1:7777")
      const refused = yield* refusal(syncFlags.signal, { signal: ["http://127.0.0.1:7777"] })
      expect(refused.tag).toBe("InvalidValue")
      expect(refused.message).toContain("--signal")
      expect(refused.message).toContain("ws:// or wss://")
      expect((yield* refusal(syncFlags.signal, {}, { CAN_SYNC_SIGNAL: "127.0.0.1:7777" })).tag).toBe("InvalidValue")
    }))

  it.effect("--poll-interval arrives as a Duration; zero or words are refused", () =>
    Effect.gen(function*() {
      expect(Duration.toMillis(yield* parse(syncFlags.pollInterval, {}))).toBe(30_000)
      for (const [text, millis] of [["500ms", 500], ["2m", 120_000], ["1.5h", 5_400_000], ["45", 45_000]] as const) {
        expect(Duration.toMillis(yield* parse(syncFlags.pollInterval, { "poll-interval": [text] }))).toBe(millis)
      }
      for (const text of ["0s", "soon", "-5s", "5 minutes"]) {
        expect((yield* refusal(syncFlags.pollInterval, { "poll-interval": [text] })).message).toContain("--poll-interval")
      }
    }))

  it.effect("--admin-port and CAN_SYNC_ADMIN_PORT take 0 to 65535; --mtu 1200 to 65535", () =>
    Effect.gen(function*() {
      expect(yield* parse(syncFlags.adminPort, { "admin-port": ["0"] })).toEqual(Option.some(0))
      expect(yield* parse(syncFlags.adminPort, {}, { CAN_SYNC_ADMIN_PORT: "65535" })).toEqual(Option.some(65535))
      expect((yield* refusal(syncFlags.adminPort, { "admin-port": ["65536"] })).message).toContain("0 to 65535")
      expect((yield* refusal(syncFlags.adminPort, {}, { CAN_SYNC_ADMIN_PORT: "-1" })).tag).toBe("InvalidValue")
      expect(yield* parse(syncFlags.mtu, { mtu: ["4000"] })).toEqual(Option.some(4000))
      expect(yield* parse(syncFlags.mtu, {})).toEqual(Option.none())
      expect((yield* refusal(syncFlags.mtu, { mtu: ["576"] })).message).toContain("1200 to 65535")
    }))

  it.effect("bandwidth limits take a rate (10MB/s, 512KiB/s, bytes per second), the agent-wide ones also from the environment", () =>
    Effect.gen(function*() {
      expect(yield* parse(syncFlags.maxSendRate, { "max-send-rate": ["10MB/s"] })).toEqual(Option.some(10_000_000))
      expect(yield* parse(syncFlags.maxRecvRate, {}, { CAN_SYNC_MAX_RECV_RATE: "512KiB/s" })).toEqual(Option.some(524_288))
      expect(yield* parse(syncFlags.maxSendRatePerPeer, { "max-send-rate-per-peer": ["1000000"] })).toEqual(Option.some(1_000_000))
      expect(yield* parse(syncFlags.maxRecvRatePerPeer, {})).toEqual(Option.none())
      const refused = yield* refusal(syncFlags.maxSendRate, { "max-send-rate": ["fast"] })
      expect(refused.tag).toBe("InvalidValue")
      expect(refused.message).toContain("--max-send-rate")
      expect(refused.message).toContain("10MB/s")
      expect((yield* refusal(syncFlags.maxSendRate, {}, { CAN_SYNC_MAX_SEND_RATE: "0" })).tag).toBe("InvalidValue")
    }))

  it.effect("--peers-file and CAN_SYNC_PEERS_FILE must name a readable file", () =>
    Effect.gen(function*() {
      const dir = yield* scratchDir
      const file = join(dir, "peers")
      writeFileSync(file, "# none yet\n")
      expect(yield* parse(syncFlags.peersFile, { "peers-file": [file] })).toEqual(Option.some(file))
      expect(yield* parse(syncFlags.peersFile, {}, { CAN_SYNC_PEERS_FILE: file })).toEqual(Option.some(file))
      expect((yield* refusal(syncFlags.peersFile, { "peers-file": [join(dir, "missing")] })).message).toContain("--peers-file")
      expect((yield* refusal(syncFlags.peersFile, {}, { CAN_SYNC_PEERS_FILE: join(dir, "missing") })).message).toContain("readable file")
      expect((yield* refusal(syncFlags.peersFile, { "peers-file": [dir] })).tag).toBe("InvalidValue") // a directory
    }).pipe(Effect.scoped))

  it.effect("--token and CAN_SYNC_TOKEN arrive redacted; --can-url must be http(s)", () =>
    Effect.gen(function*() {
      const token = yield* parse(syncFlags.token, { token: ["s3cret"] })
      expect(Option.map(token, Redacted.value)).toEqual(Option.some("s3cret"))
      expect(String(Option.getOrThrow(token))).not.toContain("s3cret")
      const fromEnv = yield* parse(syncFlags.token, {}, { CAN_SYNC_TOKEN: "from-env" })
      expect(Option.map(fromEnv, Redacted.value)).toEqual(Option.some("from-env"))
      expect(yield* parse(syncFlags.canUrl, { "can-url": ["https://can.example/api"] })).toEqual(Option.some("https://can.example/api"))
      expect((yield* refusal(syncFlags.canUrl, { "can-url": ["ftp://can.example"] })).message).toContain("http:// or https://")
    }))

  it.effect("--data of a read-only command must hold a store; a typo is refused, not created", () =>
    Effect.gen(function*() {
      const dir = yield* scratchDir
      mkdirSync(join(dir, "store", "objects"), { recursive: true })
      expect(yield* parse(existingDataFlag, { data: [join(dir, "store")] })).toBe(join(dir, "store"))
      expect(yield* parse(existingDataFlag, {}, { CAN_SYNC_DATA: join(dir, "store") })).toBe(join(dir, "store"))
      const typo = yield* refusal(existingDataFlag, { data: [join(dir, "stroe")] })
      expect(typo.tag).toBe("InvalidValue")
      expect(typo.message).toContain("--data")
      expect(typo.message).toContain("check --data or CAN_SYNC_DATA")
      expect(existsSync(join(dir, "stroe"))).toBe(false)
      expect((yield* refusal(existingDataFlag, { data: [dir] })).tag).toBe("InvalidValue") // a directory, but no store in it
    }).pipe(Effect.scoped))
})
