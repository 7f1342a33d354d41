/**
 * How a call on a leased endpoint ended, as reported to `Balancer.release`.
 *
 * @since 0.1.0
 */
import { Duration } from "effect"
import type { Remaining } from "./RateLimit.js"

/**
 * Tokens a call used, as the provider reported them.
 *
 * @since 0.1.0
 * @category models
 */
export interface Usage {
  readonly inputTokens: number
  readonly outputTokens: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Success {
  readonly _tag: "Success"
  /** How long the call took; when absent the balancer measures it from the lease. */
  readonly latency: Duration.Duration | undefined
  /**
   * For a streamed call, when the first token arrived: the latency that routing by speed
   * uses (a long answer is not a slow endpoint). Tokens per second are measured after it.
   */
  readonly timeToFirstToken: Duration.Duration | undefined
  /** Tokens used: they replace the request's estimate in the tokens-per-minute window and price the call. */
  readonly usage: Usage | undefined
  /** What the provider's headers say is left of its limits (see `RateLimit.remaining`). */
  readonly rateLimit: Remaining | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Failure {
  readonly _tag: "Failure"
  readonly error: unknown
  readonly latency: Duration.Duration | undefined
  /**
   * Whether the failure is the endpoint's fault. When `undefined`, a `ProviderError` says
   * for itself (a `BadRequest` does not count, a `RateLimited` cools the endpoint down, an
   * `Unauthorized` holds it out) and any other error counts.
   */
  readonly countsAgainstHealth: boolean | undefined
  /** What the provider's headers say is left of its limits (see `RateLimit.remaining`). */
  readonly rateLimit: Remaining | undefined
}

/**
 * The call was abandoned (interrupted, or lost a race): its slot is given back and it
 * counts neither as a success nor as a failure.
 *
 * @since 0.1.0
 * @category models
 */
export interface Cancelled {
  readonly _tag: "Cancelled"
}

/**
 * @since 0.1.0
 * @category models
 */
export type Outcome = Success | Failure | Cancelled

/**
 * @since 0.1.0
 * @category constructors
 */
export const success = (options?: {
  readonly latency?: Duration.DurationInput | undefined
  readonly timeToFirstToken?: Duration.DurationInput | undefined
  readonly usage?: Usage | undefined
  readonly rateLimit?: Remaining | undefined
}): Outcome => ({
  _tag: "Success",
  latency: options?.latency === undefined ? undefined : Duration.decode(options.latency),
  timeToFirstToken: options?.timeToFirstToken === undefined ? undefined : Duration.decode(options.timeToFirstToken),
  usage: options?.usage,
  rateLimit: options?.rateLimit
})

/**
 * @since 0.1.0
 * @category constructors
 */
export const failure = (error: unknown, options?: {
  readonly latency?: Duration.DurationInput | undefined
  readonly countsAgainstHealth?: boolean | undefined
  readonly rateLimit?: Remaining | undefined
}): Outcome => ({
  _tag: "Failure",
  error,
  latency: options?.latency === undefined ? undefined : Duration.decode(options.latency),
  countsAgainstHealth: options?.countsAgainstHealth,
  rateLimit: options?.rateLimit
})

/**
 * @since 0.1.0
 * @category constructors
 */
export const cancelled: Outcome = { _tag: "Cancelled" }
