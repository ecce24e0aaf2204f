#!/usr/bin/env node
/**
 * `can-sync`: the command-line entry point. Wires the subcommands and renders any failure as one
 * line on stderr, exiting 1 (runtime failure) or 2 (usage error). SIGINT/SIGTERM stop the services
 * (`sync`, `serve`, `signal`) cleanly with exit 0; a one-shot command they cut short exits 130/143
 * and says it did not finish.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { CliError, CliOutput, Command } from "effect/cli"
import { describeCause, failureExitCode } from "./Errors.ts"
import * as Logging from "./Logging.ts"
import { add, cat, ls, meta, serve, verify } from "./StoreCommands.ts"
import { sync } from "./SyncCommand.ts"
import { id, signal } from "./TransportCommands.ts"
import { version } from "./Version.ts"

const root = Command.make("can-sync").pipe(
  Command.withDescription("Peer-to-peer sync for content-addressed asset stores"),
  Command.withSubcommands([sync, serve, add, ls, cat, meta, verify, id, signal])
)

/** Parse errors and help were already rendered by the CLI itself. */
const alreadyRendered = (cause: Cause.Cause<unknown>) =>
  cause.reasons.some((reason) => Cause.isFailReason(reason) && CliError.isCliError(reason.error))

/**
 * A command line that does not parse is an error like any other: one `can-sync: ...` line on
 * stderr, pointing at the command's help, rather than the whole help on stdout.
 */
const presenter = CliOutput.layerPresenter({
  present: (event) =>
    event._tag === "InvalidInvocation"
      ? Console.error(`can-sync: ${
        event.errors.map((error) => error.message.replace(/\s*\n\s*/g, " ").trim()).join("; ")
      } (see \`${event.commandPath.join(" ")} --help\`)`)
      : CliOutput.defaultPresenter.present(event)
})

/** Commands that run until stopped: a signal is how they end, not a failure. */
const services = new Set(["sync", "serve", "signal"])
const command = process.argv[2] ?? ""
const signals = { SIGINT: 130, SIGTERM: 143 } as const
let stoppedBy: keyof typeof signals | undefined
for (const signal of Object.keys(signals) as Array<keyof typeof signals>) process.once(signal, () => (stoppedBy ??= signal))

const interrupted = Effect.suspend(() =>
  stoppedBy !== undefined && !services.has(command)
    ? Console.error(`can-sync: interrupted by ${stoppedBy}: \`${command}\` did not finish`)
    : Effect.void
)

const program = Command.run(root, { version }).pipe(
  Effect.tapCause((cause) =>
    alreadyRendered(cause) || Cause.hasInterruptsOnly(cause) ? Effect.void : Console.error(`can-sync: ${describeCause(cause)}`)
  ),
  Effect.onInterrupt(() => interrupted),
  Effect.provide(Logging.layer({ json: "auto" })),
  Effect.provide(presenter),
  Effect.provide(NodeServices.layer)
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) =>
    onExit(
      Exit.isSuccess(exit)
        ? 0
        : Exit.hasInterrupts(exit) && Cause.hasInterruptsOnly(exit.cause)
        ? (stoppedBy === undefined || services.has(command) ? 0 : signals[stoppedBy])
        : failureExitCode(exit.cause)
    )
})
