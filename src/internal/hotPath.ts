/**
 * Shortcuts into this library's own balancer and router for the router and `Llm`, on
 * every routed call: each saves effect operations, whose work, and what a call in flight
 * keeps alive through them, are most of what routing costs a call under load (see
 * docs/design.md, "What a routed call costs"). Any other `BalancerService`,
 * `RouterService` or `Lease` gets the generic form, which does the same in more operations.
 */
import type { Fiber } from "effect"
import { Effect, Exit } from "effect"
import type { BalancerService, Hints, Lease, Report } from "../Balancer.js"
import type { Endpoint } from "../Endpoint.js"
import type { NoEndpointAvailable, ProviderError, RoutingFailed } from "../Errors.js"
import type { Policy, Routed, RouterService } from "../Router.js"

/**
 * The version of the contracts below, in their symbols' keys: two copies of this library
 * in one process (their tags are strings, so they meet) take each other's shortcuts only
 * when they agree on them, and otherwise call each other through the public methods.
 */
const protocol = "2"

/**
 * Sees a call's exit and its lease as the call ends, in the step that settles the lease,
 * before it does (synchronously: nothing runs in between). Returns what must run before
 * the settle (the router's attempt event), or `undefined`; the lease is settled whatever
 * that does, and a defect of it, or of the observer, is then the call's.
 */
export type Observer = (exit: Exit.Exit<unknown, unknown>, lease: Lease) => Effect.Effect<void> | undefined

/**
 * `first`, then `settled`: a `first` that dies or is interrupted (a wrapper's report, a
 * pubsub shut down) still lets the lease go.
 */
export const settleAfter = <X, E>(first: Effect.Effect<void>, settled: Effect.Effect<X, E>): Effect.Effect<X, E> =>
  Effect.matchCauseEffect(first, {
    onSuccess: () => settled,
    onFailure: (cause) => Effect.zipRight(Effect.exit(settled), Effect.failCause(cause))
  })

/**
 * `use`, with the call's end observed in the balancer's own uninterruptible region, before
 * the lease is settled: the router records every attempt there, which in a region of its
 * own (`Effect.onExit`) would cost several operations more.
 */
export const UseObserved: unique symbol = Symbol.for(`effect-llm-balancer/Balancer/useObserved/${protocol}`)

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
            // called only once the call may start: an interruption that came first stops it
            Effect.matchCauseEffect(restore(Effect.suspend(() => f(endpoint, lease))), {
              onSuccess: (value) => observed(Exit.succeed(value), lease, observe),
              onFailure: (cause) => observed(Exit.failCause(cause), lease, observe)
            })
          ),
        hints
      ))
}

/** The call's `exit`, after what `observe` says must run first. */
const observed = <A, E>(exit: Exit.Exit<A, E>, lease: Lease, observe: Observer): Effect.Effect<A, E> => {
  let first: Effect.Effect<void> | undefined
  try {
    first = observe(exit, lease)
  } catch (error) {
    return Effect.die(error)
  }
  return first === undefined ? exit : settleAfter(first, exit)
}

export const ReportNow: unique symbol = Symbol.for(`effect-llm-balancer/Lease/reportNow/${protocol}`)

/**
 * A lease of this library's: `[ReportNow]` reports at once (nothing, given `undefined`),
 * unless `report` was replaced; it says whether it could.
 */
export interface Reportable {
  readonly [ReportNow]: (report: Report | undefined) => boolean
}

/**
 * Does `lease.report(report)` at once, in the step that calls it, when the lease is this
 * library's (no operation of its own); says whether it did.
 */
export const reportedNow = (lease: Lease, report: Report): boolean => {
  const lease_ = lease as Lease & Partial<Reportable>
  return lease_[ReportNow] !== undefined && lease_[ReportNow](report)
}

/** Whether {@link reportedNow} would report on `lease` (it is this library's, its `report` its own). */
export const reportsNow = (lease: Lease): boolean => {
  const lease_ = lease as Lease & Partial<Reportable>
  return lease_[ReportNow] !== undefined && lease_[ReportNow](undefined)
}

/**
 * `execute`, started in a step of the caller's that has the fiber at hand, with what
 * `Llm.complete` does around it taken into the router's own steps: `answered` runs as an
 * attempt answers, in the step that settles its lease and before it does (the usage report
 * on this library's own leases, which takes no operation), and `finish` turns the routed
 * answer into the call's result as it returns. Around `execute`, each would take
 * operations of its own, and a frame that the call keeps while in flight.
 */
export const ExecuteIn: unique symbol = Symbol.for(`effect-llm-balancer/Router/executeIn/${protocol}`)

export type StartFn = <A, B, R>(
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  call: (endpoint: Endpoint, attempt: number, lease: Lease) => Effect.Effect<A, ProviderError, R>,
  policy: Policy | undefined,
  answered: ((value: A, lease: Lease) => void) | undefined,
  finish: (routed: Routed<A>) => B
) => Effect.Effect<B, RoutingFailed, R>

/** Set by this library's router, with the `execute` it goes with (see {@link Observable}). */
export interface Executable {
  readonly [ExecuteIn]: {
    readonly execute: RouterService["execute"]
    readonly start: StartFn
  }
}

/** `router.execute(call, policy)`, with `answered` and `finish` (see {@link ExecuteIn}). */
export const executeIn = (router: RouterService): StartFn => {
  const own = (router as RouterService & Partial<Executable>)[ExecuteIn]
  return own !== undefined && own.execute === router.execute
    ? own.start
    : ((_fiber, call, policy, answered, finish) =>
      Effect.map(
        router.execute(
          answered === undefined ?
            call :
            (endpoint, attempt, lease) =>
              Effect.map(call(endpoint, attempt, lease), (value) => {
                answered(value, lease)
                return value
              }),
          policy
        ),
        finish
      ))
}
