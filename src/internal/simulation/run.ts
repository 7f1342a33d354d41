/**
 * One run: the fleet, a balancer (ours, or a baseline), the real `Router` over it, and
 * open-loop traffic, all on simulated time; then the report.
 */
import { Cause, Clock, Duration, Effect, Exit, FiberSet, Option } from "effect"
import * as Balancer from "../../Balancer.js"
import type * as Errors from "../../Errors.js"
import { InvalidConfig } from "../../Errors.js"
import type * as Health from "../../Health.js"
import * as Router from "../../Router.js"
import type * as Strategy from "../../Strategy.js"
import { fromSeed } from "../random.js"
import { policyProblems } from "../router.js"
import * as baselines from "./baselines.js"
import { drive } from "./driver.js"
import type { TimedFault } from "./fleet.js"
import { logNormal, SimulatedEndpointState } from "./fleet.js"
import type { Report, RequestRecord } from "./report.js"
import { build } from "./report.js"
import type { Scenario, Tokens } from "./schema.js"
import { durationOf } from "./schema.js"

/** The router under test: our balancer with some configuration, or a baseline. */
export type Contender =
  | {
    readonly _tag: "Balancer"
    readonly name: string
    readonly strategy?: Strategy.Strategy | Strategy.BuiltInName | undefined
    /** Overrides of the scenario's health policy. */
    readonly health?: Health.PolicyInput | undefined
    readonly panic?: boolean | undefined
    /** Whether the scenario's budget applies. Default true. */
    readonly budget?: boolean | undefined
    /**
     * Whether the balancer runs active health checks on open endpoints (every 5 s; the
     * simulated endpoints answer them as a model listing would). Default true.
     */
    readonly healthChecks?: boolean | undefined
    /** Overrides of the scenario's routing. */
    readonly routing?: Router.Policy | undefined
  }
  | {
    readonly _tag: "Baseline"
    readonly name: "round-robin" | "seeds" | "litellm" | "oracle"
    readonly routing?: Router.Policy | undefined
  }

/** What a run shows while it goes: called at the end of every slice of the timeline. */
export interface Progress {
  readonly router: string
  /** ms of simulated time since the start. */
  readonly elapsedMs: number
  readonly durationMs: number
  readonly requests: number
  readonly failed: number
  readonly inFlight: number
  readonly endpoints: ReadonlyArray<{
    readonly name: string
    /** Share of the attempts in the last slice. */
    readonly share: number
    readonly circuit: "closed" | "open" | "half-open"
  }>
}

export interface RunOptions {
  readonly seed?: number | undefined
  /** Length of a timeline slice. Default: about 120 slices over the run, at least 1 s. */
  readonly bucket?: Duration.DurationInput | undefined
  readonly onProgress?: ((progress: Progress) => void) | undefined
  /**
   * How long requests still in flight when the traffic ends may take before they are
   * cut (and reported as failed). Default: the routing deadline, or 5 minutes.
   */
  readonly drain?: Duration.DurationInput | undefined
}

/** 2026-01-01T00:00:00Z: simulated time starts here. */
export const START = Date.UTC(2026, 0, 1)

const draw = (tokens: Tokens, random: () => number): number =>
  typeof tokens === "number" ? tokens : Math.max(1, Math.round(logNormal(tokens.median, tokens.p99, random)))

const niceBucket = (durationMs: number): number => {
  const target = durationMs / 120
  for (const step of [1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000]) {
    if (step >= target) return step
  }
  return 3_600_000
}

const policyOf = (scenario: Scenario, contender: Contender): Router.Policy => {
  const r = scenario.routing
  const base: Router.Policy = {
    maxAttempts: r.maxAttempts,
    timeout: r.timeout,
    attemptTimeout: r.attemptTimeout,
    hedge: r.hedge,
    hints: r.wait === undefined ? undefined : { wait: r.wait }
  }
  return contender.routing === undefined ? base : { ...base, ...contender.routing }
}

const describeFailure = (cause: Cause.Cause<unknown>): { error: string; attempts: number } => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const e = failure.value as Errors.RoutingFailed
    return {
      error: `${e.reason}${e.lastError !== undefined ? `: ${e.lastError._tag}` : ""}`,
      attempts: e.attempts.length
    }
  }
  return { error: Cause.isInterruptedOnly(cause) ? "cut at the end of the run" : "defect", attempts: 0 }
}

interface Settings {
  readonly bucketMs: number | undefined
  readonly drainMs: number | undefined
}

const program = (scenario: Scenario, contender: Contender, seed: number, options: RunOptions, settings: Settings) =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    // separate streams: the traffic is the same whatever the router does with it
    const trafficRandom = fromSeed(seed ^ 0x5bd1e995)
    const random = fromSeed(seed ^ 0x27d4eb2f)
    const fleet = scenario.endpoints.map((simulated) => {
      const name = simulated.endpoint.name
      const faults: Array<TimedFault> = scenario.faults
        .filter((f) => f.endpoint === "*" || f.endpoint === name)
        .map((fault) => ({
          fault,
          from: start + Duration.toMillis(fault.from),
          to: start + Duration.toMillis(fault.to)
        }))
      return new SimulatedEndpointState(simulated, faults)
    })
    const indexOf = new Map(fleet.map((e, i) => [e.name, i] as const))
    const durationMs = Duration.toMillis(durationOf(scenario.traffic))
    const bucketMs = settings.bucketMs ?? niceBucket(durationMs)

    let balancer: Balancer.BalancerService
    let circuitsNow: Effect.Effect<ReadonlyArray<"closed" | "open" | "half-open">>
    const typical = (tokens: Tokens) => typeof tokens === "number" ? tokens : tokens.median
    const meanInput = "rate" in scenario.traffic ? typical(scenario.traffic.inputTokens) : 500
    const meanOutput = "rate" in scenario.traffic ? typical(scenario.traffic.outputTokens) : 200
    if (contender._tag === "Balancer") {
      const ours = yield* Balancer.make({
        endpoints: scenario.endpoints.map((e) => e.endpoint),
        strategy: contender.strategy,
        health: { ...scenario.health, ...contender.health } as Health.PolicyInput,
        panic: contender.panic,
        budget: contender.budget === false ? undefined : scenario.budget,
        healthCheck: contender.healthChecks === false ? undefined : {
          check: (endpoint) => fleet[indexOf.get(endpoint.name)!].check(random)
        }
      })
      balancer = ours
      const names = fleet.map((e) => e.name)
      circuitsNow = Effect.map(ours.stats, (stats) => {
        const byName = new Map(stats.map((s) => [s.name, s.circuit] as const))
        return names.map((n) => byName.get(n) ?? "closed")
      })
    } else {
      const baseline = contender.name === "round-robin"
        ? baselines.roundRobin()
        : contender.name === "seeds"
        ? baselines.seeds
        : contender.name === "litellm"
        ? baselines.litellm
        : baselines.oracle(meanInput + meanOutput)
      const made = baselines.make(baseline, fleet, fromSeed(seed ^ 0x165667b1))
      balancer = made.service
      circuitsNow = Clock.currentTimeMillis.pipe(
        Effect.map((now) => made.slots.map((slot) => baseline.circuit(slot, now)))
      )
    }
    const router = yield* Router.make().pipe(Effect.provideService(Balancer.Balancer, balancer))
    const policy = policyOf(scenario, contender)
    const deadlineMs = policy.timeout === undefined ? undefined : Duration.toMillis(Duration.decode(policy.timeout))

    const records: Array<RequestRecord> = []
    let failed = 0
    let inFlight = 0
    const circuits: Array<ReadonlyArray<"closed" | "open" | "half-open">> = []

    const request = (id: number, inputTokens: number, outputTokens: number) =>
      Effect.suspend(() => {
        const at = Clock.currentTimeMillis
        return Effect.flatMap(at, (arrived) => {
          inFlight++
          const hinted: Router.Policy = {
            ...policy,
            hints: { ...policy.hints, inputTokens, outputTokens }
          }
          return router.execute(
            (endpoint, _attempt, lease) =>
              fleet[indexOf.get(endpoint.name)!].call(start, lease, inputTokens, outputTokens, random),
            hinted
          ).pipe(
            Effect.onExit((exit) =>
              Effect.map(Clock.currentTimeMillis, (now) => {
                inFlight--
                const base = { id, at: arrived - start, latencyMs: now - arrived }
                if (Exit.isSuccess(exit)) {
                  records.push({
                    ...base,
                    ok: true,
                    attempts: exit.value.attempts.length,
                    endpoint: exit.value.endpoint.name
                  })
                } else {
                  failed++
                  const { attempts, error } = describeFailure(exit.cause)
                  records.push({ ...base, ok: false, error, attempts })
                }
              })
            )
          )
        })
      })

    // the timeline's circuits, and progress
    let progressError: { readonly error: unknown } | undefined
    const sampler = Effect.gen(function*() {
      let lastCounts = fleet.map(() => 0)
      for (let b = 0;; b++) {
        yield* Effect.sleep(Duration.millis(bucketMs))
        const states = yield* circuitsNow
        circuits.push(states)
        if (options.onProgress !== undefined && b * bucketMs < durationMs && progressError === undefined) {
          const counts = fleet.map((e) => e.attempts)
          const delta = counts.map((n, i) => n - lastCounts[i])
          const total = delta.reduce((a, n) => a + n, 0)
          lastCounts = counts
          try {
            options.onProgress({
              router: contender.name,
              elapsedMs: Math.min(durationMs, (b + 1) * bucketMs),
              durationMs,
              requests: records.length + inFlight,
              failed,
              inFlight,
              endpoints: fleet.map((e, i) => ({
                name: e.name,
                share: total === 0 ? 0 : delta[i] / total,
                circuit: states[i]
              }))
            })
          } catch (error) {
            // the caller's callback threw: the run fails with it once it ends
            progressError = { error }
          }
        }
      }
    })
    yield* Effect.forkScoped(sampler)

    const requests = yield* FiberSet.make<void, never>()
    const traffic = scenario.traffic
    if ("rate" in traffic) {
      const meanGap = 1000 / traffic.rate
      let t = 0
      for (let id = 0;; id++) {
        t += -Math.log(1 - trafficRandom()) * meanGap
        if (t >= durationMs) break
        const now = (yield* Clock.currentTimeMillis) - start
        if (t > now) yield* Effect.sleep(Duration.millis(t - now))
        yield* FiberSet.run(
          requests,
          Effect.catchAllCause(
            request(id, draw(traffic.inputTokens, trafficRandom), draw(traffic.outputTokens, trafficRandom)),
            () => Effect.void
          )
        )
      }
    } else {
      const trace = [...traffic.trace].map((r, id) => ({ ...r, id, atMs: Duration.toMillis(r.at) }))
        .sort((a, b) => a.atMs - b.atMs || a.id - b.id)
      for (const r of trace) {
        const now = (yield* Clock.currentTimeMillis) - start
        if (r.atMs > now) yield* Effect.sleep(Duration.millis(r.atMs - now))
        yield* FiberSet.run(
          requests,
          Effect.catchAllCause(request(r.id, r.inputTokens, r.outputTokens), () => Effect.void)
        )
      }
    }
    const elapsed = (yield* Clock.currentTimeMillis) - start
    if (elapsed < durationMs) yield* Effect.sleep(Duration.millis(durationMs - elapsed))
    const drainMs = settings.drainMs ?? deadlineMs ?? 300_000
    yield* Effect.raceFirst(FiberSet.awaitEmpty(requests), Effect.sleep(Duration.millis(drainMs)))
    yield* FiberSet.clear(requests)
    records.sort((a, b) => a.id - b.id)
    if (progressError !== undefined) return yield* Effect.die(progressError.error)
    return build({
      scenario,
      router: contender.name,
      seed,
      start,
      durationMs,
      fleet,
      records,
      bucketMs,
      circuits,
      deadlineMs
    })
  }).pipe(Effect.scoped)

/** Runs one scenario against one router on simulated time. */
export const run = (
  scenario: Scenario,
  contender: Contender,
  options: RunOptions = {}
): Effect.Effect<Report, Errors.InvalidConfig> => {
  const seed = options.seed ?? 1
  return Effect.flatMap(validate(scenario, contender, options), (settings) =>
    drive(
      // simulated traffic is told apart from real traffic in the library's metrics
      Effect.tagMetrics(program(scenario, contender, seed, options, settings), "simulation", scenario.name),
      { start: START, seed }
    ))
}

/** The run's options and the contender's routing, checked before anything runs. */
const validate = (
  scenario: Scenario,
  contender: Contender,
  options: RunOptions
): Effect.Effect<Settings, Errors.InvalidConfig> =>
  Effect.suspend(() => {
    const issues: Array<Errors.ConfigIssue> = []
    const duration = (name: "bucket" | "drain", value: Duration.DurationInput | undefined) => {
      if (value === undefined) return undefined
      const decoded = Duration.decodeUnknown(value)
      const ms = Option.isSome(decoded) ? Duration.toMillis(decoded.value) : NaN
      if (!(Number.isFinite(ms) && (name === "drain" ? ms >= 0 : ms > 0))) {
        issues.push({
          path: name,
          message: `must be a finite duration${name === "bucket" ? " longer than 0" : ""}, got ${String(value)}`
        })
        return undefined
      }
      return ms
    }
    const settings = { bucketMs: duration("bucket", options.bucket), drainMs: duration("drain", options.drain) }
    if (
      options.seed !== undefined && !(Number.isInteger(options.seed) && options.seed >= 0 && options.seed < 2 ** 32)
    ) {
      issues.push({ path: "seed", message: `must be a whole number from 0 to 2^32 - 1, got ${options.seed}` })
    }
    for (const problem of policyProblems(policyOf(scenario, contender))) {
      issues.push({ path: `routing (${contender.name})`, message: problem })
    }
    return issues.length > 0 ? Effect.fail(new InvalidConfig({ issues })) : Effect.succeed(settings)
  })
