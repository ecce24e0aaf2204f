/**
 * A hand-driven peer for protocol tests: it speaks raw frames (real protobuf bytes through the
 * real codec) to one engine PeerActor over an in-memory link, so a test can play a broken or
 * hostile peer frame by frame and watch every frame the engine sends back.
 */
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as Frame from "@can-sync/core/Frame"
import * as InMemoryLink from "@can-sync/core/InMemoryLink"
import * as PeerActor from "@can-sync/core/PeerActor"
import type { PeerLink } from "@can-sync/core"
import { Data, Effect, Queue, Stream } from "effect"
import { createHash } from "node:crypto"
import { peerId, tempDir, storeAt } from "./harness.ts"

export class UnexpectedFrame extends Data.TaggedError("UnexpectedFrame")<{ readonly detail: string }> {}

/** The test's side of a link: send frames, wait for the next frame of a kind, count what arrived. */
export const rawPeer = (link: PeerLink) =>
  Effect.gen(function*() {
    const inbox = yield* Queue.unbounded<Frame.Frame>()
    const received = new Map<Frame.FrameTag, number>()
    yield* Effect.forkScoped(link.frames.pipe(
      Stream.runForEach((bytes) =>
        Effect.fromResult(Frame.decode(bytes)).pipe(Effect.flatMap((f) => {
          received.set(f._tag, (received.get(f._tag) ?? 0) + 1)
          return Queue.offer(inbox, f)
        }))
      ),
      Effect.ignore
    ))
    const held: Array<Frame.Frame> = [] // frames read while looking for another kind
    const next = <K extends Frame.FrameTag>(tag: K) =>
      Effect.gen(function*() {
        const i = held.findIndex((f) => f._tag === tag)
        if (i >= 0) return held.splice(i, 1)[0] as Frame.FrameOf<K>
        while (true) {
          const frame = yield* Queue.take(inbox)
          if (frame._tag === tag) return frame as Frame.FrameOf<K>
          if (frame._tag === "Error" && frame.message.fatal) return yield* new UnexpectedFrame({ detail: JSON.stringify(frame.message) })
          held.push(frame)
        }
      }).pipe(Effect.timeout("10 seconds"))
    return {
      send: (frame: Frame.Frame) => link.send(Frame.encode(frame)),
      /** Raw bytes, for frames the codec would not build. */
      sendBytes: (bytes: Uint8Array) => link.send(bytes),
      next,
      /** Frames of `tag` received so far (read or not). */
      count: (tag: Frame.FrameTag) => received.get(tag) ?? 0
    }
  })

export const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
export const meta = { description: "from raw", tags: [], trashed: false, createdAt: 1, updatedAt: 1, origin: "raw-store" }
export const digest = (hash: string, size: number) => ({ hash, size, createdAt: 1, updatedAt: 1, metaOrigin: "raw-store" })
export const hello = (version = EngineConfig.PROTOCOL_VERSION, id = "raw") =>
  Frame.make("Hello", { protocolVersion: version, peerId: id, agent: "test", maxFrameBytes: 1 << 20 })

/** `n` distinct well-formed hashes, none of them in any store. */
export const fakeHashes = (n: number, salt: string) => Array.from({ length: n }, (_, i) => sha(new TextEncoder().encode(`${salt}-${i}`)))

/** One engine (store "e" in a temp dir) in a session with the raw peer "raw"; `actor` yields its failure. */
export const engineSide = (overrides?: Partial<EngineConfig.EngineConfigInput>) =>
  Effect.gen(function*() {
    const dir = yield* tempDir("e")
    const store = yield* storeAt(dir)
    const [engineEnd, rawEnd] = yield* InMemoryLink.pair(peerId("e"), peerId("raw"))
    const config = EngineConfig.make({ localPeerId: peerId("e"), ...overrides })
    const actor = yield* PeerActor.run(engineEnd, { config, store }).pipe(Effect.flip, Effect.forkScoped)
    const raw = yield* rawPeer(rawEnd)
    return { dir, store, actor, raw, rawEnd }
  })
