/**
 * The admin port as probes see it: /healthz answers while the server runs, /readyz follows the
 * agent's readiness, /status summarises, anything else is refused; probes make no spans, and the
 * port closes with its scope.
 */
import * as Admin from "@can-sync/cli/Admin"
import * as Telemetry from "@can-sync/cli/Telemetry"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Ref, Scope } from "effect"
import { otelEnv } from "./Exported.ts"
import * as OtlpReceiver from "./OtlpReceiver.ts"

const get = (url: string, init?: RequestInit) =>
  Effect.promise(async () => {
    const response = await fetch(url, init)
    return { status: response.status, body: (await response.json()) as Record<string, unknown> }
  })

describe("Admin.serve", () => {
  it.live("answers /healthz always and /readyz as `ready` says", () =>
    Effect.gen(function*() {
      const ready = yield* Ref.make(false)
      const admin = yield* Admin.serve({ host: "127.0.0.1", port: 0, ready: Ref.get(ready), status: Effect.succeed({ peers: 3 }) })
      expect(admin.port).toBeGreaterThan(0)

      expect(yield* get(`${admin.url}/healthz`)).toEqual({ status: 200, body: { status: "ok" } })
      expect(yield* get(`${admin.url}/readyz`)).toEqual({ status: 503, body: { ready: false } })
      yield* Ref.set(ready, true)
      expect(yield* get(`${admin.url}/readyz`)).toEqual({ status: 200, body: { ready: true } })

      const status = yield* get(`${admin.url}/status`)
      expect(status.status).toBe(200)
      expect(status.body).toMatchObject({ healthy: true, ready: true, peers: 3, pid: process.pid })
      expect((yield* get(`${admin.url}/metrics`)).status).toBe(404)
      expect((yield* get(`${admin.url}/healthz`, { method: "POST" })).status).toBe(405)
    }))

  it.live("reports not ready when the readiness check fails or dies", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.serve({ host: "127.0.0.1", port: 0, ready: Effect.die("store closed") })
      expect(yield* get(`${admin.url}/readyz`)).toEqual({ status: 503, body: { ready: false } })
      expect((yield* get(`${admin.url}/healthz`)).status).toBe(200)
    }))

  it.live("stops listening when its scope closes", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const admin = yield* Admin.serve({ host: "127.0.0.1", port: 0, ready: Effect.succeed(true) }).pipe(Scope.provide(scope))
      expect((yield* get(`${admin.url}/healthz`)).status).toBe(200)
      yield* Scope.close(scope, Exit.void)
      const after = yield* Effect.promise(() => fetch(`${admin.url}/healthz`).then(() => "answered", () => "refused"))
      expect(after).toBe("refused")
    }))

  it.live("makes no spans for probe requests, even with tracing exported", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.start
      yield* Effect.scoped(Effect.gen(function*() {
        const admin = yield* Admin.serve({ host: "127.0.0.1", port: 0, ready: Effect.succeed(true) })
        for (let i = 0; i < 3; i++) yield* get(`${admin.url}/healthz`)
        yield* get(`${admin.url}/readyz`)
        yield* Effect.void.pipe(Effect.withSpan("test.marker"))
      })).pipe(Effect.provide(Telemetry.layer), Effect.provide(otelEnv(receiver.url)))
      const names = receiver.spans().map((s) => s.name)
      expect(names).toContain("test.marker")
      expect(names.filter((n) => /http|GET/i.test(n))).toEqual([])
    }))
})
