/**
 * Failover: one call, many attempts. The router runs a provider call through the
 * balancer and, when it fails in a way another endpoint may not, tries another endpoint,
 * never one already tried in this call while untried ones remain.
 *
 * - One deadline for the whole call (`timeout`): each attempt's timeout is the smaller of
 *   `attemptTimeout` and what is left, and no attempt starts once the deadline is spent.
 * - Back-off (`backoff`, a `Schedule`) only when every routable endpoint was tried: with
 *   another healthy endpoint at hand, the next attempt starts at once.
 * - A retry budget shared by every call through the router: retries add at most about
 *   `percent` of the calls (plus a small floor), so a total outage costs about 1.1x the
 *   attempts, not 3x.
 * - A `ContextLengthExceeded` moves the call to endpoints with a larger `contextWindow`.
 * - Hedging (opt-in): a slow attempt gets a twin on another endpoint; the first answer wins.
 * - Per-tier limits: attempts and attempt timeouts for each fallback tier.
 * - Every attempt is in the result (or the error), and on the balancer's event stream.
 * - Interrupting the call interrupts the attempt in flight and releases its lease.
 * - Each call and attempt runs in a span, and counters and a latency histogram are kept
 *   as Effect `Metric`s.
 *
 * @since 0.1.0
 */
import type { Duration, Schedule } from "effect"
import { Context, Effect, Layer } from "effect"
import type { Balancer, Hints, Lease } from "./Balancer.js"
import type { Endpoint } from "./Endpoint.js"
import type { Attempt, InvalidConfig, ProviderError, RoutingFailed } from "./Errors.js"
import * as internal from "./internal/router.js"

/**
 * How one call is routed. Every field has a default.
 *
 * @since 0.1.0
 * @category models
 */
export interface Policy {
  /** Attempts in all, the first included. Default 3. */
  readonly maxAttempts?: number | undefined
  /**
   * The delays between attempts once every routable endpoint was tried; when it ends,
   * the call stops. Default: exponential from 250 ms, doubling, with full jitter, each
   * delay capped at 10 seconds.
   */
  readonly backoff?: Schedule.Schedule<unknown, ProviderError | undefined> | undefined
  /** The deadline of the whole call. Default: none. */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * The longest one attempt may take. Default: none (only the deadline). For a stream,
   * an attempt lasts until its first token.
   */
  readonly attemptTimeout?: Duration.DurationInput | undefined
  /**
   * For streams (`Llm.stream`), the longest wait between two parts after the first token:
   * a stream that stalls longer fails with `Timeout`, which counts against the endpoint.
   * Default: none.
   */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /** What every attempt asks of the endpoint (tags, context window, waiting for capacity). */
  readonly hints?: Hints | undefined
  /**
   * Hedging (off by default): when an attempt has not answered after `delay`, start a
   * second one on another endpoint; the first to succeed wins and the other is
   * interrupted (its lease released). A hedge is paid from the retry budget; without
   * budget, or without another endpoint, the attempt simply goes on alone.
   *
   * `delay: "p95"` waits for the 95th percentile of the endpoint's last 256 successful
   * calls as the balancer measured them (`Balancer.latencyQuantile`; time to first token
   * for streamed calls), taken at the upper end of its 95 % confidence interval so that a
   * noisy estimate does not hedge more than about 5 % of attempts; at least `minDelay`;
   * until `minSamples` (default 20) were measured, the endpoint's attempts are not hedged.
   */
  readonly hedge?:
    | { readonly delay: Duration.DurationInput }
    | {
      readonly delay: "p95"
      readonly minDelay?: Duration.DurationInput | undefined
      readonly minSamples?: number | undefined
    }
    | undefined
  /**
   * Limits per fallback tier (an endpoint's `priority`): at most `maxAttempts` attempts on
   * the tier's endpoints (then only other tiers are tried) and `attemptTimeout` for each.
   */
  readonly tiers?:
    | Readonly<
      Record<
        number,
        {
          readonly maxAttempts?: number | undefined
          readonly attemptTimeout?: Duration.DurationInput | undefined
        }
      >
    >
    | undefined
}

/**
 * The answer of a routed call, with the endpoint that gave it and every attempt made.
 *
 * @since 0.1.0
 * @category models
 */
export interface Routed<A> {
  readonly value: A
  readonly endpoint: Endpoint
  readonly attempts: ReadonlyArray<Attempt>
}

/**
 * The router's retry budget.
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryBudgetOptions {
  /** Retries allowed per call, on average. Default 0.1. */
  readonly percent?: number | undefined
  /** Retries allowed per second however little traffic there is. Default 1. */
  readonly minPerSecond?: number | undefined
  /** How long a call's deposit counts (time constant). Default 10 seconds. */
  readonly ttl?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly retryBudget?: RetryBudgetOptions | undefined
  /** The policy of calls that do not give their own. */
  readonly defaults?: Policy | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RouterService {
  /**
   * Runs `call` on one endpoint after another until it succeeds or the policy says stop.
   * `attempt` is 1 for the first attempt; `lease` is the attempt's lease, through which
   * the call can report its usage, provider hints and first token.
   */
  readonly execute: <A, R>(
    call: (endpoint: Endpoint, attempt: number, lease: Lease) => Effect.Effect<A, ProviderError, R>,
    policy?: Policy
  ) => Effect.Effect<Routed<A>, RoutingFailed, R>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Router extends Context.Tag("effect-llm-balancer/Router")<Router, RouterService>() {}

/**
 * A router over the `Balancer` in context. Routers over the same balancer share one retry
 * budget. A bad `retryBudget` or `defaults` fails with `InvalidConfig`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: Options) => Effect.Effect<RouterService, InvalidConfig, Balancer> = internal.make

/**
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<Router, InvalidConfig, Balancer> =>
  Layer.effect(Router, internal.make(options))

/**
 * @since 0.1.0
 * @category accessors
 */
export const execute = <A, R>(
  call: (endpoint: Endpoint, attempt: number, lease: Lease) => Effect.Effect<A, ProviderError, R>,
  policy?: Policy
): Effect.Effect<Routed<A>, RoutingFailed, R | Router> =>
  Effect.flatMap(Router, (router) => router.execute(call, policy))

/**
 * The router's metrics (Effect `Metric`s, so any exporter of Effect metrics sees them):
 * calls, failed calls, retries and hedges; attempts tagged by `endpoint` and `outcome`;
 * attempt latency in milliseconds tagged by `endpoint`. The balancer adds
 * `llm_balancer_endpoint_events_total`, health changes tagged by `endpoint` and `event`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const metrics = {
  requests: internal.requests,
  failedRequests: internal.failedCalls,
  retries: internal.retries,
  hedges: internal.hedges,
  attempts: internal.attemptsTotal,
  attemptLatencyMs: internal.attemptLatency
}
