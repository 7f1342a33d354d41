/**
 * What changed in a balancer, as published on `Balancer.events`. Times are epoch
 * milliseconds from `Clock`. Events never carry API keys.
 *
 * @since 0.1.0
 */
import { Data } from "effect"

/**
 * @since 0.1.0
 * @category models
 */
export type Event = Data.TaggedEnum<{
  /** An endpoint joined the balancer. */
  EndpointAdded: { readonly name: string; readonly at: number }
  /** An endpoint left; calls in flight on it still finish and release. */
  EndpointRemoved: { readonly name: string; readonly at: number }
  /**
   * An endpoint stopped taking calls: its circuit opened (`failures`: consecutive failures
   * or the recent error rate; `probe-failed`), with `until` the time it may be probed; or
   * it was held out (`forced` by `forceUnhealthy`, or `unauthorized`: its key was refused).
   */
  EndpointUnhealthy: {
    readonly name: string
    readonly at: number
    readonly reason: "failures" | "probe-failed" | "forced" | "unauthorized"
    readonly until: number | undefined
  }
  /** An endpoint answered 429 and rests until `until` (its `Retry-After`, jittered). */
  EndpointRateLimited: { readonly name: string; readonly at: number; readonly until: number }
  /**
   * An active health check (`Balancer.Options.healthCheck`) changed an open circuit: it
   * passed, so the next call is the probe (`until` is now), or it failed, so the circuit
   * stays open until `until`.
   */
  EndpointChecked: { readonly name: string; readonly at: number; readonly passed: boolean; readonly until: number }
  /** An open circuit's recovery time passed and a probe was sent. */
  EndpointProbing: { readonly name: string; readonly at: number }
  /** The router finished one attempt of a call on an endpoint. */
  AttemptEnded: {
    readonly name: string
    readonly at: number
    /** 1 for a call's first attempt; a hedge shares its round's number. */
    readonly attempt: number
    readonly hedge: boolean
    /** `"Success"`, `"Cancelled"` (it lost a hedge race or the call was interrupted) or the error's tag. */
    readonly outcome: string
    readonly latencyMs: number
  }
  /** An endpoint takes calls again: a probe succeeded, or it was forced healthy. */
  EndpointRecovered: { readonly name: string; readonly at: number; readonly reason: "probe-succeeded" | "forced" }
  /**
   * The shared `Store` named `name` (`"redis"`) did not answer (down, slow past its
   * timeout, or refusing): the balancer serves from its own state, with its own limits,
   * until it answers again.
   */
  StoreFellBack: { readonly name: string; readonly at: number; readonly reason: string }
  /** The shared `Store` answers again after `afterMs` of fallback; state is shared again. */
  StoreResumed: { readonly name: string; readonly at: number; readonly afterMs: number }
}>

/**
 * Constructors and matchers for {@link Event}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const Event = Data.taggedEnum<Event>()
