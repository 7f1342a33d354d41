/**
 * The errors a caller of the balancer can see. Every one is a tagged value in the
 * error channel; nothing the library does throws.
 *
 * @since 0.1.0
 */
import { Data } from "effect"

/**
 * Why one endpoint was passed over when a request asked for one.
 *
 * - `unhealthy`: its circuit is open; `until` is when it admits a probe again.
 * - `held-unhealthy`: `forceUnhealthy` holds it out until `forceHealthy`.
 * - `probing`: its circuit is half-open and the allowed probes are already in flight.
 * - `at-capacity`: `maxConcurrency` calls are in flight.
 * - `removed`: it was removed and is draining its last calls.
 * - `excluded`: the request excluded it (for example, it was tried already).
 * - `missing-tags`: it lacks a tag the request requires.
 * - `lower-tier`: a tier with a smaller `priority` had a routable endpoint.
 *
 * @since 0.1.0
 * @category models
 */
export interface PassedOver {
  readonly endpoint: string
  readonly reason:
    | "unhealthy"
    | "held-unhealthy"
    | "probing"
    | "at-capacity"
    | "removed"
    | "excluded"
    | "missing-tags"
    | "lower-tier"
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
