/**
 * V8 heap settings for the long-running agent (`can-sync sync`), applied when it starts. Content
 * streams through the agent as buffers that live for one hop: a 256 MiB transfer allocates
 * 256 MiB of them on each side (node-datachannel copies every received message into a new
 * Buffer; the sender reads into new ones). Two settings keep V8 from answering that churn with
 * full collections of the whole heap:
 *
 * - The old generation may grow to four times what a collection leaves (instead of V8's own
 *   factor, near two here): bench/sync.ts on loopback, 256 MiB one way, 16 full collections per
 *   agent became 5, both agents' CPU fell from ~52 to ~44 ms per MiB.
 * - Buffers count toward that same limit (`--external-memory-accounted-in-global-limit`) instead
 *   of V8's fixed rule of a full collection every 64 MB of buffer growth. The receiver's dead
 *   buffers die young and minor collections free them (the sender's read buffers reach the old
 *   generation and wait for a full one); the full ones were the fixed rule firing about once a
 *   second during a transfer. Same bench (2026-12-04): 4 full collections per agent during
 *   the transfer became 0-1, the GC helper threads' CPU in the transfer fell from ~0.21-0.25 s to
 *   ~0.07-0.10 s per agent (~4 % of both agents' CPU); peak RSS rose from ~285 to ~345 MB per
 *   agent, and stayed at 350-410 MB through 1 and 2 GiB transfers.
 */
import { setFlagsFromString } from "node:v8"

/** The old generation may grow to (1 + this / 100) times what the last full collection kept. */
export const HEAP_GROWING_PERCENT = 300

/** The V8 flags applied, in order. */
const STREAMING_FLAGS: ReadonlyArray<string> = [
  `--heap-growing-percent=${HEAP_GROWING_PERCENT}`,
  "--external-memory-accounted-in-global-limit"
]

/** Apply once, before the agent allocates much; the flags are read at each collection. */
export const tuneForStreaming = (): void => {
  for (const flag of STREAMING_FLAGS) setFlagsFromString(flag)
}
