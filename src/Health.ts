/**
 * Health of one endpoint: a circuit breaker and the HEALTHY / DEGRADED / UNHEALTHY view
 * of it.
 *
 * - **Closed** (routable). `maxFailures` consecutive failures open it, and so does a
 *   recent error rate of `failureRateThreshold` over at least `failureRateMinRequests`
 *   recent calls.
 * - **Open** (UNHEALTHY, not routable) for `recoveryTimeout` the first time; each opening
 *   in a row lasts longer (`recoveryFactor`, with jitter, up to `maxRecoveryTimeout`, or
 *   the delays of `recoverySchedule`), until the endpoint stays closed for a whole window.
 * - Then the next request that would pick the endpoint's tier is sent to it as a **probe**
 *   and the circuit is **HalfOpen**: at most `halfOpenProbes` probes in flight, other
 *   requests skip it. `halfOpenSuccesses` successful probes close the circuit; a failed
 *   one opens it again. A closed-again endpoint's share of traffic ramps up over
 *   `slowStart`.
 * - A 429 rests the endpoint until its `Retry-After` (a cooldown, not a health failure);
 *   refused credentials hold it out until `forceHealthy`.
 *
 * Independently of the circuit, a closed endpoint is DEGRADED when its recent error rate
 * reaches `degradedErrorRate` (once about `degradedMinRequests` calls were seen in the
 * recent window) or its recent average latency reaches `degradedLatency`. As in Envoy, a
 * DEGRADED endpoint is still routable but is used only when no HEALTHY endpoint of its
 * tier can take the request.
 *
 * "Recent" is an exponentially decaying window: a call `window` ago counts about 37 % as
 * much as one now. It needs constant memory and no timers.
 *
 * @since 0.1.0
 */
import { Chunk, Duration, Effect, Either, Random, Schedule, Schema } from "effect"
import type { Endpoint } from "./Endpoint.js"
import { InvalidConfig } from "./Errors.js"
import * as config from "./internal/config.js"
import * as schemas from "./internal/schemas.js"

/**
 * `unhealthy`: not routable (circuit open, or held out by `forceUnhealthy`).
 * `degraded`: routable, used only when no healthy endpoint of the tier can serve
 * (recent errors or latency over the thresholds, or half-open and probing).
 * `healthy`: routable.
 *
 * @since 0.1.0
 * @category models
 */
export type Status = "healthy" | "degraded" | "unhealthy"

/**
 * The circuit breaker's state. Times are epoch milliseconds from `Clock`.
 *
 * @since 0.1.0
 * @category models
 */
export type Circuit =
  | { readonly _tag: "Closed" }
  | { readonly _tag: "Open"; readonly since: number; readonly until: number }
  /**
   * `probes` in flight and `successes` so far; `since` is the open period's, and a probe
   * carries it so that a late probe of an earlier period is told apart.
   */
  | { readonly _tag: "HalfOpen"; readonly probes: number; readonly successes: number; readonly since: number }

/**
 * @since 0.1.0
 * @category constructors
 */
export const closed: Circuit = { _tag: "Closed" }

/**
 * The health policy of a balancer; an endpoint's `maxFailures` and `recoveryTimeout`
 * override it for that endpoint.
 *
 * @since 0.1.0
 * @category models
 */
export interface Policy {
  /** Consecutive failures that open the circuit. Default 3 (the seeds' `max_failures`). */
  readonly maxFailures: number
  /**
   * The recent error rate that opens the circuit, once `failureRateMinRequests` calls were
   * seen in the recent window. Default 0.5.
   */
  readonly failureRateThreshold: number
  /** Default 20. */
  readonly failureRateMinRequests: number
  /**
   * How long the circuit stays open the first time before a probe. Default 5 seconds (the
   * seeds used 30).
   */
  readonly recoveryTimeout: Duration.Duration
  /**
   * Each time the circuit opens again without a clean close in between (staying closed
   * for a whole `window`), the open period grows by this factor, up to
   * `maxRecoveryTimeout`, with full jitter on the growth. Default 2.
   */
  readonly recoveryFactor: number
  /** Default 5 minutes. */
  readonly maxRecoveryTimeout: Duration.Duration
  /**
   * Open periods from a `Schedule` instead of `recoveryTimeout` x `recoveryFactor`: the
   * n-th opening in a row lasts the schedule's n-th delay (its last delay once it ends).
   * It is run when an endpoint joins, with the balancer's seeded `Random` for jitter. For
   * example `Schedule.exponential("5 seconds").pipe(Schedule.jittered,
   * Schedule.union(Schedule.spaced("5 minutes")))`. Code only (not from `Config`); an
   * endpoint's own `recoveryTimeout` takes precedence. Default: none.
   */
  readonly recoverySchedule: Schedule.Schedule<unknown, unknown> | undefined
  /** Probes in flight at once while half-open. Default 1. */
  readonly halfOpenProbes: number
  /** Successful probes that close the circuit. Default 1. */
  readonly halfOpenSuccesses: number
  /**
   * After the circuit closes again, the endpoint's share of traffic ramps from 10 % to
   * full over this long instead of jumping back at once. Default 30 seconds; 0 turns it off.
   */
  readonly slowStart: Duration.Duration
  /** Time constant of the recent statistics (error rate, latency). Default 30 seconds. */
  readonly window: Duration.Duration
  /** Recent error rate at which a closed endpoint is DEGRADED. Default 0.2. */
  readonly degradedErrorRate: number
  /** Calls seen in the recent window before the error rate or latency can degrade it. Default 5. */
  readonly degradedMinRequests: number
  /**
   * Recent average latency at which a closed endpoint is DEGRADED (once about
   * `degradedMinRequests` timed successes were seen in the window). Default: none.
   */
  readonly degradedLatency: Duration.Duration | undefined
  /**
   * Time constant of the peak-EWMA latency estimate (`EndpointState.latencyEstimateMs`):
   * it jumps up at once on a slow answer and decays toward newer answers, and toward zero
   * while the endpoint is idle, so a slow endpoint is tried again after a while. Default 10 seconds.
   */
  readonly latencyDecay: Duration.Duration
  /** How long a rate-limited endpoint rests when the provider did not say. Default 5 seconds. */
  readonly rateLimitCooldown: Duration.Duration
  /** A `Retry-After` longer than this is treated as an outage (a health failure). Default 5 minutes. */
  readonly maxCooldown: Duration.Duration
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const defaultPolicy: Policy = {
  maxFailures: 3,
  failureRateThreshold: 0.5,
  failureRateMinRequests: 20,
  recoveryTimeout: Duration.seconds(5),
  recoveryFactor: 2,
  maxRecoveryTimeout: Duration.minutes(5),
  recoverySchedule: undefined,
  halfOpenProbes: 1,
  halfOpenSuccesses: 1,
  slowStart: Duration.seconds(30),
  window: Duration.seconds(30),
  degradedErrorRate: 0.2,
  degradedMinRequests: 5,
  degradedLatency: undefined,
  latencyDecay: Duration.seconds(10),
  rateLimitCooldown: Duration.seconds(5),
  maxCooldown: Duration.minutes(5)
}

/**
 * The schema of a partial policy, as a user writes it; missing fields take the defaults.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PolicyInput = Schema.Struct({
  maxFailures: Schema.optionalWith(schemas.PositiveInt, { exact: true }),
  failureRateThreshold: Schema.optionalWith(schemas.Ratio, { exact: true }),
  failureRateMinRequests: Schema.optionalWith(schemas.NonNegativeFinite, { exact: true }),
  recoveryTimeout: Schema.optionalWith(schemas.DurationInput, { exact: true }),
  recoveryFactor: Schema.optionalWith(
    Schema.Number.pipe(
      Schema.filter((n) => (Number.isFinite(n) && n >= 1) || `must be a number of at least 1, got ${n}`)
    ),
    { exact: true }
  ),
  maxRecoveryTimeout: Schema.optionalWith(schemas.DurationInput, { exact: true }),
  halfOpenProbes: Schema.optionalWith(schemas.PositiveInt, { exact: true }),
  halfOpenSuccesses: Schema.optionalWith(schemas.PositiveInt, { exact: true }),
  slowStart: Schema.optionalWith(schemas.DurationInput, { exact: true }),
  window: Schema.optionalWith(
    schemas.DurationInput.pipe(Schema.filter((d) => Duration.toMillis(d) > 0 || "must be longer than 0")),
    { exact: true }
  ),
  degradedErrorRate: Schema.optionalWith(schemas.Ratio, { exact: true }),
  degradedMinRequests: Schema.optionalWith(schemas.NonNegativeFinite, { exact: true }),
  degradedLatency: Schema.optionalWith(schemas.DurationInput, { exact: true }),
  latencyDecay: Schema.optionalWith(
    schemas.DurationInput.pipe(Schema.filter((d) => Duration.toMillis(d) > 0 || "must be longer than 0")),
    { exact: true }
  ),
  rateLimitCooldown: Schema.optionalWith(schemas.DurationInput, { exact: true }),
  maxCooldown: Schema.optionalWith(schemas.DurationInput, { exact: true })
}).annotations({ identifier: "HealthPolicy" })

/**
 * @since 0.1.0
 * @category models
 */
export type PolicyInput = typeof PolicyInput.Encoded & {
  readonly recoverySchedule?: Schedule.Schedule<unknown, unknown> | undefined
}

/**
 * Decodes a partial policy over the defaults, naming every bad field.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decodePolicy = (
  input: unknown,
  path: ReadonlyArray<PropertyKey> = []
): Either.Either<Policy, InvalidConfig> => {
  if (typeof input !== "object" || input === null || !("recoverySchedule" in input)) {
    return Either.map(config.decodeAll(PolicyInput, input ?? {}, path), (partial): Policy => ({
      ...defaultPolicy,
      ...partial
    }))
  }
  // the schedule is a value, not data: it is taken as it is
  const { recoverySchedule, ...data } = input as { readonly recoverySchedule: unknown }
  const decoded = config.decodeAll(PolicyInput, data, path)
  if (recoverySchedule === undefined || Schedule.isSchedule(recoverySchedule)) {
    return Either.map(decoded, (partial): Policy => ({
      ...defaultPolicy,
      ...partial,
      recoverySchedule: recoverySchedule as Schedule.Schedule<unknown, unknown> | undefined
    }))
  }
  const issue = { path: config.formatPath([...path, "recoverySchedule"]), message: "must be a Schedule" }
  return Either.left(
    new InvalidConfig({ issues: [...(Either.isLeft(decoded) ? decoded.left.issues : []), issue] })
  )
}

/**
 * A policy with every duration in milliseconds, as the hot path uses it; one per endpoint.
 *
 * @since 0.1.0
 * @category models
 */
export interface Resolved {
  readonly maxFailures: number
  readonly failureRateThreshold: number
  readonly failureRateMinRequests: number
  readonly recoveryTimeoutMs: number
  readonly recoveryFactor: number
  readonly maxRecoveryTimeoutMs: number
  readonly halfOpenProbes: number
  readonly halfOpenSuccesses: number
  readonly slowStartMs: number
  /** Open periods precomputed from `recoverySchedule`, when there is one. */
  readonly openDurationsMs: ReadonlyArray<number> | undefined
  readonly windowMs: number
  readonly degradedErrorRate: number
  readonly degradedMinRequests: number
  readonly degradedLatencyMs: number
  readonly latencyDecayMs: number
  readonly rateLimitCooldownMs: number
  readonly maxCooldownMs: number
}

/**
 * The policy that applies to one endpoint: the balancer's, overridden by the endpoint's
 * own `maxFailures` and `recoveryTimeout`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve = (policy: Policy, endpoint: Endpoint): Resolved => ({
  maxFailures: endpoint.maxFailures ?? policy.maxFailures,
  failureRateThreshold: policy.failureRateThreshold,
  failureRateMinRequests: policy.failureRateMinRequests,
  recoveryTimeoutMs: Duration.toMillis(endpoint.recoveryTimeout ?? policy.recoveryTimeout),
  recoveryFactor: policy.recoveryFactor,
  // an endpoint's own recoveryTimeout longer than the cap raises the cap with it
  maxRecoveryTimeoutMs: Math.max(
    Duration.toMillis(policy.maxRecoveryTimeout),
    Duration.toMillis(endpoint.recoveryTimeout ?? policy.recoveryTimeout)
  ),
  halfOpenProbes: policy.halfOpenProbes,
  halfOpenSuccesses: policy.halfOpenSuccesses,
  slowStartMs: Duration.toMillis(policy.slowStart),
  openDurationsMs: undefined,
  windowMs: Duration.toMillis(policy.window),
  degradedErrorRate: policy.degradedErrorRate,
  degradedMinRequests: policy.degradedMinRequests,
  degradedLatencyMs: policy.degradedLatency === undefined ? Infinity : Duration.toMillis(policy.degradedLatency),
  latencyDecayMs: Duration.toMillis(policy.latencyDecay),
  rateLimitCooldownMs: Duration.toMillis(policy.rateLimitCooldown),
  maxCooldownMs: Duration.toMillis(policy.maxCooldown)
})

/**
 * The same as {@link resolve}, and when the policy has a `recoverySchedule` (and the
 * endpoint no `recoveryTimeout` of its own), its first 32 open periods computed by running
 * the schedule with a `Random` seeded by `seed`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolveWithSchedule = (policy: Policy, endpoint: Endpoint, seed: number): Effect.Effect<Resolved> => {
  const resolved = resolve(policy, endpoint)
  const schedule = policy.recoverySchedule
  if (schedule === undefined || endpoint.recoveryTimeout !== undefined) return Effect.succeed(resolved)
  const steps = 32
  return Schedule.run(Schedule.delays(schedule), 0, Array.from({ length: steps }, () => undefined)).pipe(
    Effect.withRandom(Random.make(seed)),
    Effect.map((delays) => {
      const all = Chunk.toReadonlyArray(delays).map((d) => Math.max(1, Math.round(Duration.toMillis(d))))
      // a schedule that ended yields one last output at its end, which is not a delay
      const planned = all.length < steps ? all.slice(0, -1) : all
      return planned.length === 0 ? resolved : { ...resolved, openDurationsMs: planned }
    })
  )
}

/**
 * How long the circuit stays open the `openings`-th time in a row (0 for the first):
 * `recoveryTimeout` the first time; after that `recoveryTimeout` plus a random part
 * (`jitter` in [0, 1)) of the growth to `recoveryTimeout x recoveryFactor^openings`,
 * capped at `maxRecoveryTimeout`. The first period is exact, so a user can rely on it;
 * the jitter on the growth keeps endpoints that failed together from being probed
 * together, and the floor keeps a flapping endpoint from being probed at once.
 *
 * @since 0.1.0
 * @category getters
 */
export const openDurationMs = (policy: Resolved, openings: number, jitter: number): number => {
  const planned = policy.openDurationsMs
  if (planned !== undefined) return planned[Math.min(Math.max(0, openings), planned.length - 1)]
  const base = policy.recoveryTimeoutMs
  if (openings <= 0) return base
  const grown = Math.min(policy.maxRecoveryTimeoutMs, base * Math.pow(policy.recoveryFactor, openings))
  return Math.round(base + jitter * Math.max(0, grown - base))
}

/**
 * The share of its normal traffic an endpoint takes `sinceClose` ms after its circuit
 * closed again: from 10 % up to 100 % over `slowStart`.
 *
 * @since 0.1.0
 * @category getters
 */
export const slowStartFactor = (policy: Resolved, sinceClose: number): number =>
  policy.slowStartMs <= 0 || sinceClose >= policy.slowStartMs
    ? 1
    : 0.1 + 0.9 * Math.max(0, sinceClose) / policy.slowStartMs

/**
 * A peak-EWMA latency estimate (as Finagle's `p2cPeakEwma` keeps it): an answer slower
 * than the estimate raises it at once, faster ones pull it down with weight
 * `1 - exp(-dt / decayMs)`, and it decays toward zero while the endpoint is idle.
 *
 * @since 0.1.0
 * @category models
 */
export interface LatencyEstimate {
  readonly ms: number
  readonly at: number
}

/**
 * @since 0.1.0
 * @category transitions
 */
export const observeLatency = (
  estimate: LatencyEstimate | undefined,
  now: number,
  latencyMs: number,
  decayMs: number
): LatencyEstimate => {
  // compared with the estimate as it stands now, decayed: after a quiet spell a normal
  // answer takes over at once instead of being averaged with a stale slow one
  if (estimate === undefined) return { ms: latencyMs, at: now }
  const w = now <= estimate.at ? 1 : Math.exp((estimate.at - now) / decayMs)
  const decayed = estimate.ms * w
  return { ms: latencyMs >= decayed ? latencyMs : decayed + latencyMs * (1 - w), at: now }
}

/**
 * The estimate at `now`: it decays toward zero while no answer comes, so an endpoint
 * that was slow is tried again after a while instead of being avoided for ever.
 *
 * @since 0.1.0
 * @category getters
 */
export const latencyAt = (estimate: LatencyEstimate, now: number, decayMs: number): number =>
  now <= estimate.at ? estimate.ms : estimate.ms * Math.exp((estimate.at - now) / decayMs)

/**
 * Statistics over the recent window, kept as exponentially decayed sums so that one
 * update is O(1) and memory is constant.
 *
 * @since 0.1.0
 * @category models
 */
export interface Recent {
  /** When the sums were last decayed (epoch ms). */
  readonly at: number
  readonly calls: number
  readonly failures: number
  /** Sum of latencies of the successful calls that reported one, and their count. */
  readonly latencyMs: number
  readonly timed: number
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const emptyRecent = (now: number): Recent => ({ at: now, calls: 0, failures: 0, latencyMs: 0, timed: 0 })

/**
 * Adds one call at `now` to the recent window.
 *
 * @since 0.1.0
 * @category transitions
 */
export const record = (
  recent: Recent,
  now: number,
  windowMs: number,
  failed: boolean,
  latencyMs: number | undefined
): Recent => {
  const f = decayFactor(recent, now, windowMs)
  const timedSuccess = !failed && latencyMs !== undefined
  return {
    at: now > recent.at ? now : recent.at,
    calls: recent.calls * f + 1,
    failures: recent.failures * f + (failed ? 1 : 0),
    latencyMs: recent.latencyMs * f + (timedSuccess ? latencyMs : 0),
    timed: recent.timed * f + (timedSuccess ? 1 : 0)
  }
}

const decayFactor = (recent: Recent, now: number, windowMs: number): number =>
  now <= recent.at ? 1 : Math.exp((recent.at - now) / windowMs)

/**
 * The decayed number of calls in the recent window at `now`.
 *
 * @since 0.1.0
 * @category getters
 */
export const recentCalls = (recent: Recent, now: number, windowMs: number): number =>
  recent.calls * decayFactor(recent, now, windowMs)

/**
 * The decayed number of timed successes in the recent window at `now`.
 *
 * @since 0.1.0
 * @category getters
 */
export const recentTimed = (recent: Recent, now: number, windowMs: number): number =>
  recent.timed * decayFactor(recent, now, windowMs)

/**
 * Failures / calls in the recent window (0 when there were none).
 *
 * @since 0.1.0
 * @category getters
 */
export const recentErrorRate = (recent: Recent): number => recent.calls > 0 ? recent.failures / recent.calls : 0

/**
 * Average latency of recent successful calls in milliseconds, or `undefined`.
 *
 * @since 0.1.0
 * @category getters
 */
export const recentLatencyMs = (recent: Recent): number | undefined =>
  recent.timed > 0 ? recent.latencyMs / recent.timed : undefined
