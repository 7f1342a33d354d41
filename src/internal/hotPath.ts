/**
 * Shortcuts into this library's own balancer for the router and `Llm`, on every routed
 * call: each saves effect operations, whose work, and what a call in flight keeps alive
 * through them, are most of what routing costs a call under load (see docs/design.md, "What
 * a routed call costs"). Any other `BalancerService` or `Lease` gets the generic form, which
 * does the same in more operations.
 */
import { Effect, Exit } from "effect"
import type { BalancerService, Hints, Lease, Report } from "../Balancer.js"
import type { Endpoint } from "../Endpoint.js"
import type { NoEndpointAvailable } from "../Errors.js"

/**
 * Sees a call's exit and its lease; `settled` is the effect that settles the lease and
 * ends the call with that exit: the observer must end in it.
 */
export type Observer = <A, E>(
  exit: Exit.Exit<A, E>,
  lease: Lease,
  settled: Effect.Effect<A, E>
) => Effect.Effect<A, E>

/**
 * `use`, with the call's end observed in the balancer's own uninterruptible region, before
 * the lease is settled: the router records every attempt there, which in a region of its
 * own (`Effect.onExit`) would cost several operations more.
 */
export const UseObserved: unique symbol = Symbol.for("effect-llm-balancer/Balancer/useObserved")

export type UseObservedFn = <A, E, R>(
  f: (endpoint: Endpoint, lease: Lease) => Effect.Effect<A, E, R>,
  hints: Hints | undefined,
  observe: Observer
) => Effect.Effect<A, E | NoEndpointAvailable, R>

/**
 * Set by this library's balancer, with the `use` it goes with: a service that copies the
 * balancer's fields and puts its own `use` in (a wrapper, as tests write them) must have
 * that `use` called, so it gets the generic form.
 */
export interface Observable {
  readonly [UseObserved]: {
    readonly use: BalancerService["use"]
    readonly useObserved: UseObservedFn
    readonly reportAttempt: BalancerService["reportAttempt"]
    /** Nobody is subscribed to the balancer's events. */
    readonly unheard: () => boolean
  }
}

/**
 * Whether an attempt's report would go nowhere, so that the router need not even build it:
 * only for this library's balancer, when nobody listens and `reportAttempt` is its own.
 */
export const unheard = (balancer: BalancerService): () => boolean => {
  const own = (balancer as BalancerService & Partial<Observable>)[UseObserved]
  return own !== undefined && own.reportAttempt === balancer.reportAttempt ? own.unheard : never
}

const never = () => false

/** `balancer.use(f, hints)`, with `observe` run as each call ends. */
export const useObserved = (balancer: BalancerService): UseObservedFn => {
  const own = (balancer as BalancerService & Partial<Observable>)[UseObserved]
  return own !== undefined && own.use === balancer.use
    ? own.useObserved
    : ((f, hints, observe) =>
      balancer.use(
        (endpoint, lease) =>
          Effect.uninterruptibleMask((restore) =>
            Effect.matchCauseEffect(restore(f(endpoint, lease)), {
              onSuccess: (value) => observe(Exit.succeed(value), lease, Exit.succeed(value)),
              onFailure: (cause) => observe(Exit.failCause(cause), lease, Exit.failCause(cause))
            })
          ),
        hints
      ))
}

export const ReportNow: unique symbol = Symbol.for("effect-llm-balancer/Lease/reportNow")

/** A lease of this library's: `[ReportNow]` reports at once, unless `report` was replaced. */
export interface Reportable {
  readonly [ReportNow]: (report: Report) => boolean
}

/**
 * Does `lease.report(report)` at once, in the step that calls it, when the lease is this
 * library's (no operation of its own); says whether it did.
 */
export const reportedNow = (lease: Lease, report: Report): boolean => {
  const lease_ = lease as Lease & Partial<Reportable>
  return lease_[ReportNow] !== undefined && lease_[ReportNow](report)
}
