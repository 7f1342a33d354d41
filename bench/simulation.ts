/**
 * The routing-quality bench: every built-in scenario, full length, against our default
 * configuration (and its variants), the baselines and the oracle, on one seed. Prints a
 * table per scenario with the bars, how many simulated requests a wall-clock second runs,
 * and writes `bench/results/simulation.json` and `bench/results/simulation.md` (the tables
 * and bars alone); bench/report.ts builds docs/benchmarks.md from the JSON.
 *
 * Alone (writes the two files, then rebuilds docs/benchmarks.md from every file in
 * bench/results/): `npx tsx --tsconfig tsconfig.examples.json bench/simulation.ts`.
 */
import { Effect } from "effect"
import { Simulation } from "effect-llm-balancer"
import { mkdirSync, writeFileSync } from "node:fs"
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { machine } from "./harness.js"
import { routerTable, writeReport } from "./report.js"

export interface ScenarioResult {
  readonly scenario: string
  readonly description: string
  readonly requestsPerWallSecond: number
  readonly bars: ReadonlyArray<Simulation.Bar>
  readonly routers: ReadonlyArray<Omit<Simulation.Report, "records" | "timeline">>
}

export const runSimulation = (seed = 1) =>
  Effect.gen(function*() {
    const results: Array<ScenarioResult> = []
    for (const [name, builtIn] of Object.entries(Simulation.builtIns)) {
      const scenario = builtIn.scenario(1)
      const started = performance.now()
      const reports = yield* Simulation.compare(scenario, builtIn.contenders, { seed })
      const wallSeconds = (performance.now() - started) / 1000
      const requests = reports.reduce((n, r) => n + r.requests, 0)
      results.push({
        scenario: name,
        description: scenario.description ?? "",
        requestsPerWallSecond: Math.round(requests / wallSeconds),
        bars: builtIn.bars(reports),
        routers: reports.map(({ records: _records, timeline: _timeline, ...rest }) => rest)
      })
      console.log(describeScenario(results[results.length - 1], reports))
    }
    return results
  })

const describeScenario = (result: ScenarioResult, reports: ReadonlyArray<Simulation.Report>) =>
  [
    `\n${result.scenario}: ${result.description} (${
      result.requestsPerWallSecond.toLocaleString("en-US")
    } simulated requests per wall second)`,
    Simulation.toTable(reports),
    ...result.bars.map((b) => `  ${b.pass ? "pass" : "MISS"} ${b.name}: ${round(b.value)} (limit ${b.limit})`)
  ].join("\n")

const round = (n: number) => Math.round(n * 1000) / 1000

/** bench/results/simulation.md: per scenario, the comparison of routers and the bars. */
export const markdown = (results: ReadonlyArray<ScenarioResult>): string => {
  const lines: Array<string> = []
  for (const r of results) {
    lines.push(
      `### ${r.scenario}`,
      "",
      `${r.description}. ${r.requestsPerWallSecond.toLocaleString("en-US")} simulated requests per wall-clock second.`,
      ""
    )
    lines.push(routerTable(r.routers), "")
    for (const b of r.bars) {
      lines.push(`- ${b.pass ? "pass" : "**miss**"}: ${b.name}: ${round(b.value)} (bar ${b.limit})`)
    }
    lines.push("")
  }
  return lines.join("\n")
}

export const writeSimulation = (results: ReadonlyArray<ScenarioResult>, date: string) => {
  const dir = new URL("./results/", import.meta.url)
  mkdirSync(dir, { recursive: true })
  writeFileSync(new URL("simulation.json", dir), JSON.stringify({ date, machine: machine(), results }, null, 2) + "\n")
  writeFileSync(new URL("simulation.md", dir), markdown(results) + "\n")
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)

if (isMain) {
  const date = new Date().toISOString()
  Effect.runPromise(runSimulation()).then(
    (results) => {
      writeSimulation(results, date)
      console.log("\nwrote bench/results/simulation.json and bench/results/simulation.md")
      console.log(`wrote ${writeReport()}`)
    },
    (error) => {
      console.error(error)
      process.exitCode = 1
    }
  )
}
