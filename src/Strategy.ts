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
import { dual } from "effect/Function"
import { priceOf } from "./Endpoint.js"
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
  /** The request's estimated input tokens (`Hints.inputTokens`), 0 when not given. */
  readonly inputTokens: number
  /** The request's estimated output tokens (`Hints.outputTokens`), 0 when not given. */
  readonly outputTokens: number
}

/**
 * `select` receives at least one candidate, in the order the endpoints were added, and
 * returns the index of the chosen one with the strategy's next state, and optionally the
 * name of the experiment arm that chose it (see {@link experiment}). It must be pure:
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
  ) => readonly [index: number, state: S, arm?: string | undefined]
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
 * Capacity-aware (the article's pool): picks at random with probability proportional to
 * `weight x headroom`, where headroom is the share of the endpoint's limits left for this
 * request (the tightest of its requests-per-minute, tokens-per-minute and per-day windows,
 * its provider's last word on what is left, and its free concurrency; see
 * `EndpointState.headroom`). Traffic drains toward the endpoints with room before any of
 * them reaches its limit and answers 429. Endpoints without limits have full headroom.
 *
 * @since 0.1.0
 * @category strategies
 */
export const capacity: Strategy<undefined> = make({
  name: "capacity",
  initial: undefined,
  select: (candidates, state, { inputTokens, now, outputTokens, random }) => {
    const tokens = inputTokens + outputTokens
    let total = 0
    const shares = new Array<number>(candidates.length)
    for (let i = 0; i < candidates.length; i++) {
      shares[i] = candidates[i].endpoint.weight * EndpointStateModule.headroom(candidates[i], now, tokens)
      total += shares[i]
    }
    if (total <= 0) return [drawWeighted(candidates, random, -1), state]
    let r = random() * total
    for (let i = 0; i < candidates.length; i++) {
      r -= shares[i]
      if (r < 0 && shares[i] > 0) return [i, state]
    }
    let last = candidates.length - 1
    while (shares[last] <= 0) last--
    return [last, state]
  }
})

/**
 * One criterion to rank candidates by (lower scores are better), with the relative band
 * within which scores count as equal: with `tolerance` 0.1, every candidate within 10 %
 * of the best score ties with it. A score of `-Infinity` wins outright; `Infinity` means
 * "rank last" (unknown price, say).
 *
 * @since 0.1.0
 * @category models
 */
export interface Criterion {
  readonly name: string
  readonly score: (candidate: EndpointState, context: SelectContext) => number
  readonly tolerance: number
}

/**
 * @since 0.1.0
 * @category criteria
 */
export const criterion = (
  name: string,
  score: Criterion["score"],
  options?: { readonly tolerance?: number | undefined }
): Criterion => ({ name, score, tolerance: Math.max(0, options?.tolerance ?? 0) })

/**
 * The price of the request on the candidate (`Endpoint.priceOf` with the request's
 * estimated tokens); candidates without prices rank last. Default tolerance 5 %.
 *
 * @since 0.1.0
 * @category criteria
 */
export const byCost = (options?: { readonly tolerance?: number | undefined }): Criterion =>
  criterion(
    "cost",
    (c, { inputTokens, outputTokens }) => priceOf(c.endpoint, inputTokens, outputTokens) ?? Infinity,
    { tolerance: options?.tolerance ?? 0.05 }
  )

/**
 * @since 0.1.0
 * @category models
 */
export type Percentile = "p50" | "p95" | "p99"

const quantileOf: Record<Percentile, number> = { p50: 0.5, p95: 0.95, p99: 0.99 }

/**
 * A percentile of the candidate's last 256 successful calls (time to first token for
 * streamed calls). Default `p95`, tolerance 20 %.
 *
 * A candidate with fewer than `minSamples` (default 5) measured calls is not starved and
 * not flooded: while it has no call in flight it wins outright, so it gets measured one
 * call at a time; while its one call is in flight it ranks last.
 *
 * @since 0.1.0
 * @category criteria
 */
export const byLatency = (options?: {
  readonly percentile?: Percentile | undefined
  readonly tolerance?: number | undefined
  readonly minSamples?: number | undefined
  /**
   * Multiply the percentile by `(calls in flight + 1) / weight`: the expected wait behind
   * the calls already there. Default false (the percentile alone).
   */
  readonly underLoad?: boolean | undefined
}): Criterion => {
  const percentile = options?.percentile ?? "p95"
  const q = quantileOf[percentile]
  const minSamples = clampSamples(options?.minSamples)
  const underLoad = options?.underLoad === true
  return criterion(
    `latency-${percentile}`,
    (c) => {
      if (unmeasured(c, minSamples)) return c.active === 0 ? -Infinity : Infinity
      const ms = EndpointStateModule.latencyQuantile(c, q)!
      return underLoad ? ms * (c.active + 1) / c.endpoint.weight : ms
    },
    { tolerance: options?.tolerance ?? 0.2 }
  )
}

/** At least 1 (a percentile needs a sample) and at most the window's 256 samples. */
const clampSamples = (minSamples: number | undefined): number =>
  Math.min(EndpointStateModule.latencyWindowSize, Math.max(1, Math.floor(minSamples ?? 5)))

const unmeasured = (c: EndpointState, minSamples: number): boolean => EndpointStateModule.latencySamples(c) < minSamples

/**
 * Calls in flight per unit of weight (`active / weight`). Default tolerance 0 (exact ties).
 *
 * @since 0.1.0
 * @category criteria
 */
export const byLoad = (options?: { readonly tolerance?: number | undefined }): Criterion =>
  criterion("load", (c) => c.active / c.endpoint.weight, options)

/**
 * Headroom left for the request (see {@link capacity}): more is better. The score is
 * `2 - headroom` (so that it stays positive); with the default tolerance of 0.05, shares
 * within about 0.05 to 0.1 of the best headroom tie.
 *
 * @since 0.1.0
 * @category criteria
 */
export const byHeadroom = (options?: { readonly tolerance?: number | undefined }): Criterion =>
  criterion(
    "headroom",
    // 2 - headroom keeps scores positive, so the relative band works
    (c, { inputTokens, now, outputTokens }) => 2 - EndpointStateModule.headroom(c, now, inputTokens + outputTokens),
    { tolerance: options?.tolerance ?? 0.05 }
  )

/** The indices of `candidates` (among `among`) whose score is within the criterion's band of the best. */
const band = (
  candidates: ReadonlyArray<EndpointState>,
  among: ReadonlyArray<number>,
  by: Criterion,
  context: SelectContext
): ReadonlyArray<number> => {
  const scores = among.map((i) => by.score(candidates[i], context))
  let best = Infinity
  for (const s of scores) if (s < best) best = s
  // nothing known about anyone: they all tie
  if (best === Infinity || Number.isNaN(best)) return among
  if (best === -Infinity) return among.filter((_, k) => scores[k] === -Infinity)
  const bound = best + by.tolerance * Math.abs(best)
  return among.filter((_, k) => scores[k] <= bound)
}

/** Runs `strategy` on a subset of the candidates and maps its pick back. */
const selectAmong = <S>(
  strategy: Strategy<S>,
  candidates: ReadonlyArray<EndpointState>,
  among: ReadonlyArray<number>,
  state: S,
  context: SelectContext
): readonly [number, S, string | undefined] => {
  if (among.length === candidates.length) {
    const [i, next, arm] = strategy.select(candidates, state, context)
    return [i, next, arm]
  }
  const [i, next, arm] = strategy.select(among.map((k) => candidates[k]), state, context)
  return [among[i], next, arm]
}

/**
 * Builds a strategy from parts: keep the candidates within the first criterion's band
 * of the best, of those the ones within the second's, and so on; `then` picks among the
 * survivors (default {@link powerOfTwo}, which spreads them by load and speed).
 *
 * ```ts
 * import { Strategy } from "effect-llm-balancer"
 *
 * // the cheapest (within 10 %), of those the fastest at p50, then the least loaded
 * const thrifty = Strategy.rank({
 *   name: "thrifty",
 *   by: [Strategy.byCost({ tolerance: 0.1 }), Strategy.byLatency({ percentile: "p50" })],
 *   then: Strategy.leastConnections
 * })
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const rank = <S = undefined>(options: {
  readonly name: string
  readonly by: ReadonlyArray<Criterion>
  readonly then?: Strategy<S> | undefined
}): Strategy<S> => {
  const then = (options.then ?? powerOfTwo) as Strategy<S>
  return make<S>({
    name: options.name,
    initial: then.initial,
    select: (candidates, state, context) => {
      let among: ReadonlyArray<number> = candidates.map((_, i) => i)
      for (const by of options.by) {
        if (among.length === 1) break
        among = band(candidates, among, by, context)
      }
      return selectAmong(then, candidates, among, state, context)
    }
  })
}

/**
 * Lets `strategy` choose only among the candidates `predicate` keeps, or among all of them
 * when it keeps none: a preference, not a requirement (requirements are `Hints`, which
 * make the balancer fail with `NoEndpointAvailable` rather than serve elsewhere).
 *
 * @since 0.1.0
 * @category combinators
 */
export const prefer: {
  <S>(
    predicate: (candidate: EndpointState, context: SelectContext) => boolean
  ): (strategy: Strategy<S>) => Strategy<S>
  <S>(strategy: Strategy<S>, predicate: (candidate: EndpointState, context: SelectContext) => boolean): Strategy<S>
} = dual(2, <S>(
  strategy: Strategy<S>,
  predicate: (candidate: EndpointState, context: SelectContext) => boolean
): Strategy<S> =>
  make<S>({
    name: strategy.name,
    initial: strategy.initial,
    select: (candidates, state, context) => {
      const among: Array<number> = []
      for (let i = 0; i < candidates.length; i++) if (predicate(candidates[i], context)) among.push(i)
      return selectAmong(strategy, candidates, among.length === 0 ? candidates.map((_, i) => i) : among, state, context)
    }
  }))

/**
 * With probability `rate`, picks a candidate uniformly at random instead of asking
 * `strategy`: a little exploration, so an endpoint the strategy has stopped choosing is
 * measured again and can win back its traffic once it is fast (or cheap) again.
 *
 * @since 0.1.0
 * @category combinators
 */
export const explore: {
  (rate: number): <S>(strategy: Strategy<S>) => Strategy<S>
  <S>(strategy: Strategy<S>, rate: number): Strategy<S>
} = dual(2, <S>(strategy: Strategy<S>, rate: number): Strategy<S> =>
  make<S>({
    name: strategy.name,
    initial: strategy.initial,
    select: (candidates, state, context) =>
      candidates.length > 1 && context.random() < rate
        ? [Math.floor(context.random() * candidates.length), state]
        : strategy.select(candidates, state, context)
  }))

/**
 * Latency-based: the candidates whose recent p95 (or p50, p99; time to first token for
 * streamed calls) is not clearly slower than the fastest's share the traffic, spread
 * among them by {@link powerOfTwo}, so the fastest endpoint is not piled on.
 *
 * "Clearly slower" is statistical: each endpoint's percentile has a 95 % confidence
 * interval from its last 256 measured calls (order statistics), and a candidate leaves
 * the band only when the low end of its interval is more than `tolerance` (default 20 %)
 * above the high end of the fastest one's. Equal endpoints, whose percentiles differ by
 * chance (a p95 near a slow tail jumps around), all stay in and share the traffic; an
 * endpoint really slower by more than the tolerance is left out.
 *
 * With probability `exploration` (default 5 %) the pick goes instead to a candidate
 * outside the band, so it keeps being measured and wins its traffic back once it is fast
 * again. Endpoints with fewer than `minSamples` measured calls (default 20; at most 256)
 * are measured one call at a time: while idle they win outright, while their one call is
 * in flight they are passed over.
 *
 * @since 0.1.0
 * @category strategies
 */
export const latency = (options?: {
  readonly percentile?: Percentile | undefined
  readonly tolerance?: number | undefined
  readonly exploration?: number | undefined
  readonly minSamples?: number | undefined
}): Strategy<undefined> => {
  const minSamples = clampSamples(options?.minSamples ?? 20)
  const rate = options?.exploration ?? 0.05
  const tolerance = Math.max(0, options?.tolerance ?? 0.2)
  const q = quantileOf[options?.percentile ?? "p95"]
  return make({
    name: "latency",
    initial: undefined,
    select: (candidates, state, context) => {
      const inBand: Array<number> = []
      const outside: Array<number> = []
      // never-measured endpoints first, one call at a time
      for (let i = 0; i < candidates.length; i++) {
        const c = candidates[i]
        if (unmeasured(c, minSamples) && c.active === 0) inBand.push(i)
      }
      if (inBand.length === 0) {
        let fastest = Infinity
        for (const c of candidates) {
          if (unmeasured(c, minSamples)) continue
          fastest = Math.min(fastest, EndpointStateModule.latencyQuantileBounds(c, q)!.upper)
        }
        for (let i = 0; i < candidates.length; i++) {
          const c = candidates[i]
          // an endpoint being measured already has its one call
          if (unmeasured(c, minSamples)) continue
          const lower = EndpointStateModule.latencyQuantileBounds(c, q)!.lower
          if (lower <= fastest * (1 + tolerance)) inBand.push(i)
          else outside.push(i)
        }
        // everyone is being measured: any of them
        if (inBand.length === 0) return powerOfTwo.select(candidates, state, context)
      }
      if (outside.length > 0 && context.random() < rate) {
        return [outside[Math.floor(context.random() * outside.length)], state]
      }
      return selectAmong(powerOfTwo, candidates, inBand, state, context)
    }
  })
}

/**
 * Cost-optimized: the cheapest candidates for the request (its estimated input and output
 * tokens times each endpoint's prices) within `tolerance` (default 5 %) of the cheapest
 * share the traffic, spread among them by {@link powerOfTwo}. Candidates without prices
 * come last; give a free endpoint prices of 0. Eligibility (healthy, with headroom, within
 * budget) comes first, as for every strategy.
 *
 * @since 0.1.0
 * @category strategies
 */
export const cost = (options?: { readonly tolerance?: number | undefined }): Strategy<undefined> =>
  rank({ name: "cost", by: [byCost(options)], then: powerOfTwo })

/**
 * An A/B test of two strategies on live traffic: each pick goes to `candidate` with
 * probability `fraction` and to `control` otherwise. Every lease records its arm, and
 * `Balancer.summary` reports per arm the picks, successes, failures, latency and spend.
 * Arms are named after their strategies (`candidate`'s gets " (candidate)" appended when
 * both have the same name).
 *
 * @since 0.1.0
 * @category combinators
 */
export const experiment = <A, B>(options: {
  readonly control: Strategy<A>
  readonly candidate: Strategy<B>
  readonly fraction: number
  readonly name?: string | undefined
}): Strategy<{ readonly control: A; readonly candidate: B }> => {
  const { candidate, control } = options
  const fraction = Math.min(1, Math.max(0, options.fraction))
  const controlArm = control.name
  const candidateArm = candidate.name === control.name ? `${candidate.name} (candidate)` : candidate.name
  return make({
    name: options.name ?? `experiment(${controlArm} vs ${candidateArm})`,
    initial: { control: control.initial, candidate: candidate.initial },
    select: (candidates, state, context) => {
      if (context.random() < fraction) {
        const [i, next] = candidate.select(candidates, state.candidate, context)
        return [i, { control: state.control, candidate: next }, candidateArm]
      }
      const [i, next] = control.select(candidates, state.control, context)
      return [i, { control: next, candidate: state.candidate }, controlArm]
    }
  })
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
  "power-of-two": powerOfTwo,
  capacity,
  latency: latency(),
  cost: cost()
} as const

/**
 * @since 0.1.0
 * @category models
 */
export type BuiltInName = keyof typeof builtIn
