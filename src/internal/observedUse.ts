/**
 * The router's way into a balancer's `use`: the call's end observed in the balancer's own
 * uninterruptible region, before the lease is settled. The router records every attempt
 * there; doing it in a region of its own (`Effect.onExit`) cost each routed call several
 * effect operations, and their garbage (see docs/design.md, "What a routed call costs").
 */
import { Effect, Exit } from "effect"
import type { BalancerService, Hints, Lease } from "../Balancer.js"
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

export const UseObserved: unique symbol = Symbol.for("effect-llm-balancer/Balancer/useObserved")

export type UseObservedFn = <A, E, R>(
  f: (endpoint: Endpoint, lease: Lease) => Effect.Effect<A, E, R>,
  hints: Hints | undefined,
  observe: Observer
) => Effect.Effect<A, E | NoEndpointAvailable, R>

/** Set by this library's balancer; any other `BalancerService` gets the generic form. */
interface Observable {
  readonly [UseObserved]?: UseObservedFn
}

/** `balancer.use(f, hints)`, with `observe` run as each call ends. */
export const useObserved = (balancer: BalancerService): UseObservedFn =>
  (balancer as BalancerService & Observable)[UseObserved] ??
    ((f, hints, observe) =>
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
