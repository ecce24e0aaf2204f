/**
 * Reads a Dockerfile the way `docker build` would for what a test can check without an engine:
 * the stages, and the final stage's ENV, USER, VOLUME, EXPOSE, HEALTHCHECK, ENTRYPOINT and CMD
 * (exec/JSON form). Line continuations and comments are handled; ARG defaults are substituted.
 */
export interface Instruction {
  readonly keyword: string
  readonly args: string
}

export interface Stage {
  readonly from: string
  readonly name: string | undefined
  readonly instructions: ReadonlyArray<Instruction>
}

export interface Image {
  readonly stages: ReadonlyArray<Stage>
  readonly env: Readonly<Record<string, string>>
  readonly user: string | undefined
  readonly volumes: ReadonlyArray<string>
  readonly exposed: ReadonlyArray<string>
  readonly entrypoint: ReadonlyArray<string>
  readonly cmd: ReadonlyArray<string>
  /** HEALTHCHECK options (`--interval=10s` → interval: "10s") and its CMD in exec form. */
  readonly healthcheck: { readonly options: Readonly<Record<string, string>>; readonly cmd: ReadonlyArray<string> } | undefined
}

/** Logical lines: comments dropped, `\` continuations joined. */
export const instructions = (text: string): Array<Instruction> => {
  const out: Array<Instruction> = []
  let pending = ""
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd()
    if (pending === "" && /^\s*#/.test(line)) continue
    if (pending !== "" && /^\s*#/.test(line)) continue // comments inside a continuation
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `
      continue
    }
    const full = (pending + line).trim()
    pending = ""
    if (full === "") continue
    const match = /^(\S+)\s*(.*)$/s.exec(full)
    if (match !== null) out.push({ keyword: (match[1] ?? "").toUpperCase(), args: (match[2] ?? "").trim() })
  }
  return out
}

const execForm = (args: string): Array<string> => {
  const parsed: unknown = JSON.parse(args)
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === "string")) return []
  return parsed
}

/** `ENV A=1 B="two words"` (and the legacy `ENV A value`). */
const envPairs = (args: string): Array<[string, string]> => {
  const pairs: Array<[string, string]> = []
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(args)) {
    const [key = "", ...rest] = args.split(/\s+/)
    return [[key, rest.join(" ")]]
  }
  for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    const value = m[2] ?? ""
    pairs.push([m[1] ?? "", value.startsWith("\"") ? (JSON.parse(value) as string) : value])
  }
  return pairs
}

const substitute = (s: string, vars: Readonly<Record<string, string>>) =>
  s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (whole, a: string | undefined, b: string | undefined) => vars[a ?? b ?? ""] ?? whole)

export const parse = (text: string): Image => {
  const all = instructions(text)
  const globalArgs: Record<string, string> = {}
  const stages: Array<{ from: string; name: string | undefined; instructions: Array<Instruction> }> = []
  for (const ins of all) {
    if (ins.keyword === "ARG" && stages.length === 0) {
      const [key = "", value = ""] = ins.args.split("=", 2)
      globalArgs[key] = value
      continue
    }
    if (ins.keyword === "FROM") {
      const [image = "", as, name] = substitute(ins.args, globalArgs).split(/\s+/)
      stages.push({ from: image, name: as?.toUpperCase() === "AS" ? name : undefined, instructions: [] })
      continue
    }
    stages.at(-1)?.instructions.push(ins)
  }
  const final = stages.at(-1)?.instructions ?? []
  const env: Record<string, string> = {}
  let user: string | undefined
  const volumes: Array<string> = []
  const exposed: Array<string> = []
  let entrypoint: Array<string> = []
  let cmd: Array<string> = []
  let healthcheck: Image["healthcheck"]
  for (const ins of final) {
    switch (ins.keyword) {
      case "ENV":
        for (const [k, v] of envPairs(ins.args)) env[k] = substitute(v, env)
        break
      case "USER":
        user = ins.args
        break
      case "VOLUME":
        volumes.push(...(ins.args.startsWith("[") ? execForm(ins.args) : ins.args.split(/\s+/)))
        break
      case "EXPOSE":
        exposed.push(...ins.args.split(/\s+/))
        break
      case "ENTRYPOINT":
        entrypoint = execForm(ins.args)
        break
      case "CMD":
        cmd = execForm(ins.args)
        break
      case "HEALTHCHECK": {
        const options: Record<string, string> = {}
        let rest = ins.args
        for (let m = /^--([a-z-]+)=(\S+)\s+/.exec(rest); m !== null; m = /^--([a-z-]+)=(\S+)\s+/.exec(rest)) {
          options[m[1] ?? ""] = m[2] ?? ""
          rest = rest.slice(m[0].length)
        }
        healthcheck = rest.startsWith("CMD ") ? { options, cmd: execForm(rest.slice(4).trim()) } : undefined
        break
      }
    }
  }
  return { stages, env, user, volumes, exposed, entrypoint, cmd, healthcheck }
}
