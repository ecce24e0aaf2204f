/**
 * The status page on the admin port (`GET /`), in headless Chromium: agent A's page, opened
 * before its peer exists, shows B as never connected, then follows the SSE feed (`GET /events`)
 * while B starts and the two converge — B live, both directions at 100 %, the transfers in the
 * recent list — with no request anywhere but the agent, and no sideways scrolling on a phone.
 * Screenshots go to the test output dir (Artifacts.ts). Skipped without Chromium.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { existsSync } from "node:fs"
import type { Page } from "playwright-core"
import { chromium } from "playwright-core"
import { notYet } from "../kit/Eventually.ts"
import * as Artifacts from "../observability/Artifacts.ts"
import { all, Scenario, TEST_TIMEOUT } from "../e2e/Scenario.ts"

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"
const chromiumMissing = !existsSync(CHROMIUM)
if (chromiumMissing) console.warn(`status page test skipped: ${CHROMIUM} not found (install it with: apt-get install -y chromium)`)

const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]

/** What the page shows of one peer, read from its DOM. */
interface PeerCard {
  readonly state: string | undefined
  readonly text: string
  readonly received: { readonly percent: number; readonly assetsDone: number; readonly assetsToGo: number } | undefined
  readonly sent: { readonly percent: number; readonly assetsDone: number; readonly assetsToGo: number } | undefined
}

/** The parts of `/status` checked here. */
interface StatusJson {
  readonly peers: ReadonlyArray<{ readonly peer: string; readonly received: { readonly bytesDone: number } }>
}

const card = (page: Page, peer: string) =>
  Effect.promise(() =>
    page.evaluate((id): PeerCard | undefined => {
      const el = Array.from(document.querySelectorAll("#peers .peer") as NodeListOf<HTMLElement>).find((e) => e.dataset.peer === id)
      if (el === undefined) return undefined
      const dir = (name: string) => {
        const d = el.querySelector(`.dir[data-direction="${name}"]`) as HTMLElement | null
        return d === null
          ? undefined
          : { percent: Number(d.dataset.percent), assetsDone: Number(d.dataset.assetsDone), assetsToGo: Number(d.dataset.assetsToGo) }
      }
      return { state: el.dataset.state, text: el.textContent ?? "", received: dir("received"), sent: dir("sent") }
    }, peer)
  )

describe.skipIf(chromiumMissing)("the status page (GET / on the admin port, headless Chromium)", () => {
  it.live("shows a peer never connected, then two peers converging, live over SSE; fits a phone", () =>
    Effect.gen(function*() {
      const s = yield* Scenario.make("status-page")
      const [a, b] = [s.path("a"), s.path("b")]
      const mine = yield* s.smallFiles("mine", "page/a", 3)
      const theirs = yield* s.smallFiles("theirs", "page/b", 5)
      const big = yield* s.largeFile("big", "page/big", 6 * 1024 * 1024)
      const [signal, , idB] = yield* all([
        s.signal(),
        s.id(a),
        s.id(b),
        s.add(a, mine.map((f) => f.path)),
        s.add(b, [...theirs.map((f) => f.path), big.path])
      ])
      // Chromium starts while A does
      const [agentA, browser] = yield* Effect.all([
        s.agent("A", { data: a, signal: signal.url, peers: [idB] }),
        Effect.acquireRelease(
          Effect.promise(() => chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 })),
          (browser) => Effect.promise(() => browser.close())
        )
      ], { concurrency: 2 })
      const page = yield* Effect.promise(() => browser.newPage({ viewport: { width: 1000, height: 1000 } }))
      const foreign: Array<string> = []
      page.on("request", (request) => {
        if (!request.url().startsWith(agentA.adminUrl)) foreign.push(request.url())
      })
      yield* Effect.promise(() => page.goto(`${agentA.adminUrl}/`, { timeout: 30_000 }))

      // Before B exists: it is listed all the same, never connected.
      const waiting = yield* s.wait("the page to list B, never connected", card(page, idB).pipe(
        Effect.map((c) => (c !== undefined && c.text.includes("never connected") ? c : notYet(c)))
      ), "30 seconds", { interval: "200 millis" })
      expect(["connecting", "backoff", "waiting-for-signaling"]).toContain(waiting.state)
      const statusJson = Effect.tryPromise(() => fetch(`${agentA.adminUrl}/status`).then((r) => r.json() as Promise<StatusJson>))
      const before = (yield* statusJson).peers.find((p) => p.peer === idB)
      expect(before).toMatchObject({ sessions: 0, connection: "never-connected", received: { assetsToGo: 0, bytesDone: 0 } })
      // the page follows the agent's registration (it may still be connecting when the page loads)
      yield* s.wait("the page to show signaling registered", Effect.promise(() => page.textContent("#signaling")).pipe(
        Effect.map((text) => (text === "registered" ? text : notYet(`signaling: ${text}`)))
      ), "30 seconds", { interval: "200 millis" })

      // B starts; the page follows A and B converging, without a reload.
      yield* s.agent("B", { data: b, signal: signal.url, peers: [agentA] })
      const seen = new Set<string>()
      const converged = yield* s.wait("the page to show B live, everything received and sent", card(page, idB).pipe(
        Effect.tap((c) => Effect.sync(() => c?.state !== undefined && seen.add(c.state))),
        Effect.map((c) =>
          c !== undefined && c.state === "live" && c.received?.assetsDone === theirs.length + 1 && c.received.percent === 100 &&
            c.sent?.assetsDone === mine.length && c.sent.percent === 100
            ? c
            : notYet(c)
        )
      ), "90 seconds", { interval: "200 millis" })
      expect(converged.text).toContain("connected")
      expect(seen.has("live")).toBe(true)
      // /status says the same: today's fields kept, the model's beside them
      const after = yield* statusJson
      expect(after).toMatchObject({ version: expect.any(String), signaling: { state: "registered" }, totals: { received: { assetsToGo: 0 } } })
      expect(after.peers.find((p) => p.peer === idB)).toMatchObject({
        state: "live",
        phase: "live",
        connection: "connected",
        assetsReceived: theirs.length + 1,
        received: { assetsDone: theirs.length + 1, bytesDone: expect.any(Number), percent: 100 },
        sent: { assetsDone: mine.length, percent: 100 }
      })
      expect(after.peers[0]!.received.bytesDone).toBeGreaterThanOrEqual(big.size)
      const recent = yield* Effect.promise(() => page.textContent("#recent"))
      expect(recent).toMatch(/received \d+ assets? \([\d.]+ [kMG]?B\)/)
      expect(recent).toMatch(/sent \d+ assets? \([\d.]+ [kMG]?B\)/)
      const total = yield* Effect.promise(() => page.textContent("#total"))
      expect(total).toContain("up to date")
      yield* Effect.promise(() => page.screenshot({ fullPage: true })).pipe(Effect.flatMap((png) => Effect.promise(() => Artifacts.save("status-page.png", png))))

      // A phone: the same page, no sideways scrolling.
      yield* Effect.promise(() => page.setViewportSize({ width: 390, height: 844 }))
      const overflow = yield* Effect.promise(() => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth))
      expect(overflow).toBeLessThanOrEqual(0)
      yield* Effect.promise(() => page.screenshot({ fullPage: true })).pipe(Effect.flatMap((png) => Effect.promise(() => Artifacts.save("status-page-phone.png", png))))
      expect(foreign).toEqual([])
    }), TEST_TIMEOUT)
})
