/**
 * The Promise-facing face of `Scenario.ts`, for callers not written in Effect (the browser-peer
 * test, the sync benchmark): every method runs the Effect one. New tests use `Scenario.ts` (and
 * `test/kit`) directly; this file goes once its last caller has moved.
 */
import { Duration, Effect, Exit, Scope } from "effect"
import type { Child, Exit as ProcessExit } from "../kit/Process.ts"
import * as E2e from "./Scenario.ts"

export { repoRoot } from "../kit/Process.ts"
export type { AgentStatus, AssetRecord, GeneratedFile, PeerStatus } from "./Scenario.ts"

export const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms))

const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(effect)

/** A running CLI process: the kit's `Child`, with Promise forms of what the callers use. */
export class Proc {
  readonly child: Child
  constructor(child: Child) {
    this.child = child
  }
  messages(pattern: RegExp): ReadonlyArray<string> {
    return this.child.messages(pattern)
  }
  waitForOutput(stream: "stdout" | "stderr", pattern: RegExp, timeout: number, diagnostics?: () => string): Promise<RegExpExecArray> {
    return run(this.child.waitFor(stream, pattern, Duration.millis(timeout), diagnostics))
  }
  stop(signal: NodeJS.Signals = "SIGTERM", grace = 10_000): Promise<ProcessExit> {
    return run(this.child.stop(signal, Duration.millis(grace)))
  }
}

/** An agent (`can-sync sync`) with its admin port. */
export class Agent {
  readonly inner: E2e.Agent
  readonly proc: Proc
  constructor(name: string, data: string, peerId: string, proc: Proc, adminUrl: string) {
    this.inner = new E2e.Agent(name, data, peerId, proc.child, adminUrl)
    this.proc = proc
  }
  get name(): string {
    return this.inner.name
  }
  get peerId(): string {
    return this.inner.peerId
  }
  status(): Promise<E2e.AgentStatus> {
    return run(this.inner.status)
  }
  ready(): Promise<boolean> {
    return run(this.inner.ready)
  }
  peer(peer: Agent | string): Promise<E2e.PeerStatus | undefined> {
    return run(this.inner.peer(typeof peer === "string" ? peer : peer.peerId))
  }
}

/** A temp dir and the processes of one test; `close()` leaves nothing behind. */
export class Scenario {
  private readonly inner: E2e.Scenario
  private readonly scope: Scope.Closeable

  private constructor(inner: E2e.Scenario, scope: Scope.Closeable) {
    this.inner = inner
    this.scope = scope
  }

  static async create(name: string): Promise<Scenario> {
    const scope = await run(Scope.make())
    return new Scenario(await run(E2e.Scenario.make(name).pipe(Scope.provide(scope))), scope)
  }

  get root(): string {
    return this.inner.root
  }
  path(...parts: ReadonlyArray<string>): string {
    return this.inner.path(...parts)
  }
  note(message: string): void {
    Effect.runSync(this.inner.note(message))
  }
  diagnostics = (): string => this.inner.diagnostics()

  spawn(name: string, args: ReadonlyArray<string>): Proc {
    return new Proc(Effect.runSync(this.inner.spawn(name, args)))
  }
  wait<A>(what: string, probe: () => Promise<A | undefined> | A | undefined, timeout: number, interval = 250): Promise<A> {
    return run(this.inner.wait(what, Effect.promise(async () => probe()), Duration.millis(timeout), { interval: Duration.millis(interval) })) as Promise<A>
  }
  counters(agent: Agent, peer: Agent | string, until: (p: E2e.PeerStatus) => boolean, timeout = 30_000): Promise<E2e.PeerStatus> {
    return run(this.inner.counters(agent.inner, typeof peer === "string" ? peer : peer.inner, until, Duration.millis(timeout)))
  }
  async signal(): Promise<{ readonly url: string; readonly proc: Proc }> {
    const { url, proc } = await run(this.inner.signal())
    return { url, proc: new Proc(proc) }
  }
  id(data: string): Promise<string> {
    return run(this.inner.id(data))
  }
  largeFile(name: string, seed: string, size: number): Promise<E2e.GeneratedFile> {
    return run(this.inner.largeFile(name, seed, size))
  }
  add(data: string, files: ReadonlyArray<string>, options: { readonly description?: string; readonly tags?: ReadonlyArray<string> } = {}): Promise<ReadonlyArray<string>> {
    return run(this.inner.add(data, files, options))
  }
  async agent(name: string, options: E2e.AgentOptions): Promise<Agent> {
    const agent = await run(this.inner.agent(name, options))
    return new Agent(agent.name, agent.data, agent.peerId, new Proc(agent.proc), agent.adminUrl)
  }

  /** Stops every process still running (SIGTERM, then SIGKILL) and removes the temp dir. */
  close(): Promise<void> {
    return run(Scope.close(this.scope, Exit.void))
  }
}
