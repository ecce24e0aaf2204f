/**
 * Docs that cannot drift: every number the README and docs/*.md take from a code constant (frame
 * and message limits, windows, buffers, queue sizes, defaults) is found in the text and compared
 * with the constant imported from the code. A claim whose sentence is gone fails too, so a
 * rewritten paragraph updates its claim here instead of silently dropping the check.
 */
import * as EngineConfig from "@can-sync/core/EngineConfig"
import * as Frame from "@can-sync/core/Frame"
import { defaultLinkOptions } from "@can-sync/transport/ChannelLink"
import * as Signaling from "@can-sync/transport/Signaling"
import { Duration } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { repoRoot } from "../kit/Process.ts"

const units: Record<string, number> = {
  "": 1, bytes: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3,
  ms: 1, s: 1000, seconds: 1000, minutes: 60_000
}

/** "4 MiB" → 4194304, "30 s" → 30000, "4,096" → 4096. */
const parse = (text: string): number => {
  const match = /^([\d,.]+)\s*([A-Za-z]*)$/.exec(text.trim())
  const unit = match === null ? undefined : units[match[2]!]
  if (match === null || unit === undefined) throw new Error(`not a number with a known unit: ${JSON.stringify(text)}`)
  return Number(match[1]!.replaceAll(",", "")) * unit
}

const NUMBER = String.raw`([\d,.]+\s?(?:KiB|MiB|GiB|ms|s|seconds|minutes)?)`

interface Claim {
  /** What the number is, in words. */
  readonly what: string
  /** The text around the number; `#` stands for the number (with its unit); whitespace matches any. */
  readonly says: string
  /** The constant it must equal, in bytes, milliseconds or a count. */
  readonly is: number
  /** Where the constant lives, for the failure message. */
  readonly constant: string
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
const pattern = (says: string) =>
  new RegExp(says.split("#").map((part) => escape(part).replace(/\s+/g, String.raw`\s+`)).join(NUMBER), "g")

const millis = (d: Duration.Duration) => Duration.toMillis(d)
const engine = EngineConfig.defaults
const link = defaultLinkOptions

const claims: Record<string, ReadonlyArray<Claim>> = {
  "docs/architecture.md": [
    { what: "the link's message size", says: "splits frames into ≤ # messages", is: link.maxMessageBytes, constant: "ChannelLink.defaultLinkOptions.maxMessageBytes" },
    { what: "the link's send buffer high water", says: "stops writing while the channel buffers more than #,", is: link.highWaterBytes, constant: "ChannelLink.defaultLinkOptions.highWaterBytes" },
    { what: "the link's credit window", says: "credit window (#)", is: link.receiveWindowBytes, constant: "ChannelLink.defaultLinkOptions.receiveWindowBytes" },
    { what: "the session outbox", says: "the outbox (# frames)", is: engine.outboxCapacity, constant: "EngineConfig.defaults.outboxCapacity" },
    { what: "the inbound queue", says: "the inbound queue (#)", is: engine.inboundCapacity, constant: "EngineConfig.defaults.inboundCapacity" }
  ],
  "docs/protocol.md": [
    { what: "the codec's largest frame", says: "| largest frame | # (`DEFAULT_MAX_FRAME_BYTES`)", is: Frame.DEFAULT_MAX_FRAME_BYTES, constant: "Frame.DEFAULT_MAX_FRAME_BYTES" },
    { what: "content per chunk", says: "| content per `AssetChunk` | # |", is: engine.chunkBytes, constant: "EngineConfig.defaults.chunkBytes" },
    { what: "content per chunk", says: "| content per AssetChunk | # (`chunkBytes`)", is: engine.chunkBytes, constant: "EngineConfig.defaults.chunkBytes" },
    { what: "content per chunk", says: "`AssetChunk{hash, data}` of ≤ #,", is: engine.chunkBytes, constant: "EngineConfig.defaults.chunkBytes" },
    { what: "digests per frame", says: "| digests per `DigestChunk` / `Offer`, hashes per `Want` | # (`MAX_DIGESTS_PER_FRAME`) |", is: EngineConfig.MAX_DIGESTS_PER_FRAME, constant: "EngineConfig.MAX_DIGESTS_PER_FRAME" },
    { what: "digests per frame", says: "hashes per Want | ≤ # (`digestChunkSize`)", is: engine.digestChunkSize, constant: "EngineConfig.defaults.digestChunkSize" },
    { what: "digests per frame", says: "(≤ `digestChunkSize`, ≤ #)", is: engine.digestChunkSize, constant: "EngineConfig.defaults.digestChunkSize" },
    { what: "digests per Offer", says: "`Offer{digests}` (≤ # per frame)", is: EngineConfig.MAX_DIGESTS_PER_FRAME, constant: "EngineConfig.MAX_DIGESTS_PER_FRAME" },
    { what: "the WebRTC message size", says: "| WebRTC message | # (frames larger are split", is: link.maxMessageBytes, constant: "ChannelLink.defaultLinkOptions.maxMessageBytes" },
    { what: "the want window", says: "**# hashes requested and unanswered** (`MAX_OUTSTANDING_WANTS`)", is: EngineConfig.MAX_OUTSTANDING_WANTS, constant: "EngineConfig.MAX_OUTSTANDING_WANTS" },
    { what: "the want window", says: "| ≤ # (`MAX_OUTSTANDING_WANTS`)", is: EngineConfig.MAX_OUTSTANDING_WANTS, constant: "EngineConfig.MAX_OUTSTANDING_WANTS" },
    { what: "the offer window", says: "**# Offers unanswered** (`MAX_UNANSWERED_OFFERS`)", is: EngineConfig.MAX_UNANSWERED_OFFERS, constant: "EngineConfig.MAX_UNANSWERED_OFFERS" },
    { what: "the offer window", says: "| ≤ # (`MAX_UNANSWERED_OFFERS`)", is: EngineConfig.MAX_UNANSWERED_OFFERS, constant: "EngineConfig.MAX_UNANSWERED_OFFERS" },
    { what: "the reconcile digest limit", says: "| # (`maxRemoteDigests`)", is: engine.maxRemoteDigests, constant: "EngineConfig.defaults.maxRemoteDigests" },
    { what: "the fallback poll", says: "every `pollInterval` (default #)", is: millis(engine.pollInterval), constant: "EngineConfig.defaults.pollInterval" }
  ],
  "README.md": [
    { what: "the signaling message limit", says: "client can cost: # per message", is: Signaling.MAX_MESSAGE_BYTES, constant: "Signaling.MAX_MESSAGE_BYTES" },
    { what: "the signaling connection limit", says: "[--max-connections #]", is: Signaling.DEFAULT_MAX_CONNECTIONS, constant: "Signaling.DEFAULT_MAX_CONNECTIONS" },
    { what: "the signaling relay rate", says: "[--relays-per-second #]", is: Signaling.DEFAULT_RELAYS_PER_SECOND, constant: "Signaling.DEFAULT_RELAYS_PER_SECOND" },
    { what: "the close code of a full server", says: "is closed with code #)", is: Signaling.CLOSE_FULL, constant: "Signaling.CLOSE_FULL" }
  ]
}

describe("numbers in the docs that come from code constants", () => {
  for (const [doc, list] of Object.entries(claims)) {
    const text = readFileSync(join(repoRoot, doc), "utf8")
    for (const claim of list) {
      it(`${doc}: ${claim.what} (${claim.constant})`, () => {
        const found = [...text.matchAll(pattern(claim.says))].map((m) => ({ said: m[0].replace(/\s+/g, " "), value: parse(m[1]!) }))
        expect(found.length, `${doc} no longer says ${JSON.stringify(claim.says)}: update this claim with the new wording`).toBeGreaterThan(0)
        for (const { said, value } of found) {
          expect(value, `${doc}: "${said}" disagrees with ${claim.constant} = ${claim.is}`).toBe(claim.is)
        }
      })
    }
  }
})
