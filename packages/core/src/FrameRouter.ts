/**
 * FrameRouter: the PeerActor's reader — every frame from the link is decoded, checked against the
 * protocol's phase and windows, and handed to the child that owns it (receiver, reconciler,
 * sender, fetcher). It never waits on the link, so a peer's sends always drain; a peer that
 * breaks the order or overruns a window fails the session with ProtocolViolation.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import type { ActorWiring, SendJob } from "./ActorWiring.ts"
import { bump } from "./ActorWiring.ts"
import { MAX_DIGESTS_PER_FRAME, MAX_OUTSTANDING_WANTS, MAX_UNANSWERED_OFFERS } from "./EngineConfig.ts"
import * as Frame from "./Frame.ts"
import * as Metrics from "./Metrics.ts"
import type { PeerLink } from "./PeerLink.ts"
import { LinkClosed } from "./PeerLink.ts"
import { bothResume, bothSpeakRanges, features } from "./Handshake.ts"
import type * as Proto from "./proto/sync.ts"
import { asHashes } from "./ProtoDomain.ts"
import type { SessionError } from "./SyncErrors.ts"
import { FrameInvalid, ProtocolViolation, RemoteFailure } from "./SyncErrors.ts"

type Route = Effect.Effect<void, SessionError>

/** Read the link until it closes; fails with the first broken frame. */
export const run = (s: ActorWiring, link: PeerLink) =>
  Effect.gen(function*() {
    let helloSeen = false
    let ranges = false // both Hellos announce range reconciliation
    let resume = false // both Hellos announce resumable transfers: Want.offsets count
    let peerDigestsDone = false
    let peerReconcileWantsDone = false
    const violation = (frame: string, detail: string) => Effect.fail(new ProtocolViolation({ peer: s.peer, frame, detail }))

    /**
     * Hashes the peer asks for; a `last` Want closes its reconcile wants, then answers our oldest
     * Offer. A hash already wanted and not yet answered is not queued again (it is answered once),
     * so a Want naming one asset a thousand times costs one transfer; the window counts distinct hashes.
     * Its offsets (resume/1) say where each asset's content should start; without resume they are ignored.
     */
    const onWant = (want: Proto.Want): Route => {
      if (want.hashes.length > MAX_DIGESTS_PER_FRAME) {
        return violation("Want", `${want.hashes.length} hashes in one frame, more than ${MAX_DIGESTS_PER_FRAME}`)
      }
      const hashes = asHashes(want.hashes)
      if (hashes === undefined) return violation("Want", "malformed hash")
      if (want.offsets.length > hashes.length) return violation("Want", `${want.offsets.length} offsets for ${hashes.length} hashes`)
      const closesReconcile = want.last && !peerReconcileWantsDone
      if (want.last && !closesReconcile) {
        if (s.windows.ourOffers === 0) return violation("Want", "an answer (last = true) to no Offer")
        s.windows.ourOffers--
      }
      const jobs: Array<SendJob> = []
      for (const [i, hash] of hashes.entries()) {
        if (s.windows.peerWants.has(hash)) continue
        s.windows.peerWants.add(hash)
        jobs.push({ _tag: "Asset", hash, offset: resume ? (want.offsets[i] ?? 0) : 0 })
      }
      if (s.windows.peerWants.size > MAX_OUTSTANDING_WANTS) {
        return violation("Want", `${s.windows.peerWants.size} hashes wanted and unanswered, more than ${MAX_OUTSTANDING_WANTS}`)
      }
      const fresh = jobs.length
      if (closesReconcile) {
        peerReconcileWantsDone = true
        jobs.push({ _tag: "ReconcileWantsEnd" })
      }
      // Sized for the window just checked: this always fits.
      if (Queue.offerAllUnsafe(s.sendQueue, jobs).length > 0) return violation("Want", "the send queue overflowed")
      const counted = fresh > 0 ? bump(s.stats, { hashesWantedByPeer: fresh }) : Effect.void
      return want.last && !closesReconcile ? counted.pipe(Effect.andThen(Semaphore.release(s.offerWindow, 1))) : counted
    }

    /** The peer's new assets: for the fetcher, which answers each Offer with one Want(last). */
    const onOffer = (offer: Proto.Offer): Route => {
      if (offer.digests.length > MAX_DIGESTS_PER_FRAME) {
        return violation("Offer", `${offer.digests.length} digests in one frame, more than ${MAX_DIGESTS_PER_FRAME}`)
      }
      const hashes = asHashes(offer.digests.map((d) => d.hash))
      if (hashes === undefined) return violation("Offer", "malformed hash")
      s.windows.peerOffers++
      if (s.windows.peerOffers > MAX_UNANSWERED_OFFERS) {
        return violation("Offer", `${s.windows.peerOffers} Offers unanswered, more than ${MAX_UNANSWERED_OFFERS}`)
      }
      const sizes = offer.digests.map((d) => d.size)
      if (!Queue.offerUnsafe(s.wantInbox, { _tag: "Offered", hashes, sizes })) return violation("Offer", "the fetcher's inbox overflowed")
      return Effect.void
    }

    const route = (frame: Frame.Frame): Route => {
      if (!helloSeen && frame._tag !== "Hello") return violation(frame._tag, "expected Hello first")
      switch (frame._tag) {
        case "Hello":
          if (helloSeen) return violation("Hello", "second Hello")
          helloSeen = true
          ranges = bothSpeakRanges(features(s.store), frame.message)
          resume = bothResume(features(s.store), frame.message)
          return Deferred.succeed(s.hello, frame.message)
        case "RangeRound":
          if (!ranges) return violation("RangeRound", "range reconciliation was not negotiated")
          if (s.windows.rangesDone) return violation("RangeRound", "the range reconciliation is over")
          return Queue.offer(s.rangeRounds, frame.message) // the reconciler answers each message in turn: safe to wait
        case "DigestChunk":
          if (ranges) return violation("DigestChunk", "range reconciliation was negotiated")
          if (peerDigestsDone) return violation("DigestChunk", "digest set already complete")
          if (frame.message.digests.length > MAX_DIGESTS_PER_FRAME) {
            return violation("DigestChunk", `${frame.message.digests.length} digests in one frame, more than ${MAX_DIGESTS_PER_FRAME}`)
          }
          peerDigestsDone = frame.message.last
          return Queue.offer(s.digests, frame.message) // the collector only fills memory: safe to wait
        case "Want":
          return onWant(frame.message)
        case "Offer":
          return onOffer(frame.message)
        case "AssetHeader":
        case "AssetChunk":
        case "AssetEnd":
        case "MetaUpdate":
          return Queue.offer(s.inbound, frame) // the receiver only waits on the store: safe to wait
        case "Error":
          if (frame.message.fatal) {
            return Effect.fail(new RemoteFailure({ peer: s.peer, code: frame.message.code, detail: frame.message.message }))
          }
          return Queue.offer(s.inbound, frame)
        case "Done":
          if (Deferred.isDoneUnsafe(s.peerDone)) return violation("Done", "second Done")
          return Deferred.succeed(s.peerDone, frame.message)
      }
    }

    const decodeAndRoute = (bytes: Uint8Array): Route => {
      const decoded = Frame.decode(bytes, s.config.maxFrameBytes)
      if (Result.isFailure(decoded)) {
        return Metrics.recordError("frame").pipe(Effect.andThen(Effect.fail(new FrameInvalid({ peer: s.peer, cause: decoded.failure }))))
      }
      return route(decoded.success)
    }

    yield* link.frames.pipe(Stream.runForEach(decodeAndRoute))
    return yield* new LinkClosed({ peer: s.peer, reason: { _tag: "ClosedByPeer" } })
  }).pipe(Effect.withSpan("PeerActor.reader"))
