/**
 * V8 heap settings for the long-running agent (`can-sync sync`), applied when it starts. Content
 * streams through the agent as buffers that live for one hop: a 256 MiB transfer allocates
 * 256 MiB of them on each side (node-datachannel copies every received message into a new
 * Buffer; the sender reads into new ones), and V8 answers that churn with a full mark-compact
 * of the whole heap every ~10 MB. With the old generation allowed to grow to four times what a
 * collection leaves (instead of V8's own factor, near two here), it collects 3-4 times less often:
 * bench/sync.ts on loopback, 256 MiB one way: 16 full collections per agent become 5, the GC
 * helper threads' CPU falls from ~1.5 to ~0.9 s per agent, and both agents' CPU from ~52 to
 * ~44 ms per MiB; peak RSS stays ~285 MB. Dead buffers are still freed at every collection.
 */
import { setFlagsFromString } from "node:v8"

/** The old generation may grow to (1 + this / 100) times what the last full collection kept. */
export const HEAP_GROWING_PERCENT = 300

/** Apply once, before the agent allocates much; the flag is read at each collection. */
export const tuneForStreaming = (): void => {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
}
