/**
 * The metrics the agent adds to the engine's (core Metrics.ts): who it is (`cansync.agent.info`),
 * each peer's backlog in both directions as far as the engine counts it, and the process' own
 * health (RSS, heap, event-loop delay, CPU). Also registers every engine metric at 0 when the agent
 * starts, so a counter exists before its first event and a dashboard shows 0, not "no data".
 */
import { Metrics } from "@can-sync/core"
import type { AgentStatus } from "@can-sync/core/Status"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import { monitorEventLoopDelay } from "node:perf_hooks"

/** 1, labelled with the agent's identity: `service.instance.id` is its peer id (stable across restarts). */
export const agentInfo = Metric.gauge("cansync.agent.info", {
  description: "The agent's identity: 1, labelled service.name, service.instance.id (its peer id) and service.version ({agent})"
})
/** What a peer still owes us (received) or still asked us for (sent), by peer and direction. */
export const backlogAssets = Metric.gauge("cansync.backlog.assets", {
  description: "Assets still to transfer, by peer and direction, as far as the current session knows ({asset})"
})
/** Bytes still to receive from a peer (announced sizes) or to send it (estimated from the average size sent so far). */
export const backlogBytes = Metric.gauge("cansync.backlog.bytes", {
  description: "Content bytes still to transfer, by peer and direction (sent: estimated from the average size sent) (By)"
})
export const processMemory = Metric.gauge("process.memory.usage", { description: "Resident set size of the process (By)" })
export const heapUsed = Metric.gauge("v8js.memory.heap.used", { description: "V8 heap in use (By)" })
export const eventLoopDelayP99 = Metric.gauge("nodejs.eventloop.delay.p99", {
  description: "99th percentile of the event loop's delay over the last sampling interval (s)"
})
export const eventLoopDelayMax = Metric.gauge("nodejs.eventloop.delay.max", {
  description: "Largest event loop delay over the last sampling interval (s)"
})
export const cpuTime = Metric.counter("process.cpu.time", {
  description: "CPU time used by the process, by cpu.mode (user, system) (s)",
  incremental: true
})

/** Every metric of this module (for tests and the dashboard check). */
export const all = [agentInfo, backlogAssets, backlogBytes, processMemory, heapUsed, eventLoopDelayP99, eventLoopDelayMax, cpuTime] as const

const directions = ["sent", "received"] as const

/**
 * Kinds of `cansync.errors` the engine and transport record (an open set: a new kind appears on
 * its first error); these exist at 0 from the start.
 */
export const knownErrorKinds = [
  "auth",
  "not_allowed",
  "resume_mismatch",
  "connect",
  "link",
  "heartbeat",
  "protocol",
  "frame",
  "store_read",
  "peer_refused",
  "peer_error",
  "metadata_refused",
  "metadata_unsent",
  "asset_too_large"
] as const

/** Registers every engine metric (per allowed peer where it has a peer label) at 0, and the agent's identity. */
export const registerAll = (options: {
  readonly peerId: string
  readonly version: string
  readonly serviceName?: string | undefined
  readonly peers: ReadonlyArray<string>
}) =>
  Effect.gen(function*() {
    yield* Metric.update(
      Metric.withAttributes(agentInfo, {
        "service.name": options.serviceName ?? "can-sync",
        "service.instance.id": options.peerId,
        "service.version": options.version
      }),
      1
    )
    const plain: ReadonlyArray<Metric.Metric<never, unknown>> = [
      Metrics.peersConnected,
      Metrics.reconcileDuration,
      Metrics.propagationLatency,
      Metrics.verificationFailures,
      Metrics.storeAssets,
      Metrics.storeBytes
    ]
    yield* Effect.forEach(plain, (metric) => Metric.value(metric), { discard: true })
    yield* Effect.forEach(knownErrorKinds, (kind) => Metric.value(Metric.withAttributes(Metrics.errors, { kind })), { discard: true })
    for (const peer of options.peers) {
      yield* Metric.value(Metric.withAttributes(Metrics.echoesSuppressed, { peer }))
      for (const direction of directions) {
        yield* Metric.value(Metric.withAttributes(Metrics.transferBytes, { peer, direction }))
        yield* Metric.value(Metric.withAttributes(Metrics.transferAssets, { peer, direction }))
        yield* Metric.update(Metric.withAttributes(backlogAssets, { peer, direction }), 0)
        yield* Metric.update(Metric.withAttributes(backlogBytes, { peer, direction }), 0)
      }
    }
    yield* Metric.update(Metric.withAttributes(cpuTime, { "cpu.mode": "user" }), 0)
    yield* Metric.update(Metric.withAttributes(cpuTime, { "cpu.mode": "system" }), 0)
  })

/** Each peer's backlog now, both ways, from the status model (the same figures as /status and the terminal). */
export const recordBacklog = (status: AgentStatus) =>
  Effect.forEach(status.peers, (p) =>
    Effect.forEach(directions, (direction) => {
      const d = p[direction]
      return Effect.all([
        Metric.update(Metric.withAttributes(backlogAssets, { peer: p.peer, direction }), d.assetsToGo),
        Metric.update(Metric.withAttributes(backlogBytes, { peer: p.peer, direction }), d.bytesToGo ?? 0)
      ], { discard: true })
    }, { discard: true }), { discard: true })

/**
 * A sampler of the process' health: each run records RSS, heap, the event loop's delay since the
 * last run (p99 and max) and the CPU time used since the last run. Lives as long as its scope.
 */
export const processSampler = Effect.gen(function*() {
  const delay = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const h = monitorEventLoopDelay({ resolution: 10 })
      h.enable()
      return h
    }),
    (h) => Effect.sync(() => h.disable())
  )
  let cpu = process.cpuUsage()
  return Effect.suspend(() => {
    const memory = process.memoryUsage()
    const now = process.cpuUsage()
    const user = (now.user - cpu.user) / 1e6
    const system = (now.system - cpu.system) / 1e6
    cpu = now
    // the histogram is in nanoseconds; empty (NaN, 0) before its first sample
    const p99 = delay.count > 0 ? delay.percentile(99) / 1e9 : 0
    const max = delay.count > 0 ? delay.max / 1e9 : 0
    delay.reset()
    return Effect.all([
      Metric.update(processMemory, memory.rss),
      Metric.update(heapUsed, memory.heapUsed),
      Metric.update(eventLoopDelayP99, p99),
      Metric.update(eventLoopDelayMax, max),
      Metric.update(Metric.withAttributes(cpuTime, { "cpu.mode": "user" }), user),
      Metric.update(Metric.withAttributes(cpuTime, { "cpu.mode": "system" }), system)
    ], { discard: true })
  })
})
