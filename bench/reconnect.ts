/**
 * Connection setup benchmark (`node bench/reconnect.ts`): two transports on loopback with a real
 * signaling server, each connecting again as soon as its link closes (a failed attempt is retried
 * after ~50 ms); one side closes the link abruptly (as an engine failure does), `Rounds` times. Reports the time from close to both sides holding a new
 * authenticated link (percentiles), and every failed attempt the transports logged. Writes
 * `bench/results/reconnect.json`.
 */
import { Identity } from "@can-sync/transport/Identity"
import * as Signaling from "@can-sync/transport/Signaling"
import { Transport } from "@can-sync/transport/Transport"
import type { TransportShape } from "@can-sync/transport/Transport"
import type { WebRtcLink } from "@can-sync/transport/WebRtcLink"
import { Backoff } from "@can-sync/core"
import type { PeerId } from "@can-sync/core"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as Queue from "effect/Queue"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, loadavg } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const here = dirname(fileURLToPath(import.meta.url))
const Rounds = 60

const failures: Array<string> = []
const capture = Logger.make((options) => {
  const message = String(options.message)
  if (/could not connect/.test(message) && !/not connected to the signaling server/.test(message)) failures.push(message)
  if (/^libdatachannel: /.test(message)) failures.push(message)
})

const percentile = (sorted: ReadonlyArray<number>, p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
const round = (ms: number) => Math.round(ms * 10) / 10

const main = Effect.gen(function*() {
  const server = yield* Signaling.serve({ port: 0 })
  const a = Identity.generate()
  const b = Identity.generate()
  const transport = (self: typeof a, peer: typeof a) =>
    Transport.make({
      signalingUrl: server.url,
      peers: [peer.peerId],
      rtc: { bindAddress: "127.0.0.1" }
    }).pipe(Effect.provideService(Identity, self))
  // a fixed ~50 ms pause (jittered) after a failed attempt, so what is measured is the setup, not
  // the backoff that grows for a link that keeps closing
  const pause = Backoff.exponential({ base: "50 millis", cap: "50 millis" })
  /** Every link with `peer`, connecting again at once when one closes. */
  const links = (t: TransportShape, peer: PeerId) =>
    Effect.gen(function*() {
      const queue = yield* Queue.unbounded<WebRtcLink>()
      const one = Effect.scoped(Effect.flatMap(t.connect(peer), (link) => Effect.andThen(Queue.offer(queue, link), link.closed)))
      yield* Effect.forkScoped(Effect.forever(Effect.retry(one, pause)))
      return queue
    })
  const started = performance.now()
  const [ta, tb] = [yield* transport(a, b), yield* transport(b, a)]
  const [qa, qb] = [yield* links(ta, b.peerId), yield* links(tb, a.peerId)]
  const both = Effect.all([Queue.take(qa), Queue.take(qb)])
  let [la, lb] = yield* both
  const firstMs = performance.now() - started
  const setups: Array<number> = []
  for (let i = 0; i < Rounds; i++) {
    const closedAt = performance.now()
    yield* (i % 2 === 0 ? la : lb).close
    ;[la, lb] = yield* both
    setups.push(performance.now() - closedAt)
  }
  setups.sort((x, y) => x - y)
  return {
    bench: "reconnect",
    at: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    setup: "two transports in one process, ICE on 127.0.0.1, real signaling server; connect again at once, a failed attempt again after 50 ms ±20 %",
    firstConnectMs: round(firstMs),
    rounds: Rounds,
    reconnectMs: { p50: round(percentile(setups, 50)), p90: round(percentile(setups, 90)), max: round(setups.at(-1)!) },
    failedAttempts: failures.length,
    failures: failures.slice(0, 10),
    loadAverageAtEnd: loadavg().map((x) => Math.round(x * 100) / 100)
  }
}).pipe(Effect.scoped, Effect.provide(Logger.layer([capture])))

Effect.runPromise(main).then(
  (result) => {
    mkdirSync(join(here, "results"), { recursive: true })
    writeFileSync(join(here, "results", "reconnect.json"), JSON.stringify(result, null, 2) + "\n")
    process.stdout.write(JSON.stringify(result) + "\n")
    process.exit(0)
  },
  (error: unknown) => {
    process.stderr.write(`bench/reconnect failed: ${String(error)}\n`)
    process.exit(1)
  }
)
