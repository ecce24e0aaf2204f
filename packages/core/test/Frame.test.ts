import { describe, expect, it } from "@effect/vitest"
import { Effect, Result, Stream } from "effect"
import * as Frame from "../src/Frame.ts"
import * as Proto from "../src/proto/sync.ts"

const hello = Frame.make("Hello", { protocolVersion: 1, peerId: "peer-a", agent: "test", maxFrameBytes: 1 << 20 })

describe("Frame codec", () => {
  it("round-trips every frame kind through real protobuf bytes", () => {
    const frames: Array<Frame.Frame> = [
      hello,
      Frame.make("DigestChunk", { digests: [{ hash: "a".repeat(64), size: 3, createdAt: 1, updatedAt: 2, metaOrigin: "s" }], last: true }),
      Frame.make("AssetHeader", { hash: "b".repeat(64), size: 5, meta: { description: "d", tags: ["x"], trashed: false, createdAt: 1, updatedAt: 1, origin: "o" } }),
      Frame.make("AssetChunk", { hash: "b".repeat(64), data: new Uint8Array([1, 2, 3]) }),
      Frame.make("AssetEnd", { hash: "b".repeat(64) }),
      Frame.make("MetaUpdate", { hash: "b".repeat(64), meta: undefined }),
      Frame.make("Done", { assetsSent: 1, bytesSent: 2 }),
      Frame.make("Error", { code: Proto.ErrorCode.HASH_MISMATCH, message: "m", hash: "", fatal: false }),
      Frame.make("Offer", { digests: [{ hash: "c".repeat(64), size: 1, createdAt: 1, updatedAt: 1, metaOrigin: "s" }] }),
      Frame.make("Want", { hashes: ["c".repeat(64)], last: true })
    ]
    for (const frame of frames) {
      const bytes = Frame.encode(frame)
      expect(bytes[0]).toBe(Frame.frameType(frame._tag))
      expect(new DataView(bytes.buffer).getUint32(1, false)).toBe(bytes.length - Frame.HEADER_BYTES)
      expect(Result.getOrThrow(Frame.decode(bytes))).toEqual(frame)
    }
  })

  it("writes AssetChunk frames byte-for-byte as the generated protobuf encoder does", () => {
    for (const size of [0, 1, 127, 128, 16_383, 16_384, 65_536, 300_000]) {
      for (const hash of ["", "c".repeat(64)]) {
        const data = Uint8Array.from({ length: size }, (_, i) => (i * 31) & 0xff)
        const payload = Proto.AssetChunk.encode({ hash, data }).finish()
        const bytes = Frame.encode(Frame.make("AssetChunk", { hash, data }))
        expect(Array.from(bytes.subarray(Frame.HEADER_BYTES))).toEqual(Array.from(payload))
        expect(new DataView(bytes.buffer).getUint32(1, false)).toBe(payload.length)
      }
    }
  })

  it("gives FrameTruncated for a short header and a short payload", () => {
    const bytes = Frame.encode(hello)
    const shortHeader = Frame.decode(bytes.subarray(0, 3))
    expect(Result.isFailure(shortHeader) && shortHeader.failure._tag).toBe("FrameTruncated")
    const shortPayload = Frame.decode(bytes.subarray(0, bytes.length - 1))
    expect(Result.isFailure(shortPayload) && shortPayload.failure).toMatchObject({ _tag: "FrameTruncated", expected: bytes.length })
  })

  it("gives UnknownFrameType for a type byte it does not know", () => {
    const r = Frame.decode(new Uint8Array([0x7f, 0, 0, 0, 0]))
    expect(Result.isFailure(r) && r.failure).toMatchObject({ _tag: "UnknownFrameType", type: 0x7f })
  })

  it("does not know the link's own control types (0x09-0x0C): they never reach the engine", () => {
    for (const type of [0x09, 0x0a, 0x0b, 0x0c]) {
      expect(Result.isFailure(Frame.decode(new Uint8Array([type, 0, 0, 0, 0]))) && type).toBe(type)
    }
  })

  it("refuses an oversized length from the header alone, before any payload arrives", () => {
    const decoder = new Frame.FrameDecoder(1024)
    // Claims 4 GiB; only the 5 header bytes exist. No allocation of the claimed size can happen.
    const r = decoder.push(new Uint8Array([0x01, 0xff, 0xff, 0xff, 0xff]))
    expect(Result.isFailure(r) && r.failure).toMatchObject({ _tag: "FrameTooLarge", limit: 1024 })
  })

  it("gives MalformedPayload when protobuf does not decode", () => {
    const r = Frame.decode(new Uint8Array([0x01, 0, 0, 0, 2, 0xff, 0xff]))
    expect(Result.isFailure(r) && r.failure).toMatchObject({ _tag: "MalformedPayload", frame: "Hello" })
  })

  it("never throws on random garbage", () => {
    let seed = 42
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff
    for (let i = 0; i < 2000; i++) {
      const bytes = Uint8Array.from({ length: Math.floor(rand() * 40) }, () => Math.floor(rand() * 256))
      expect(() => Frame.decode(bytes, 4096)).not.toThrow()
      expect(() => new Frame.FrameDecoder(4096).push(bytes)).not.toThrow()
    }
  })

  it.effect("reassembles frames split at every byte boundary", () =>
    Effect.gen(function*() {
      const done = Frame.make("Done", { assetsSent: 3, bytesSent: 9 })
      const bytes = new Uint8Array([...Frame.encode(hello), ...Frame.encode(done)])
      const chunks = Array.from(bytes, (b) => new Uint8Array([b]))
      const frames = yield* Stream.runCollect(Stream.fromIterable(chunks).pipe(Frame.decodeStream()))
      expect(frames).toEqual([hello, done])
      const truncated = yield* Stream.runCollect(Stream.fromIterable(chunks.slice(0, -1)).pipe(Frame.decodeStream())).pipe(Effect.flip)
      expect(truncated._tag).toBe("FrameTruncated")
    }))
})
