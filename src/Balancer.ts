/**
 * The `Balancer` service: chooses an endpoint for each call, keeps every endpoint's
 * health, and hands out leases that must be given back.
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Balancer, Strategy } from "effect-llm-balancer"
 *
 * const program = Balancer.use((endpoint) => Effect.succeed(`answered by ${endpoint.name}`))
 *
 * const BalancerLive = Balancer.layer({
 *   endpoints: [
 *     { name: "openai-us", provider: "openai", model: "gpt-4o-mini", weight: 2 },
 *     { name: "anthropic", provider: "anthropic", model: "claude-3-5-haiku-latest" }
 *   ],
 *   strategy: Strategy.smoothWeightedRoundRobin
 * })
 *
 * Effect.runPromise(Effect.provide(program, BalancerLive))
 * ```
 *
 * The endpoint table is one immutable value; every operation applies a pure transition
 * (see `EndpointState`) to it in one synchronous step, which no other fiber can interleave
 * with, so choosing an endpoint and reserving its slot is atomic and concurrent fibers
 * never corrupt it (docs/design.md says why that step is not an Effect `Ref` operation).
 *
 * @since 0.1.0
 */
import type { Config, Duration, Queue, Scope, Stream } from "effect"
import { Context, Effect, Layer } from "effect"
import type * as Endpoint from "./Endpoint.js"
import type * as EndpointState from "./EndpointState.js"
import type { InvalidConfig, NoEndpointAvailable, UnknownEndpoint } from "./Errors.js"
import type { Event } from "./Event.js"
import type * as Health from "./Health.js"
import * as internal from "./internal/balancer.js"
import * as internalConfig from "./internal/balancerConfig.js"
import type * as Outcome from "./Outcome.js"
import type * as RateLimit from "./RateLimit.js"
import type * as Strategy from "./Strategy.js"

/**
 * A reserved slot on one endpoint. Give it back with `release`, exactly once; `use` does
 * that for you. A second release of the same lease does nothing.
 *
 * @since 0.1.0
 * @category models
 */
export interface Lease {
  readonly endpoint: Endpoint.Endpoint
  /** Epoch milliseconds from `Clock` at which the slot was taken. */
  readonly startedAt: number
  /** True when this call is a half-open circuit's probe. */
  readonly probe: boolean
  /**
   * Records what the call learned before it ends: the tokens it used, what the provider's
   * headers say is left of its limits. `use` reports it when the call ends, and so does
   * `release` for what its outcome does not say itself. A later report overrides an
   * earlier one field by field.
   */
  readonly report: (report: Report) => Effect.Effect<void>
  /**
   * Marks that the first token of a streamed answer arrived now: its time to first token
   * (from `startedAt`) is the latency routing by speed uses.
   */
  readonly firstToken: Effect.Effect<void>
  /**
   * Lets the call outlive `use`'s callback: when the callback succeeds, `use` leaves the
   * lease held, and whoever continues the call releases it with `release` (a stream
   * handed to its consumer after its first token, say). A callback that fails or is
   * interrupted releases as usual.
   */
  readonly detach: Effect.Effect<void>
}

/**
 * What a call reports about itself through `Lease.report`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Report {
  readonly usage?: Outcome.Usage | undefined
  readonly rateLimit?: RateLimit.Remaining | undefined
  readonly timeToFirstToken?: Duration.DurationInput | undefined
}

/**
 * What a request asks of the endpoint that serves it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Hints {
  /** Names of endpoints not to use (for example, the ones already tried). */
  readonly exclude?: ReadonlyArray<string> | undefined
  /** Tags the endpoint must all have. */
  readonly tags?: ReadonlyArray<string> | undefined
  /**
   * Only endpoints whose `contextWindow` is at least this many tokens (endpoints that do
   * not declare one are passed over).
   */
  readonly minContextWindow?: number | undefined
  /**
   * Only endpoints of this model group (`Endpoint.group`, or its `model` when it has no
   * group): equivalent deployments of one logical model.
   */
  readonly group?: string | undefined
  /**
   * The request's estimated input tokens. It is counted against tokens-per-minute limits
   * when the call is admitted (with `outputTokens`), replaced by the reported usage when
   * it ends, and prices the request for the cost strategy and budgets. Without an
   * estimate, tokens are counted from the reported usage only, so a burst can overshoot a
   * tokens-per-minute limit by the calls in flight.
   */
  readonly inputTokens?: number | undefined
  /** The request's estimated output tokens (its `max_tokens`, or a typical answer's length). */
  readonly outputTokens?: number | undefined
  /**
   * Wait up to this long for a slot to free up or an endpoint to recover instead of
   * failing at once. The wait needs no polling: it wakes when a call ends or at the
   * time the earliest open circuit admits a probe.
   */
  readonly wait?: Duration.DurationInput | undefined
}

/**
 * One endpoint's statistics; plain JSON, never the API key.
 *
 * @since 0.1.0
 * @category models
 */
export interface EndpointStats {
  readonly name: string
  readonly provider: string
  readonly model: string
  readonly status: Health.Status
  readonly circuit: "closed" | "open" | "half-open"
  /** Held out by `forceUnhealthy`. */
  readonly held: boolean
  /** Calls in flight. */
  readonly active: number
  readonly successes: number
  readonly failures: number
  readonly consecutiveFailures: number
  /** Lifetime failures / calls. */
  readonly errorRate: number
  /** Failures / calls over the recent window. */
  readonly recentErrorRate: number
  /** Lifetime average latency of successful calls (ms). */
  readonly avgLatencyMs: number | null
  /** Average latency of recent successful calls (ms). */
  readonly recentLatencyMs: number | null
  /** Epoch ms until which the circuit is open. */
  readonly unhealthyUntil: number | null
  /** Epoch ms until which the endpoint rests after a 429. */
  readonly cooldownUntil: number | null
  /**
   * The shared `Store` turned the endpoint away (the cluster's limit, cooldown, open
   * circuit or budget): why, and until when (epoch ms).
   */
  readonly shared: { readonly reason: EndpointState.SharedReason; readonly until: number } | null
  /** Calls that ended rate limited (also in `failures`). */
  readonly rateLimited: number
  /** The share of its normal traffic it takes now: below 1 during slow start. */
  readonly trafficShare: number
  readonly weight: number
  readonly priority: number
  /** The model group it serves. */
  readonly group: string
  /** Percentiles of the latencies of its last 256 successful calls (time to first token when streamed). */
  readonly latencyP50Ms: number | null
  readonly latencyP95Ms: number | null
  readonly latencyP99Ms: number | null
  /** The peak-EWMA latency estimate `powerOfTwo` ranks by. */
  readonly latencyEstimateMs: number | null
  /** Average time to first token of streamed calls. */
  readonly avgTimeToFirstTokenMs: number | null
  /** Output tokens per second after the first token (an EWMA). */
  readonly tokensPerSecond: number | null
  /** Tokens reported by successful calls, lifetime. */
  readonly inputTokens: number
  readonly outputTokens: number
  /** The share of its limits left for one more request, 0 to 1 (1 without limits). */
  readonly headroom: number
  /** Counts in its sliding windows, when it has the matching limit. */
  readonly requestsLastMinute: number | null
  readonly tokensLastMinute: number | null
  readonly requestsLastDay: number | null
  /** Spend over its lifetime, from reported usage and its `cost`. */
  readonly spent: number
  /** Its own budget: the limit, what it spent this period, and when the period ends (epoch ms). */
  readonly budget: { readonly limit: number; readonly spent: number; readonly periodEnd: number } | null
}

/**
 * What the balancer as a whole has done: its strategy, its spend, its budget, and per
 * experiment arm (see `Strategy.experiment`) how the picks went. Plain JSON.
 *
 * @since 0.1.0
 * @category models
 */
export interface Summary {
  readonly strategy: string
  /** Spend over the balancer's lifetime, endpoints removed since included. */
  readonly spent: number
  readonly budget: {
    readonly limit: number
    readonly spent: number
    readonly softLimit: number
    readonly periodStart: number
    readonly periodEnd: number
  } | null
  readonly arms: ReadonlyArray<ArmStats>
}

/**
 * One arm of a strategy experiment: the calls whose endpoint it chose.
 *
 * @since 0.1.0
 * @category models
 */
export interface ArmStats {
  readonly arm: string
  readonly picks: number
  readonly successes: number
  readonly failures: number
  readonly cancelled: number
  /** Average latency of its successful calls (time to first token when streamed). */
  readonly avgLatencyMs: number | null
  readonly spent: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface BalancerService {
  /** The name of the strategy in use. */
  readonly strategy: string
  /**
   * Chooses an endpoint and reserves a slot on it. Release the lease when the call ends;
   * prefer {@link use}, which cannot forget to.
   */
  readonly acquire: (hints?: Hints) => Effect.Effect<Lease, NoEndpointAvailable>
  /**
   * Gives the slot back and records how the call ended; a second release of the same
   * lease does nothing. A lease made from another with `Object.create(lease)` (a wrapper)
   * reports and releases as that lease.
   */
  readonly release: (lease: Lease, outcome: Outcome.Outcome) => Effect.Effect<void>
  /**
   * Acquires, runs `f` on the endpoint, records its outcome and latency, and releases,
   * also when `f` fails, dies, is interrupted or throws instead of returning an effect (a
   * defect of the call). An interrupted call counts neither as a success nor as a failure.
   */
  readonly use: <A, E, R>(
    f: (endpoint: Endpoint.Endpoint, lease: Lease) => Effect.Effect<A, E, R>,
    hints?: Hints
  ) => Effect.Effect<A, E | NoEndpointAvailable, R>
  readonly addEndpoint: (endpoint: Endpoint.Input | Endpoint.Endpoint) => Effect.Effect<void, InvalidConfig>
  /** Removes an endpoint; calls in flight on it finish and release normally. */
  readonly removeEndpoint: (name: string) => Effect.Effect<void, UnknownEndpoint>
  /** Closes the circuit, forgets consecutive failures and ends a hold. */
  readonly forceHealthy: (name: string) => Effect.Effect<void, UnknownEndpoint>
  /** Holds the endpoint out of rotation until `forceHealthy`. */
  readonly forceUnhealthy: (name: string) => Effect.Effect<void, UnknownEndpoint>
  readonly endpoints: Effect.Effect<ReadonlyArray<Endpoint.Endpoint>>
  /** The endpoints that are routable now (healthy or degraded). */
  readonly healthyEndpoints: Effect.Effect<ReadonlyArray<Endpoint.Endpoint>>
  readonly stats: Effect.Effect<ReadonlyArray<EndpointStats>>
  /** The balancer's spend, budget and experiment arms. */
  readonly summary: Effect.Effect<Summary>
  /**
   * The `q`-quantile (0..1) of the latencies of the endpoint's last 256 successful calls
   * (time to first token when streamed), and how many calls it is computed from; `undefined`
   * for an endpoint it does not know or has not measured. The router hedges at the upper
   * end of its p95's confidence interval.
   */
  readonly latencyQuantile: (
    name: string,
    q: number
  ) => Effect.Effect<
    {
      readonly ms: number
      readonly samples: number
      /**
       * The upper end of the quantile's 95 % confidence interval (order statistics over
       * the samples), but no further than the quantile halfway to 1 (p97.5 for p95): a
       * delay that about a share `1 - q` of calls exceeds even when the estimate is noisy.
       */
      readonly upper?: number | undefined
    } | undefined
  >
  /**
   * Changes from the moment the stream starts running; a consumer that falls more than
   * 1,024 events behind loses the oldest.
   */
  readonly events: Stream.Stream<Event>
  /**
   * A subscription that receives every change from the moment this effect completes, for
   * as long as the scope lasts (the same bound as `events`).
   */
  readonly subscribe: Effect.Effect<Queue.Dequeue<Event>, never, Scope.Scope>
  /**
   * Puts a finished attempt on this balancer's event stream; the router reports every
   * attempt through it, so that one stream tells the whole story. (Health events come
   * only from the balancer itself.)
   */
  readonly reportAttempt: (event: Event & { readonly _tag: "AttemptEnded" }) => Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Balancer extends Context.Tag("effect-llm-balancer/Balancer")<Balancer, BalancerService>() {}

/**
 * The configuration of a balancer given in code. Endpoints are plain data (or decoded
 * `Endpoint`s); every bad field is reported at once in an `InvalidConfig`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly endpoints: Iterable<Endpoint.Input | Endpoint.Endpoint>
  /**
   * A strategy value or a built-in's name. Default: `Strategy.powerOfTwo`, which spreads
   * load like least-connections but also moves it away from slow endpoints within a few
   * calls and never herds a burst onto one endpoint (see the strategies guide).
   */
  readonly strategy?: Strategy.Strategy | Strategy.BuiltInName | undefined
  /** Overrides of `Health.defaultPolicy`. */
  readonly health?: Health.PolicyInput | undefined
  /**
   * When no endpoint can serve because every candidate's circuit is open, send the call
   * to the one that reopens first instead of failing. Default false: failing fast with
   * `NoEndpointAvailable` (which says when the first one reopens) costs the caller
   * nothing, while a call to an endpoint that is down costs it a full timeout; turn it on
   * when a likely failure is still better than a certain one.
   */
  readonly panic?: boolean | undefined
  /**
   * A spend cap for the whole balancer. Past its `softLimit` the cheapest candidates for
   * each request are preferred; at its `limit`, endpoints with prices take no calls until
   * the period rolls over (endpoints priced at 0 still do).
   */
  readonly budget?: Endpoint.Budget | typeof Endpoint.Budget.Encoded | undefined
  /**
   * Active health checks for endpoints whose circuit is open: a passing check ends the
   * open period at once, so the next call is the probe that closes it. Without them an
   * endpoint is probed by real calls on the growing open periods (up to
   * `maxRecoveryTimeout`), which keeps traffic off a long outage but can leave a
   * recovered endpoint idle for minutes; with them it is back within about `interval`.
   */
  readonly healthCheck?: HealthCheck | undefined
}

/**
 * A cheap call that tells whether an endpoint answers (listing models, say): any
 * success passes, any failure, defect or a wait past `timeout` fails. It runs only
 * while an endpoint's circuit is open, never counts as a call in its statistics, and a
 * passing check ends an open period at most once (a failed probe after it opens the
 * circuit again for longer, so a check that passes while calls fail costs one probe per
 * opening).
 *
 * @since 0.1.0
 * @category models
 */
export interface HealthCheck {
  readonly check: (endpoint: Endpoint.Endpoint) => Effect.Effect<unknown, unknown>
  /** How often an open endpoint is checked. Default 5 seconds. */
  readonly interval?: Duration.DurationInput | undefined
  /** Default 2 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * Builds a balancer. Its event hub closes with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<BalancerService, InvalidConfig, Scope.Scope> = internal.make

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Balancer, InvalidConfig> =>
  Layer.scoped(Balancer, internal.make(options))

/**
 * The configuration read through Effect `Config` (so `ConfigProvider.fromJson`, a file or
 * the environment can feed it): `endpoints` (an array of endpoints with the fields of
 * `Endpoint`), `strategy` (a built-in's name) and `health` (a partial `Health.Policy`).
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = internalConfig.options

/**
 * A balancer configured through `Config`; bad or missing values fail the layer with an
 * `InvalidConfig` that names each of them.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config<Options>,
  /** Where the configuration lives, to name bad fields by their full path (`"balancer"`). */
  prefix = ""
): Layer.Layer<Balancer, InvalidConfig> =>
  Layer.scoped(
    Balancer,
    Effect.flatMap(
      internalConfig.load(options, prefix),
      (resolved) =>
        Effect.flatMap(Effect.suspend(() => internal.resolveOptions(resolved, prefix)), internal.fromResolved)
    )
  )

/**
 * The balancer configured from the `balancer` section of the current `ConfigProvider`
 * (`balancer.endpoints`, `balancer.strategy`, `balancer.health`).
 *
 * @since 0.1.0
 * @category layers
 */
export const BalancerLive: Layer.Layer<Balancer, InvalidConfig> = layerConfig(
  internalConfig.nested("balancer"),
  "balancer"
)

/**
 * @since 0.1.0
 * @category accessors
 */
export const acquire = (hints?: Hints): Effect.Effect<Lease, NoEndpointAvailable, Balancer> =>
  Effect.flatMap(Balancer, (b) => b.acquire(hints))

/**
 * @since 0.1.0
 * @category accessors
 */
export const release = (lease: Lease, outcome: Outcome.Outcome): Effect.Effect<void, never, Balancer> =>
  Effect.flatMap(Balancer, (b) => b.release(lease, outcome))

/**
 * Acquire, run `f`, record the outcome and release; see {@link BalancerService.use}.
 *
 * @since 0.1.0
 * @category accessors
 */
export const use = <A, E, R>(
  f: (endpoint: Endpoint.Endpoint, lease: Lease) => Effect.Effect<A, E, R>,
  hints?: Hints
): Effect.Effect<A, E | NoEndpointAvailable, R | Balancer> => Effect.flatMap(Balancer, (b) => b.use(f, hints))

/**
 * @since 0.1.0
 * @category accessors
 */
export const stats: Effect.Effect<ReadonlyArray<EndpointStats>, never, Balancer> = Effect.flatMap(
  Balancer,
  (b) => b.stats
)

/**
 * @since 0.1.0
 * @category accessors
 */
export const summary: Effect.Effect<Summary, never, Balancer> = Effect.flatMap(Balancer, (b) => b.summary)

/**
 * @since 0.1.0
 * @category accessors
 */
export const healthyEndpoints: Effect.Effect<ReadonlyArray<Endpoint.Endpoint>, never, Balancer> = Effect.flatMap(
  Balancer,
  (b) => b.healthyEndpoints
)

/**
 * @since 0.1.0
 * @category accessors
 */
export const addEndpoint = (
  endpoint: Endpoint.Input | Endpoint.Endpoint
): Effect.Effect<void, InvalidConfig, Balancer> => Effect.flatMap(Balancer, (b) => b.addEndpoint(endpoint))

/**
 * @since 0.1.0
 * @category accessors
 */
export const removeEndpoint = (name: string): Effect.Effect<void, UnknownEndpoint, Balancer> =>
  Effect.flatMap(Balancer, (b) => b.removeEndpoint(name))

/**
 * @since 0.1.0
 * @category accessors
 */
export const forceHealthy = (name: string): Effect.Effect<void, UnknownEndpoint, Balancer> =>
  Effect.flatMap(Balancer, (b) => b.forceHealthy(name))

/**
 * @since 0.1.0
 * @category accessors
 */
export const forceUnhealthy = (name: string): Effect.Effect<void, UnknownEndpoint, Balancer> =>
  Effect.flatMap(Balancer, (b) => b.forceUnhealthy(name))
