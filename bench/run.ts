/**
 * The benchmark suite: `npm run bench`.
 *
 * 1. Overhead: acquire + release (and `use`) on 4 endpoints against a hand-written
 *    `Ref.modify` pick-and-reserve and an empty effect, in one fiber.
 * 2. Selection cost: every built-in strategy over 10, 100 and 1,000 endpoints.
 * 3. HTTP: chat calls to a loopback OpenAI-compatible server, through `Llm.complete` and
 *    directly with the provider, at 64 and 256 calls in flight.
 * 4. Peer comparison: cockatiel retry + circuit breaker against `Router.execute` around a
 *    no-op, per call, with `await noop()` and `Effect.runPromise` baselines.
 * 5. Shared store: acquire + release with the Redis store (a redis-server on 127.0.0.1)
 *    beside no store and `Store.memory`: per-pair latency quantiles, and throughput from
 *    one process and from four (bench/store.ts).
 * 6. Routing quality: every built-in `Simulation` scenario against our default
 *    configuration, the baselines and the oracle (`bench/results/simulation.json`,
 *    `bench/results/simulation.md`).
 *
 * Prints tables, writes `bench/results/balancer-overhead.json`,
 * `bench/results/selection-cost.json`, `bench/results/http-overhead.json`,
 * `bench/results/cockatiel-comparison.json` and `bench/results/store.json`, and at the end
 * rebuilds docs/benchmarks.md from every file in bench/results/ (bench/report.ts).
 */
import { Effect } from "effect"
import { Strategy } from "effect-llm-balancer"
import { mkdirSync, writeFileSync } from "node:fs"
import { cockatielTiming, defaultCockatielOptions, describeCockatiel, runCockatiel } from "./cockatiel.js"
import { machine, median, ns, table } from "./harness.js"
import { runHttp } from "./http.js"
import { runOverhead } from "./overhead.js"
import { writeReport } from "./report.js"
import { classify, runSelection } from "./selection.js"
import { runSimulation, writeSimulation } from "./simulation.js"
import { defaultStoreOptions, describeStore, runStore, storeTiming } from "./store.js"

const resultsDir = new URL("./results/", import.meta.url)

const write = (file: string, value: unknown) => {
  mkdirSync(resultsDir, { recursive: true })
  const url = new URL(file, resultsDir)
  writeFileSync(url, JSON.stringify(value, null, 2) + "\n")
  return url.pathname
}

const x = (ratio: number) => `${ratio.toFixed(2)}x`
const count = (n: number) => n.toLocaleString("en-US")

const program = Effect.gen(function*() {
  const startedAt = process.hrtime.bigint()
  const date = new Date().toISOString()
  const facts = machine()
  console.log(`effect-llm-balancer benchmarks, ${date}`)
  console.log(
    `${facts.cpu}, ${facts.cores} cores, ${facts.totalMemoryGiB} GiB, ${facts.os}, node ${facts.node}, ` +
      `effect ${facts.effect}, load average ${facts.loadAverage.join(" ")}\n`
  )

  // 1. overhead (first, while the JIT has seen only the default strategy)
  const overhead = yield* runOverhead({ ops: 300_000, maxMsPerRepetition: 800, minOps: 30_000, repetitions: 7 })
  const o = overhead.samples
  const upTo = count(overhead.maxOpsPerRepetition)
  console.log(
    `Overhead: ${overhead.endpoints} endpoints, ${overhead.strategy}, median of ${overhead.repetitions} repetitions ` +
      `in one fiber (up to ${upTo} ops each, fewer for a case that would take over 0.8 s)`
  )
  console.log(table(
    ["case", "ops/rep", "median", "min", "max", "vs Ref.modify"],
    [o.effectVoid, o.refModify, o.refModifyTwice, o.acquireRelease, o.use].map((s) => [
      s.name,
      count(s.ops),
      ns(s.medianNs),
      ns(s.minNs),
      ns(s.maxNs),
      x(s.medianNs / o.refModify.medianNs)
    ])
  ))
  const r = overhead.ratios
  const verdict = (ok: boolean) => (ok ? "meets" : "MISSES")
  console.log(
    `\nacquire + release / Ref.modify = ${x(r.acquireReleaseVsRefModify)} ` +
      `(${verdict(overhead.meetsTarget.acquireRelease)} the <= ${overhead.target}x target; ` +
      `net of the empty loop ${x(r.acquireReleaseVsRefModifyNetOfLoop)}; ` +
      `vs two hand-written Ref.modify ${x(r.acquireReleaseVsRefModifyTwice)})`
  )
  console.log(
    `use(() => Effect.void) / Ref.modify = ${x(r.useVsRefModify)} ` +
      `(${verdict(overhead.meetsTarget.use)} the <= ${overhead.target}x target; ` +
      `net of the empty loop ${x(r.useVsRefModifyNetOfLoop)})\n`
  )

  // 2. selection cost
  const selection = yield* runSelection({
    strategies: Object.keys(Strategy.builtIn) as Array<Strategy.BuiltInName>,
    sizes: [10, 100, 1000],
    repetitions: 7,
    targetMsPerRepetition: 60,
    minOps: 500,
    maxOps: 300_000
  })
  console.log(
    `Selection cost: median time per acquire + release, ${selection.repetitions} repetitions of ` +
      `~${selection.targetMsPerRepetition} ms each; all endpoints healthy and idle`
  )
  console.log(table(
    [
      "strategy",
      ...selection.sizes.map((n) => `${n} endpoints`),
      ...selection.growth[0].ratios.map((q) => `${q.to}/${q.from}`),
      "per extra endpoint",
      "growth"
    ],
    selection.growth.map((g) => [
      g.strategy,
      ...g.medianNs.map(ns),
      ...g.ratios.map((q) => x(q.ratio)),
      ns(g.nsPerExtraEndpoint),
      g.growth
    ])
  ))

  const step = (i: number) => {
    const values = selection.growth.map((g) => g.ratios[i].ratio)
    const { from, to } = selection.growth[0].ratios[i]
    const typical = median(values)
    return {
      range: `x${Math.min(...values).toFixed(1)} to x${Math.max(...values).toFixed(1)}`,
      reading: classify(typical, to / from)
    }
  }
  const small = step(0)
  const large = step(1)
  console.log(
    `\nGrowth: 10 -> 100 endpoints costs ${small.range} (${small.reading}: the fixed per-call cost weighs most); ` +
      `100 -> 1000 endpoints costs ${large.range} (${large.reading} in the endpoint count: ` +
      `each acquire and release scans and copies the whole table).`
  )

  // 3. HTTP
  const http = yield* runHttp({
    concurrencies: [64, 256],
    calls: 4_000,
    repetitions: 5,
    warmupRounds: 4,
    openCalls: 2_000
  })
  console.log(
    `\nHTTP: ${count(4_000)} chat calls per repetition to a loopback OpenAI-compatible server (its own process), ` +
      `direct (OpenAiCompatible.complete) and routed (Llm.complete over 4 endpoints), alternating, ` +
      `median of ${http.repetitions} repetitions after ${http.warmupRounds} warm-up rounds of each`
  )
  console.log(table(
    [
      "in flight",
      "direct calls/s",
      "routed calls/s",
      "routed/direct",
      "direct p50",
      "routed p50",
      "direct p99",
      "routed p99",
      "added p99"
    ],
    http.cases.map((c) => [
      String(c.concurrency),
      c.direct.throughput.toFixed(0),
      c.routed.throughput.toFixed(0),
      x(c.throughputRatio),
      `${c.direct.p50Ms.toFixed(1)} ms`,
      `${c.routed.p50Ms.toFixed(1)} ms`,
      `${c.direct.p99Ms.toFixed(1)} ms`,
      `${c.routed.p99Ms.toFixed(1)} ms`,
      `${c.addedP99Ms.toFixed(1)} ms`
    ])
  ))
  const openLoop = http.open
  console.log(
    `\nOpen loop: ${count(openLoop.calls)} calls per path and repetition started at ${openLoop.ratePerSecond}/s ` +
      `in all (half the routed closed-loop throughput; the paths alternate call by call), median of ${http.repetitions}: direct p50 ` +
      `${openLoop.direct.p50Ms.toFixed(2)} ms, p99 ${openLoop.direct.p99Ms.toFixed(2)} ms; routed p50 ` +
      `${openLoop.routed.p50Ms.toFixed(2)} ms, p99 ${openLoop.routed.p99Ms.toFixed(2)} ms; added p50 ` +
      `${(openLoop.routed.p50Ms - openLoop.direct.p50Ms).toFixed(2)} ms, p99 ` +
      `${(openLoop.routed.p99Ms - openLoop.direct.p99Ms).toFixed(2)} ms ` +
      `(${openLoop.routed.p99Ms - openLoop.direct.p99Ms <= 1 ? "meets" : "MISSES"} the <= 1 ms target)`
  )
  for (const c of http.cases) {
    console.log(
      `${c.concurrency} in flight: ${x(c.throughputRatio)} of direct throughput ` +
        `(${c.throughputRatio >= 0.9 ? "meets" : "MISSES"} the >= 0.90x target), ` +
        `${c.addedP99Ms.toFixed(1)} ms added p99 (closed loop: mostly queueing; the 1 ms target is the open loop's)`
    )
  }

  // 4. peer comparison with cockatiel
  const comparison = yield* runCockatiel(defaultCockatielOptions)
  console.log(`\n${describeCockatiel(comparison)}`)

  // 5. the shared store: Redis against no store and Store.memory
  const store = yield* runStore(defaultStoreOptions)
  console.log(`\n${describeStore(store)}`)

  const finishedIn = Number(process.hrtime.bigint() - startedAt) / 1e9
  const files = [
    write("balancer-overhead.json", {
      date,
      machine: facts,
      timing: "process.hrtime.bigint() around a loop of Effect.whileLoop in one fiber; ns per op",
      overhead
    }),
    write("selection-cost.json", {
      date,
      machine: facts,
      timing: "process.hrtime.bigint() around a loop of Effect.whileLoop in one fiber; ns per acquire + release",
      selection
    }),
    write("http-overhead.json", {
      date,
      machine: facts,
      timing: "performance.now() per call and around each repetition; calls/s and per-call latency quantiles",
      http
    }),
    write("cockatiel-comparison.json", {
      date,
      machine: facts,
      timing: cockatielTiming,
      comparison
    }),
    write("store.json", {
      date,
      machine: facts,
      timing: storeTiming,
      store
    })
  ]
  console.log(`\nFinished in ${finishedIn.toFixed(1)} s; wrote\n  ${files.join("\n  ")}`)

  // 6. routing quality: every built-in scenario against every router
  console.log("\nRouting quality: the built-in scenarios, full length, seed 1")
  const simulation = yield* runSimulation(1)
  writeSimulation(simulation, date)
  console.log("wrote bench/results/simulation.json and bench/results/simulation.md")

  // 7. docs/benchmarks.md, from the files just written
  console.log(`wrote ${writeReport()}`)
})

Effect.runPromise(program).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
