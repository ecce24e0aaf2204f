/**
 * Attempt ids ("sid" in signals): "<boot>.<counter>", the boot part random per process start, the
 * counter counting up within it. A peer's offers and knocks are accepted only if newer than the
 * last seen from it: same boot and a higher counter, or a boot never seen before (the peer
 * restarted, whatever its clock says). A replay from the current boot or a retired one is stale.
 */

/** 64 random bits in hex: no two process starts share one, and no clock is involved. */
export const randomBoot = (): string =>
  Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("")

/** Ids for our own attempts and knocks, for the life of this process. */
export const makeIssuer = (boot: string = randomBoot()): () => string => {
  let counter = 0
  return () => `${boot}.${++counter}`
}

const SID = /^([0-9a-z]{1,32})\.([1-9][0-9]{0,15})$/

export const parse = (sid: string): { readonly boot: string; readonly counter: number } | undefined => {
  const match = SID.exec(sid)
  return match === null ? undefined : { boot: match[1]!, counter: Number(match[2]) }
}

/** How many earlier boots of one peer are remembered as retired. */
const RETIRED_BOOTS = 64

/** The ids one peer has used, to tell a fresh offer or knock from a replayed or late one. */
export class SeenIds {
  private boot: string | undefined
  private counter = 0
  private readonly retired = new Set<string>()

  /** True, and remembered, if `sid` is newer than everything seen from this peer; false if stale or malformed. */
  accept(sid: string): boolean {
    const id = parse(sid)
    if (id === undefined || this.retired.has(id.boot)) return false
    if (id.boot === this.boot) {
      if (id.counter <= this.counter) return false
      this.counter = id.counter
      return true
    }
    if (this.boot !== undefined) {
      this.retired.add(this.boot)
      if (this.retired.size > RETIRED_BOOTS) this.retired.delete(this.retired.values().next().value!)
    }
    this.boot = id.boot
    this.counter = id.counter
    return true
  }
}
