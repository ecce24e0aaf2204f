/**
 * What `sync` shows while it runs. On a terminal: a block of lines redrawn every second, one per
 * peer (state, assets and bytes to go, rate, ETA). Otherwise: a structured log line per peer when
 * its state changes and a summary every `every` (default 30 s), for journald and `--json` logs.
 */
import type { PeerManagerShape, SessionInfo } from "@can-sync/core/PeerManager"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`

interface Sample {
  readonly at: number
  readonly bytes: number
}

/** Assets and bytes the peer still owes us, as far as this session knows. */
export const toGo = (info: SessionInfo) => {
  const s = info.stats
  const assets = Math.max(0, s.hashesWanted - s.assetsReceived - s.verificationFailures - s.redundantReceives)
  const bytes = Math.max(0, s.bytesWanted - s.bytesReceived)
  return { assets, bytes }
}

export const describePeer = (info: SessionInfo, rate: number): string => {
  const { assets, bytes } = toGo(info)
  const s = info.stats
  const eta = rate > 0 && bytes > 0 ? ` ETA ${Math.ceil(bytes / rate)}s` : ""
  const pending = assets > 0 ? `${assets} assets${bytes > 0 ? ` (${mb(bytes)})` : ""} to go, ${mb(rate)}/s${eta}` : "up to date"
  return `${info.peer.slice(0, 12)}  ${info.state.padEnd(11)} ${pending}  ↓${s.assetsReceived} ↑${s.assetsSent}` +
    (info.lastError !== undefined && info.state !== "live" ? `  (${info.lastError})` : "")
}

/** Redraws the per-peer block on a terminal every second. */
export const terminal = (manager: Pick<PeerManagerShape, "sessions">, write: (text: string) => void = (t) => process.stderr.write(t)) =>
  Effect.gen(function*() {
    const samples = new Map<string, Sample>()
    let drawn = 0
    const draw = Effect.gen(function*() {
      const sessions = yield* manager.sessions
      const now = yield* Clock.currentTimeMillis
      const lines = sessions.map((info) => {
        const last = samples.get(info.peer)
        const rate = last === undefined ? 0 : ((info.stats.bytesReceived - last.bytes) * 1000) / Math.max(1, now - last.at)
        samples.set(info.peer, { at: now, bytes: info.stats.bytesReceived })
        return describePeer(info, rate)
      })
      if (lines.length === 0) lines.push("waiting for peers ...")
      write((drawn > 0 ? `\x1b[${drawn}A\x1b[J` : "") + lines.join("\n") + "\n")
      drawn = lines.length
    })
    yield* draw.pipe(Effect.repeat(Schedule.spaced("1 second")))
  })

/** Log lines for machines: state changes at once, a summary per peer every `every`. */
export const logLines = (manager: Pick<PeerManagerShape, "sessions">, every: Duration.Input = "30 seconds") =>
  Effect.gen(function*() {
    const states = new Map<string, string>()
    const interval = Duration.toMillis(Duration.fromInputUnsafe(every))
    let lastSummary = yield* Clock.currentTimeMillis
    const tick = Effect.gen(function*() {
      const sessions = yield* manager.sessions
      const now = yield* Clock.currentTimeMillis
      const summary = now - lastSummary >= interval
      if (summary) lastSummary = now
      for (const info of sessions) {
        const changed = states.get(info.peer) !== info.state
        states.set(info.peer, info.state)
        if (!changed && !summary) continue
        const { assets, bytes } = toGo(info)
        yield* Effect.logInfo(changed ? `peer ${info.peer} ${info.state}` : `peer ${info.peer} summary`).pipe(
          Effect.annotateLogs({
            peer: info.peer,
            state: info.state,
            role: info.role,
            assets_to_go: assets,
            bytes_to_go: bytes,
            assets_received: info.stats.assetsReceived,
            assets_sent: info.stats.assetsSent,
            bytes_received: info.stats.bytesReceived,
            bytes_sent: info.stats.bytesSent,
            echoes_suppressed: info.stats.echoesSuppressed,
            ...(info.lastError !== undefined ? { last_error: info.lastError } : {})
          })
        )
      }
    })
    yield* tick.pipe(Effect.repeat(Schedule.spaced("1 second")))
  })
