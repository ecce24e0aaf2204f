/**
 * CPU per thread of a process, from Linux's /proc/PID/task: how a benchmark says where the CPU
 * went (the main thread, V8's GC helpers, libuv's pool, node-datachannel's RTC worker and libjuice
 * poller). Seconds of user + system time summed by thread name; empty where /proc is missing.
 */
import { readdirSync, readFileSync } from "node:fs"

export type ThreadCpu = Readonly<Record<string, number>>

/** Clock ticks per second in /proc's stat (USER_HZ, 100 on Linux). */
const TICKS = 100

/** CPU seconds each named thread group of `pid` (default: this process) has used so far. */
export const threadCpu = (pid: number | "self" = "self"): ThreadCpu => {
  const out: Record<string, number> = {}
  let tasks: Array<string>
  try {
    tasks = readdirSync(`/proc/${pid}/task`)
  } catch {
    return out
  }
  for (const task of tasks) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, "utf8")
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      out[name] = (out[name] ?? 0) + (Number(fields[11]) + Number(fields[12])) / TICKS // utime, stime
    } catch {
      // the thread ended meanwhile
    }
  }
  return out
}

/** What each thread group used between two readings of the same process. */
export const since = (before: ThreadCpu, after: ThreadCpu): ThreadCpu =>
  Object.fromEntries(Object.keys(after).map((name) => [name, after[name]! - (before[name] ?? 0)]).filter(([, s]) => (s as number) > 0))

/** Several readings added by thread name, rounded to 10 ms (the clock tick). */
export const sum = (...all: ReadonlyArray<ThreadCpu>): ThreadCpu => {
  const out: Record<string, number> = {}
  for (const one of all) for (const [name, s] of Object.entries(one)) out[name] = Math.round(((out[name] ?? 0) + s) * 100) / 100
  return out
}
