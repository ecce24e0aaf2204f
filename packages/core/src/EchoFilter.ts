/**
 * EchoFilter: the hashes one peer is known to have (it sent them to us, or we already offered
 * them), so the live pusher never pushes them to it again. Owned by that peer's pusher alone; fed
 * by the receiver through a Queue. Bounded: the oldest entries are forgotten first, and forgetting
 * costs at most one redundant Offer (the peer answers that it has the asset), never a transfer.
 */
export interface EchoFilter {
  readonly has: (hash: string) => boolean
  readonly add: (hash: string) => void
  readonly size: () => number
}

export const make = (capacity: number): EchoFilter => {
  // A Set iterates in insertion order: its first element is the oldest.
  const known = new Set<string>()
  const limit = Math.max(1, capacity)
  return {
    has: (hash) => known.has(hash),
    add: (hash) => {
      if (known.has(hash)) {
        known.delete(hash) // refresh: move to the newest end
      } else if (known.size >= limit) {
        const oldest = known.values().next()
        if (oldest.done !== true) known.delete(oldest.value)
      }
      known.add(hash)
    },
    size: () => known.size
  }
}
