/**
 * The terminal display of `can-sync sync`, on a real terminal: agent A runs under tmux (a real
 * pseudo-terminal) while B sends it assets; the test reads A's screen. The live block sits at the
 * bottom (agent, total, the peer with bar, %, rate and ETA both ways), log lines stay whole above
 * it, it fits a narrow terminal and follows resizes, and a peer that disconnects stays on it with
 * its last error. The capture is saved as terminal.txt (Artifacts.ts). Skipped without tmux.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Schedule } from "effect"
import { existsSync } from "node:fs"
import { notYet } from "../kit/Eventually.ts"
import { cleanEnv, cliMain, run } from "../kit/Process.ts"
import * as Artifacts from "../observability/Artifacts.ts"
import { all, Scenario, TEST_TIMEOUT } from "../e2e/Scenario.ts"

const TMUX = "/usr/bin/tmux"
const tmuxMissing = !existsSync(TMUX)
if (tmuxMissing) console.warn(`terminal display test skipped: ${TMUX} not found (install it with: apt-get install -y tmux)`)

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`

/** One tmux server of our own (its socket named for this process), killed when the scope closes. */
const terminal = (columns: number, rows: number, command: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const socket = `can-sync-terminal-${process.pid}`
    const env = cleanEnv({ LANG: "C.UTF-8" })
    const tmux = (...args: ReadonlyArray<string>) => run(TMUX, ["-L", socket, "-f", "/dev/null", ...args], { env, deadline: "20 seconds" })
    yield* Effect.acquireRelease(
      tmux("new-session", "-d", "-s", "t", "-x", String(columns), "-y", String(rows), command.map(quote).join(" ")),
      () => tmux("kill-server").pipe(Effect.ignore)
    )
    yield* tmux("set-option", "-t", "t", "remain-on-exit", "on")
    return {
      /**
       * The whole terminal, scrollback included, wrapped lines joined (a line that wrapped shows up
       * longer than the screen): an old block left behind anywhere would show here.
       */
      screen: tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "t").pipe(Effect.map((r) => r.stdout.replace(/\s+$/, "").split("\n"))),
      resize: (width: number) => tmux("resize-window", "-t", "t", "-x", String(width), "-y", String(rows)).pipe(Effect.asVoid)
    }
  })

describe.skipIf(tmuxMissing)("the terminal display of can-sync sync (under tmux)", () => {
  it.live("a live block below whole log lines: bars, rates and ETA both ways, narrow and wide, and a dropped peer stays", () =>
    Effect.gen(function*() {
      const s = yield* Scenario.make("terminal")
      const [a, b] = [s.path("a"), s.path("b")]
      const files = yield* s.smallFiles("files", "terminal", 6)
      const big = yield* s.largeFile("big", "terminal/big", 16 * 1024 * 1024)
      const ours = yield* s.largeFile("ours", "terminal/ours", 4 * 1024 * 1024)
      const [signal, idA, idB] = yield* all([s.signal(), s.id(a), s.id(b), s.add(b, [...files.map((f) => f.path), big.path]), s.add(a, [ours.path])])
      const [shortA, shortB] = [idA.slice(0, 12), idB.slice(0, 12)]
      const tty = yield* terminal(100, 30, [
        process.execPath, cliMain, "sync", "--data", a, "--signal", signal.url, "--bind-address", "127.0.0.1", "--admin-port", "0", "--peer", idB
      ])
      const header = new RegExp(`^can-sync \\S+ {2}${shortA}`)
      const screenWhere = (what: string, until: (lines: ReadonlyArray<string>) => boolean, deadline: Duration.Input = "30 seconds") =>
        s.wait(what, tty.screen.pipe(Effect.map((lines) => (until(lines) ? lines : notYet(lines.join("\n"))))), deadline, { interval: "200 millis" })
      /** The block: from its (last) header to the end. */
      const block = (lines: ReadonlyArray<string>) => {
        const at = lines.findLastIndex((l) => header.test(l))
        return at < 0 ? undefined : lines.slice(at)
      }
      const headers = (lines: ReadonlyArray<string>) => lines.filter((l) => header.test(l)).length

      const started = yield* screenWhere("A's admin port on its screen", (lines) => lines.some((l) => /admin endpoints at http/.test(l)), "60 seconds")
      const adminUrl = /admin endpoints at (http:\/\/[\d.:]+)/.exec(started.join("\n"))![1]!

      // While B sends, keep the screen showing a transfer under way (for the capture).
      let during: ReadonlyArray<string> | undefined
      const watcher = yield* Effect.forkChild(tty.screen.pipe(
        Effect.tap((lines) => Effect.sync(() => {
          // the capture for people: mid-transfer, a bar well under way if one was seen
          const moving = lines.some((l) => l.startsWith(`${shortB}  transferring`))
          if (moving && (during === undefined || lines.some((l) => /\[#+-+\] +[2-8]\d% /.test(l)))) during = lines
        })),
        Effect.repeat(Schedule.spaced("150 millis"))
      ))
      yield* s.agent("B", { data: b, signal: signal.url, peers: [idA] })
      yield* s.wait("A to hold B's assets (/status)", Effect.tryPromise(() => fetch(`${adminUrl}/status`).then((r) => r.json())).pipe(
        Effect.map((st: { peers: ReadonlyArray<{ peer: string; phase: string; assetsReceived: number }> }) => {
          const p = st.peers.find((x) => x.peer === idB)
          return p !== undefined && p.phase === "live" && p.assetsReceived === files.length + 1 ? p : notYet(p)
        })
      ), "90 seconds")
      yield* Fiber.interrupt(watcher)

      // Logs above, the block below: one header, after every log line; each block line fits.
      const done = yield* screenWhere("A's block to show B live, everything received", (lines) => {
        const bl = block(lines)
        return bl !== undefined && bl.some((l) => l.startsWith(`${shortB}  live`)) && bl.filter((l) => /^ {2}↓ \[#+\] 100% .* done/.test(l)).length === 2
      })
      // a hundred redraws and a dozen log lines later, the whole scrollback holds one block: none was left behind
      expect(headers(done)).toBe(1)
      const live = block(done)!
      expect(live[0]).toMatch(new RegExp(`^can-sync \\S+ {2}${shortA} {2}store ${files.length + 2} assets 2\\d\\.\\d MB$`))
      expect(live[1]).toBe("total  1 peer(s)")
      expect(live.slice(2, 7), live.join("\n")).toEqual([
        expect.stringMatching(/^ {2}↓ \[#{30}\] 100% +[\d.]+ [kMG]?B\/s done$/),
        expect.stringMatching(/^ {2}↑ \[#{30}\] 100% +[\d.]+ [kMG]?B\/s done$/),
        expect.stringMatching(new RegExp(`^${shortB}  live  (host|srflx|relayed)( \\d+ms)?$`)),
        expect.stringMatching(/^ {2}↓ \[#{30}\] 100%/),
        expect.stringMatching(/^ {2}↑ \[#{30}\] 100%/)
      ])
      for (const line of live) expect([...line].length, line).toBeLessThan(100)
      const logs = done.slice(0, done.findLastIndex((l) => header.test(l)))
      expect(logs.some((l) => /^\d\d:\d\d:\d\d\.\d{3} INFO {2}transport: connected to /.test(l)), logs.join("\n")).toBe(true)
      for (const line of logs.filter((l) => l !== "")) expect(line, "a log line that is whole").toMatch(/^\d\d:\d\d:\d\d\.\d{3} (INFO|WARN|DEBUG|ERROR) /)

      // Narrow: the bars shrink, nothing wraps; wide: one line per peer, both directions on it. (A
      // redraw that races the terminal's own resize can leave a stale row in the scrollback, as for any
      // full-screen program: only the block after each resize is checked.)
      yield* tty.resize(60)
      yield* screenWhere("the block redrawn for 60 columns", (lines) => {
        const bl = block(lines)
        return bl !== undefined && bl.some((l) => /^ {2}↓ \[#{9}\] 100%/.test(l)) && bl.every((l) => [...l].length < 60)
      })
      yield* tty.resize(150)
      const wide = yield* screenWhere("the block redrawn for 150 columns, a line per peer", (lines) => {
        const bl = block(lines)
        return bl !== undefined && bl.some((l) => l.startsWith(`${shortB}  live`) && /↓ \[#+\] 100% .*↑ \[#+\] 100%/.test(l))
      })
      expect(block(wide)!.every((l) => [...l].length < 150)).toBe(true)

      // B goes away: A logs it above the block, and B stays on it with the reason.
      yield* tty.resize(100)
      yield* screenWhere("the block redrawn for 100 columns", (lines) => block(lines)?.some((l) => /^ {2}↓ \[#{30}\] 100%/.test(l)) === true)
      const snapshot = during ?? done
      yield* Effect.promise(() => Artifacts.save("terminal.txt", `${snapshot.join("\n")}\n`))
      const bProc = s.procs.find((p) => p.name === "B")!
      yield* bProc.stop("SIGTERM", "10 seconds")
      const dropped = yield* screenWhere("B still on A's block after it stopped, with its last error", (lines) => {
        const bl = block(lines)
        return bl !== undefined && bl.some((l) => new RegExp(`^${shortB}  (backoff|connecting|no signaling)`).test(l)) &&
          bl.some((l) => l.startsWith("  last error: "))
      }, "45 seconds")
      expect(dropped.slice(0, dropped.findLastIndex((l) => header.test(l))).some((l) => /INFO {2}session ended/.test(l) && l.includes(idB))).toBe(true)
    }), TEST_TIMEOUT)
})
