/**
 * How the balancer chooses one endpoint among the candidates of a request.
 *
 * The balancer first decides who is eligible (not unhealthy, not full, not excluded, has
 * the required tags, in the lowest tier that can serve, healthy before degraded); a
 * `Strategy` only ranks that list. This is Finagle's split between a load balancer's
 * distributor and its health filters, and it keeps every strategy a small pure function.
 *
 * A strategy is a plain value; write your own with {@link make}:
 *
 * ```ts
 * import { Strategy } from "effect-llm-balancer"
 *
 * // always the cheapest by input price, ties by fewest calls in flight
 * const cheapest = Strategy.make({
 *   name: "cheapest",
 *   initial: undefined,
 *   select: (candidates) => {
 *     let best = 0
 *     for (let i = 1; i < candidates.length; i++) {
 *       const a = candidates[i], b = candidates[best]
 *       const pa = a.endpoint.cost?.inputPerMillion ?? Infinity
 *       const pb = b.endpoint.cost?.inputPerMillion ?? Infinity
 *       if (pa < pb || (pa === pb && a.active < b.active)) best = i
 *     }
 *     return [best, undefined]
 *   }
 * })
 * ```
 *
 * @since 0.1.0
 */
import type { EndpointState } from "./EndpointState.js"
import * as EndpointStateModule from "./EndpointState.js"

/**
 * What a strategy may read besides the candidates. `random` draws from the balancer's own
 * generator, seeded from Effect's `Random` when the balancer is built: a balancer built
 * under a seeded `Random` picks exactly the same way every run.
 *
 * @since 0.1.0
 * @category models
 */
export interface SelectContext {
  /** Epoch milliseconds from `Clock`. */
  readonly now: number
  /** A number in [0, 1). */
  readonly random: () => number
}

/**
 * `select` receives at least one candidate, in the order the endpoints were added, and
 * returns the index of the chosen one with the strategy's next state. It must be pure:
 * the balancer calls it inside its atomic update.
 *
 * @since 0.1.0
 * @category models
 */
export interface Strategy<in out S = any> {
  readonly name: string
  readonly initial: S
  readonly select: (
    candidates: ReadonlyArray<EndpointState>,
    state: S,
    context: SelectContext
  ) => readonly [index: number, state: S]
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = <S>(options: {
  readonly name: string
  readonly initial: S
  readonly select: Strategy<S>["select"]
}): Strategy<S> => ({
  name: options.name,
  initial: options.initial,
  select: options.select
})

/** The first candidate added after `lastId`, wrapping around. */
const nextAfter = (candidates: ReadonlyArray<EndpointState>, lastId: number): number => {
  for (let i = 0; i < candidates.length; i++) {
    if (candidates[i].id > lastId) return i
  }
  return 0
}

/**
 * Cycles through the candidates in the order the endpoints were added: each pick is the
 * next endpoint after the previous pick that can serve. Skipped endpoints do not shift
 * the cycle, so over any window of picks every candidate gets its turn.
 *
 * @since 0.1.0
 * @category strategies
 */
export const roundRobin: Strategy<number> = make({
  name: "round-robin",
  initial: -1,
  select: (candidates, lastId) => {
    const i = nextAfter(candidates, lastId)
    return [i, candidates[i].id]
  }
})

/** Draws one candidate with probability proportional to weight, leaving out `skip`. */
const drawWeighted = (
  candidates: ReadonlyArray<EndpointState>,
  random: () => number,
  skip: number
): number => {
  let total = 0
  for (let i = 0; i < candidates.length; i++) if (i !== skip) total += candidates[i].endpoint.weight
  let r = random() * total
  let last = -1
  for (let i = 0; i < candidates.length; i++) {
    if (i === skip) continue
    last = i
    r -= candidates[i].endpoint.weight
    if (r < 0) return i
  }
  return last
}

/**
 * Picks at random with probability proportional to `weight`, drawing from the balancer's
 * generator (seeded from `Random`).
 *
 * @since 0.1.0
 * @category strategies
 */
export const weightedRandom: Strategy<undefined> = make({
  name: "weighted-random",
  initial: undefined,
  select: (candidates, state, { random }) => [drawWeighted(candidates, random, -1), state]
})

/**
 * Picks the candidate with the fewest calls in flight per unit of weight
 * (`active / weight`, Envoy's weighted least request). Ties go round robin, starting after
 * the previous pick, so equal idle endpoints share the traffic instead of the first one
 * taking it all (the collapse users see in routers that tie-break by list order).
 *
 * @since 0.1.0
 * @category strategies
 */
export const leastConnections: Strategy<number> = make({
  name: "least-connections",
  initial: -1,
  select: (candidates, lastId) => {
    let best = Infinity
    for (let i = 0; i < candidates.length; i++) {
      const load = candidates[i].active / candidates[i].endpoint.weight
      if (load < best) best = load
    }
    let first = -1
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i]
      if (c.active / c.endpoint.weight !== best) continue
      if (c.id > lastId) return [i, c.id]
      if (first === -1) first = i
    }
    return [first, candidates[first].id]
  }
})

/**
 * Smooth weighted round robin, as nginx does it: deterministic, and it interleaves
 * (weights 5, 1, 1 give `a a b a c a a`, not `a a a a a b c`). Each pick adds every
 * candidate's weight to its running score, takes the highest score (the earlier-added
 * endpoint on a tie) and subtracts the total weight from the winner. An endpoint that is
 * not a candidate starts again from 0 when it returns.
 *
 * @since 0.1.0
 * @category strategies
 */
export const smoothWeightedRoundRobin: Strategy<ReadonlyMap<number, number>> = make<ReadonlyMap<number, number>>({
  name: "smooth-weighted-round-robin",
  initial: new Map<number, number>() as ReadonlyMap<number, number>,
  select: (candidates, current) => {
    const next = new Map<number, number>()
    let total = 0
    let best = 0
    let bestScore = -Infinity
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i]
      const score = (current.get(c.id) ?? 0) + c.endpoint.weight
      total += c.endpoint.weight
      next.set(c.id, score)
      if (score > bestScore) {
        bestScore = score
        best = i
      }
    }
    next.set(candidates[best].id, bestScore - total)
    return [best, next]
  }
})

/**
 * Power of two choices with peak-EWMA latency (Finagle's `p2cPeakEwma`): draw two
 * candidates at random, weighted by `weight`, and take the one with the lower expected
 * wait per unit of capacity, `latency estimate x (calls in flight + 1) / weight`.
 *
 * - The latency estimate is a peak EWMA (see `Health.latencyDecay`): one slow answer
 *   makes an endpoint expensive at once, so traffic leaves a brownout within a few calls;
 *   it decays while the endpoint is idle (not while calls hang on it), so the endpoint is
 *   tried again and traffic comes back once it is fast. A failure slower than the estimate
 *   (a timeout) raises it too.
 * - Two random choices instead of the global minimum keep the load spread: a global
 *   "least busy" pick sends every request of a burst to the same endpoint, which is how
 *   routers collapse onto one deployment.
 * - An endpoint never measured is costed at the median of the measured ones (or the same
 *   as every other when none is measured): it is neither starved nor flooded, and its
 *   first answers set its own estimate.
 *
 * @since 0.1.0
 * @category strategies
 */
export const powerOfTwo: Strategy<undefined> = make({
  name: "power-of-two",
  initial: undefined,
  select: (candidates, state, { now, random }) => {
    if (candidates.length === 1) return [0, state]
    const a = drawWeighted(candidates, random, -1)
    const b = drawWeighted(candidates, random, a)
    const latencyA = EndpointStateModule.latencyEstimateMs(candidates[a], now)
    const latencyB = EndpointStateModule.latencyEstimateMs(candidates[b], now)
    const unmeasured = latencyA === undefined || latencyB === undefined ? medianLatency(candidates, now) : 0
    const costA = (latencyA ?? unmeasured) * (candidates[a].active + 1) / candidates[a].endpoint.weight
    const costB = (latencyB ?? unmeasured) * (candidates[b].active + 1) / candidates[b].endpoint.weight
    // on a tie (both unmeasured and idle, say) the first draw wins, which is itself random
    return [costB < costA ? b : a, state]
  }
})

/** The median latency estimate of the measured candidates, or 1 when none is measured. */
const medianLatency = (candidates: ReadonlyArray<EndpointState>, now: number): number => {
  const measured: Array<number> = []
  for (const c of candidates) {
    const l = EndpointStateModule.latencyEstimateMs(c, now)
    if (l !== undefined) measured.push(l)
  }
  if (measured.length === 0) return 1
  measured.sort((x, y) => x - y)
  const mid = measured.length >> 1
  return measured.length % 2 === 1 ? measured[mid] : (measured[mid - 1] + measured[mid]) / 2
}

/**
 * The built-in strategies by the names configuration files use.
 *
 * @since 0.1.0
 * @category strategies
 */
export const builtIn = {
  "round-robin": roundRobin,
  "weighted-random": weightedRandom,
  "least-connections": leastConnections,
  "smooth-weighted-round-robin": smoothWeightedRoundRobin,
  "power-of-two": powerOfTwo
} as const

/**
 * @since 0.1.0
 * @category models
 */
export type BuiltInName = keyof typeof builtIn
