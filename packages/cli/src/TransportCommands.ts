/**
 * `can-sync id` (print this agent's peer id, creating its key on first use) and `can-sync signal`
 * (run the WebSocket signaling server that relays offers, answers and candidates by peer id);
 * with `--json` each prints one JSON object instead of its line.
 */
import { Identity } from "@can-sync/transport/Identity"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Command, Flag } from "effect/cli"
import { dataFlag, jsonFlag, port, positive } from "./SharedFlags.ts"

export const id = Command.make("id", { data: dataFlag, json: jsonFlag }, ({ data, json }) =>
  Identity.loadOrCreate(data).pipe(
    Effect.flatMap((identity) => Console.log(json ? JSON.stringify({ peerId: identity.peerId }) : identity.peerId))
  )
).pipe(Command.withDescription("Print this agent's peer id (its Ed25519 key is created on first use)"))

export const signal = Command.make("signal", {
  host: Flag.String("host").pipe(Flag.withDescription("Address to listen on"), Flag.withDefault("127.0.0.1")),
  port: Flag.Int("port").pipe(Flag.withDescription("Port to listen on"), port, Flag.withDefault(7777)),
  maxConnections: Flag.Int("max-connections").pipe(
    Flag.withDescription("Connections open at once; more are refused (default 10000)"),
    positive,
    Flag.optional
  ),
  relaysPerSecond: Flag.Int("relays-per-second").pipe(
    Flag.withDescription("Signals one connection may relay per second, twice that in a burst (default 200)"),
    positive,
    Flag.optional
  ),
  json: jsonFlag
}, ({ host, json, port, maxConnections, relaysPerSecond }) =>
  Effect.scoped(Effect.gen(function*() {
    const Signaling = yield* Effect.promise(() => import("@can-sync/transport/Signaling"))
    const server = yield* Signaling.serve({
      host,
      port,
      maxConnections: Option.getOrUndefined(maxConnections),
      relaysPerSecond: Option.getOrUndefined(relaysPerSecond)
    })
    yield* Console.log(json ? JSON.stringify({ url: server.url, host: server.host, port: server.port }) : `signaling at ${server.url}`)
    return yield* Effect.never
  }))
).pipe(Command.withDescription("Run a WebSocket signaling server for agents to find each other"))
