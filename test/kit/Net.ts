/**
 * Network helpers for tests: a free TCP port on loopback (the OS hands out a fresh one for port
 * 0), and the HTTP status at a URL, or undefined while nothing answers there.
 */
import { Effect } from "effect"
import { createServer } from "node:net"

/** A port that was free a moment ago on 127.0.0.1. */
export const freePort: Effect.Effect<number> = Effect.callback<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** The HTTP status of GET `url` (body drained), or undefined when nothing answers within 5 s. */
export const httpStatus = (url: string, headers: Record<string, string> = {}): Effect.Effect<number | undefined> =>
  Effect.promise(() =>
    fetch(url, { headers, signal: AbortSignal.timeout(5_000) }).then(
      async (response) => {
        await response.arrayBuffer()
        return response.status
      },
      () => undefined
    )
  )
