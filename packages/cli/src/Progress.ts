/**
 * What `sync` shows while it runs, rendered from the one status model (core Status.ts). On a
 * terminal: a live block at the bottom — the agent, a total line, and each peer with a bar, %,
 * rate and ETA both ways — redrawn every second and at each resize, with log lines written above
 * it (LiveRegion), never over it. Otherwise: a structured log line per peer when its state changes
 * and a summary every `every` (default 30 s), for journald and `--json` logs.
 */
import type { AgentStatus, DirectionProgress, PeerStatus, StatusShape } from "@can-sync/core/Status"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"

/** Bytes as people read them (SI units, as disks and networks count). */
export const size = (bytes: number): string => {
  if (bytes < 1000) return `${Math.round(bytes)} B`
  const units = ["kB", "MB", "GB", "TB"]
  let value = bytes / 1000
  let unit = 0
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000
    unit++
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`
}

export const rate = (bytesPerSecond: number): string => `${size(bytesPerSecond)}/s`

/** 75 -> "1:15", 3700 -> "1:01:40". */
export const duration = (seconds: number): string => {
  const s = Math.max(0, Math.round(seconds))
  const two = (n: number) => String(n).padStart(2, "0")
  return s >= 3600 ? `${Math.floor(s / 3600)}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}` : `${Math.floor(s / 60)}:${two(s % 60)}`
}

const bar = (percent: number, width: number): string => {
  const full = Math.round((percent / 100) * width)
  return `[${"#".repeat(full)}${"-".repeat(width - full)}]`
}

/** One direction: `↓ [####----]  40% 1.20 MB/s ETA 0:42`; bar width 0 leaves the bar out. */
export const direction = (arrow: string, d: DirectionProgress, barWidth: number): string => {
  const pct = `${Math.floor(d.percent)}%`.padStart(4)
  const eta = d.assetsToGo === 0 ? "done" : d.etaSeconds === undefined ? "ETA --:--" : `ETA ${duration(d.etaSeconds)}`
  const togo = d.assetsToGo === 0 ? "" : ` ${d.assetsToGo} left`
  return `${arrow} ${barWidth > 0 ? `${bar(d.percent, barWidth)} ` : ""}${pct} ${rate(d.rateBytesPerSecond).padStart(10)} ${eta.padEnd(9)}${togo}`.trimEnd()
}

/** A peer's state in a few words: "backoff 12s", "refused by peer", "live". */
export const stateText = (p: PeerStatus, now: number): string => {
  switch (p.state) {
    case "backoff":
      return p.nextRetryAt === undefined ? "backoff" : `backoff ${Math.max(0, Math.ceil((p.nextRetryAt - now) / 1000))}s`
    case "refused":
      return `refused by ${p.refused?.by ?? "?"}`
    case "waiting-for-signaling":
      return "no signaling"
    default:
      return p.connection === "never-connected" && p.state === "connecting" ? "connecting (never yet)" : p.state
  }
}

const pathText = (p: PeerStatus): string =>
  p.path === undefined ? "" : `${p.path.kind === "server-reflexive" ? "srflx" : p.path.kind}${p.path.rttMillis === undefined ? "" : ` ${Math.round(p.path.rttMillis)}ms`}`

/** Cut to `width` columns (the block must never wrap: a wrapped line breaks the redraw). */
const fit = (line: string, width: number): string => (line.length <= width ? line : `${line.slice(0, Math.max(0, width - 1))}…`)

/**
 * The live block for a terminal `columns` wide: the agent, a total line, and each peer. Wide
 * terminals get one line per peer; narrow ones a line per peer and one per direction. Every line
 * is shorter than `columns`.
 */
export const render = (status: AgentStatus, columns: number): ReadonlyArray<string> => {
  const width = Math.max(10, columns - 1)
  const now = status.at
  const store = status.store === undefined ? "" : `  store ${status.store.assets} assets ${size(status.store.bytes)}`
  const signaling = status.signaling.state === "registered" ? "" : `  signaling ${status.signaling.state}`
  const head = `can-sync ${status.version}  ${status.peerId.slice(0, 12)}${store}${signaling}`
  const lines = [head]
  const names = status.peers.map((p) => p.peer.slice(0, 12))
  // a direction cell is 41 columns and its bar at most; name, state and gaps take 40 + 2 + 2
  const wideBar = Math.min(20, Math.floor((width - 125) / 2))
  if (wideBar >= 6) {
    // one line per peer: name, state, path, then both directions in aligned columns
    const row = (name: string, state: string, down: DirectionProgress, up: DirectionProgress) =>
      `${name.padEnd(12)}  ${state.slice(0, 24).padEnd(24)}  ${direction("↓", down, wideBar)}`.padEnd(40 + 42 + wideBar) +
      `  ${direction("↑", up, wideBar)}`
    lines.push(row("total", `${status.peers.length} peer(s)`, status.totals.received, status.totals.sent))
    status.peers.forEach((p, i) => {
      const path = pathText(p)
      lines.push(row(names[i] ?? "", `${stateText(p, now)}${path === "" ? "" : ` ${path}`}`, p.received, p.sent))
      if (p.state !== "live" && p.state !== "transferring" && p.lastError !== undefined) lines.push(`  last error: ${p.lastError.message}`)
    })
  } else {
    const barWidth = Math.min(30, width - 50) // the rest of a direction line is at most 48 columns
    const cells = (down: DirectionProgress, up: DirectionProgress) => [
      `  ${direction("↓", down, barWidth >= 4 ? barWidth : 0)}`,
      `  ${direction("↑", up, barWidth >= 4 ? barWidth : 0)}`
    ]
    lines.push(`total  ${status.peers.length} peer(s)`, ...cells(status.totals.received, status.totals.sent))
    status.peers.forEach((p, i) => {
      const path = pathText(p)
      lines.push(`${names[i]}  ${stateText(p, now)}${path === "" ? "" : `  ${path}`}`, ...cells(p.received, p.sent))
      if (p.state !== "live" && p.state !== "transferring" && p.lastError !== undefined) lines.push(`  last error: ${p.lastError.message}`)
    })
  }
  if (status.peers.length === 0) lines.push("no allowed peers: add one with --peer <id>")
  return lines.map((line) => fit(line, width))
}

/** Where a live region writes: a terminal's width and a synchronous write. */
export interface Screen {
  readonly columns: () => number
  readonly write: (text: string) => void
}

/**
 * The bottom of a terminal, owned by a redrawn block: `draw` replaces the block, `log` writes a
 * line above it (the block is cleared, the line written, the block drawn again, in one write), so
 * neither eats the other. Between writes the cursor waits at the block's first column and row, so
 * clearing is "to the end of the screen" with no rows to count: right however the terminal
 * rewrapped (or cut) the old block when it was resized.
 */
export const makeRegion = (screen: Screen) => {
  let rows = 0
  let block: (columns: number) => ReadonlyArray<string> = () => []
  let measuring = false
  const clear = () => (rows === 0 ? "" : "\r\x1b[J")
  const columns = () => {
    // reading the width may itself report a resize (and ask for a redraw): this paint is that redraw
    measuring = true
    try {
      return screen.columns()
    } finally {
      measuring = false
    }
  }
  const paint = () => {
    const lines = block(columns())
    rows = lines.length
    return rows === 0 ? "" : `${lines.join("\n")}\n\x1b[${rows}A`
  }
  return {
    /** Replace the block with what `render` gives for the terminal's width (kept for redraws on resize). */
    draw: (render: (columns: number) => ReadonlyArray<string>) => {
      block = render
      screen.write(clear() + paint())
    },
    /** Redraw for the current width (after a resize). */
    redraw: () => {
      if (!measuring) screen.write(clear() + paint())
    },
    /** A log line, above the block. */
    log: (line: string) => screen.write(`${clear()}${line}\n${paint()}`),
    /** Leave the block on the screen and the cursor below it (at exit). */
    close: () => {
      if (rows > 0) screen.write(`\x1b[${rows}B`)
      rows = 0
      block = () => []
    }
  }
}

export type LiveRegion = ReturnType<typeof makeRegion>

/** Draws the status into the region at each tick of the model. */
export const terminal = (status: Pick<StatusShape, "changes">, region: LiveRegion) =>
  status.changes.pipe(Stream.runForEach((s) => Effect.sync(() => region.draw((columns) => render(s, columns)))))

/** Log lines for machines: a peer's state changes at once, a summary per peer every `every`. */
export const logLines = (status: Pick<StatusShape, "changes">, every: Duration.Input = "30 seconds") =>
  Effect.gen(function*() {
    const states = new Map<string, string>()
    const interval = Duration.toMillis(Duration.fromInputUnsafe(every))
    let lastSummary = yield* Clock.currentTimeMillis
    yield* status.changes.pipe(Stream.runForEach((s) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const summary = now - lastSummary >= interval
        if (summary) lastSummary = now
        for (const p of s.peers) {
          const changed = states.get(p.peer) !== p.state
          states.set(p.peer, p.state)
          if (!changed && !summary) continue
          yield* Effect.logInfo(changed ? `peer ${p.peer} ${p.state}` : `peer ${p.peer} summary`).pipe(Effect.annotateLogs(logFields(p)))
        }
      })
    ))
  })

/** The annotations of a peer's log line (snake_case, as the other log fields). */
export const logFields = (p: PeerStatus): Record<string, unknown> => ({
  peer: p.peer,
  state: p.sessionState ?? "connecting",
  phase: p.state,
  connection: p.connection,
  ...(p.role === undefined ? {} : { role: p.role }),
  assets_to_go: p.received.assetsToGo,
  bytes_to_go: p.received.bytesToGo ?? 0,
  assets_to_send: p.sent.assetsToGo,
  ...(p.sent.bytesToGo === undefined ? {} : { bytes_to_send: p.sent.bytesToGo }),
  assets_received: p.received.assetsDone,
  assets_sent: p.sent.assetsDone,
  bytes_received: p.received.bytesDone,
  bytes_sent: p.sent.bytesDone,
  rate_received: p.received.rateBytesPerSecond,
  rate_sent: p.sent.rateBytesPerSecond,
  ...(p.received.etaSeconds === undefined ? {} : { eta_received_s: p.received.etaSeconds }),
  ...(p.sent.etaSeconds === undefined ? {} : { eta_sent_s: p.sent.etaSeconds }),
  ...(p.nextRetryAt === undefined ? {} : { next_retry_at: new Date(p.nextRetryAt).toISOString() }),
  ...(p.refused === undefined ? {} : { refused_by: p.refused.by }),
  ...(p.lastError === undefined ? {} : { last_error: p.lastError.message, last_error_at: new Date(p.lastError.at).toISOString() })
})
