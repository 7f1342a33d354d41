/**
 * The errors a caller of the balancer can see. Every one is a tagged value in the
 * error channel; nothing the library does throws.
 *
 * @since 0.1.0
 */
import { Data, Duration } from "effect"

/**
 * Why one endpoint was passed over when a request asked for one.
 *
 * - `unhealthy`: its circuit is open; `until` is when it admits a probe again.
 * - `held-unhealthy`: held out until `forceHealthy` (by `forceUnhealthy`, or after its key was refused).
 * - `cooling-down`: it answered 429; `until` is when its cooldown ends.
 * - `probing`: its circuit is half-open and the allowed probes are already in flight.
 * - `at-capacity`: `maxConcurrency` calls are in flight.
 * - `removed`: it was removed and is draining its last calls.
 * - `excluded`: the request excluded it (for example, it was tried already).
 * - `missing-tags`: it lacks a tag the request requires.
 * - `context-too-small`: its `contextWindow` is smaller than the request needs (or unknown).
 * - `other-group`: it serves another model group than the request names.
 * - `no-headroom`: its requests-per-minute, tokens-per-minute or requests-per-day window
 *   is full for this request, or its provider said nothing is left; `until` is when
 *   enough leaves the window (or the provider's limit resets).
 * - `too-large`: the request's estimated tokens exceed its whole tokens-per-minute limit.
 * - `over-budget`: it (or the balancer) has spent its budget; `until` is when the period rolls.
 *
 * @since 0.1.0
 * @category models
 */
export interface PassedOver {
  readonly endpoint: string
  readonly reason:
    | "unhealthy"
    | "held-unhealthy"
    | "cooling-down"
    | "probing"
    | "at-capacity"
    | "removed"
    | "excluded"
    | "missing-tags"
    | "context-too-small"
    | "other-group"
    | "no-headroom"
    | "too-large"
    | "over-budget"
  /** Epoch milliseconds at which this endpoint can serve again, when that is known. */
  readonly until?: number
}

const describe = (p: PassedOver): string =>
  `${p.endpoint}: ${p.reason}${p.until !== undefined ? ` until ${new Date(p.until).toISOString()}` : ""}`

/**
 * No endpoint could take the request. `passedOver` says, per endpoint, why; `retryAt`
 * is the earliest time (epoch milliseconds) at which one of them is known to free up.
 *
 * @since 0.1.0
 * @category errors
 */
export class NoEndpointAvailable extends Data.TaggedError("NoEndpointAvailable")<{
  readonly passedOver: ReadonlyArray<PassedOver>
  readonly retryAt: number | undefined
}> {
  override get message(): string {
    if (this.passedOver.length === 0) return "No endpoint available: the balancer has no endpoints"
    const earliest = this.retryAt !== undefined
      ? `; the earliest frees up at ${new Date(this.retryAt).toISOString()}`
      : ""
    return `No endpoint available (${this.passedOver.map(describe).join(", ")})${earliest}`
  }
}

/**
 * One problem found in a configuration: where (`path`, such as `endpoints[1].weight`)
 * and what is wrong with it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConfigIssue {
  readonly path: string
  readonly message: string
}

/**
 * A configuration that cannot be used. `issues` names every bad field, not only the first.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidConfig extends Data.TaggedError("InvalidConfig")<{
  readonly issues: ReadonlyArray<ConfigIssue>
}> {
  override get message(): string {
    return `Invalid balancer configuration:\n${
      this.issues.map((i) => `  - ${i.path === "" ? "(root)" : i.path}: ${i.message}`).join("\n")
    }`
  }
}

/**
 * An operation named an endpoint the balancer does not have.
 *
 * @since 0.1.0
 * @category errors
 */
export class UnknownEndpoint extends Data.TaggedError("UnknownEndpoint")<{
  readonly name: string
  readonly known: ReadonlyArray<string>
}> {
  override get message(): string {
    return `Unknown endpoint "${this.name}" (known: ${this.known.length === 0 ? "none" : this.known.join(", ")})`
  }
}

/**
 * A chat request that cannot be sent: `issues` names every bad field
 * (`messages[0].role`, `maxTokens`).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidRequest extends Data.TaggedError("InvalidRequest")<{
  readonly issues: ReadonlyArray<ConfigIssue>
}> {
  override get message(): string {
    return `Invalid request: ${this.issues.map((i) => `${i.path === "" ? "(root)" : i.path}: ${i.message}`).join("; ")}`
  }
}

/**
 * What a provider error does to the endpoint that returned it:
 *
 * - `counts`: a health failure (circuit breaker, error rate).
 * - `ignore`: the caller's fault (a bad request); the endpoint is fine.
 * - `cooldown`: rate limited; the endpoint rests until `retryAfter`, which is not a health failure.
 * - `hold`: the credentials were refused; the endpoint is held out until `forceHealthy`.
 *
 * @since 0.1.0
 * @category models
 */
export type HealthEffect = "counts" | "ignore" | "cooldown" | "hold"

interface ProviderErrorFields {
  /** The endpoint that answered, when the provider says (the router's attempts always name it). */
  readonly endpoint?: string | undefined
  /** What the provider said, as far as it is safe to repeat (never a key). */
  readonly detail?: string | undefined
  /** The HTTP status, when there was one. */
  readonly status?: number | undefined
}

const describeProviderError = (tag: string, fields: ProviderErrorFields, extra = "") =>
  `${tag}${fields.endpoint !== undefined ? ` from ${fields.endpoint}` : ""}${
    fields.status !== undefined ? ` (HTTP ${fields.status})` : ""
  }${extra}${fields.detail !== undefined ? `: ${fields.detail}` : ""}`

/**
 * HTTP 429 or a provider's own rate-limit answer. `retryAfter` is how long the provider
 * asked us to wait, when it said.
 *
 * @since 0.1.0
 * @category errors
 */
export class RateLimited extends Data.TaggedError("RateLimited")<
  ProviderErrorFields & { readonly retryAfter?: Duration.Duration | undefined }
> {
  get retryable(): boolean {
    return true
  }
  get healthEffect(): HealthEffect {
    return "cooldown"
  }
  override get message() {
    return describeProviderError(
      "RateLimited",
      this,
      this.retryAfter !== undefined ? `, retry after ${Duration.format(this.retryAfter)}` : ""
    )
  }
}

/**
 * The call did not answer in time (HTTP 408 or our own timeout).
 *
 * @since 0.1.0
 * @category errors
 */
export class Timeout extends Data.TaggedError("Timeout")<
  ProviderErrorFields & {
    /**
     * True when the caller's deadline, not the attempt's own time limit, ended the wait:
     * then the endpoint is not blamed.
     */
    readonly cutByDeadline?: boolean | undefined
  }
> {
  get retryable(): boolean {
    return true
  }
  get healthEffect(): HealthEffect {
    return this.cutByDeadline === true ? "ignore" : "counts"
  }
  override get message() {
    return describeProviderError("Timeout", this)
  }
}

/**
 * The provider is down or overloaded: 5xx, 529, connection refused or reset.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unavailable extends Data.TaggedError("Unavailable")<ProviderErrorFields> {
  get retryable(): boolean {
    return true
  }
  get healthEffect(): HealthEffect {
    return "counts"
  }
  override get message() {
    return describeProviderError("Unavailable", this)
  }
}

/**
 * The request itself was refused (HTTP 400, 404, 422): another endpoint would refuse it too.
 *
 * @since 0.1.0
 * @category errors
 */
export class BadRequest extends Data.TaggedError("BadRequest")<ProviderErrorFields> {
  get retryable(): boolean {
    return false
  }
  get healthEffect(): HealthEffect {
    return "ignore"
  }
  override get message() {
    return describeProviderError("BadRequest", this)
  }
}

/**
 * The credentials were refused (HTTP 401, 403). Another endpoint, with another key, may
 * serve; this one is held out until `forceHealthy`.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unauthorized extends Data.TaggedError("Unauthorized")<ProviderErrorFields> {
  get retryable(): boolean {
    return true
  }
  get healthEffect(): HealthEffect {
    return "hold"
  }
  override get message() {
    return describeProviderError("Unauthorized", this)
  }
}

/**
 * The request does not fit the model's context window. It may fit an endpoint with a
 * larger `contextWindow`; the router moves it there.
 *
 * @since 0.1.0
 * @category errors
 */
export class ContextLengthExceeded extends Data.TaggedError("ContextLengthExceeded")<ProviderErrorFields> {
  get retryable(): boolean {
    return false
  }
  get healthEffect(): HealthEffect {
    return "ignore"
  }
  override get message() {
    return describeProviderError("ContextLengthExceeded", this)
  }
}

/**
 * The provider's content filter refused the request or the answer.
 *
 * @since 0.1.0
 * @category errors
 */
export class ContentFiltered extends Data.TaggedError("ContentFiltered")<ProviderErrorFields> {
  get retryable(): boolean {
    return false
  }
  get healthEffect(): HealthEffect {
    return "ignore"
  }
  override get message() {
    return describeProviderError("ContentFiltered", this)
  }
}

/**
 * The answer could not be read: invalid JSON, a wrong shape, a stream cut short.
 *
 * @since 0.1.0
 * @category errors
 */
export class MalformedResponse extends Data.TaggedError("MalformedResponse")<ProviderErrorFields> {
  get retryable(): boolean {
    return true
  }
  get healthEffect(): HealthEffect {
    return "counts"
  }
  override get message() {
    return describeProviderError("MalformedResponse", this)
  }
}

/**
 * Anything else a provider call failed with.
 *
 * @since 0.1.0
 * @category errors
 */
export class UnknownProviderError extends Data.TaggedError("UnknownProviderError")<
  ProviderErrorFields & { readonly cause?: unknown }
> {
  get retryable(): boolean {
    return true
  }
  get healthEffect(): HealthEffect {
    return "counts"
  }
  override get message() {
    return describeProviderError("UnknownProviderError", this)
  }
}

/**
 * Every way a provider call can fail. Each variant says whether another endpoint may
 * succeed (`retryable`) and what the failure does to the endpoint (`healthEffect`).
 *
 * @since 0.1.0
 * @category errors
 */
export type ProviderError =
  | RateLimited
  | Timeout
  | Unavailable
  | BadRequest
  | Unauthorized
  | ContextLengthExceeded
  | ContentFiltered
  | MalformedResponse
  | UnknownProviderError

/**
 * The tags of every `ProviderError` variant.
 *
 * @since 0.1.0
 * @category models
 */
export const providerErrorTags: ReadonlyArray<ProviderError["_tag"]> = [
  "RateLimited",
  "Timeout",
  "Unavailable",
  "BadRequest",
  "Unauthorized",
  "ContextLengthExceeded",
  "ContentFiltered",
  "MalformedResponse",
  "UnknownProviderError"
]

const providerErrorTagSet: ReadonlySet<string> = new Set(providerErrorTags)

/**
 * @since 0.1.0
 * @category refinements
 */
export const isProviderError = (u: unknown): u is ProviderError =>
  typeof u === "object" && u !== null && "_tag" in u && providerErrorTagSet.has((u as { _tag: string })._tag) &&
  "healthEffect" in (u as object)

/**
 * One attempt of a routed call, as the router saw it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Attempt {
  readonly endpoint: string
  /** 1 for the first attempt. */
  readonly number: number
  /** Epoch ms from `Clock`. */
  readonly startedAt: number
  readonly latencyMs: number
  /** True for a hedge: a second attempt started because the first was slow. */
  readonly hedge: boolean
  /**
   * `"Success"`, the tag of the `ProviderError` the attempt ended with, or `"Cancelled"`
   * (it lost a hedge race, or the call was interrupted).
   */
  readonly outcome: "Success" | "Cancelled" | ProviderError["_tag"]
}

/**
 * A routed call did not succeed. `reason` says why the router stopped, `lastError` is the
 * last real error (a provider's, or why no endpoint could serve), and `attempts` lists
 * every attempt made.
 *
 * - `not-retryable`: the last error would fail on any endpoint (a bad request, say).
 * - `attempts-exhausted`: `maxAttempts` were made, or the retry schedule ended.
 * - `deadline`: the call's `timeout` left no time for another attempt.
 * - `retry-budget`: retries across all calls are over budget (an outage is not turned into a retry storm).
 * - `no-endpoint`: no endpoint could take the call.
 * - `invalid-policy`: the call's policy is unusable; `detail` names every bad field.
 *
 * @since 0.1.0
 * @category errors
 */
export class RoutingFailed extends Data.TaggedError("RoutingFailed")<{
  readonly reason:
    | "not-retryable"
    | "attempts-exhausted"
    | "deadline"
    | "retry-budget"
    | "no-endpoint"
    | "invalid-policy"
  readonly lastError: ProviderError | NoEndpointAvailable | undefined
  readonly attempts: ReadonlyArray<Attempt>
  /** With `no-endpoint`: the earliest time (epoch ms) an endpoint is known to free up. */
  readonly retryAt?: number | undefined
  /** With `invalid-policy`: what is wrong with it. */
  readonly detail?: string | undefined
}> {
  override get message(): string {
    if (this.detail !== undefined) return `Routing failed (${this.reason}): ${this.detail}`
    const tried = this.attempts.map((a) => `${a.endpoint}: ${a.outcome}`).join(", ")
    return `Routing failed (${this.reason}) after ${this.attempts.length} attempt(s)${
      tried === "" ? "" : ` [${tried}]`
    }${this.lastError !== undefined ? `; last error: ${this.lastError.message}` : ""}`
  }
}
