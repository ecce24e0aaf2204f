/**
 * One connection attempt from the browser to an agent, as packages/transport/src/ConnectAttempt.ts
 * and PeerSlot.ts make one: the lower peer id offers; the higher one knocks ("please offer") and
 * answers. SDPs and trickled candidates travel as signed signals of one attempt id; the channel
 * is the single "can-sync" data channel; the link is handed out once both AuthProofs verified.
 */
import { makeIssuer } from "../../../packages/transport/src/AttemptIds.ts"
import type { LinkOptions } from "../../../packages/transport/src/ChannelLink.ts"
import type { BrowserIdentity } from "./PageIdentity.ts"
import { PageLink } from "./PageLink.ts"
import type { SignalKind, VerifiedSignal } from "./PageSignal.ts"
import { fingerprintOf, sign, verify } from "./PageSignal.ts"
import type { SignalingClient } from "./PageSignaling.ts"

export const CHANNEL_LABEL = "can-sync"
/** How often the answering side knocks while no offer has come. */
const KNOCK_INTERVAL_MS = 2000
/** Ids of our attempts and knocks: a random boot id and a counter, as the agent's. */
const nextSid = makeIssuer()

export interface ConnectParams {
  readonly identity: BrowserIdentity
  readonly signaling: SignalingClient
  readonly agent: string
  readonly timeoutMs: number
  readonly link: LinkOptions
  readonly log: (line: string) => void
  /** Sessions of earlier, failed attempts: their late offers are not answered. */
  readonly staleSids?: ReadonlySet<string> | undefined
}

export interface Connection {
  readonly link: PageLink
  readonly pc: RTCPeerConnection
  readonly role: "offerer" | "answerer"
  readonly sid: string
  readonly knocks: number
  readonly signalsRefused: ReadonlyArray<string>
  readonly offererFingerprint: string
  readonly answererFingerprint: string
}

const parseCandidate = (body: string): { readonly candidate: string; readonly mid: string } | undefined => {
  try {
    const value = JSON.parse(body) as Record<string, unknown>
    if (typeof value.candidate === "string" && typeof value.mid === "string") return { candidate: value.candidate, mid: value.mid }
  } catch {
    // refused below
  }
  return undefined
}

/** One attempt failed; `sid` is its session, if an offer was made or answered. */
export class AttemptFailed extends Error {
  readonly sid: string | undefined
  constructor(message: string, sid: string | undefined) {
    super(message)
    this.sid = sid
  }
}

/** What the browser knows of a failed connection: ICE and DTLS states, candidate pairs and candidates. */
const iceDetail = async (pc: RTCPeerConnection): Promise<string> => {
  try {
    const stats: Array<Record<string, unknown>> = []
    ;(await pc.getStats()).forEach((s: Record<string, unknown>) => stats.push(s))
    const transport = stats.find((s) => s.type === "transport")
    const pairs = stats.filter((s) => s.type === "candidate-pair").map((p) => `${String(p.state)}${p.nominated === true ? "*" : ""}`)
    const candidates = stats
      .filter((s) => s.type === "local-candidate" || s.type === "remote-candidate")
      .map((c) => `${c.type === "local-candidate" ? "local" : "remote"} ${String(c.candidateType)} ${String(c.protocol)} ${String(c.address ?? c.ip)}:${String(c.port)}`)
    return `ice ${pc.iceConnectionState}, dtls ${String(transport?.dtlsState)}, pairs [${pairs.join(", ")}], candidates [${candidates.join("; ")}]`
  } catch (error) {
    return `no stats: ${String(error)}`
  }
}

/** Connect to `agent` and authenticate the link; rejects with AttemptFailed (and closes everything) on failure or timeout. */
export const connect = async (params: ConnectParams): Promise<Connection> => {
  const { identity, signaling, agent, log } = params
  const role = identity.peerId < agent ? "offerer" : "answerer"
  const fingerprints: { offer: string | undefined; answer: string | undefined } = { offer: undefined, answer: undefined }
  let remotePublicKey: Uint8Array | undefined
  let sid: string | undefined
  let knocks = 0
  const refused: Array<string> = []

  const pc = new RTCPeerConnection({ iceServers: [] })
  const link = new PageLink({
    options: params.link,
    identity,
    role,
    remotePeer: agent,
    remotePublicKey: () => remotePublicKey,
    binding: () =>
      fingerprints.offer === undefined || fingerprints.answer === undefined
        ? undefined
        : role === "offerer"
        ? { offerer: identity.peerId, answerer: agent, offererFingerprint: fingerprints.offer, answererFingerprint: fingerprints.answer }
        : { offerer: agent, answerer: identity.peerId, offererFingerprint: fingerprints.offer, answererFingerprint: fingerprints.answer }
  })

  // Signals are signed asynchronously: a chain keeps them in order (the description before its candidates).
  let outgoing: Promise<void> = Promise.resolve()
  const send = (kind: SignalKind, signalSid: string, body: string) => {
    outgoing = outgoing.then(async () => {
      if (!signaling.send(agent, await sign(identity, agent, kind, signalSid, body), signalSid)) {
        link.fail("the signaling server is unreachable")
      }
    })
  }
  // Local candidates wait until our description went out (the agent drops candidates of an unknown session).
  let described = false
  const localCandidates: Array<string> = []
  const sendCandidate = (body: string) => (described && sid !== undefined ? send("candidate", sid, body) : localCandidates.push(body))
  const describe = (kind: "offer" | "answer", sdp: string) => {
    send(kind, sid!, sdp)
    described = true
    for (const body of localCandidates.splice(0)) send("candidate", sid!, body)
  }

  pc.onicecandidate = (event) => {
    if (event.candidate === null || event.candidate.candidate === "") return
    sendCandidate(JSON.stringify({ candidate: event.candidate.candidate, mid: event.candidate.sdpMid ?? "0" }))
  }
  pc.onconnectionstatechange = () => {
    log(`peer connection ${pc.connectionState}`)
    if (pc.connectionState === "failed" || pc.connectionState === "closed") link.fail(`the peer connection ${pc.connectionState}`)
  }

  // Remote candidates wait until the remote description is set.
  let remoteSet = false
  const early: Array<{ readonly candidate: string; readonly mid: string }> = []
  const addCandidate = (c: { readonly candidate: string; readonly mid: string }) =>
    pc.addIceCandidate({ candidate: c.candidate.replace(/^a=/, ""), sdpMid: c.mid }).catch((error: unknown) =>
      log(`candidate refused: ${String(error)}`)
    )
  const setRemote = async (type: "offer" | "answer", sdp: string) => {
    await pc.setRemoteDescription({ type, sdp })
    remoteSet = true
    for (const c of early.splice(0)) await addCandidate(c)
  }

  const answerOffer = async (offer: VerifiedSignal) => {
    sid = offer.sid
    remotePublicKey = offer.publicKey
    fingerprints.offer = fingerprintOf(offer.body)
    if (fingerprints.offer === undefined) return link.fail("the offer has no DTLS fingerprint")
    await setRemote("offer", offer.body)
    await pc.setLocalDescription(await pc.createAnswer())
    const sdp = pc.localDescription!.sdp
    fingerprints.answer = fingerprintOf(sdp)
    describe("answer", sdp)
  }

  const onSignal = async (signal: VerifiedSignal) => {
    switch (signal.kind) {
      case "offer":
        if (role === "offerer") return log("ignored an offer: the lower peer id makes the offers")
        if (sid !== undefined) return log(`ignored a second offer ${signal.sid}`)
        if (params.staleSids?.has(signal.sid) === true) return log(`ignored the offer ${signal.sid} of a failed attempt`)
        return answerOffer(signal)
      case "answer":
        if (role !== "offerer" || signal.sid !== sid || remoteSet) return
        remotePublicKey = signal.publicKey
        fingerprints.answer = fingerprintOf(signal.body)
        if (fingerprints.answer === undefined) return link.fail("the answer has no DTLS fingerprint")
        return setRemote("answer", signal.body)
      case "candidate": {
        const candidate = parseCandidate(signal.body)
        if (candidate === undefined || signal.sid !== sid) return
        if (!remoteSet) {
          if (early.length < 64) early.push(candidate)
          return
        }
        return addCandidate(candidate)
      }
      case "knock":
        return // we offer once, below; the agent's knocks only say it is waiting for us
    }
  }

  // Inbound signals are verified (WebCrypto) and handled in arrival order.
  let incoming: Promise<void> = Promise.resolve()
  signaling.consume((inbound) => {
    if (inbound._tag === "Undeliverable") {
      if (inbound.to === agent && inbound.ref !== undefined && inbound.ref === sid) link.fail("the agent is not connected to the signaling server")
      return
    }
    incoming = incoming.then(async () => {
      const verified = await verify(identity.peerId, inbound.from, inbound.data)
      if (typeof verified === "string") {
        refused.push(verified)
        return log(`refused a signal from ${inbound.from}: ${verified}`)
      }
      if (verified.from !== agent) return log(`ignored a signal from ${verified.from}: not the agent`)
      await onSignal(verified)
    }).catch((error: unknown) => link.fail(`signal handling failed: ${String(error)}`))
  })

  let knocker: ReturnType<typeof setInterval> | undefined
  if (role === "offerer") {
    sid = nextSid()
    link.attach(pc.createDataChannel(CHANNEL_LABEL))
    await pc.setLocalDescription(await pc.createOffer())
    const sdp = pc.localDescription!.sdp
    fingerprints.offer = fingerprintOf(sdp)
    describe("offer", sdp)
  } else {
    pc.ondatachannel = (event) => {
      if (event.channel.label !== CHANNEL_LABEL) return event.channel.close()
      link.attach(event.channel)
    }
    const knock = () => {
      if (sid !== undefined) return clearInterval(knocker)
      knocks++
      const knockSid = nextSid()
      send("knock", knockSid, "")
    }
    knock()
    knocker = setInterval(knock, KNOCK_INTERVAL_MS)
  }

  const deadline = setTimeout(() => link.fail(`timed out after ${params.timeoutMs} ms`), params.timeoutMs)
  try {
    await link.authenticated
  } catch (error) {
    const detail = await iceDetail(pc)
    pc.close()
    throw new AttemptFailed(`${error instanceof Error ? error.message : String(error)} (${detail})`, sid)
  } finally {
    clearTimeout(deadline)
    clearInterval(knocker)
  }
  return {
    link,
    pc,
    role,
    sid: sid!,
    knocks,
    signalsRefused: refused,
    offererFingerprint: fingerprints.offer!,
    answererFingerprint: fingerprints.answer!
  }
}
