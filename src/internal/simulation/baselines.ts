/**
 * The routers the simulation compares ours against, as balancers the real `Router` runs
 * on: plain round robin without health tracking, the seeds' behaviour, a LiteLLM-style
 * shuffle with cooldowns, and an oracle that knows every endpoint's true state.
 */
import { Cause, Duration, Effect, Exit, Option, PubSub, Stream } from "effect"
import type * as Balancer from "../../Balancer.js"
import type * as Endpoint from "../../Endpoint.js"
import * as Errors from "../../Errors.js"
import type { Event } from "../../Event.js"
import type * as Outcome from "../../Outcome.js"
import type { SimulatedEndpointState } from "./fleet.js"
import { conditionAt, isFailing } from "./fleet.js"

/** One endpoint as a baseline sees it. */
export interface Slot {
  readonly index: number
  readonly endpoint: Endpoint.Endpoint
  readonly truth: SimulatedEndpointState
  /** Endpoints in the fleet, this one included. */
  readonly fleetSize: number
  active: number
  /** Fields a baseline keeps for itself. */
  readonly own: Record<string, number>
}

export type Result = "success" | "failure" | "rate-limited" | "timeout" | "connection-error" | "cancelled"

export interface Baseline {
  readonly name: string
  readonly description: string
  /** The chosen slot among the candidates (never empty), or none: no endpoint available. */
  readonly pick: (candidates: ReadonlyArray<Slot>, now: number, random: () => number) => Slot | undefined
  readonly record: (slot: Slot, result: Result, now: number) => void
  readonly circuit: (slot: Slot, now: number) => "closed" | "open"
}

const weighted = <A>(items: ReadonlyArray<A>, score: (a: A) => number, random: () => number): A | undefined => {
  let total = 0
  for (const item of items) total += score(item)
  if (total <= 0) return undefined
  let r = random() * total
  for (const item of items) {
    r -= score(item)
    if (r < 0) return item
  }
  return items[items.length - 1]
}

/** Round robin over every endpoint, whatever happened to it. */
export const roundRobin = (): Baseline => {
  let last = -1
  return {
    name: "round-robin (no health)",
    description: "cycles through the endpoints; no health tracking, no cooldowns",
    pick: (candidates) => {
      const next = candidates.find((slot) => slot.index > last) ?? candidates[0]
      last = next.index
      return next
    },
    record: () => {},
    circuit: () => "closed"
  }
}

/**
 * The seeds: capacity x weight random (capacity from the requests counted this minute
 * against the endpoint's rpm), unhealthy for 60 s after 3 consecutive errors, a 429
 * fills this minute's counter; back at full weight once the 60 s are over.
 */
export const seeds: Baseline = {
  name: "seeds",
  description: "capacity x weight random; out for 60 s after 3 consecutive errors; a 429 fills the minute",
  pick: (candidates, now, random) => {
    const usable = candidates.filter((slot) => {
      const own = slot.own
      if (now - (own.minuteStart ?? 0) >= 60_000) {
        own.minute = 0
        own.minuteStart = now
      }
      const healthy = !((own.consecutive ?? 0) >= 3 && now - (own.lastError ?? -Infinity) < 60_000)
      return healthy && capacity(slot) > 0
    })
    return weighted(usable, (slot) => capacity(slot) * slot.endpoint.weight, random)
  },
  record: (slot, result, now) => {
    const own = slot.own
    if (result === "success") {
      own.minute = (own.minute ?? 0) + 1
      own.consecutive = 0
    } else if (result !== "cancelled") {
      own.consecutive = (own.consecutive ?? 0) + 1
      own.lastError = now
      const rpm = slot.endpoint.limits?.rpm
      if (result === "rate-limited" && rpm !== undefined) own.minute = rpm
    }
  },
  circuit: (slot, now) =>
    (slot.own.consecutive ?? 0) >= 3 && now - (slot.own.lastError ?? -Infinity) < 60_000 ? "open" : "closed"
}

const capacity = (slot: Slot): number => {
  const rpm = slot.endpoint.limits?.rpm
  return rpm === undefined ? 1 : Math.max(0, 1 - (slot.own.minute ?? 0) / rpm)
}

const COOLDOWN = 5_000

/**
 * LiteLLM's default router, as its code does it (`router_utils/cooldown_handlers.py`): a
 * random pick among the deployments not cooling down, weighted by `weight`. A 429 or a
 * timeout cools a deployment down for 5 s at once; other errors once they are more than
 * half of its calls this minute, after at least 5 calls; connection errors never do, and
 * neither does anything when the group has a single deployment.
 */
export const litellm: Baseline = {
  name: "litellm-style shuffle",
  description:
    "weighted shuffle; 5 s cooldown on a 429 or a timeout, or when over half of a minute's calls (5 or more) failed; none for connection errors",
  pick: (candidates, now, random) =>
    weighted(candidates.filter((slot) => now >= (slot.own.cooldownUntil ?? 0)), (s) => s.endpoint.weight, random),
  record: (slot, result, now) => {
    const own = slot.own
    const minute = Math.floor(now / 60_000)
    if (own.minute !== minute) {
      own.minute = minute
      own.ok = 0
      own.failed = 0
    }
    if (result === "cancelled") return
    if (result === "success") {
      own.ok++
      return
    }
    own.failed++
    if (slot.fleetSize === 1 || result === "connection-error") return
    const calls = own.ok + own.failed
    if (result === "rate-limited" || result === "timeout" || (calls >= 5 && own.failed / calls > 0.5)) {
      own.cooldownUntil = now + COOLDOWN
    }
  },
  circuit: (slot, now) => now < (slot.own.cooldownUntil ?? 0) ? "open" : "closed"
}

/**
 * Knows every endpoint's true state at every instant: never sends to one that is down,
 * hanging or out of quota (with none left, the call fails at once), and among the rest
 * picks the fastest right now (its median latency under the current faults and load),
 * the least busy first on a tie.
 */
export const oracle = (tokens: number): Baseline => ({
  name: "oracle",
  description: "knows the true state of every endpoint at every instant",
  pick: (candidates, now) => {
    let best: Slot | undefined
    let bestScore = Infinity
    for (const slot of candidates) {
      const truth = slot.truth
      const condition = conditionAt(truth.faults, truth.model, now)
      if (isFailing(condition) || truth.wouldRefuse(now, tokens)) continue
      let ms = Duration.toMillis(truth.model.latency.median) * condition.slowdown
      const knee = truth.model.concurrency
      if (knee !== undefined && truth.inFlight >= knee.knee) ms *= 1 + knee.slowdown * (truth.inFlight + 1 - knee.knee)
      const score = ms * (1 + 1e-3 * slot.active)
      if (score < bestScore) {
        bestScore = score
        best = slot
      }
    }
    // when every endpoint is failing, any call fails: send none
    return best
  },
  record: () => {},
  circuit: (slot, now) => isFailing(conditionAt(slot.truth.faults, slot.truth.model, now)) ? "open" : "closed"
})

const resultOf = (exit: Exit.Exit<unknown, unknown>): Result => {
  if (Exit.isSuccess(exit)) return "success"
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) return Cause.isInterruptedOnly(exit.cause) ? "cancelled" : "failure"
  return resultOfError(failure.value)
}

const resultOfError = (e: unknown): Result => {
  const error = e as { readonly _tag?: string; readonly status?: number }
  switch (error._tag) {
    case "RateLimited":
      return "rate-limited"
    case "Timeout":
      return "timeout"
    case "Unavailable":
      // no HTTP status: the connection itself failed
      return error.status === undefined ? "connection-error" : "failure"
    default:
      return "failure"
  }
}

const noop = Effect.void

/**
 * A `BalancerService` over a baseline: what the `Router` needs (choose, lease, release,
 * the endpoints) and plain answers for the rest.
 */
export const make = (
  baseline: Baseline,
  fleet: ReadonlyArray<SimulatedEndpointState>,
  random: () => number
): { readonly service: Balancer.BalancerService; readonly slots: ReadonlyArray<Slot> } => {
  const slots: Array<Slot> = fleet.map((truth, index) => ({
    index,
    endpoint: truth.endpoint,
    truth,
    fleetSize: fleet.length,
    active: 0,
    own: {}
  }))
  const endpoints = slots.map((slot) => slot.endpoint)

  const acquire = (hints?: Balancer.Hints) =>
    Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      const exclude = hints?.exclude
      const candidates = exclude === undefined || exclude.length === 0
        ? slots
        : slots.filter((slot) => !exclude.includes(slot.endpoint.name))
      const slot = candidates.length === 0 ? undefined : baseline.pick(candidates, now, random)
      if (slot === undefined) {
        return Effect.fail(
          new Errors.NoEndpointAvailable({
            passedOver: slots.map((s) => ({
              endpoint: s.endpoint.name,
              reason: candidates.includes(s) ? "unhealthy" as const : "excluded" as const
            })),
            retryAt: undefined
          })
        )
      }
      slot.active++
      return Effect.succeed({ slot, lease: leaseOf(slot.endpoint, now) })
    })

  const finish = (slot: Slot, result: Result) =>
    Effect.clockWith((clock) =>
      Effect.sync(() => {
        slot.active--
        baseline.record(slot, result, clock.unsafeCurrentTimeMillis())
      })
    )

  const use = <A, E, R>(
    f: (endpoint: Endpoint.Endpoint, lease: Balancer.Lease) => Effect.Effect<A, E, R>,
    hints?: Balancer.Hints
  ) =>
    Effect.acquireUseRelease(
      acquire(hints),
      ({ lease, slot }) => f(slot.endpoint, lease),
      ({ slot }, exit) => finish(slot, resultOf(exit))
    )

  const bySlotName = (name: string) => slots.find((slot) => slot.endpoint.name === name)

  const unsupported = (name: string) =>
    Effect.fail(new Errors.UnknownEndpoint({ name, known: endpoints.map((e) => e.name) }))

  const service: Balancer.BalancerService = {
    strategy: baseline.name,
    acquire: (hints) => Effect.map(acquire(hints), ({ lease }) => lease),
    release: (lease, outcome: Outcome.Outcome) => {
      const slot = bySlotName(lease.endpoint.name)
      return slot === undefined
        ? noop
        : finish(
          slot,
          outcome._tag === "Success"
            ? "success"
            : outcome._tag === "Cancelled"
            ? "cancelled"
            : resultOfError(outcome.error)
        )
    },
    use,
    addEndpoint: (endpoint) =>
      Effect.fail(
        new Errors.InvalidConfig({
          issues: [{ path: "endpoints", message: `a baseline's fleet is fixed; cannot add ${String(endpoint.name)}` }]
        })
      ),
    removeEndpoint: unsupported,
    forceHealthy: unsupported,
    forceUnhealthy: unsupported,
    endpoints: Effect.succeed(endpoints),
    healthyEndpoints: Effect.clockWith((clock) =>
      Effect.succeed(
        slots.filter((slot) => baseline.circuit(slot, clock.unsafeCurrentTimeMillis()) === "closed").map((s) =>
          s.endpoint
        )
      )
    ),
    stats: Effect.succeed([]),
    summary: Effect.succeed({ strategy: baseline.name, spent: 0, budget: null, arms: [] }),
    latencyQuantile: () => Effect.succeed(undefined),
    events: Stream.empty,
    subscribe: Effect.flatMap(PubSub.unbounded<Event>(), (hub) => PubSub.subscribe(hub)),
    reportAttempt: () => noop
  }
  return { service, slots }
}

const leaseOf = (endpoint: Endpoint.Endpoint, startedAt: number): Balancer.Lease => ({
  endpoint,
  startedAt,
  probe: false,
  report: () => noop,
  firstToken: noop,
  detach: noop
})
