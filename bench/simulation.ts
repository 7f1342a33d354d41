/**
 * The routing-quality bench: every built-in scenario, full length, against our default
 * configuration (and its variants), the baselines and the oracle, on one seed. Prints a
 * table per scenario with the bars, how many simulated requests a wall-clock second runs,
 * and writes `bench/results/simulation.json` and `docs/benchmarks.md`'s simulation part
 * (`bench/results/simulation.md`, which the suite splices into the doc).
 *
 * Alone: `npx tsx --tsconfig tsconfig.examples.json bench/simulation.ts`.
 */
import { Effect } from "effect"
import { Simulation } from "effect-llm-balancer"
import { mkdirSync, writeFileSync } from "node:fs"
import { machine } from "./harness.js"

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

/** The simulation part of docs/benchmarks.md. */
export const markdown = (results: ReadonlyArray<ScenarioResult>): string => {
  const lines: Array<string> = []
  for (const r of results) {
    lines.push(
      `### ${r.scenario}`,
      "",
      `${r.description}. ${r.requestsPerWallSecond.toLocaleString("en-US")} simulated requests per wall-clock second.`,
      ""
    )
    lines.push("| router | success % | p50 ms | p99 ms | p99.9 ms | attempts/req | 429s | sent while failing | cost |")
    lines.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (const x of r.routers) {
      lines.push(
        `| ${x.router} | ${(x.successRate * 100).toFixed(2)} | ${x.latency.p50 ?? "-"} | ${x.latency.p99 ?? "-"} | ${
          x.latency.p999 ?? "-"
        } | ${x.attemptsPerRequest.toFixed(3)} | ${x.rateLimited} | ${x.sentWhileFailing} | ${x.cost.toFixed(2)} |`
      )
    }
    lines.push("")
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

if (import.meta.url === `file://${process.argv[1]}`) {
  const date = new Date().toISOString()
  Effect.runPromise(runSimulation()).then((results) => writeSimulation(results, date))
}
