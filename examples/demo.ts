/**
 * The demo (`npm start`): twelve minutes of traffic to four providers, simulated in a few
 * seconds. Azure slows down 8x for two minutes, Anthropic refuses connections for three,
 * and Groq's rate limit drops to 60 requests a minute for two. The same requests go
 * through this library's default configuration, through plain round robin, and through
 * an oracle that knows every endpoint's true state; the terminal shows each run's
 * progress, then a comparison table, and `simulation-report.html` gets the charts.
 *
 * No network, no API key: the endpoints are simulated (see `Simulation`), the router and
 * balancer are the real ones. Pass `--html <file>` to write the report elsewhere.
 */
import { Console, Effect } from "effect"
import { Simulation } from "effect-llm-balancer"
import * as fs from "node:fs"
import * as path from "node:path"

const htmlArg = process.argv.indexOf("--html")
const htmlFile = htmlArg === -1 ? "simulation-report.html" : process.argv[htmlArg + 1]
if (htmlFile === undefined || htmlFile.startsWith("--")) {
  console.error("--html needs a file name")
  process.exit(2)
}
const htmlPath = path.resolve(htmlFile)
const interactive = process.stdout.isTTY === true

const demo = Simulation.builtIns.demo

const program = Effect.gen(function*() {
  const scenario = demo.scenario(1)
  yield* Console.log(`Scenario "${scenario.name}": ${scenario.description}`)
  yield* Console.log("Each run below replays the same 12 simulated minutes (about 14,000 requests).\n")
  const reports: Array<Simulation.Report> = []
  for (const contender of demo.contenders) {
    const started = Date.now()
    let last = ""
    const report = yield* Simulation.run(scenario, contender, {
      seed: 2026,
      onProgress: (progress) => {
        last = Simulation.progressLine(progress)
        // redraw one line in a terminal; in a log, a line a simulated minute
        if (interactive) process.stdout.write(`\r${last}`)
        else if (progress.elapsedMs % 60_000 === 0) console.log(last)
      }
    })
    if (interactive) process.stdout.write(`\r${last}\n`)
    const seconds = (Date.now() - started) / 1000
    yield* Console.log(
      `  ${contender.name}: ${report.requests} requests in ${seconds.toFixed(1)} s of wall time (${
        Math.round(report.requests / seconds)
      } simulated requests/s)\n`
    )
    reports.push(report)
  }
  yield* Console.log(Simulation.toTable(reports))
  yield* Console.log("")
  for (const bar of demo.bars(reports)) {
    yield* Console.log(`${bar.pass ? "ok  " : "MISS"} ${bar.name}: ${round(bar.value)} (limit ${bar.limit})`)
  }
  const [ours] = reports
  for (const fault of ours.faults) {
    yield* Console.log(
      `  ${fault.type} of ${fault.endpoint}: ${fault.attempts} attempts reached it during the fault (${
        (fault.share * 100).toFixed(1)
      } % of the traffic, normally ${(fault.normalShare * 100).toFixed(1)} %)`
    )
  }
  fs.writeFileSync(htmlPath, Simulation.toHtml(reports, { title: "effect-llm-balancer: the demo scenario" }))
  yield* Console.log(`\nThe charts: ${htmlPath}`)
})

const round = (n: number) => Math.round(n * 1000) / 1000

Effect.runPromise(program).catch((error) => {
  console.error(error)
  process.exit(1)
})
