/**
 * The one place that reads configuration: flags first, then environment (`CAN_SYNC_DATA`,
 * `CAN_SYNC_TOKEN`, ...), then per-user defaults. Commands receive plain resolved values.
 */
import * as Config from "effect/Config"
import * as Option from "effect/Option"
import { Flag } from "effect/cli"
import { homedir } from "node:os"
import { join } from "node:path"

/** `$XDG_DATA_HOME/can-sync`, else `~/.local/share/can-sync`. */
export const defaultDataDir = (): string =>
  join(process.env.XDG_DATA_HOME && process.env.XDG_DATA_HOME !== "" ? process.env.XDG_DATA_HOME : join(homedir(), ".local", "share"), "can-sync")

/** `--data DIR`, else `CAN_SYNC_DATA`, else the per-user data directory. */
export const dataFlag = Flag.String("data").pipe(
  Flag.withDescription("Data directory of the CAN store (env CAN_SYNC_DATA; default ~/.local/share/can-sync)"),
  Flag.withFallbackConfig(Config.String("CAN_SYNC_DATA")),
  Flag.optional,
  Flag.map((dir) => Option.getOrElse(dir, defaultDataDir))
)

/** `--token T`, else `CAN_SYNC_TOKEN`. */
export const tokenFlag = Flag.String("token").pipe(
  Flag.withDescription("Bearer token of the CAN HTTP service (env CAN_SYNC_TOKEN)"),
  Flag.withFallbackConfig(Config.String("CAN_SYNC_TOKEN")),
  Flag.optional
)

/** `--json`: machine-readable output. */
export const jsonFlag = Flag.Boolean("json").pipe(Flag.withDescription("Machine-readable JSON output"), Flag.withDefault(false))
