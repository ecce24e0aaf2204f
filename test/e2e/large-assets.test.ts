/**
 * Large assets between agents in separate processes: 64 MiB each way at once arrive intact, and an
 * agent killed with SIGKILL in the middle of receiving one recovers on restart, leaving no temp
 * file behind and never listing a partial asset.
 */
import { stat } from "node:fs/promises"
import { join } from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import type { AssetRecord } from "./harness.ts"
import { Scenario, TEST_TIMEOUT } from "./harness.ts"

const MiB = 1024 * 1024

describe("can-sync sync: large assets", () => {
  let scenario: Scenario | undefined
  afterEach(async () => {
    await scenario?.close()
    scenario = undefined
  })

  it("64 MiB each way at once converge, and every byte verifies on both sides", async () => {
    const s = (scenario = await Scenario.create("large"))
    const a = s.path("a")
    const b = s.path("b")
    const [bigA, bigB] = await Promise.all([s.largeFile("big-a", "large/a", 64 * MiB), s.largeFile("big-b", "large/b", 64 * MiB)])
    const [signal, [hashA], [hashB]] = await Promise.all([s.signal(), s.add(a, [bigA.path]), s.add(b, [bigB.path])])
    // The store names content by its SHA-256.
    expect(hashA).toBe(bigA.hash)
    expect(hashB).toBe(bigB.hash)

    const [idA, idB] = await Promise.all([s.id(a), s.id(b)])
    const [agentA, agentB] = await Promise.all([
      s.agent("A", { data: a, signal: signal.url, peers: [idB] }),
      s.agent("B", { data: b, signal: signal.url, peers: [idA] })
    ])
    const listing = await s.converged([a, b], { expected: new Set([bigA.hash, bigB.hash]) })
    expect(listing.map((r) => r.size)).toEqual([64 * MiB, 64 * MiB])

    for (const [agent, peer] of [[agentA, idB], [agentB, idA]] as const) {
      expect(await agent.peer(peer)).toMatchObject({
        assetsReceived: 1,
        bytesReceived: 64 * MiB,
        assetsSent: 1,
        bytesSent: 64 * MiB,
        verificationFailures: 0,
        redundantReceives: 0
      })
    }
    // Rehash everything on disk: the received copies are byte for byte what was added.
    for (const data of [a, b]) {
      const verified = await s.verify(data)
      expect(verified.stdout).toContain("2 assets checked, 0 damaged")
      expect(verified.code).toBe(0)
      expect(await s.tmpFiles(data)).toEqual([])
    }
  }, TEST_TIMEOUT)

  it("an agent killed with SIGKILL while receiving recovers on restart: no leftover, no partial asset listed", async () => {
    const s = (scenario = await Scenario.create("sigkill"))
    const a = s.path("a")
    const b = s.path("b")
    const big = await s.largeFile("big", "sigkill/big", 128 * MiB)
    const [signal, [hash]] = await Promise.all([s.signal(), s.add(a, [big.path], { description: "big one" })])
    const [idA, idB] = await Promise.all([s.id(a), s.id(b)])
    await s.agent("A", { data: a, signal: signal.url, peers: [idB] })
    const first = await s.agent("B", { data: b, signal: signal.url, peers: [idA] })

    // Wait until B is writing the asset into a temp file: the transfer is under way.
    const partial = await s.wait("B to be receiving the large asset", async () => {
      for (const name of await s.tmpFiles(b)) {
        const size = await stat(join(b, "tmp", name)).then((st) => st.size, () => 0)
        if (size >= 4 * MiB) return { name, size }
      }
      return undefined
    }, 60_000, 10)
    expect(partial.size).toBeLessThan(big.size)
    expect(await first.proc.stop("SIGKILL")).toEqual({ code: null, signal: "SIGKILL" })
    // The kill interrupted a write: its temp file is still there, and no object file exists.
    expect(await s.tmpFiles(b)).toContain(partial.name)
    const objectPath = join(b, "objects", hash.slice(0, 2), hash)
    expect(await stat(objectPath).then(() => "present", () => "absent")).toBe("absent")

    const second = await s.agent("B restarted", { data: b, signal: signal.url, peers: [idA] })
    // Opening the store removed the dead process's temp file.
    expect((await s.tmpFiles(b)).filter((name) => name.startsWith(`${first.proc.pid}-`))).toEqual([])

    // From the restart on, B never lists the asset before its whole content is in place.
    const violations: Array<string> = []
    const inspect = async (data: string, records: ReadonlyArray<AssetRecord>) => {
      const listed = records.find((r) => r.hash === hash)
      if (data !== b || listed === undefined) return
      if (listed.size !== big.size) violations.push(`listed with size ${listed.size}`)
      const onDisk = await stat(objectPath).then((st) => st.size, () => -1)
      if (onDisk !== big.size) violations.push(`listed while its file holds ${onDisk} bytes`)
    }
    await s.converged([a, b], { expected: new Set([hash]), inspect })
    expect(violations).toEqual([])

    const received = await s.counters(second, idA, (p) => p.assetsReceived >= 1)
    expect(received).toMatchObject({ bytesReceived: big.size, verificationFailures: 0 })
    const verified = await s.verify(b)
    expect(verified.stdout).toContain("1 assets checked, 0 damaged")
    expect(verified.code).toBe(0)
    expect(await s.tmpFiles(b)).toEqual([])
  }, TEST_TIMEOUT)
})
