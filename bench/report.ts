/**
 * docs/benchmarks.md, built from the JSON files the benches write to `bench/results/`.
 *
 * `benchmarksMarkdown(results)` is a pure function of the parsed files: every figure on the
 * page comes from them, and the targets the figures are judged against are the constants
 * below. `npm run bench` (bench/run.ts) and `bench/simulation.ts` run alone call
 * `writeReport()` after writing their JSON; to rebuild the page from the committed results
 * without running any bench:
 *
 *   npx tsx --tsconfig tsconfig.examples.json bench/report.ts
 */
import type { Effect } from "effect"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import type { CockatielResult } from "./cockatiel.js"
import type { Machine, Sample } from "./harness.js"
import { median, ns } from "./harness.js"
import type { runHttp } from "./http.js"
import type { OverheadResult } from "./overhead.js"
import type { SelectionResult } from "./selection.js"
import type { ScenarioResult } from "./simulation.js"
import type { LatencyCase, StoreResult } from "./store.js"
import type { StoreHealth } from "./storeWorker.js"

// --- targets -------------------------------------------------------------------------------

/** The balancer's acquire + release may cost at most this many times a hand-written `Ref.modify` pick-and-reserve. */
export const OVERHEAD_TARGET = 3
/** Calls routed through `Llm.complete` should keep at least this share of direct `HttpClient` throughput. */
export const HTTP_THROUGHPUT_TARGET = 0.9
/** Routing may add at most this many ms to the p99 latency of a call at half load (open loop). */
export const HTTP_ADDED_P99_TARGET_MS = 1
/** The simulation should run at least this many simulated requests per wall-clock second in every scenario. */
export const SIMULATION_SPEED_FLOOR = 5_000
/**
 * Stretch goal for the brownout scenario: the slow endpoint's share of the traffic during the
 * brownout (the scenario's own bar, from the JSON, is the looser limit).
 */
export const BROWNOUT_SHARE_STRETCH = 0.0125
/**
 * Where the committed results in bench/results/ were measured: a shared virtual machine, whose
 * other tenants skew the figures. Set it to false when committing results from a dedicated machine.
 */
export const MEASURED_ON_SHARED_VM = true
/** The Redis store may add at most this many ms to the p99 of an acquire + release on loopback. */
export const STORE_ADDED_P99_TARGET_MS = 0.5

// --- the files -----------------------------------------------------------------------------

/** What every results file starts with. */
export interface Stamped {
  /** When the run started, ISO 8601. */
  readonly date: string
  readonly machine: Machine
  /** How the figures were timed. */
  readonly timing?: string
}

export type HttpResult = Effect.Effect.Success<ReturnType<typeof runHttp>>

/** The parsed files of bench/results/; a missing file leaves its section saying how to produce it. */
export interface Results {
  readonly overhead?: Stamped & { readonly overhead: OverheadResult }
  readonly selection?: Stamped & { readonly selection: SelectionResult }
  readonly http?: Stamped & { readonly http: HttpResult }
  readonly cockatiel?: Stamped & { readonly comparison: CockatielResult }
  readonly simulation?: Stamped & { readonly results: ReadonlyArray<ScenarioResult> }
  readonly store?: Stamped & { readonly store: StoreResult }
}

/** The file behind each part of `Results`, in bench/results/. */
export const resultFiles = {
  overhead: "balancer-overhead.json",
  selection: "selection-cost.json",
  http: "http-overhead.json",
  cockatiel: "cockatiel-comparison.json",
  simulation: "simulation.json",
  store: "store.json"
} as const satisfies Record<keyof Results, string>

const resultsDir = new URL("./results/", import.meta.url)
const docUrl = new URL("../docs/benchmarks.md", import.meta.url)

/** Reads whichever results files exist. */
export const readResults = (dir: URL = resultsDir): Results => {
  const read = (file: string) => {
    const url = new URL(file, dir)
    return existsSync(url) ? JSON.parse(readFileSync(url, "utf8")) : undefined
  }
  const results: Record<string, unknown> = {}
  for (const [key, file] of Object.entries(resultFiles)) {
    const value = read(file)
    if (value !== undefined) results[key] = value
  }
  return results as Results
}

/** Rebuilds docs/benchmarks.md from bench/results/; returns the path written. */
export const writeReport = (): string => {
  writeFileSync(docUrl, benchmarksMarkdown(readResults()))
  return fileURLToPath(docUrl)
}

// --- formatting ----------------------------------------------------------------------------

const int = (n: number) => Math.round(n).toLocaleString("en-US")
/** Three significant digits, thousands separated, no trailing zeros. */
const num = (n: number) =>
  Math.abs(n) >= 1000 ? int(n) : Number(n.toPrecision(3)).toLocaleString("en-US", { maximumFractionDigits: 12 })
const pct = (share: number) => `${num(share * 100)} %`
const x = (ratio: number) => `${ratio.toFixed(2)}x`
const ms = (n: number, digits = 1) => `${n.toFixed(digits)} ms`
const met = (ok: boolean) => (ok ? "met" : "**missed**")
const code = (s: string) => `\`${s}\``

/** "2026-11-22 06:38 UTC" */
const when = (iso: string) => `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`

const describeMachine = (m: Machine) =>
  `${m.cpu}, ${m.cores} cores, ${m.totalMemoryGiB} GiB, ${m.os}, Node ${m.node}, effect ${m.effect}`

const sameMachine = (a: Machine, b: Machine) => describeMachine(a) === describeMachine(b)

const mdTable = (
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  /** Columns aligned left; the others are right-aligned (numbers). */
  leftColumns = 1
): string =>
  [
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => (i < leftColumns ? "---" : "---:")).join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`)
  ].join("\n")

const missing = (key: keyof Results, how: string) =>
  `No results yet (\`bench/results/${resultFiles[key]}\` is missing): ${how}.`

const runAll = "run `npm run bench`"

// --- the simulation ------------------------------------------------------------------------

type Bar = ScenarioResult["bars"][number]
type RouterReport = ScenarioResult["routers"][number]

/**
 * A bar says its direction; results from before it did are read from the measurement (on
 * the right side of its limit and passed, or on the wrong side and failed).
 */
const direction = (b: Bar): "≤" | "≥" | undefined => {
  const said = (b as { readonly direction?: "at-most" | "at-least" }).direction
  if (said !== undefined) return said === "at-most" ? "≤" : "≥"
  return b.value === b.limit ? undefined : (b.value < b.limit) === b.pass ? "≤" : "≥"
}

/** A bar whose limit is a fraction of 1 (a share, a rate) reads better in percent. */
const barValue = (b: Bar, n: number) => (b.limit > 0 && b.limit < 1 ? pct(n) : num(n))

const barLimit = (b: Bar) => {
  const d = direction(b)
  return d === undefined ? barValue(b, b.limit) : `${d} ${barValue(b, b.limit)}`
}

const latencyCell = (v: number | null) => (v === null ? "-" : int(v))

/** The comparison of routers in one scenario, as a markdown table. */
export const routerTable = (routers: ReadonlyArray<RouterReport>): string =>
  mdTable(
    ["router", "success %", "p50 ms", "p99 ms", "p99.9 ms", "attempts/req", "429s", "sent while failing", "cost"],
    routers.map((r) => [
      r.router,
      (r.successRate * 100).toFixed(2),
      latencyCell(r.latency.p50),
      latencyCell(r.latency.p99),
      latencyCell(r.latency.p999),
      r.attemptsPerRequest.toFixed(3),
      int(r.rateLimited),
      int(r.sentWhileFailing),
      r.cost.toFixed(2)
    ])
  )

/** Our configuration is "default" (and its variants, "default + ..."); the oracle is the bound, not a peer. */
const isBaseline = (router: string) => !router.startsWith("default") && router !== "oracle"

/** Simulated requests of a scenario (every router's) and the wall-clock seconds they took. */
const scenarioWork = (s: ScenarioResult) => {
  const requests = s.routers.reduce((n, r) => n + r.requests, 0)
  return { requests, wallSeconds: requests / s.requestsPerWallSecond }
}

const simulatedLength = (durationMs: number) =>
  durationMs % 60_000 === 0 ? `${durationMs / 60_000} minutes` : `${num(durationMs / 1000)} s`

const simulationSection = (file: Results["simulation"], cockatiel: Results["cockatiel"]): Array<string> => {
  const out = ["## Routing quality (the simulation)", ""]
  if (file === undefined) {
    return [
      ...out,
      missing("simulation", "run `npx tsx --tsconfig tsconfig.examples.json bench/simulation.ts`"),
      ""
    ]
  }
  const scenarios = file.results
  const seeds = [...new Set(scenarios.flatMap((s) => s.routers.map((r) => r.seed)))]
  out.push(
    `Every built-in \`Simulation\` scenario, full length, on seed ${seeds.join(", ")}, through the real \`Router\` ` +
      "and `Balancer` on simulated time; every router in a scenario sees exactly the same requests. The fleets, " +
      "traffic and faults are defined in [`src/internal/simulation/scenarios.ts`](../src/internal/simulation/scenarios.ts); " +
      "[simulation](simulation.md) explains each column. `default` is our default configuration; the others are the " +
      "baselines of [simulation](simulation.md#the-baselines), all under the same `Router` (retries, backoff, " +
      "deadlines), so the comparison is about choosing endpoints:",
    "",
    "- `round-robin` cycles through the endpoints, with no health tracking and no cooldowns;",
    "- `seeds` is what the project's starting documents did: capacity x weight random, an endpoint out for a while " +
      "after consecutive errors;",
    "- `litellm` is LiteLLM's default shuffle as its code does it: weighted random among deployments not " +
      "cooling down; a 429 or a timeout cools one down for 5 s, other errors once over half of a minute's calls, " +
      "connection errors never;",
    "- `oracle` knows every endpoint's true state at every instant and picks the fastest healthy one (with none, " +
      "the call fails at once): the bound, not a goal.",
    ""
  )

  // the bars
  const bars = scenarios.flatMap((s) => s.bars.map((b) => ({ scenario: s, bar: b })))
  const misses = bars.filter(({ bar }) => !bar.pass)
  out.push(
    "### The bars",
    "",
    `The limits each scenario sets for our default configuration: ${bars.length - misses.length} of ${bars.length} ` +
      `pass${
        misses.length === 0
          ? "."
          : `; missed: ${misses.map(({ bar, scenario }) => `${scenario.scenario} (${bar.name})`).join(", ")}.`
      }`,
    "",
    mdTable(
      ["scenario", "bar", "measured", "limit", "result"],
      bars.map(({ bar, scenario }) => [
        scenario.scenario,
        bar.name,
        barValue(bar, bar.value),
        barLimit(bar),
        bar.pass ? "pass" : "**miss**"
      ]),
      2
    ),
    ""
  )
  const brownout = bars.find(({ bar, scenario }) =>
    scenario.scenario === "brownout" && bar.name.startsWith("share of the slow endpoint")
  )
  if (brownout !== undefined) {
    const ok = brownout.bar.value <= BROWNOUT_SHARE_STRETCH
    out.push(
      `Stretch goal for the brownout: the slow endpoint's share at most ${pct(BROWNOUT_SHARE_STRETCH)}; ` +
        `measured ${pct(brownout.bar.value)}: ${met(ok)}.`,
      ""
    )
  }

  // where a baseline completes more requests than ours
  const beaten = scenarios.flatMap((s) => {
    const ours = s.routers.find((r) => r.router === "default")
    if (ours === undefined) return []
    const better = s.routers.filter((r) => isBaseline(r.router) && r.successRate > ours.successRate)
    return better.length === 0 ? [] : [{ scenario: s, ours, better }]
  })
  out.push(
    beaten.length === 0
      ? "No baseline completes more requests than `default` in any scenario."
      : [
        "Where a baseline completes more requests than `default` (no bar covers it):",
        "",
        ...beaten.map(({ better, ours, scenario }) =>
          `- ${scenario.scenario}: ${better.map((r) => `${r.router} ${pct(r.successRate)}`).join(", ")} against our ${
            pct(ours.successRate)
          } (${int(ours.failed)} of ${int(ours.requests)} requests failed).`
        )
      ].join("\n"),
    ""
  )

  // speed
  const slow = scenarios.filter((s) => s.requestsPerWallSecond < SIMULATION_SPEED_FLOOR)
  const totalWall = scenarios.reduce((t, s) => t + scenarioWork(s).wallSeconds, 0)
  const load = file.machine.loadAverage
  const busy = load[0] !== undefined && load[0] >= file.machine.cores
  const routerCost = cockatiel === undefined
    ? ""
    : ` (\`Router.execute\` adds ${
      ns(cockatiel.comparison.addedNs.routerPromisePerCall)
    } per call over a bare \`Effect.runPromise\`, see the peer comparison)`
  out.push(
    "### Speed",
    "",
    `Simulated requests per wall-clock second, against a floor of ${int(SIMULATION_SPEED_FLOOR)} in every scenario: ` +
      (slow.length === 0
        ? "met everywhere."
        : `**missed** in ${slow.length} of ${scenarios.length} scenarios. The router's own work per call is the ` +
          `cost${routerCost}.`) +
      ` The whole simulation took about ${num(totalWall / 60)} minutes of wall time; the machine's load average ` +
      `was ${load.join(", ")} (1, 5, 15 minutes) on ${file.machine.cores} cores when it started` +
      (busy ? ", so other work competed for the CPU and these speeds are lower than on an idle machine." : "."),
    "",
    mdTable(
      ["scenario", "simulated requests", "wall time", "requests per wall second", `≥ ${int(SIMULATION_SPEED_FLOOR)}`],
      scenarios.map((s) => {
        const work = scenarioWork(s)
        return [
          s.scenario,
          int(work.requests),
          `${num(work.wallSeconds)} s`,
          int(s.requestsPerWallSecond),
          s.requestsPerWallSecond >= SIMULATION_SPEED_FLOOR ? "met" : "**missed**"
        ]
      })
    ),
    ""
  )

  // per scenario
  out.push("### Per scenario", "")
  for (const s of scenarios) {
    const first = s.routers[0]
    const length = first === undefined
      ? ""
      : ` ${int(first.requests)} requests over ${simulatedLength(first.durationMs)} of simulated traffic;`
    out.push(
      `#### ${s.scenario}`,
      "",
      `${capitalize(s.description)}.${length} ${
        int(s.requestsPerWallSecond)
      } simulated requests per wall-clock second.`,
      "",
      routerTable(s.routers),
      ""
    )
  }
  return out
}

const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1)

/** "10, 100 and 1,000" */
const sizes = (file: Results["selection"]) => {
  const n = file?.selection.sizes.map(int) ?? []
  return n.length === 0
    ? "growing numbers of"
    : n.length === 1
    ? n[0]
    : `${n.slice(0, -1).join(", ")} and ${n[n.length - 1]}`
}

// --- overhead, selection, HTTP, cockatiel ---------------------------------------------------

const overheadSection = (file: Results["overhead"]): Array<string> => {
  const out = ["## Overhead: acquire + release", ""]
  if (file === undefined) return [...out, missing("overhead", runAll), ""]
  const o = file.overhead
  const s = o.samples
  const r = o.ratios
  const ok = r.acquireReleaseVsRefModify <= OVERHEAD_TARGET
  out.push(
    `What the balancer adds to a call: acquire + release of a lease on one of ${o.endpoints} endpoints ` +
      `(${o.strategy}), beside the cheapest way to do the same by hand (one \`Ref.modify\` that picks the least ` +
      "active of the endpoints and reserves it) and an empty effect. Every case runs interleaved in one fiber, " +
      `median of ${o.repetitions} repetitions of up to ${int(o.maxOpsPerRepetition)} operations (fewer for a slow ` +
      "case).",
    "",
    mdTable(
      ["case", "ops per repetition", "median", "min", "max", "vs Ref.modify"],
      [s.effectVoid, s.refModify, s.refModifyTwice, s.acquireRelease, s.use].map((c) => [
        c.name,
        int(c.ops),
        ns(c.medianNs),
        ns(c.minNs),
        ns(c.maxNs),
        x(c.medianNs / s.refModify.medianNs)
      ])
    ),
    "",
    `- acquire + release / \`Ref.modify\`: **${x(r.acquireReleaseVsRefModify)}**; target ≤ ${OVERHEAD_TARGET}x: ` +
      `${met(ok)}.`,
    `- the same net of the empty loop's cost: ${x(r.acquireReleaseVsRefModifyNetOfLoop)}; against reserve + ` +
      `release by hand as two \`Ref.modify\`s: ${x(r.acquireReleaseVsRefModifyTwice)}.`,
    `- \`use(() => Effect.void)\` / \`Ref.modify\`: ${x(r.useVsRefModify)} (net of the empty loop ` +
      `${x(r.useVsRefModifyNetOfLoop)}).`,
    ""
  )
  return out
}

const selectionSection = (file: Results["selection"]): Array<string> => {
  const out = ["## Selection cost", ""]
  if (file === undefined) return [...out, missing("selection", runAll), ""]
  const sel = file.selection
  const steps = sel.growth[0]?.ratios ?? []
  out.push(
    `Median time per acquire + release with each built-in strategy over ${
      sizes(file)
    } endpoints, all healthy and idle, ${sel.repetitions} repetitions of about ${sel.targetMsPerRepetition} ms ` +
      "each. The growth columns divide the median at one size by the one before; the marginal cost is what each " +
      "endpoint added between the two largest sizes.",
    "",
    mdTable(
      [
        "strategy",
        ...sel.sizes.map((n) => `${int(n)} endpoints`),
        ...steps.map((q) => `${int(q.to)} / ${int(q.from)}`),
        "per extra endpoint",
        "growth"
      ],
      sel.growth.map((g) => [
        g.strategy,
        ...g.medianNs.map(ns),
        ...g.ratios.map((q) => x(q.ratio)),
        ns(g.nsPerExtraEndpoint),
        g.growth
      ])
    ),
    ""
  )
  steps.forEach((q, i) => {
    const values = sel.growth.map((g) => g.ratios[i].ratio)
    out.push(
      `- ${int(q.from)} → ${int(q.to)} endpoints (${num(q.to / q.from)}x as many): ` +
        `the cost grows ${x(Math.min(...values))} to ${x(Math.max(...values))}.`
    )
  })
  if (steps.length > 0) {
    out.push(
      "",
      "Over few endpoints the fixed per-call cost weighs most; over many, each acquire and release scans and " +
        "copies the whole table, so the cost follows the endpoint count.",
      ""
    )
  }
  return out
}

const httpSection = (file: Results["http"], cockatiel: Results["cockatiel"]): Array<string> => {
  const out = ["## HTTP overhead", ""]
  if (file === undefined) return [...out, missing("http", runAll), ""]
  const h = file.http
  const calls = h.cases[0]?.calls
  out.push(
    `Chat calls to a loopback OpenAI-compatible server (its own process), directly with the provider's ` +
      "`complete` (the same `HttpClient` calls, no routing) and through `Llm.complete` (`Router` + `Balancer` over " +
      `endpoints that all point at the server), alternating repetition by repetition. Closed loop: ` +
      `${calls === undefined ? "" : `${int(calls)} calls per repetition at `}a fixed number in flight, median of ` +
      `${h.repetitions} repetitions after ${h.warmupRounds} warm-up rounds of each path.`,
    "",
    mdTable(
      [
        "in flight",
        "direct calls/s",
        "routed calls/s",
        "routed / direct",
        `≥ ${HTTP_THROUGHPUT_TARGET.toFixed(2)}x`,
        "direct p50",
        "routed p50",
        "direct p99",
        "routed p99"
      ],
      h.cases.map((c) => [
        int(c.concurrency),
        int(c.direct.throughput),
        int(c.routed.throughput),
        x(c.throughputRatio),
        c.throughputRatio >= HTTP_THROUGHPUT_TARGET ? "met" : "**missed**",
        ms(c.direct.p50Ms),
        ms(c.routed.p50Ms),
        ms(c.direct.p99Ms),
        ms(c.routed.p99Ms)
      ])
    ),
    ""
  )
  const o = h.open
  const addedP50 = o.routed.p50Ms - o.direct.p50Ms
  const addedP99 = o.routed.p99Ms - o.direct.p99Ms
  const p99s = o.runs.flatMap((r) => [r.direct.p99Ms, r.routed.p99Ms])
  const spread = p99s.length === 0 ? 0 : Math.max(...p99s) - Math.min(...p99s)
  out.push(
    `Open loop, the latency a call gains at half load: ${int(o.calls)} calls per path and repetition started at ` +
      `${int(o.ratePerSecond)} per second in all (half the slower routed closed-loop throughput), the two paths ` +
      `alternating call by call in one stream so that a collector pause or a slow moment of the server falls on ` +
      `both alike; median of ${o.runs.length} repetitions.`,
    "",
    mdTable(
      ["path", "p50", "p99"],
      [
        ["direct", ms(o.direct.p50Ms, 2), ms(o.direct.p99Ms, 2)],
        ["routed", ms(o.routed.p50Ms, 2), ms(o.routed.p99Ms, 2)],
        ["added by routing", ms(addedP50, 2), ms(addedP99, 2)]
      ]
    ),
    ""
  )
  const throughputOk = h.cases.every((c) => c.throughputRatio >= HTTP_THROUGHPUT_TARGET)
  const latencyOk = addedP99 <= HTTP_ADDED_P99_TARGET_MS
  const routerCost = cockatiel === undefined
    ? ""
    : ` (\`Router.execute\` adds ${
      ns(cockatiel.comparison.addedNs.routerPromisePerCall)
    } per call over a bare \`Effect.runPromise\` in the peer comparison)`
  out.push(
    `- Throughput, target ≥ ${HTTP_THROUGHPUT_TARGET.toFixed(2)}x of direct at every load: ${met(throughputOk)} ` +
      `(${h.cases.map((c) => `${x(c.throughputRatio)} at ${c.concurrency} in flight`).join(", ")}).` +
      ` Repetition by repetition (each routed run against the direct run before it) the ratio ranged ` +
      h.cases.map((c) => {
        const paired = c.routed.runs.map((r, i) => r.throughput / c.direct.runs[i].throughput)
        return `${x(Math.min(...paired))} to ${x(Math.max(...paired))} at ${c.concurrency}`
      }).join(", ") + ": read the medians with that spread in mind." +
      (throughputOk ? "" : ` The gap is the routed call's own work${routerCost}, which costs several times ` +
        "more beside `fetch` than alone, and what a call in flight keeps alive (worth about 2 points at 256 in " +
        "flight); the garbage it makes and drops costs nothing measurable ([design](design.md#what-a-routed-call-costs) " +
        "has the measurements)."),
    `- Added p99 in the open loop, target ≤ ${HTTP_ADDED_P99_TARGET_MS} ms: ${ms(addedP99, 2)}, ${met(latencyOk)}.` +
      (spread > Math.abs(addedP99)
        ? ` The p99 of single repetitions ranges over ${ms(spread, 1)} (${ms(Math.min(...p99s), 1)} to ` +
          `${ms(Math.max(...p99s), 1)}), so a difference this small is within the run-to-run noise.`
        : ""),
    ""
  )
  return out
}

const us = (n: number) => (Math.abs(n) >= 1000 ? `${(n / 1000).toFixed(2)} ms` : `${n.toFixed(1)} µs`)

/** "0" when the balancer never fell back from its store, else how often and why. */
const fellBack = (h: StoreHealth | null) =>
  h === null ? "-" : h.fallbacks === 0 ? "0" : `**${int(h.fallbacks)}** (${h.reasons.join("; ")})`

const storeSection = (file: Results["store"]): Array<string> => {
  const out = ["## Shared store (Redis)", ""]
  if (file === undefined) {
    return [...out, missing("store", "run `npx tsx --tsconfig tsconfig.examples.json bench/store.ts`"), ""]
  }
  const s = file.store
  const l = s.latency
  const target = STORE_ADDED_P99_TARGET_MS
  const redis = l.cases.find((c) => c.store === "redis" && c.rpm !== null)
  const none = l.cases.find((c) => c.store === "none" && c.rpm !== null)
  const addedP99Ms = l.added.rpm.p99Us / 1000
  const ok = addedP99Ms <= target
  out.push(
    "What a shared `Store` adds to a call: one balancer over one endpoint with an rpm limit of " +
      `${int(redis?.rpm ?? 0)} (so the admission script checks and counts a window; and the same with no ` +
      "limits), sequential " +
      "acquire + release pairs released with `Outcome.success()` (nothing to share, so no settle round trip), " +
      `each pair timed on its own. Redis ${s.redisVersion} runs on 127.0.0.1 in its own process; the store has ` +
      "its default timeout (50 ms). " +
      `${int(l.ops)} pairs per configuration after ${int(l.warmupOps)} of warm-up, interleaved in ${l.rounds} ` +
      "rounds; an ioredis `PING` on its own connection, in the same rounds, is the floor of one round trip.",
    "",
    mdTable(
      ["configuration", "p50", "p90", "p99", "p99.9", "mean", "store fallbacks"],
      l.cases.map((c) => [
        c.name,
        us(c.p50Us),
        us(c.p90Us),
        us(c.p99Us),
        us(c.p999Us),
        us(c.meanUs),
        fellBack(c.health)
      ])
    ),
    "",
    mdTable(
      ["added by the Redis store (over no store)", "p50", "p99", "p99.9", "mean"],
      ([["rpm limit", l.added.rpm], ["no limits", l.added.noLimits]] as const).map(([name, a]) => [
        name,
        us(a.p50Us),
        us(a.p99Us),
        us(a.p999Us),
        us(a.meanUs)
      ])
    ),
    ""
  )
  const spread = (c: LatencyCase | undefined) => {
    const p99s = c?.rounds.map((r) => r.p99Us) ?? []
    return p99s.length === 0 ? "" : `${us(Math.min(...p99s))} to ${us(Math.max(...p99s))}`
  }
  const load = file.machine.loadAverage
  const loadAtEnd = s.loadAverageAtEnd ?? []
  // other work measured during the latency run, when the file has it; else the load averages
  const busy = l.otherCores === undefined
    ? [load[0], loadAtEnd[0]].some((one) => one !== undefined && one >= file.machine.cores)
    : l.otherCores >= 0.5
  const fellBackInLatency = l.cases.some((c) => c.health !== null && c.health.fallbacks > 0)
  out.push(
    `- Added p99 with the rpm limit, target ≤ ${target} ms: **${ms(addedP99Ms, 3)}**, ${met(ok)} (added p50 ` +
      `${ms(l.added.rpm.p50Us / 1000, 3)}).` +
      (fellBackInLatency
        ? " With a fallback during the run, a call waited out the 50 ms timeout and the calls after it were " +
          "served from local state until the store answered again (so EVALSHA per pair is under 1)."
        : ""),
    `- The p99 of single rounds of ${int(l.ops / l.rounds)} pairs ranges over ${spread(redis)} with the Redis ` +
      `store and ${spread(none)} with none. The load average was ${load.join(", ")} (1, 5, 15 minutes) on ` +
      `${file.machine.cores} cores when the run started` +
      (loadAtEnd.length === 0 ? "" : ` and ${loadAtEnd.join(", ")} when it ended`) +
      (l.otherCores === undefined
        ? ""
        : `; work other than the bench and Redis kept ${num(l.otherCores)} of the cores busy on average during ` +
          "the latency run") +
      (busy ? ", so other work competed for the CPU, and the tails show it." : "."),
    `- EVALSHA calls per Redis pair: ${num(l.evalshaPerPair)} (one admission script per acquire; a release ` +
      "with nothing to share sends nothing).",
    ""
  )
  const t = s.throughput
  const busiest = Math.max(0, ...[...t.oneProcess, ...t.multiProcess].map((r) => r.otherCores ?? 0))
  const rows = [
    ...t.oneProcess.map((c) => [
      `1 process, ${c.name}`,
      int(c.opsPerSecond),
      "-",
      c.evalshaPerPair === null ? "-" : num(c.evalshaPerPair),
      fellBack(c.health),
      c.otherCores === undefined ? "" : num(c.otherCores)
    ]),
    ...t.multiProcess.map((m) => [
      m.name,
      int(m.totalOpsPerSecond),
      m.processes.map((p) => int(p.opsPerSecond)).join(" / "),
      m.evalshaPerPair === null ? "-" : num(m.evalshaPerPair),
      m.store === "none" ? "-" : fellBack(totalHealth(m.processes.map((p) => p.store))),
      m.otherCores === undefined ? "" : num(m.otherCores)
    ])
  ]
  out.push(
    `Throughput: a closed loop of ${t.concurrency} fibers per process doing acquire + release for ` +
      `${num(t.durationMs / 1000)} s after ${int(t.warmupMs)} ms of warm-up, with the rpm limit. The ` +
      `${t.multiProcess[0]?.processes.length ?? "several"} processes (\`bench/storeWorker.ts\`) share one Redis and ` +
      "one prefix, and start at the same instant once all are warm. The Redis store's timeout is raised to " +
      `${int(t.storeTimeoutMs)} ms here: closed loops on every core starve Redis of CPU, and with the default ` +
      "50 ms a process falls back to its local state (serving every call without Redis, as it should), after " +
      "which its figure is no longer the store's. The fallbacks column counts the times it happened anyway.",
    "",
    mdTable(["run", "pairs/s", "per process", "EVALSHA per pair", "store fallbacks", "other work (cores)"], rows),
    "",
    `"Other work" is the cores that processes other than the bench's and Redis kept busy, on average, ` +
      "during the run." +
      (busiest >= 0.5
        ? " Each round trip waits for Redis and then the process to get a core, so work that competes for the " +
          "CPU slows the Redis runs far more than the no-store ones."
        : ""),
    ""
  )
  const shared = t.multiProcess.find((m) => m.store === "redis")
  if (shared !== undefined) {
    const w = shared.sharedWindow
    const n = shared.processes.length
    out.push(
      `- The machine has ${s.cores} cores, shared by Redis and every process of the bench` +
        (shared.redisCpu === null ? "" : ` (Redis used ${num(shared.redisCpu)} CPU seconds per second in the ` +
          `${n}-process run)`) +
        `, so ${n} processes measure contention for the CPU as much as Redis; the same ${n} with no store show ` +
        "what the cores give without it."
    )
    if (w !== null) {
      out.push(
        `- Shared: the rpm window in Redis counted ${int(w.counted)} admissions over the ${n}-process run, for ` +
          `${int(w.pairs)} pairs completed` +
          (w.counted >= w.pairs ? "." : " (the rest were served from local state after a fallback).")
      )
    }
    out.push("")
  }
  return out
}

/** Every process's store health, added up. */
const totalHealth = (all: ReadonlyArray<StoreHealth>): StoreHealth => ({
  fallbacks: all.reduce((n, h) => n + h.fallbacks, 0),
  resumed: all.reduce((n, h) => n + h.resumed, 0),
  reasons: [...new Set(all.flatMap((h) => h.reasons))].slice(0, 3)
})

const cockatielSection = (file: Results["cockatiel"]): Array<string> => {
  const out = ["## Peer comparison: cockatiel", ""]
  if (file === undefined) {
    return [...out, missing("cockatiel", "run `npx tsx --tsconfig tsconfig.examples.json bench/cockatiel.ts`"), ""]
  }
  const c = file.comparison
  const s = c.samples
  out.push(
    `cockatiel ${c.cockatielVersion}'s retry + circuit breaker against our \`Router.execute\` around a no-op, ` +
      `sequential calls, median of ${c.repetitions} repetitions of about ${c.targetMsPerRepetition} ms (at least ` +
      `${int(c.minOpsPerRepetition)} calls) each after warm-up. The policies:`,
    "",
    `- cockatiel: ${code(c.policies.cockatiel)}`,
    `- ours: ${code(c.policies.router)}`,
    "",
    mdTable(
      ["case", "calls per repetition", "median", "min", "max", "vs cockatiel"],
      [s.awaitNoop, s.effectRunPromise, s.cockatiel, s.routerPromisePerCall, s.routerOneFiber].map((row) => [
        row.name,
        int(row.ops),
        ns(row.medianNs),
        ns(row.minNs),
        ns(row.maxNs),
        x(row.medianNs / s.cockatiel.medianNs)
      ])
    ),
    "",
    `- Per call, one promise each (the fair comparison): cockatiel ${ns(s.cockatiel.medianNs)}, ours ` +
      `${ns(s.routerPromisePerCall.medianNs)}, ${x(c.ratios.routerPromisePerCallVsCockatiel)}; ours inside one ` +
      `fiber: ${x(c.ratios.routerOneFiberVsCockatiel)}.`,
    `- Added over the bare call: cockatiel ${ns(c.addedNs.cockatiel)} (over \`await noop()\`), ours ` +
      `${ns(c.addedNs.routerPromisePerCall)} (over \`Effect.runPromise\`): ${
        x(c.ratios.routerVsCockatielNetOfBaselines)
      }.`,
    "",
    "Ours does more per call (attempt bookkeeping, a balancer lease, a retry budget, metrics). Both are small beside " +
      "an LLM call, which takes hundreds of milliseconds or more, but ours is the one with room to shrink.",
    ""
  )
  return out
}

// --- the page ------------------------------------------------------------------------------

const benches: ReadonlyArray<
  { readonly key: keyof Results; readonly bench: string; readonly what: (results: Results) => string }
> = [
  {
    key: "simulation",
    bench: "routing quality",
    what: () => "every built-in `Simulation` scenario against our default configuration, the baselines and the oracle"
  },
  {
    key: "overhead",
    bench: "overhead",
    what: (r) =>
      `acquire + release and \`use\` on ${
        r.overhead?.overhead.endpoints ?? "a few"
      } endpoints against a hand-written \`Ref.modify\` pick-and-reserve, in one fiber`
  },
  {
    key: "selection",
    bench: "selection",
    what: (r) => `every built-in strategy over ${sizes(r.selection)} endpoints`
  },
  {
    key: "http",
    bench: "HTTP",
    what: () =>
      "chat calls to a loopback OpenAI-compatible server through `Llm.complete` and directly, closed loop and " +
      "open loop"
  },
  {
    key: "store",
    bench: "shared store",
    what: () =>
      "acquire + release with the Redis store on loopback beside no store and `Store.memory`: latency " +
      "quantiles, and throughput from one process and from four"
  },
  {
    key: "cockatiel",
    bench: "peer",
    what: () => "cockatiel's retry + circuit breaker against `Router.execute`, around a no-op, one promise per call"
  }
]

/** Every timed sample in the files: how far apart the repetitions of one case are says how noisy the run was. */
const samplesOf = (results: Results): ReadonlyArray<Sample> => [
  ...(results.overhead === undefined ? [] : Object.values(results.overhead.overhead.samples)),
  ...(results.selection?.selection.rows.map((r) => r.sample) ?? []),
  ...(results.cockatiel === undefined ? [] : Object.values(results.cockatiel.comparison.samples))
]

const intro = (results: Results): Array<string> => {
  const present = benches.flatMap((b) => {
    const file = results[b.key]
    return file === undefined ? [] : [{ ...b, file }]
  })
  const machines = present.map((p) => p.file.machine)
  const oneMachine = machines.every((m) => sameMachine(m, machines[0]))
  const out = [
    "# Benchmarks",
    "",
    "<!-- Generated by bench/report.ts from bench/results/*.json: do not edit by hand. -->",
    "",
    "`npm run bench` runs every benchmark, writes its figures to `bench/results/` (JSON with the date, the " +
    "machine and its load average when the run started) and rebuilds this page from those files with " +
    "`bench/report.ts`: every figure below comes from them, and the targets they are judged against are " +
    "constants in `bench/report.ts`.",
    ""
  ]
  if (machines.length === 0) {
    out.push("No results yet: run `npm run bench`.")
  } else if (oneMachine) {
    out.push(
      MEASURED_ON_SHARED_VM
        ? `The machine is a shared virtual machine (${
          describeMachine(machines[0])
        }), so other work on it skews the figures.`
        : `The machine: ${describeMachine(machines[0])}.`
    )
  } else if (MEASURED_ON_SHARED_VM) {
    out.push("The machines are shared virtual machines, so other work on them skews the figures.")
  }
  const spreads = samplesOf(results).filter((s) => s.minNs > 0).map((s) => s.maxNs / s.minNs - 1)
  if (spreads.length > 0) {
    out.push(
      "",
      `Across the ${spreads.length} timed cases of the overhead, selection and peer benches, the slowest ` +
        `repetition of a case took a median ${pct(median(spreads))} longer than the fastest (at most ` +
        `${pct(Math.max(...spreads))}): compare only figures measured in the same run, and read single figures ` +
        "as rough."
    )
  }
  out.push(
    "",
    mdTable(
      oneMachine
        ? ["bench", "file", "run started", "load average (1, 5, 15 min)", "what it measures"]
        : ["bench", "file", "run started", "load average (1, 5, 15 min)", "machine", "what it measures"],
      benches.map((b) => {
        const file = results[b.key]
        const name = code(resultFiles[b.key])
        if (file === undefined) return [b.bench, name, "not run", "", ...(oneMachine ? [] : [""]), b.what(results)]
        return [
          b.bench,
          name,
          when(file.date),
          file.machine.loadAverage.join(", "),
          ...(oneMachine ? [] : [describeMachine(file.machine)]),
          b.what(results)
        ]
      }),
      oneMachine ? 5 : 6
    ),
    "",
    "Files with different start times come from different runs. To reproduce: `npm run bench` runs them all; " +
      "`npx tsx --tsconfig tsconfig.examples.json bench/simulation.ts`, `bench/store.ts` or `bench/cockatiel.ts` " +
      "runs one alone (the simulation and the store bench rebuild this page too); `npx tsx --tsconfig tsconfig.examples.json bench/report.ts` " +
      "rebuilds this page from the files in `bench/results/` without running anything.",
    ""
  )
  return out
}

/** Where a line may not start, or markdown would read it as a list, heading, quote or table. */
const blockStart = /^([-+*#]|\d+[.)])$|^[>|]/

/** Wraps a paragraph or list item at `width` (tables, headings and comments stay as they are). */
const wrapLine = (line: string, width: number): Array<string> => {
  if (line.length <= width || /^(\||#|<!--)/.test(line)) return [line]
  const indent = line.startsWith("- ") ? "  " : ""
  const lines: Array<string> = []
  let current = ""
  for (const word of line.split(" ")) {
    if (current === "") current = word
    else if (current.length + 1 + word.length <= width || blockStart.test(word)) current += ` ${word}`
    else {
      lines.push(current)
      current = indent + word
    }
  }
  lines.push(current)
  return lines
}

/** The whole of docs/benchmarks.md, from the parsed files of bench/results/. */
export const benchmarksMarkdown = (results: Results): string =>
  [
    ...intro(results),
    ...simulationSection(results.simulation, results.cockatiel),
    ...overheadSection(results.overhead),
    ...selectionSection(results.selection),
    ...httpSection(results.http, results.cockatiel),
    ...storeSection(results.store),
    ...cockatielSection(results.cockatiel)
  ]
    .join("\n")
    .split("\n")
    .flatMap((line) => wrapLine(line, 100))
    .join("\n")
    .replace(/\n+$/, "\n")

// --- run alone -----------------------------------------------------------------------------

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)

if (isMain) {
  console.log(`wrote ${writeReport()}`)
}
