/**
 * The NAT lab, on the network lab's namespaces: a "public" namespace (100.64.0.1 on its loopback,
 * for the signaling server and coturn) routing between two "home" networks, each a host behind
 * its own NAT router. A router is a cone NAT (port-preserving masquerade plus inbound forwarding
 * of the pinned ICE port range: endpoint-independent mapping and filtering) or a symmetric one.
 */
import { Effect, type Scope } from "effect"
import * as Netlab from "../netlab/Netlab.ts"
import type { Namespace, NetlabError } from "../netlab/Netlab.ts"

/**
 * cone: `MASQUERADE` keeps the inside port, and a `DNAT` of the ICE port range back to the host
 * lets any outside address in (full cone). Without that DNAT, Linux's conntrack makes two
 * masquerading routers behave as symmetric NATs for ICE (a check arriving first takes the port).
 * symmetric: `MASQUERADE --random-fully`, a new random port for every destination.
 */
export type NatKind = "cone" | "symmetric"

export const PUBLIC_ADDRESS = "100.64.0.1"

/** The UDP range the agents pin with `--ice-ports` (the cone routers forward it inbound). */
export const ICE_PORTS = { begin: 40000, end: 40099 } as const

export interface Home {
  /** The agent's namespace and its private address (192.168.N.2) */
  readonly host: Namespace
  readonly address: string
  /** The router's namespace and its outside ("WAN") address (100.64.N.2) */
  readonly router: Namespace
  readonly wanAddress: string
  readonly nat: NatKind
}

export interface NatLab {
  readonly lab: Netlab.Lab
  /** Holds PUBLIC_ADDRESS; routes between the homes' WAN links; no default route. */
  readonly pub: Namespace
  readonly homes: ReadonlyArray<Home>
}

const iptables = (ns: Namespace, ...args: ReadonlyArray<string>) => ns.exec(["iptables", ...args])

const home = (lab: Netlab.Lab, pub: Namespace, n: number, nat: NatKind) =>
  Effect.gen(function*() {
    const router = yield* lab.namespace(`r${n}`)
    const host = yield* lab.namespace(`h${n}`)
    const wanAddress = `100.64.${n}.2`
    const address = `192.168.${n}.2`
    yield* lab.veth({ ns: pub, ifname: `wan${n}`, address: `100.64.${n}.1/24` }, { ns: router, ifname: "wan", address: `${wanAddress}/24` })
    yield* lab.veth({ ns: router, ifname: "lan", address: `192.168.${n}.1/24` }, { ns: host, ifname: "eth0", address: `${address}/24` })
    yield* router.exec(["ip", "route", "add", "default", "via", `100.64.${n}.1`])
    yield* host.exec(["ip", "route", "add", "default", "via", `192.168.${n}.1`])
    yield* router.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    if (nat === "cone") {
      yield* iptables(router, "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
      yield* iptables(router, "-t", "nat", "-A", "PREROUTING", "-i", "wan", "-p", "udp", "--dport", `${ICE_PORTS.begin}:${ICE_PORTS.end}`, "-j", "DNAT", "--to-destination", address)
    } else {
      yield* iptables(router, "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE", "--random-fully")
    }
    return { host, address, router, wanAddress, nat } satisfies Home
  })

/** Two homes behind the given NATs; everything is removed when the scope closes. */
export const make = (nats: ReadonlyArray<NatKind>): Effect.Effect<NatLab, NetlabError, Scope.Scope> =>
  Effect.gen(function*() {
    const lab = yield* Netlab.make
    const pub = yield* lab.namespace("pub")
    yield* pub.exec(["ip", "addr", "add", `${PUBLIC_ADDRESS}/32`, "dev", "lo"])
    yield* pub.exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    const homes: Array<Home> = []
    for (const [i, nat] of nats.entries()) homes.push(yield* home(lab, pub, i + 1, nat))
    return { lab, pub, homes }
  })

/** Whether iptables works in a namespace here (the NAT lab's one extra need beyond the network lab). */
export const canNat: Effect.Effect<Netlab.Probe> = Effect.gen(function*() {
  const base = yield* Netlab.canCreateNamespaces
  if (!base.ok) return base
  return yield* Effect.scoped(
    Effect.gen(function*() {
      const lab = yield* Netlab.make
      const ns = yield* lab.namespace("natprobe")
      yield* iptables(ns, "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "MASQUERADE", "--random-fully")
      yield* ns.exec(["turnserver", "--version"]) // Debian's coturn
      yield* ns.exec(["curl", "--version"]) // reads an agent's /status inside its namespace
      yield* ns.exec(["openssl", "version"]) // a throwaway CA for TURN over TLS
      return { ok: true } as const
    })
  ).pipe(Effect.catch((e: NetlabError) => Effect.succeed({ ok: false, reason: `cannot build the NAT lab here (${e.step}: ${e.detail.split("\n")[0]})` } as const)))
})
