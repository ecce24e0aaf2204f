/**
 * The agent's small admin HTTP port: `GET /healthz` (200 while the process serves), `GET /readyz`
 * (200 when the agent says it is ready, else 503), `GET /status` (a JSON summary) and, when given,
 * `GET /metrics` (Prometheus), `GET /` (the status page) and `GET /events` (its live feed, SSE).
 * Probes and scrapers hit it every few seconds, so its requests make no spans.
 */
import { NodeHttpServer } from "@effect/platform-node"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { Sse } from "effect/encoding"
import type { Scope } from "effect"
import { HttpServerRequest, HttpServerResponse } from "effect/http"
import type { HttpServerError } from "effect/http"
import { createServer } from "node:http"
import * as Prometheus from "./Prometheus.ts"

export interface Options {
  /** Address to bind; "127.0.0.1" keeps it local, "0.0.0.0" for containers. */
  readonly host: string
  /** Port to bind; 0 picks a free one (see `AdminServer.port`). */
  readonly port: number
  /** Whether the agent is ready to serve peers; a failure counts as not ready. */
  readonly ready: Effect.Effect<boolean>
  /** Extra fields for `GET /status` (peers, store size, ...). */
  readonly status?: Effect.Effect<Readonly<Record<string, unknown>>> | undefined
  /** `GET /metrics`: the Prometheus text exposition (absent: 404). */
  readonly metrics?: Effect.Effect<string> | undefined
  /** `GET /`: a page (HTML) and `GET /events`: what it shows, one JSON value per SSE event "status" (absent: 404). */
  readonly page?: { readonly html: string; readonly events: Stream.Stream<unknown> } | undefined
}

export interface AdminServer {
  readonly host: string
  readonly port: number
  /** `http://host:port`, for people and tests. */
  readonly url: string
}

const json = (status: number, body: unknown) => HttpServerResponse.jsonUnsafe(body, { status })

const probe = (ready: Effect.Effect<boolean>) => ready.pipe(Effect.catchCause(() => Effect.succeed(false)))

const app = (options: Options, startedAt: number) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const path = request.url.split("?")[0] ?? "/"
    const endpoints = [
      "/healthz",
      "/readyz",
      "/status",
      ...(options.metrics === undefined ? [] : ["/metrics"]),
      ...(options.page === undefined ? [] : ["/", "/events"])
    ]
    if (!endpoints.includes(path)) return json(404, { error: "not found", endpoints })
    if (request.method !== "GET" && request.method !== "HEAD") return json(405, { error: "method not allowed" })
    switch (path) {
      case "/healthz":
        return json(200, { status: "ok" })
      case "/metrics": {
        const body = yield* (options.metrics ?? Effect.succeed(""))
        return HttpServerResponse.text(body, { contentType: Prometheus.contentType })
      }
      case "/": {
        return HttpServerResponse.html(options.page?.html ?? "")
      }
      case "/events": {
        const body = (options.page?.events ?? Stream.empty).pipe(
          Stream.map((value): Sse.Event => ({ _tag: "Event", event: "status", id: undefined, data: JSON.stringify(value) })),
          Stream.pipeThroughChannel(Sse.encode()),
          Stream.encodeText
        )
        return HttpServerResponse.stream(body, { contentType: "text/event-stream", headers: { "cache-control": "no-cache" } })
      }
      case "/readyz": {
        const ready = yield* probe(options.ready)
        return json(ready ? 200 : 503, { ready })
      }
      default: {
        const ready = yield* probe(options.ready)
        const extra = options.status === undefined ? {} : yield* options.status.pipe(Effect.catchCause(() => Effect.succeed({})))
        const now = yield* Clock.currentTimeMillis
        return json(200, {
          ...extra,
          healthy: true,
          ready,
          pid: process.pid,
          uptimeSeconds: Math.round((now - startedAt) / 1000)
        })
      }
    }
  })

/** Serves the admin endpoints for the length of the scope. */
export const serve = Effect.fn("Admin.serve")(function*(
  options: Options
): Effect.fn.Return<AdminServer, HttpServerError.ServeError, Scope.Scope> {
  const server = yield* NodeHttpServer.make(() => createServer(), {
    host: options.host,
    port: options.port,
    gracefulShutdownTimeout: "1 second"
  })
  yield* server.serve(app(options, yield* Clock.currentTimeMillis)).pipe(Effect.withTracerEnabled(false))
  const port = server.address._tag === "UnixPathAddress" ? options.port : server.address.port
  const host = options.host.includes(":") ? `[${options.host}]` : options.host
  yield* Effect.logDebug(`admin endpoints at http://${host}:${port}`)
  return { host: options.host, port, url: `http://${host}:${port}` }
})
