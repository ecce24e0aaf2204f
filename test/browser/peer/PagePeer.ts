/**
 * The browser peer's entry point: `window.canSyncPeer`, driven by the test through
 * `page.evaluate`. It makes a WebCrypto identity, registers with the agent's signaling server,
 * connects with the browser's RTCPeerConnection, runs the engine as an empty store, and reports
 * everything it saw (link counters, the ICE path, the assets and their SHA-256).
 */
import type { EngineReport, EngineSession } from "./PageEngine.ts"
import * as Engine from "./PageEngine.ts"
import type { BrowserIdentity } from "./PageIdentity.ts"
import { generate } from "./PageIdentity.ts"
import { defaultLinkOptions } from "../../../packages/transport/src/ChannelLink.ts"
import type { LinkStats } from "./PageLink.ts"
import type { Connection } from "./PageConnect.ts"
import { AttemptFailed, connect } from "./PageConnect.ts"
import { SignalingClient } from "./PageSignaling.ts"

/** The page's receive window: smaller than the test asset, so the agent must wait for credit grants. */
const RECEIVE_WINDOW_BYTES = 512 * 1024

export interface IceCandidateInfo {
  readonly candidateType: string
  readonly protocol: string
  readonly address: string
  readonly port: number
}

export interface ConnectionPath {
  readonly local: IceCandidateInfo | undefined
  readonly remote: IceCandidateInfo | undefined
  readonly dtlsState: string | undefined
  readonly dtlsCipher: string | undefined
  readonly sctpMaxMessageSize: number | undefined
}

export interface SyncReport {
  readonly peerId: string
  readonly role: "offerer" | "answerer"
  readonly sid: string
  readonly knocks: number
  /** Why earlier attempts failed (the page retries, as the agent does, until its deadline). */
  readonly failedAttempts: ReadonlyArray<string>
  readonly signalsRefused: ReadonlyArray<string>
  readonly offererFingerprint: string
  readonly answererFingerprint: string
  readonly path: ConnectionPath
  readonly engine: EngineReport
  readonly link: LinkStats
  readonly connectMillis: number
  readonly reconcileMillis: number
}

export interface LinkStatus {
  readonly open: boolean
  readonly closeReason: string | undefined
  readonly link: LinkStats
  readonly offersDeclined: number
}

export interface CloseReport {
  readonly goodbyeAnswered: boolean
  readonly link: LinkStats | undefined
}

export interface CanSyncPeer {
  /** A fresh key; regenerated until its id sorts below (or above) `agent`, to pick who offers. */
  readonly createIdentity: (constraint: { readonly agent: string; readonly order: "below" | "above" }) => Promise<{ readonly peerId: string; readonly attempts: number }>
  readonly sync: (options: { readonly signalUrl: string; readonly agent: string; readonly timeoutMs: number }) => Promise<SyncReport>
  readonly status: () => LinkStatus
  readonly close: () => Promise<CloseReport>
  readonly log: ReadonlyArray<string>
}

declare global {
  interface Window {
    canSyncPeer: CanSyncPeer
  }
}

const log: Array<string> = []
const note = (line: string) => {
  log.push(line)
  console.log(`[can-sync peer] ${line}`)
}

let identity: BrowserIdentity | undefined
let signaling: SignalingClient | undefined
let connection: Connection | undefined
let engine: EngineSession | undefined
let closeReason: string | undefined

type Stats = ReadonlyMap<string, Record<string, unknown>>

const candidateInfo = (stats: Stats, id: string | undefined): IceCandidateInfo | undefined => {
  const c = id === undefined ? undefined : stats.get(id)
  if (c === undefined) return undefined
  return { candidateType: String(c.candidateType), protocol: String(c.protocol), address: String(c.address ?? c.ip), port: Number(c.port) }
}

/** The ICE pair and DTLS state the connection actually uses, from the browser's own stats. */
const connectionPath = async (pc: RTCPeerConnection): Promise<ConnectionPath> => {
  const stats = new Map<string, Record<string, unknown>>()
  ;(await pc.getStats()).forEach((s: Record<string, unknown>) => stats.set(String(s.id), s))
  const transport = [...stats.values()].find((s) => s.type === "transport")
  const pair = typeof transport?.selectedCandidatePairId === "string" ? stats.get(transport.selectedCandidatePairId) : undefined
  return {
    local: candidateInfo(stats, pair?.localCandidateId as string | undefined),
    remote: candidateInfo(stats, pair?.remoteCandidateId as string | undefined),
    dtlsState: transport?.dtlsState as string | undefined,
    dtlsCipher: transport?.dtlsCipher as string | undefined,
    sctpMaxMessageSize: pc.sctp?.maxMessageSize
  }
}

const createIdentity: CanSyncPeer["createIdentity"] = async ({ agent, order }) => {
  for (let attempts = 1; attempts <= 100_000; attempts++) {
    const candidate = await generate()
    if (order === "below" ? candidate.peerId < agent : candidate.peerId > agent) {
      identity = candidate
      note(`identity ${candidate.peerId} (${order} the agent's ${agent}; ${attempts} key(s) generated)`)
      return { peerId: candidate.peerId, attempts }
    }
  }
  throw new Error(`no key with an id ${order} ${agent} in 100000 attempts`)
}

const sync: CanSyncPeer["sync"] = async ({ signalUrl, agent, timeoutMs }) => {
  if (identity === undefined) throw new Error("createIdentity first")
  const self = identity
  const started = Date.now()
  const connectBy = started + timeoutMs
  const client = (signaling = await SignalingClient.connect(signalUrl, self, timeoutMs))
  note(`registered with ${signalUrl} as ${self.peerId}`)
  // Like the agent, retry a failed attempt with a fresh connection, backing off, until the deadline.
  const failedAttempts: Array<string> = []
  const staleSids = new Set<string>()
  const attempt = async (): Promise<Connection> => {
    try {
      return await connect({
        identity: self,
        signaling: client,
        agent,
        timeoutMs: Math.max(1, connectBy - Date.now()),
        log: note,
        staleSids,
        link: {
          ...defaultLinkOptions,
          receiveWindowBytes: RECEIVE_WINDOW_BYTES,
          maxFrameBytes: RECEIVE_WINDOW_BYTES / 2,
          maxMessageBytes: 64 * 1024,
          heartbeatInterval: "1 second",
          heartbeatTimeout: "4 seconds"
        }
      })
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error)
      if (error instanceof AttemptFailed && error.sid !== undefined) staleSids.add(error.sid)
      failedAttempts.push(reason)
      const delay = Math.min(4000, 500 * 2 ** (failedAttempts.length - 1))
      if (Date.now() + delay >= connectBy) {
        throw new Error(`${failedAttempts.length} attempt(s) failed: ${failedAttempts.join(" | ")}`)
      }
      note(`attempt ${failedAttempts.length} failed: ${reason}; retrying in ${delay} ms`)
      await new Promise((resolve) => setTimeout(resolve, delay))
      return attempt()
    }
  }
  const conn = await attempt()
  connection = conn
  conn.link.closed.then((reason) => {
    closeReason = reason
    note(`link closed: ${reason}; counters ${JSON.stringify(conn.link.stats())}`)
  })
  const connected = Date.now()
  note(`authenticated link with ${agent} (${conn.role}, session ${conn.sid})`)
  engine = Engine.run(conn.link, { self: self.peerId, agent, maxFrameBytes: RECEIVE_WINDOW_BYTES / 2 })
  const deadline = new Promise<never>((_, expired) => setTimeout(() => expired(new Error(`reconcile not over within ${timeoutMs} ms`)), timeoutMs))
  const report = await Promise.race([engine.reconciled, deadline])
  note(`reconciled: ${report.assets.length} asset(s) received`)
  return {
    peerId: self.peerId,
    role: conn.role,
    sid: conn.sid,
    knocks: conn.knocks,
    failedAttempts,
    signalsRefused: conn.signalsRefused,
    offererFingerprint: conn.offererFingerprint,
    answererFingerprint: conn.answererFingerprint,
    path: await connectionPath(conn.pc),
    engine: report,
    link: conn.link.stats(),
    connectMillis: connected - started,
    reconcileMillis: Date.now() - connected
  }
}

const status: CanSyncPeer["status"] = () => {
  if (connection === undefined || engine === undefined) throw new Error("not connected")
  return { open: connection.link.isOpen, closeReason, link: connection.link.stats(), offersDeclined: engine.offersDeclined() }
}

const close: CanSyncPeer["close"] = async () => {
  const conn = connection
  const goodbyeAnswered = conn === undefined ? false : await conn.link.close()
  conn?.pc.close()
  signaling?.close()
  note(`closed (goodbye ${goodbyeAnswered ? "answered" : "not answered"})`)
  return { goodbyeAnswered, link: conn?.link.stats() }
}

window.canSyncPeer = { createIdentity, sync, status, close, log }
