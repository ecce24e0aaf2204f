/**
 * The engine protocol (docs/protocol-engine.md) as an empty store speaks it: Hello, one empty
 * DigestChunk(last), Wants for everything in the agent's digests (at most MAX_OUTSTANDING_WANTS
 * unanswered, the last frame marked `last`), each asset received as AssetHeader · AssetChunk… ·
 * AssetEnd and hashed with WebCrypto, Done both ways. Frames are the project's codec (Frame.ts).
 * After the reconcile it stays live: each Offer is declined with an empty Want(last).
 */
import { Result } from "effect"
import { MAX_DIGESTS_PER_FRAME, MAX_OUTSTANDING_WANTS, PROTOCOL_VERSION } from "../../../packages/core/src/EngineConfig.ts"
import * as Frame from "../../../packages/core/src/Frame.ts"
import * as Proto from "../../../packages/core/src/proto/sync.ts"
import { sha256, toBase64, toHex } from "./PageIdentity.ts"
import type { PageLink } from "./PageLink.ts"

export const AGENT = "can-sync-browser-peer/0.1.0"

export interface ReceivedAsset {
  /** The name the agent gave it (AssetHeader.hash). */
  readonly hash: string
  readonly size: number
  readonly chunks: number
  /** SHA-256 of the received content, computed by the browser. */
  readonly sha256: string
  /** The content itself, for a byte-for-byte comparison by the test. */
  readonly base64: string
  readonly description: string | undefined
}

export interface EngineReport {
  readonly agentHello: Proto.Hello
  readonly remoteDigests: ReadonlyArray<{ readonly hash: string; readonly size: number }>
  readonly hashesWanted: number
  readonly wantFrames: number
  readonly assets: ReadonlyArray<ReceivedAsset>
  readonly notFound: ReadonlyArray<string>
  readonly hashesWantedByAgent: number
  readonly sentDone: boolean
  readonly agentDone: Proto.Done
  readonly metaUpdates: number
}

export interface EngineParams {
  readonly self: string
  readonly agent: string
  /** Announced in Hello: the agent sizes its frames (64 KiB chunks) to fit. */
  readonly maxFrameBytes: number
}

export interface EngineSession {
  /** Completes when the reconcile round is over both ways; rejects if the session fails first. */
  readonly reconciled: Promise<EngineReport>
  /** Offers declined after the reconcile (live phase). */
  readonly offersDeclined: () => number
}

class SessionFailure extends globalThis.Error {}

/** Run the session over an authenticated link until the link closes. */
export const run = (link: PageLink, params: EngineParams): EngineSession => {
  let agentHello: Proto.Hello | undefined
  let agentDone: Proto.Done | undefined
  let digestsDone = false
  let agentWantsDone = false
  let sentDone = false
  let wantsStarted = false
  let metaUpdates = 0
  let hashesWanted = 0
  let wantFrames = 0
  let hashesWantedByAgent = 0
  let offersDeclined = 0
  const remoteDigests: Array<{ hash: string; size: number }> = []
  const pending: Array<string> = []
  const outstanding = new Set<string>()
  const assets: Array<ReceivedAsset> = []
  const notFound: Array<string> = []
  let current: { readonly hash: string; readonly size: number; readonly description: string | undefined; readonly chunks: Array<Uint8Array>; bytes: number } | undefined

  const fail = async (code: Proto.ErrorCode, message: string): Promise<never> => {
    await link.send(Frame.make("Error", { code, message, hash: "", fatal: true })).catch(() => {})
    link.fail(`session failed: ${code}: ${message}`)
    throw new SessionFailure(`${code}: ${message}`)
  }
  const violation = (message: string) => fail(Proto.ErrorCode.PROTOCOL_VIOLATION, message)

  /** Ask for more, keeping at most MAX_OUTSTANDING_WANTS unanswered; `last` on the frame with the final hash. */
  const sendWants = async () => {
    while (pending.length > 0 && outstanding.size < MAX_OUTSTANDING_WANTS) {
      const hashes = pending.splice(0, Math.min(MAX_DIGESTS_PER_FRAME, MAX_OUTSTANDING_WANTS - outstanding.size))
      for (const hash of hashes) outstanding.add(hash)
      hashesWanted += hashes.length
      wantFrames++
      await link.send(Frame.make("Want", { hashes, last: pending.length === 0 }))
    }
  }

  const answered = async (hash: string) => {
    outstanding.delete(hash)
    await sendWants()
  }

  const reconcileOver = () =>
    agentHello !== undefined && agentDone !== undefined && sentDone && digestsDone && pending.length === 0 && outstanding.size === 0

  const handle = async (frame: Frame.Frame): Promise<void> => {
    if (agentHello === undefined && frame._tag !== "Hello") return violation(`expected Hello first, got ${frame._tag}`)
    switch (frame._tag) {
      case "Hello":
        if (agentHello !== undefined) return violation("second Hello")
        if (frame.message.protocolVersion !== PROTOCOL_VERSION) {
          return fail(Proto.ErrorCode.PROTOCOL_VERSION, `local ${PROTOCOL_VERSION}, remote ${frame.message.protocolVersion}`)
        }
        if (frame.message.peerId !== params.agent) return fail(Proto.ErrorCode.PEER_MISMATCH, `expected ${params.agent}, announced ${frame.message.peerId}`)
        agentHello = frame.message
        return
      case "DigestChunk":
        if (digestsDone) return violation("digest set already complete")
        for (const d of frame.message.digests) remoteDigests.push({ hash: d.hash, size: d.size })
        if (!frame.message.last) return
        digestsDone = true
        // an empty store lacks everything the agent has
        pending.push(...remoteDigests.map((d) => d.hash))
        wantsStarted = true
        if (pending.length === 0) {
          wantFrames++
          return link.send(Frame.make("Want", { hashes: [], last: true }))
        }
        return sendWants()
      case "Want": {
        // nothing is stored here: every hash is answered ASSET_NOT_FOUND (non-fatal)
        hashesWantedByAgent += frame.message.hashes.length
        for (const hash of frame.message.hashes) {
          await link.send(Frame.make("Error", { code: Proto.ErrorCode.ASSET_NOT_FOUND, message: "the browser peer stores nothing", hash, fatal: false }))
        }
        if (frame.message.last && !agentWantsDone) {
          agentWantsDone = true
          sentDone = true
          return link.send(Frame.make("Done", { assetsSent: 0, bytesSent: 0 }))
        }
        return
      }
      case "AssetHeader":
        if (current !== undefined) return violation(`AssetHeader ${frame.message.hash} inside asset ${current.hash}`)
        if (!outstanding.has(frame.message.hash)) return violation(`unsolicited asset ${frame.message.hash}`)
        current = { hash: frame.message.hash, size: frame.message.size, description: frame.message.meta?.description, chunks: [], bytes: 0 }
        return
      case "AssetChunk":
        if (current === undefined || frame.message.hash !== current.hash) return violation("AssetChunk outside its asset")
        current.chunks.push(frame.message.data)
        current.bytes += frame.message.data.length
        if (current.bytes > current.size) return violation(`asset ${current.hash} longer than its header says`)
        return
      case "AssetEnd": {
        if (current === undefined || frame.message.hash !== current.hash) return violation("AssetEnd outside its asset")
        const asset = current
        current = undefined
        if (asset.bytes !== asset.size) return violation(`asset ${asset.hash}: ${asset.bytes} bytes, header said ${asset.size}`)
        const content = new Uint8Array(asset.bytes)
        let offset = 0
        for (const chunk of asset.chunks) {
          content.set(chunk, offset)
          offset += chunk.length
        }
        const digest = toHex(await sha256(content))
        if (digest !== asset.hash) {
          await link.send(Frame.make("Error", { code: Proto.ErrorCode.HASH_MISMATCH, message: `content hashes to ${digest}`, hash: asset.hash, fatal: false }))
        }
        assets.push({
          hash: asset.hash,
          size: asset.size,
          chunks: asset.chunks.length,
          sha256: digest,
          base64: toBase64(content),
          description: asset.description
        })
        return answered(asset.hash)
      }
      case "Error":
        if (frame.message.fatal) {
          link.fail(`the agent ended the session: ${frame.message.code}: ${frame.message.message}`)
          throw new SessionFailure(`agent: ${frame.message.code}: ${frame.message.message}`)
        }
        if (current !== undefined && frame.message.hash === current.hash) current = undefined
        if (outstanding.has(frame.message.hash)) {
          notFound.push(frame.message.hash)
          return answered(frame.message.hash)
        }
        return
      case "MetaUpdate":
        metaUpdates++
        return
      case "Done":
        if (agentDone !== undefined) return violation("second Done")
        agentDone = frame.message
        return
      case "Offer":
        // each Offer is answered by exactly one Want(last); the page declines live pushes
        if (!wantsStarted) return violation("Offer before the reconcile wants")
        offersDeclined++
        return link.send(Frame.make("Want", { hashes: [], last: true }))
    }
  }

  const reconciled = (async () => {
    await link.send(Frame.make("Hello", { protocolVersion: PROTOCOL_VERSION, peerId: params.self, agent: AGENT, maxFrameBytes: params.maxFrameBytes }))
    await link.send(Frame.make("DigestChunk", { digests: [], last: true }))
    let report: EngineReport | undefined
    let resolveReport!: (report: EngineReport) => void
    const reported = new Promise<EngineReport>((resolve) => {
      resolveReport = resolve
    })
    const loop = (async () => {
      while (true) {
        const bytes = await link.take()
        const decoded = Frame.decode(bytes, params.maxFrameBytes)
        if (Result.isFailure(decoded)) return fail(Proto.ErrorCode.FRAME_INVALID, decoded.failure._tag)
        await handle(decoded.success)
        if (report === undefined && reconcileOver()) {
          report = {
            agentHello: agentHello!,
            remoteDigests,
            hashesWanted,
            wantFrames,
            assets,
            notFound,
            hashesWantedByAgent,
            sentDone,
            agentDone: agentDone!,
            metaUpdates
          }
          resolveReport(report)
        }
      }
    })()
    return Promise.race([reported, loop.then(() => reported)])
  })()
  reconciled.catch(() => {})
  return { reconciled, offersDeclined: () => offersDeclined }
}
