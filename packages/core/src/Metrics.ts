/**
 * Every metric the sync engine and the stores record, in one place, named after OpenTelemetry's
 * conventions (dot-separated, unit in the description; Prometheus renders `cansync.transfer.bytes`
 * as `cansync_transfer_bytes_total`). docs/observability.md lists them with units and attributes;
 * the Grafana dashboard queries only these.
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"

export type Direction = "sent" | "received"

/** Content bytes of assets moved, by peer and direction (unit: By). */
export const transferBytes = Metric.counter("cansync.transfer.bytes", {
  description: "Asset content bytes transferred, by peer and direction (By)",
  incremental: true
})
/** Assets moved, by peer and direction. */
export const transferAssets = Metric.counter("cansync.transfer.assets", {
  description: "Assets transferred, by peer and direction ({asset})",
  incremental: true
})
/** Peers with an open, authenticated session. */
export const peersConnected = Metric.gauge("cansync.peers.connected", {
  description: "Peers with an open session ({peer})"
})
/** Wall time of one reconcile, from hello to both sides done (unit: s). */
export const reconcileDuration = Metric.histogram("cansync.reconcile.duration", {
  description: "Reconcile duration (s)",
  boundaries: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]
})
/** From the peer's announcement (the reconcile diff or Offer that made us want it) to stored here (unit: s). */
export const propagationLatency = Metric.histogram("cansync.propagation.latency", {
  description: "Asset propagation latency, announced by the peer to stored on this machine (s)",
  boundaries: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
})
/** Pushes not sent because the asset or edit came from that very peer. */
export const echoesSuppressed = Metric.counter("cansync.echo.suppressed", {
  description: "Pushes suppressed because the change came from that peer ({push})",
  incremental: true
})
/** Content refused because it did not hash to its name. */
export const verificationFailures = Metric.counter("cansync.verification.failures", {
  description: "Received assets refused because their hash did not match ({asset})",
  incremental: true
})
/** Errors by kind (frame, store, link, protocol, auth, ...). */
export const errors = Metric.counter("cansync.errors", {
  description: "Errors by kind ({error})",
  incremental: true
})
/** Assets and bytes in the local store. */
export const storeAssets = Metric.gauge("cansync.store.assets", { description: "Assets in the local store ({asset})" })
export const storeBytes = Metric.gauge("cansync.store.bytes", { description: "Content bytes in the local store (By)" })

/** The ICE path of each peer's link: 1 for the path in use, 0 for the others (attributes: peer, path). */
export const linkPath = Metric.gauge("cansync.link.path", {
  description: "ICE path of a peer's link: 1 for the one in use, by peer and path (host, server-reflexive, relayed) ({link})"
})
/** Round-trip time of each peer's link, from its selected ICE pair (unit: s). */
export const linkRtt = Metric.gauge("cansync.link.rtt", { description: "Round-trip time of a peer's link (s)" })
export const pathKinds = ["host", "server-reflexive", "relayed"] as const

/** A peer's link as sampled now: its path kind (undefined: no link) and its RTT in ms, if known. */
export const recordLink = (peer: string, kind: string | undefined, rttMillis: number | undefined) =>
  Effect.all([
    ...pathKinds.map((path) => Metric.update(Metric.withAttributes(linkPath, { peer, path }), path === kind ? 1 : 0)),
    ...(rttMillis === undefined ? [] : [Metric.update(Metric.withAttributes(linkRtt, { peer }), rttMillis / 1000)])
  ], { discard: true })

export const recordTransfer = (peer: string, direction: Direction, bytes: number) =>
  Effect.all([
    Metric.update(Metric.withAttributes(transferBytes, { peer, direction }), bytes),
    Metric.update(Metric.withAttributes(transferAssets, { peer, direction }), 1)
  ], { discard: true })

export const recordError = (kind: string) => Metric.update(Metric.withAttributes(errors, { kind }), 1)
