/**
 * See what a routing policy does to tail latency, errors and cost before production: a
 * deterministic simulation of a fleet of endpoints under faults, through the real
 * `Router` and `Balancer`.
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Simulation } from "effect-llm-balancer"
 *
 * const report = Simulation.run({
 *   name: "my fleet, one brownout",
 *   traffic: { rate: 20, duration: "10 minutes" },
 *   faults: [{ type: "brownout", endpoint: "azure", from: "2 minutes", to: "4 minutes", factor: 10 }],
 *   endpoints: [
 *     { name: "openai", provider: "openai", model: "gpt-4o-mini", simulate: { latency: { median: "700 millis", p99: "3 seconds" } } },
 *     { name: "azure", provider: "openai", model: "gpt-4o-mini", simulate: { latency: { median: "900 millis", p99: "4 seconds" } } }
 *   ]
 * }, Simulation.balancer("default"))
 *
 * Effect.runPromise(report).then((r) => console.log(r.successRate, r.latency.p99))
 * ```
 *
 * Each endpoint answers with a log-normal latency, enforces its own limits with 429 +
 * `Retry-After`, and follows a timeline of faults (brownout, outage, hang, errors,
 * flapping, stalls, a lower rate limit). Requests arrive open loop (Poisson at a rate, or
 * a recorded trace). Time is simulated: a clock that jumps to the next timer once every
 * fiber waits, and a scheduler stepped by hand, so an hour of traffic takes seconds and
 * the same seed gives the same report, byte for byte.
 *
 * @since 0.1.0
 */
import { Effect, Either } from "effect"
import type { InvalidConfig } from "./Errors.js"
import * as html from "./internal/simulation/html.js"
import type * as report from "./internal/simulation/report.js"
import * as internal from "./internal/simulation/run.js"
import * as scenarios from "./internal/simulation/scenarios.js"
import * as schema from "./internal/simulation/schema.js"
import * as text from "./internal/simulation/text.js"
import type * as Router from "./Router.js"

/**
 * A scenario as plain data: the fleet (each endpoint's configuration, as the balancer
 * sees it, plus `simulate`: how it behaves), the traffic, the faults, the routing policy
 * and optionally a budget and health policy for the balancer under test.
 *
 * @since 0.1.0
 * @category models
 */
export type ScenarioInput = schema.ScenarioInput

/**
 * A decoded scenario (what {@link decode} returns; write a {@link ScenarioInput}).
 *
 * @since 0.1.0
 * @category models
 */
export type Scenario = schema.Scenario

/**
 * How a simulated endpoint behaves: latency (time to first token, log-normal by median
 * and p99), tokens per second, background error rate, slowdown under concurrency, the
 * provider's own limits, and whether it sends rate-limit headers.
 *
 * @since 0.1.0
 * @category models
 */
export type Behaviour = schema.Model

/**
 * `Behaviour` as a user writes it (durations as `"800 millis"` or milliseconds).
 *
 * @since 0.1.0
 * @category models
 */
export type BehaviourInput = typeof schema.Model.Encoded

/**
 * What goes wrong, where and when: `brownout` (x `factor` slower), `outage` (fast
 * connection errors), `hang` (no answer), `errors` (a share of HTTP 500s), `flapping`
 * (`up` / `down` over and over), `stalls` (a share of calls `factor` x slower to the first
 * token), `rate-limit` (the provider's rpm drops). `endpoint` is a name or `"*"`.
 *
 * @since 0.1.0
 * @category models
 */
export type Fault = schema.Fault

/**
 * `Fault` as a user writes it (`from: "2 minutes"`).
 *
 * @since 0.1.0
 * @category models
 */
export type FaultInput = typeof schema.Fault.Encoded

/**
 * @since 0.1.0
 * @category models
 */
export type Traffic = schema.Traffic

/**
 * `Traffic` as a user writes it.
 *
 * @since 0.1.0
 * @category models
 */
export type TrafficInput = typeof schema.Traffic.Encoded

/**
 * The router under test: our balancer with a configuration, or a baseline.
 *
 * @since 0.1.0
 * @category models
 */
export type Contender = internal.Contender

/**
 * @since 0.1.0
 * @category models
 */
export type Progress = internal.Progress

/**
 * @since 0.1.0
 * @category models
 */
export type RunOptions = internal.RunOptions

/**
 * @since 0.1.0
 * @category models
 */
export type Report = report.Report

/**
 * @since 0.1.0
 * @category models
 */
export type RequestRecord = report.RequestRecord

/**
 * @since 0.1.0
 * @category models
 */
export type FaultReport = report.FaultReport

/**
 * @since 0.1.0
 * @category models
 */
export type EndpointReport = report.EndpointReport

/**
 * @since 0.1.0
 * @category models
 */
export type Bucket = report.Bucket

/**
 * Decodes a scenario from unknown input (a JSON file), naming every bad field.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decode = (input: unknown): Effect.Effect<Scenario, InvalidConfig> =>
  Effect.suspend(() => schema.decodeScenario(input))

/**
 * Our balancer under test: by default the default strategy and health policy, with
 * active health checks (the simulated endpoints answer them like a model listing).
 *
 * @since 0.1.0
 * @category constructors
 */
export const balancer = (
  name: string,
  options: Omit<Extract<Contender, { readonly _tag: "Balancer" }>, "_tag" | "name"> = {}
): Contender => ({ _tag: "Balancer", name, ...options })

/**
 * The baselines: `round-robin` with no health tracking; `seeds` (capacity x weight
 * random, out for 60 s after 3 consecutive errors, back at full weight); `litellm` (a
 * weighted shuffle with a 5 s cooldown on a 429 or a timeout, or when more than half of a
 * minute's calls (5 or more) failed, none for connection errors, as LiteLLM's code does);
 * `oracle` (knows every endpoint's true state at every instant; fails a call at once when
 * every endpoint is down).
 *
 * @since 0.1.0
 * @category constructors
 */
export const baseline = (
  name: "round-robin" | "seeds" | "litellm" | "oracle",
  options: { readonly routing?: Router.Policy | undefined } = {}
): Contender => ({ _tag: "Baseline", name, ...options })

/**
 * Runs a scenario against one router. A bad scenario fails with `InvalidConfig`.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (
  scenario: ScenarioInput | Scenario,
  contender: Contender,
  options?: RunOptions
): Effect.Effect<Report, InvalidConfig> => Effect.flatMap(decoded(scenario), (s) => internal.run(s, contender, options))

/**
 * Runs a scenario against several routers on the same traffic (the same seed), one
 * after the other.
 *
 * @since 0.1.0
 * @category running
 */
export const compare = (
  scenario: ScenarioInput | Scenario,
  contenders: ReadonlyArray<Contender>,
  options?: RunOptions
): Effect.Effect<ReadonlyArray<Report>, InvalidConfig> =>
  Effect.flatMap(decoded(scenario), (s) => Effect.forEach(contenders, (c) => internal.run(s, c, options)))

const isDecoded = (input: ScenarioInput | Scenario): input is Scenario => {
  const first: unknown = input.endpoints[0]
  return typeof first === "object" && first !== null && "model" in first && "endpoint" in first
}

const decoded = (input: ScenarioInput | Scenario): Effect.Effect<Scenario, InvalidConfig> =>
  Effect.suspend(() =>
    typeof input === "object" && input !== null && Array.isArray(input.endpoints) && isDecoded(input)
      ? Effect.succeed(input)
      : Either.match(schema.decodeScenario(input), { onLeft: Effect.fail, onRight: Effect.succeed })
  )

/**
 * The built-in scenarios (steady, brownout, outage, hang, rate limits, total outage,
 * flapping, stalls, cost), each with the routers it compares and the bars the default
 * configuration must clear. `scenario(scale)` makes every time `scale` times shorter.
 *
 * @since 0.1.0
 * @category scenarios
 */
export const builtIns: Readonly<Record<scenarios.BuiltInName, scenarios.BuiltIn>> = scenarios.builtIns

/**
 * @since 0.1.0
 * @category scenarios
 */
export type BuiltIn = scenarios.BuiltIn

/**
 * @since 0.1.0
 * @category scenarios
 */
export type Bar = scenarios.Bar

/**
 * A self-contained HTML page (inline SVG charts, no network) of one or more reports:
 * a comparison table, and per router its traffic share per endpoint, latency percentiles
 * and circuit states over time.
 *
 * @since 0.1.0
 * @category rendering
 */
export const toHtml: (
  reports: ReadonlyArray<Report>,
  options?: { readonly title?: string; readonly generatedAt?: string }
) => string = html.html

/**
 * A plain-text comparison table of reports.
 *
 * @since 0.1.0
 * @category rendering
 */
export const toTable: (reports: ReadonlyArray<Report>) => string = text.table

/**
 * One terminal line of a run's progress (a bar, the requests, each endpoint's share and
 * circuit).
 *
 * @since 0.1.0
 * @category rendering
 */
export const progressLine: (progress: Progress, width?: number) => string = text.progressLine
