/**
 * `npm run simulate -- --config fleet.json [options]`: simulate your own fleet.
 *
 * The file is a scenario (see `Simulation.ScenarioInput` and docs/simulation.md): your
 * endpoints, each with `simulate` (how it behaves), and optionally `traffic`, `faults`,
 * `routing`, `budget` and `health`. `--scenario <name>` takes the traffic, faults and
 * routing of a built-in scenario instead, its faults moved onto your endpoints in order
 * (the built-ins' first endpoint is your first, and so on).
 */
import { Cause, Effect, Exit } from "effect"
import { Simulation, Strategy } from "effect-llm-balancer"
import * as fs from "node:fs"
import * as path from "node:path"

const usage = `Usage: npm run simulate -- --config <fleet.json> [options]

Simulates your fleet of endpoints under traffic and faults, through the real router and
balancer, on simulated time (an hour of traffic takes seconds), and prints a report.

Options:
  --config <file>      the scenario file (JSON): endpoints with "simulate", and optionally
                       traffic, faults, routing, budget, health
  --scenario <name>    take traffic, faults and routing from a built-in scenario:
                       ${Object.keys(Simulation.builtIns).join(", ")}
  --strategy <name>    the strategy of our balancer (default power-of-two):
                       ${Object.keys(Strategy.builtIn).join(", ")}
  --compare            also run the baselines: round-robin, seeds, litellm, oracle
  --seed <n>           the random seed (default 1); the same seed gives the same report
  --html <file>        write a self-contained HTML report with charts
  --json <file>        write the full reports (every request) as JSON
  --help               show this help
`

class UsageError extends Error {}

const parse = (argv: ReadonlyArray<string>) => {
  const options: Record<string, string | true> = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (!arg.startsWith("--")) throw new UsageError(`unexpected argument "${arg}"`)
    const name = arg.slice(2)
    if (name === "help" || name === "compare") options[name] = true
    else if (["config", "scenario", "strategy", "seed", "html", "json"].includes(name)) {
      const value = argv[++i]
      if (value === undefined || value.startsWith("--")) throw new UsageError(`${arg} needs a value`)
      options[name] = value
    } else throw new UsageError(`unknown option ${arg}`)
  }
  return options
}

const readJson = (file: string): unknown => {
  let text: string
  try {
    text = fs.readFileSync(file, "utf8")
  } catch (error) {
    throw new UsageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`)
  }
  try {
    return JSON.parse(text)
  } catch (error) {
    throw new UsageError(`${file} is not valid JSON: ${(error as Error).message}`)
  }
}

/** The built-in's traffic, faults and routing on the user's endpoints. */
const onBuiltIn = (file: Record<string, unknown>, name: string): unknown => {
  if (!Object.hasOwn(Simulation.builtIns, name)) {
    throw new UsageError(`unknown scenario "${name}" (expected one of ${Object.keys(Simulation.builtIns).join(", ")})`)
  }
  // these put their point in the endpoints (limits, prices, a budget): on another fleet
  // they would quietly be a steady run
  if (["rate-limit", "rate-limit-known", "cost"].includes(name)) {
    throw new UsageError(
      `--scenario ${name} models its endpoints' limits or prices, which come from your file: ` +
        `give your endpoints "limits" / "cost" (and "simulate.limits") and a "budget" instead`
    )
  }
  if (file.name !== undefined && typeof file.name !== "string") {
    throw new UsageError(`"name" must be a string`)
  }
  const builtIn = Simulation.builtIns[name as keyof typeof Simulation.builtIns].scenario(1)
  const theirs = Array.isArray(file.endpoints) ? file.endpoints as Array<{ name?: unknown }> : []
  const rename = new Map(builtIn.endpoints.map((e, i) => [e.name, theirs[i]?.name] as const))
  const faults = (builtIn.faults ?? []).flatMap((f) => {
    if (f.endpoint === "*") return [f]
    const target = rename.get(f.endpoint)
    if (typeof target === "string") return [{ ...f, endpoint: target }]
    process.stderr.write(
      `simulate: note: the ${f.type} of the scenario's endpoint number ${
        builtIn.endpoints.findIndex((e) => e.name === f.endpoint) + 1
      } is left out: your fleet has ${theirs.length} endpoint(s)\n`
    )
    return []
  })
  return {
    ...file,
    name: `${builtIn.name} on ${file.name ?? "your fleet"}`,
    traffic: builtIn.traffic,
    faults,
    ...(builtIn.routing !== undefined ? { routing: builtIn.routing } : {})
  }
}

const main = Effect.gen(function*() {
  const options = parse(process.argv.slice(2))
  if (options.help === true) {
    yield* Effect.sync(() => process.stdout.write(usage))
    return
  }
  if (typeof options.config !== "string") throw new UsageError("--config <file> is required (see --help)")
  let input = readJson(options.config)
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new UsageError(`${options.config} must hold a JSON object (a scenario)`)
  }
  if (typeof options.scenario === "string") input = onBuiltIn(input as Record<string, unknown>, options.scenario)
  const strategy = options.strategy
  if (strategy !== undefined && (strategy === true || !Object.hasOwn(Strategy.builtIn, strategy))) {
    throw new UsageError(
      `unknown strategy "${String(strategy)}" (expected one of ${Object.keys(Strategy.builtIn).join(", ")})`
    )
  }
  const seed = options.seed === undefined ? 1 : Number(options.seed)
  if (typeof options.seed === "string" && !/^\d+$/.test(options.seed) || !(seed >= 0 && seed < 2 ** 32)) {
    throw new UsageError(`--seed must be a whole number from 0 to 4294967295, got "${String(options.seed)}"`)
  }
  // where the reports go is checked before minutes of simulation, not after
  for (const flag of ["html", "json"] as const) {
    const file = options[flag]
    if (typeof file !== "string") continue
    const dir = path.dirname(path.resolve(file))
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
      throw new UsageError(`--${flag} ${file}: the directory ${dir} does not exist`)
    }
  }
  const scenario = yield* Simulation.decode(input)
  const ours = Simulation.balancer(
    strategy === undefined ? "default" : String(strategy),
    strategy === undefined ? {} : { strategy: strategy as Strategy.BuiltInName }
  )
  const contenders = options.compare === true
    ? [ours, ...(["round-robin", "seeds", "litellm", "oracle"] as const).map((b) => Simulation.baseline(b))]
    : [ours]
  const reports: Array<Simulation.Report> = []
  for (const contender of contenders) {
    const report = yield* Simulation.run(scenario, contender, {
      seed,
      onProgress: (p) => {
        if (process.stderr.isTTY) process.stderr.write(`\r${Simulation.progressLine(p)}`)
      }
    })
    if (process.stderr.isTTY) process.stderr.write("\n")
    reports.push(report)
  }
  process.stdout.write(`${Simulation.toTable(reports)}\n`)
  for (const f of reports[0].faults) {
    process.stdout.write(
      `${f.type} of ${f.endpoint} (${f.from / 1000}-${f.to / 1000} s): ${f.attempts} attempts, share ${
        (f.share * 100).toFixed(1)
      } % (normally ${(f.normalShare * 100).toFixed(1)} %), detected after ${
        f.detectedAfterMs === null ? "never" : `${f.detectedAfterMs / 1000} s`
      }, recovered after ${f.recoveredAfterMs === null ? "never" : `${f.recoveredAfterMs / 1000} s`}\n`
    )
  }
  if (typeof options.html === "string") {
    fs.writeFileSync(options.html, Simulation.toHtml(reports, { title: scenario.name }))
    process.stdout.write(`HTML report: ${options.html}\n`)
  }
  if (typeof options.json === "string") {
    fs.writeFileSync(options.json, JSON.stringify(reports))
    process.stdout.write(`JSON reports: ${options.json}\n`)
  }
})

Effect.runPromiseExit(main).then((exit) => {
  if (Exit.isSuccess(exit)) return
  // a bad file is an InvalidConfig naming every bad field; a bad command line, a UsageError
  const error = Cause.squash(exit.cause)
  process.stderr.write(`simulate: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(2)
})
