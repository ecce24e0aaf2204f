/**
 * The test kit itself: a wait that times out says what it waited for and what it last saw; a
 * process that exits ends a wait on it at once; a scope's end stops its processes (SIGKILL when
 * SIGTERM is ignored); a one-shot command past its deadline is killed and reported.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { eventually, GaveUp, notYet, TimedOut } from "./Eventually.ts"
import { freePort } from "./Net.ts"
import { run, spawn } from "./Process.ts"
import { contentBytes, seeded } from "./Seeded.ts"

const node = process.execPath

it.live("eventually fails with what it waited for and the last value seen", () =>
  Effect.gen(function*() {
    let n = 0
    const error = yield* eventually("the counter to reach 1000", Effect.sync(() => notYet({ counter: ++n })), "300 millis", { interval: "20 millis" }).pipe(Effect.flip)
    expect(error).toBeInstanceOf(TimedOut)
    expect(error.message).toMatch(/^timed out after .* waiting for the counter to reach 1000; last seen: \{"counter":\d+\}$/)
    expect(yield* eventually("a value", Effect.sync(() => (++n % 3 === 0 ? "done" : undefined)), "5 seconds", { interval: "1 millis" })).toBe("done")
  }))

it.live("a wait on a process's output gives up as soon as it exits, with its stderr", () =>
  Effect.gen(function*() {
    const child = yield* spawn(node, ["-e", "console.error('boom'); process.exit(3)"], { name: "quitter" })
    const error = yield* child.waitFor("stdout", /never/, "30 seconds").pipe(Effect.flip)
    expect(error).toBeInstanceOf(GaveUp)
    expect(error.message).toContain("quitter exited (code 3)")
    expect(error.message).toContain("boom")
    expect(child.exit).toEqual({ code: 3, signal: null })
  }))

it.live("closing the scope stops the process: SIGKILL after the grace when SIGTERM is ignored", () =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const child = yield* spawn(node, ["-e", "process.on('SIGTERM', () => {}); console.log('up'); setInterval(() => {}, 1000)"], { grace: "200 millis" }).pipe(Scope.provide(scope))
    yield* child.waitFor("stdout", /up/, "30 seconds")
    yield* Scope.close(scope, Exit.void)
    expect(child.exit).toEqual({ code: null, signal: "SIGKILL" })
    expect(child.json("stdout")).toEqual([])
  }))

it.live("run kills a command past its deadline and says so", () =>
  Effect.gen(function*() {
    const error = yield* run(node, ["-e", "setInterval(() => {}, 1000)"], { deadline: "300 millis" }).pipe(Effect.flip)
    expect(error.message).toMatch(/did not exit within .* \(killed\)/)
    const ran = yield* run(node, ["-e", "process.stdout.write(JSON.stringify({a: 1}) + '\\n')"])
    expect({ code: ran.code, stdout: ran.stdout }).toEqual({ code: 0, stdout: '{"a":1}\n' })
  }))

it.live("freePort and seeded content", () =>
  Effect.gen(function*() {
    expect(yield* freePort).toBeGreaterThan(0)
    expect(contentBytes("x", 64).equals(contentBytes("x", 64))).toBe(true)
    expect(contentBytes("x", 64).equals(contentBytes("y", 64))).toBe(false)
    const random = seeded("kit")
    expect(random.int(10)).toBeLessThan(10)
  }))
