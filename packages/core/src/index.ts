/**
 * @can-sync/core: the sync engine's contracts — the domain, the CanStore contract, PeerLink, the
 * frame codec and generated protocol, the engine's config, errors and metrics — and the engine
 * itself (PeerManager over PeerActors). No I/O library: stores and transports implement the contracts.
 */
export * from "./Domain.ts"
export * from "./CanStore.ts"
export * from "./PeerLink.ts"
export * as Frame from "./Frame.ts"
export * as Proto from "./proto/sync.ts"
export * as Metrics from "./Metrics.ts"
export * as Backoff from "./Backoff.ts"
export * as EngineConfig from "./EngineConfig.ts"
export * as InMemoryLink from "./InMemoryLink.ts"
export * as PeerActor from "./PeerActor.ts"
export * as PeerManager from "./PeerManager.ts"
export * as SyncErrors from "./SyncErrors.ts"
export type { PeerStats, SessionState } from "./ActorWiring.ts"
