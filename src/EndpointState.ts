/**
 * The live state of one endpoint: an immutable record, changed only by the pure
 * transition functions below, which take the time (epoch milliseconds from `Clock`) as an
 * argument. The balancer keeps every endpoint's record in one table and applies these
 * functions atomically; tests call them directly.
 *
 * @since 0.1.0
 */
import { Duration } from "effect"
import type { Endpoint } from "./Endpoint.js"
import type { PassedOver } from "./Errors.js"
import * as Health from "./Health.js"
import * as LatencyWindow from "./internal/latencyWindow.js"
import * as SlidingWindow from "./internal/slidingWindow.js"
import type { Usage } from "./Outcome.js"
import type { Allowance, Remaining } from "./RateLimit.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface EndpointState {
  /** Unique per balancer and never reused, so a lease taken before a remove + re-add cannot touch the new entry. */
  readonly id: number
  readonly endpoint: Endpoint
  readonly policy: Health.Resolved
  /** Calls in flight. */
  readonly active: number
  readonly successes: number
  readonly failures: number
  readonly consecutiveFailures: number
  /**
   * When the first failing call of the current run of consecutive failures started (epoch
   * ms; -Infinity when there is none). A success of a call that started earlier does not
   * end the run: it says how the endpoint was before the failures began (slow calls that
   * started before an outage end well after it began), while any call started since that
   * succeeds does.
   */
  readonly failingSince: number
  /**
   * Since when the endpoint has had calls in flight waiting for an answer without giving any
   * (epoch ms): the later of its last answer (an end, or a stream's first token) and the
   * moment a call started with none waiting. The oldest waiting call is at least
   * `now - quietSince` old.
   */
  readonly quietSince: number
  /** Calls in flight that have answered already: streams past their first token. */
  readonly answeredInFlight: number
  /** Sum of the latencies of the successes that reported one, and their count. */
  readonly latencyTotalMs: number
  readonly latencyCount: number
  readonly recent: Health.Recent
  readonly circuit: Health.Circuit
  /** Held out by `forceUnhealthy` until `forceHealthy`. */
  readonly held: boolean
  /** Removed; kept only until its last call in flight ends. */
  readonly removed: boolean
  /** Rate limited: takes no calls before this time (epoch ms; 0 when not cooling down). */
  readonly cooldownUntil: number
  /**
   * Turned away by the shared store (`Store`): the cluster's limit, cooldown, open circuit
   * or budget. Takes no calls before `sharedUntil` (epoch ms; 0 when not), for `sharedReason`.
   */
  readonly sharedUntil: number
  readonly sharedReason: SharedReason
  /** Calls that ended rate limited (also counted in `failures`). */
  readonly rateLimited: number
  /** Times the circuit opened since it last closed cleanly: the exponent of the open period. */
  readonly openings: number
  /** When the circuit last closed after being open (epoch ms), for slow start; -Infinity if never. */
  readonly closedAt: number
  /**
   * Peak-EWMA latency of successful calls (time to first token for streamed calls);
   * `undefined` until the first one reports a latency.
   */
  readonly latency: Health.LatencyEstimate | undefined
  /**
   * The latencies (time to first token for streamed calls) of the last 256 successful
   * calls, for p50/p95/p99. The one mutable part of the state: a recorder appended to by
   * {@link onSuccess}, shared by every version of the record.
   */
  readonly samples: LatencyWindow.LatencyWindow
  /**
   * What is left of its limits: its sliding windows and its provider's last word;
   * `undefined` for an endpoint without limits that no provider hint has reached.
   */
  readonly quota: Quota | undefined
  /** Tokens, spend and streaming speed, from what calls reported. */
  readonly meter: Meter
}

/**
 * An endpoint's limits as they stand. Kept apart from the rest of the state so that a
 * call on an endpoint without limits copies none of it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Quota {
  /** Requests in the last minute, when the endpoint has an `rpm` limit. */
  readonly requestWindow: SlidingWindow.SlidingWindow | undefined
  /** Tokens in the last minute (estimated, corrected by usage), when it has a `tpm` limit. */
  readonly tokenWindow: SlidingWindow.SlidingWindow | undefined
  /** Requests in the last day, when it has an `rpd` limit. */
  readonly dayWindow: SlidingWindow.SlidingWindow | undefined
  /** What the provider last said is left of its request limit, less the calls since. */
  readonly providerRequests: Allowance | undefined
  /** What the provider last said is left of its token limit, less the estimates since. */
  readonly providerTokens: Allowance | undefined
}

/**
 * What the endpoint's calls reported, over its lifetime (and its budget period).
 *
 * @since 0.1.0
 * @category models
 */
export interface Meter {
  /** Tokens reported by successful calls. */
  readonly inputTokens: number
  readonly outputTokens: number
  /** Spend (reported usage x `cost`). */
  readonly spent: number
  /** Spend in the budget period that started at `periodStart` (epoch ms). */
  readonly periodSpent: number
  readonly periodStart: number
  /** Sum of the times to first token of the streamed calls that reported one, and their count. */
  readonly ttftTotalMs: number
  readonly ttftCount: number
  /** An EWMA of output tokens per second after the first token; `undefined` before a measure. */
  readonly tokensPerSecond: number | undefined
}

const emptyMeter: Meter = {
  inputTokens: 0,
  outputTokens: 0,
  spent: 0,
  periodSpent: 0,
  periodStart: 0,
  ttftTotalMs: 0,
  ttftCount: 0,
  tokensPerSecond: undefined
}

const quotaOf = (endpoint: Endpoint): Quota | undefined => {
  const limits = endpoint.limits
  if (limits === undefined || (limits.rpm === undefined && limits.tpm === undefined && limits.rpd === undefined)) {
    return undefined
  }
  return {
    requestWindow: limits.rpm === undefined ? undefined : SlidingWindow.make(limits.rpm, 60_000),
    tokenWindow: limits.tpm === undefined ? undefined : SlidingWindow.make(limits.tpm, 60_000),
    dayWindow: limits.rpd === undefined ? undefined : SlidingWindow.make(limits.rpd, 86_400_000),
    providerRequests: undefined,
    providerTokens: undefined
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (id: number, endpoint: Endpoint, policy: Health.Resolved, now: number): EndpointState => ({
  id,
  endpoint,
  policy,
  active: 0,
  successes: 0,
  failures: 0,
  consecutiveFailures: 0,
  failingSince: -Infinity,
  quietSince: now,
  answeredInFlight: 0,
  latencyTotalMs: 0,
  latencyCount: 0,
  recent: Health.emptyRecent(now),
  circuit: Health.closed,
  held: false,
  removed: false,
  cooldownUntil: 0,
  sharedUntil: 0,
  sharedReason: "unhealthy",
  rateLimited: 0,
  openings: 0,
  closedAt: -Infinity,
  latency: undefined,
  samples: LatencyWindow.make(),
  quota: quotaOf(endpoint),
  meter: emptyMeter
})

type Mutable = { -readonly [K in keyof EndpointState]: EndpointState[K] }

/**
 * Copies every field in one fixed order. A transition clones and then assigns: object
 * spreads here cost V8 its slow path (about 0.5 µs each on Node 20) and leave the states
 * in a dozen different shapes, which made the hot path 3x slower (see bench/).
 */
const clone = (s: EndpointState): Mutable => ({
  id: s.id,
  endpoint: s.endpoint,
  policy: s.policy,
  active: s.active,
  successes: s.successes,
  failures: s.failures,
  consecutiveFailures: s.consecutiveFailures,
  failingSince: s.failingSince,
  quietSince: s.quietSince,
  answeredInFlight: s.answeredInFlight,
  latencyTotalMs: s.latencyTotalMs,
  latencyCount: s.latencyCount,
  recent: s.recent,
  circuit: s.circuit,
  held: s.held,
  removed: s.removed,
  cooldownUntil: s.cooldownUntil,
  sharedUntil: s.sharedUntil,
  sharedReason: s.sharedReason,
  rateLimited: s.rateLimited,
  openings: s.openings,
  closedAt: s.closedAt,
  latency: s.latency,
  samples: s.samples,
  quota: s.quota,
  meter: s.meter
})

/**
 * Whether the endpoint can take one more call now: `"admit"`, `"probe"` (the call is a
 * half-open probe), or the reason it is passed over.
 *
 * @since 0.1.0
 * @category getters
 */
export type Admission = "admit" | "probe" | PassedOver["reason"]

/**
 * Why the shared store turned an endpoint away: the reasons of `PassedOver` that a
 * cluster-wide state can give.
 *
 * @since 0.1.0
 * @category models
 */
export type SharedReason = "unhealthy" | "probing" | "cooling-down" | "no-headroom" | "too-large" | "over-budget"

/**
 * @since 0.1.0
 * @category getters
 */
export const admission = (state: EndpointState, now: number, tokens = 0): Admission => {
  if (state.removed) return "removed"
  if (state.held) return "held-unhealthy"
  if (now < state.cooldownUntil) return "cooling-down"
  if (now < state.sharedUntil) return state.sharedReason
  let result: Admission = "admit"
  switch (state.circuit._tag) {
    case "Open": {
      if (now < state.circuit.until) return "unhealthy"
      result = "probe"
      break
    }
    case "HalfOpen": {
      if (state.circuit.probes >= state.policy.halfOpenProbes) return "probing"
      result = "probe"
      break
    }
  }
  const max = state.endpoint.maxConcurrency
  if (max !== undefined && state.active >= max) return "at-capacity"
  if (state.endpoint.budget !== undefined && overBudget(state, now)) return "over-budget"
  return state.quota !== undefined ? headroomFor(state.quota, now, tokens) ?? result : result
}

/** Whether a provider allowance still applies at `now` and has less than `amount` left. */
const short = (allowance: Allowance | undefined, now: number, amount: number): boolean =>
  allowance !== undefined && now < allowance.resetAt && allowance.remaining < Math.max(1, amount)

/** `undefined` when one request of `tokens` tokens fits every limit, else why not. */
const headroomFor = (quota: Quota, now: number, tokens: number): "no-headroom" | "too-large" | undefined => {
  const tw = quota.tokenWindow
  if (tw !== undefined && tokens > tw.limit) return "too-large"
  if (
    (quota.requestWindow !== undefined && !SlidingWindow.fits(quota.requestWindow, now, 1)) ||
    (quota.dayWindow !== undefined && !SlidingWindow.fits(quota.dayWindow, now, 1)) ||
    // a request without an estimate still needs a token left
    (tw !== undefined && !SlidingWindow.fits(tw, now, Math.max(1, tokens))) ||
    short(quota.providerRequests, now, 1) ||
    short(quota.providerTokens, now, tokens)
  ) return "no-headroom"
  return undefined
}

/** When one request of `tokens` tokens fits every limit again (epoch ms). */
const headroomAt = (quota: Quota, now: number, tokens: number): number => {
  let at = now
  if (quota.requestWindow !== undefined) at = Math.max(at, SlidingWindow.fitsAt(quota.requestWindow, now, 1))
  if (quota.dayWindow !== undefined) at = Math.max(at, SlidingWindow.fitsAt(quota.dayWindow, now, 1))
  if (quota.tokenWindow !== undefined) {
    at = Math.max(at, SlidingWindow.fitsAt(quota.tokenWindow, now, Math.max(1, tokens)))
  }
  if (short(quota.providerRequests, now, 1)) at = Math.max(at, quota.providerRequests!.resetAt)
  if (short(quota.providerTokens, now, tokens)) at = Math.max(at, quota.providerTokens!.resetAt)
  return at
}

/** The budget period `now` falls in: its start and length (ms), aligned to the epoch. */
export const budgetPeriod = (periodMs: number, now: number): number => Math.floor(now / periodMs) * periodMs

/**
 * What the endpoint has spent in its budget period at `now` (0 once a new period began).
 *
 * @since 0.1.0
 * @category getters
 */
export const spentInPeriod = (state: EndpointState, now: number): number => {
  const budget = state.endpoint.budget
  if (budget === undefined) return 0
  return budgetPeriod(Duration.toMillis(budget.period), now) === state.meter.periodStart ? state.meter.periodSpent : 0
}

/** Sums of prices are not exact (10 x 0.0003 < 0.003): a budget within a micro-unit is spent. */
export const budgetEpsilon = 1e-9

const overBudget = (state: EndpointState, now: number): boolean =>
  spentInPeriod(state, now) >= state.endpoint.budget!.limit - budgetEpsilon

/**
 * Whether the endpoint has spent past its budget's `softLimit` this period: the balancer
 * then prefers other endpoints.
 *
 * @since 0.1.0
 * @category getters
 */
export const pastSoftLimit = (state: EndpointState, now: number): boolean => {
  const budget = state.endpoint.budget
  return budget !== undefined && spentInPeriod(state, now) >= budget.limit * budget.softLimit - budgetEpsilon
}

/**
 * The share of its limits left at `now` for one more request of `tokens` tokens, in
 * [0, 1]: the smallest of its request, token and daily windows, the provider's last word
 * on what is left (when it also said the limit), and its free concurrency. 1 for an
 * endpoint without limits.
 *
 * @since 0.1.0
 * @category getters
 */
export const headroom = (state: EndpointState, now: number, tokens = 0): number => {
  let share = 1
  const max = state.endpoint.maxConcurrency
  if (max !== undefined) share = Math.max(0, 1 - state.active / max)
  const quota = state.quota
  if (quota === undefined) return share
  if (quota.requestWindow !== undefined) share = Math.min(share, SlidingWindow.headroom(quota.requestWindow, now))
  if (quota.dayWindow !== undefined) share = Math.min(share, SlidingWindow.headroom(quota.dayWindow, now))
  const tw = quota.tokenWindow
  if (tw !== undefined) share = Math.min(share, Math.max(0, 1 - (SlidingWindow.used(tw, now) + tokens) / tw.limit))
  return Math.min(share, allowanceShare(quota.providerRequests, now), allowanceShare(quota.providerTokens, now))
}

const allowanceShare = (allowance: Allowance | undefined, now: number): number =>
  allowance === undefined || now >= allowance.resetAt || allowance.limit === undefined || allowance.limit <= 0
    ? 1
    : Math.max(0, Math.min(1, allowance.remaining / allowance.limit))

/**
 * When a passed-over endpoint is known to be able to serve again (epoch ms), if known.
 * A full endpoint frees up when a call ends, which has no known time; an open circuit
 * when it admits a probe; a rate-limited endpoint when its cooldown ends.
 *
 * @since 0.1.0
 * @category getters
 */
export const availableAt = (state: EndpointState, now: number, tokens = 0): number | undefined => {
  if (now < state.sharedUntil && !state.held && !state.removed && now >= state.cooldownUntil) return state.sharedUntil
  switch (admission(state, now, tokens)) {
    case "unhealthy":
      return state.circuit._tag === "Open" ? Math.max(state.circuit.until, state.cooldownUntil) : undefined
    case "cooling-down":
      return state.circuit._tag === "Open" ? Math.max(state.circuit.until, state.cooldownUntil) : state.cooldownUntil
    case "no-headroom": {
      const at = headroomAt(state.quota!, now, tokens)
      return at > now && Number.isFinite(at) ? at : undefined
    }
    case "over-budget": {
      const periodMs = Duration.toMillis(state.endpoint.budget!.period)
      return budgetPeriod(periodMs, now) + periodMs
    }
    default:
      return undefined
  }
}

/**
 * @since 0.1.0
 * @category getters
 */
export const status = (state: EndpointState, now: number): Health.Status => {
  if (state.held || state.removed || now < state.cooldownUntil) return "unhealthy"
  if (now < state.sharedUntil && (state.sharedReason === "unhealthy" || state.sharedReason === "cooling-down")) {
    return "unhealthy"
  }
  switch (state.circuit._tag) {
    case "Open":
      return now < state.circuit.until ? "unhealthy" : "degraded"
    case "HalfOpen":
      return "degraded"
    case "Closed": {
      const p = state.policy
      const recent = state.recent
      if (
        Health.recentErrorRate(recent) >= p.degradedErrorRate && p.degradedErrorRate < 1 &&
        recent.failures > 0 && Health.recentCalls(recent, now, p.windowMs) >= p.degradedMinRequests
      ) return "degraded"
      const latency = Health.recentLatencyMs(recent)
      return latency !== undefined && latency >= p.degradedLatencyMs &&
          Health.recentTimed(recent, now, p.windowMs) >= p.degradedMinRequests
        ? "degraded"
        : "healthy"
    }
  }
}

/**
 * A call was admitted; `probe` is true when `admission` said `"probe"`.
 *
 * @since 0.1.0
 * @category transitions
 */
export const onAcquire = (state: EndpointState, probe: boolean, now?: number, tokens = 0): EndpointState => {
  const next = clone(state)
  next.active = state.active + 1
  if (now !== undefined && state.active === state.answeredInFlight) next.quietSince = now
  if (now !== undefined && state.quota !== undefined) next.quota = reserve(state.quota, now, tokens)
  const circuit = state.circuit
  if (probe && circuit._tag !== "Closed") {
    next.circuit = circuit._tag === "HalfOpen"
      ? { _tag: "HalfOpen", probes: circuit.probes + 1, successes: circuit.successes, since: circuit.since }
      : { _tag: "HalfOpen", probes: 1, successes: 0, since: circuit.since }
  }
  return next
}

/** Counts one request of `tokens` estimated tokens against every limit. */
const reserve = (quota: Quota, now: number, tokens: number): Quota => ({
  requestWindow: quota.requestWindow === undefined ? undefined : SlidingWindow.add(quota.requestWindow, now, 1),
  tokenWindow: quota.tokenWindow === undefined || tokens === 0
    ? quota.tokenWindow
    : SlidingWindow.add(quota.tokenWindow, now, tokens),
  dayWindow: quota.dayWindow === undefined ? undefined : SlidingWindow.add(quota.dayWindow, now, 1),
  providerRequests: spend(quota.providerRequests, now, 1),
  providerTokens: tokens > 0 ? spend(quota.providerTokens, now, tokens) : quota.providerTokens
})

const noQuota: Quota = {
  requestWindow: undefined,
  tokenWindow: undefined,
  dayWindow: undefined,
  providerRequests: undefined,
  providerTokens: undefined
}

/** A quota with the provider's word on what is left in place of what we had. */
const hinted = (quota: Quota | undefined, remaining: Remaining): Quota => {
  const q = quota ?? noQuota
  return {
    requestWindow: q.requestWindow,
    tokenWindow: q.tokenWindow,
    dayWindow: q.dayWindow,
    providerRequests: remaining.requests ?? q.providerRequests,
    providerTokens: remaining.tokens ?? q.providerTokens
  }
}

/** An allowance less `amount`; one that has reset is forgotten. */
const spend = (allowance: Allowance | undefined, now: number, amount: number): Allowance | undefined =>
  allowance === undefined || now >= allowance.resetAt
    ? undefined
    : { remaining: Math.max(0, allowance.remaining - amount), limit: allowance.limit, resetAt: allowance.resetAt }

/**
 * What a call learned besides its latency: its time to first token (streamed calls),
 * the tokens it used, what the provider said is left of its limits, and the estimate it
 * reserved when it was admitted (`reservedAt`, `reservedTokens`), which the usage replaces.
 *
 * @since 0.1.0
 * @category models
 */
export interface Measured {
  readonly ttftMs: number | undefined
  readonly usage: Usage | undefined
  readonly rateLimit: Remaining | undefined
  readonly reservedAt: number
  readonly reservedTokens: number
}

/**
 * What the provider said is left of its limits: it replaces the allowance we had.
 *
 * @since 0.1.0
 * @category transitions
 */
export const onProviderHint = (state: EndpointState, remaining: Remaining): EndpointState => {
  const next = clone(state)
  next.quota = hinted(state.quota, remaining)
  return next
}

/** Records usage, spend, throughput and the corrected token count on `next`. */
const measure = (next: Mutable, state: EndpointState, now: number, latencyMs: number | undefined, m: Measured) => {
  if (m.rateLimit !== undefined) next.quota = hinted(state.quota, m.rateLimit)
  const before = state.meter
  const meter = { ...before }
  if (m.ttftMs !== undefined) {
    meter.ttftTotalMs = before.ttftTotalMs + m.ttftMs
    meter.ttftCount = before.ttftCount + 1
  }
  const usage = m.usage
  if (usage !== undefined) {
    meter.inputTokens = before.inputTokens + usage.inputTokens
    meter.outputTokens = before.outputTokens + usage.outputTokens
    const quota = next.quota
    if (quota?.tokenWindow !== undefined) {
      next.quota = {
        ...quota,
        tokenWindow: SlidingWindow.adjust(
          quota.tokenWindow,
          m.reservedAt,
          usage.inputTokens + usage.outputTokens - m.reservedTokens
        )
      }
    }
    const price = costOf(state.endpoint, usage)
    if (price > 0) {
      meter.spent = before.spent + price
      const budget = state.endpoint.budget
      if (budget !== undefined) {
        const start = budgetPeriod(Duration.toMillis(budget.period), now)
        meter.periodSpent = (start === before.periodStart ? before.periodSpent : 0) + price
        meter.periodStart = start
      }
    }
    if (latencyMs !== undefined && usage.outputTokens > 0) {
      const generatingMs = latencyMs - (m.ttftMs ?? 0)
      if (generatingMs > 0) {
        const rate = usage.outputTokens / (generatingMs / 1000)
        meter.tokensPerSecond = before.tokensPerSecond === undefined ? rate : 0.8 * before.tokensPerSecond + 0.2 * rate
      }
    }
  }
  next.meter = meter
}

/**
 * What reported usage cost on the endpoint, by its `cost` (0 without prices).
 *
 * @since 0.1.0
 * @category getters
 */
export const costOf = (endpoint: Endpoint, usage: Usage): number => {
  const cost = endpoint.cost
  return cost === undefined
    ? 0
    : (usage.inputTokens * cost.inputPerMillion + usage.outputTokens * cost.outputPerMillion) / 1_000_000
}

/**
 * Identifies a probe: the `since` of the open period it probes, read off the state
 * `onAcquire` returned. Release transitions take it (or `undefined` for an ordinary
 * call), so a late probe of an earlier period neither frees nor closes the current one.
 *
 * @since 0.1.0
 * @category models
 */
export type Probe = number | undefined

/**
 * The probe identity of a call just admitted as a probe.
 *
 * @since 0.1.0
 * @category getters
 */
export const probeOf = (state: EndpointState): Probe =>
  state.circuit._tag === "HalfOpen" ? state.circuit.since : undefined

const isCurrentProbe = (circuit: Health.Circuit, probe: Probe): circuit is Health.Circuit & { _tag: "HalfOpen" } =>
  probe !== undefined && circuit._tag === "HalfOpen" && circuit.since === probe

const endProbe = (circuit: Health.Circuit, probe: Probe): Health.Circuit =>
  isCurrentProbe(circuit, probe)
    ? { _tag: "HalfOpen", probes: Math.max(0, circuit.probes - 1), successes: circuit.successes, since: circuit.since }
    : circuit

/**
 * A call succeeded. `halfOpenSuccesses` successful probes close the circuit, clear the
 * recent window and start the slow start. The count of openings is kept until the
 * endpoint has stayed closed for a whole `window` (a clean close), so an endpoint that
 * flaps keeps getting longer open periods.
 *
 * @since 0.1.0
 * @category transitions
 */
export const onSuccess = (
  state: EndpointState,
  now: number,
  latencyMs: number | undefined,
  probe: Probe,
  measured?: Measured,
  /** When the call started (epoch ms): a call older than the current run of failures ends nothing. */
  startedAt?: number
): EndpointState => {
  const next = clone(state)
  next.active = Math.max(0, state.active - 1)
  next.successes = state.successes + 1
  if (startedAt === undefined || startedAt >= state.failingSince) {
    next.consecutiveFailures = 0
    next.failingSince = -Infinity
  }
  next.quietSince = now
  // routing by speed looks at the first token of a streamed answer, not at its length
  const speedMs = measured?.ttftMs ?? latencyMs
  if (latencyMs !== undefined) {
    next.latencyTotalMs = state.latencyTotalMs + latencyMs
    next.latencyCount = state.latencyCount + 1
  }
  if (speedMs !== undefined) {
    next.latency = Health.observeLatency(state.latency, now, speedMs, state.policy.latencyDecayMs)
    LatencyWindow.add(state.samples, speedMs)
  }
  if (measured !== undefined) measure(next, state, now, latencyMs, measured)
  next.recent = Health.record(state.recent, now, state.policy.windowMs, false, speedMs)
  const circuit = state.circuit
  if (isCurrentProbe(circuit, probe)) {
    if (circuit.successes + 1 >= state.policy.halfOpenSuccesses) {
      // closed again: the outage's errors are forgotten (they would reopen it at once), but
      // not how often it opened, until it has stayed closed for a whole window
      next.circuit = Health.closed
      next.closedAt = now
      next.recent = Health.emptyRecent(now)
    } else {
      next.circuit = {
        _tag: "HalfOpen",
        probes: Math.max(0, circuit.probes - 1),
        successes: circuit.successes + 1,
        since: circuit.since
      }
    }
  }
  return next
}

/**
 * A call failed. `countsAgainstHealth` is false for failures that are not the endpoint's
 * fault (a bad request); those update the counters but not the circuit. The circuit opens
 * on a failed probe, on the `maxFailures`-th consecutive failure of a closed circuit, or
 * when the recent error rate reaches `failureRateThreshold` over at least
 * `failureRateMinRequests` recent calls. It stays open for `Health.openDurationMs`, for
 * which `jitter` (in [0, 1), from the balancer's `Random`) is the random part.
 *
 * @since 0.1.0
 * @category transitions
 */
export const onFailure = (
  state: EndpointState,
  now: number,
  latencyMs: number | undefined,
  probe: Probe,
  countsAgainstHealth: boolean = true,
  jitter: number = 0,
  /** When the failing call started (epoch ms); without it, `latencyMs` before `now`. */
  startedAt?: number
): EndpointState => {
  const next = clone(state)
  next.active = Math.max(0, state.active - 1)
  next.failures = state.failures + 1
  next.quietSince = now
  if (!countsAgainstHealth) {
    next.circuit = endProbe(state.circuit, probe)
    return next
  }
  next.consecutiveFailures = state.consecutiveFailures + 1
  if (state.consecutiveFailures === 0) next.failingSince = startedAt ?? now - (latencyMs ?? 0)
  next.recent = Health.record(state.recent, now, state.policy.windowMs, true, latencyMs)
  // a slow failure (a timeout, say) is slowness too; a fast one is left to the circuit breaker
  if (
    latencyMs !== undefined && state.latency !== undefined &&
    latencyMs > Health.latencyAt(state.latency, now, state.policy.latencyDecayMs)
  ) {
    next.latency = { ms: latencyMs, at: now }
  }
  const p = state.policy
  const open = isCurrentProbe(state.circuit, probe) ||
    (state.circuit._tag === "Closed" &&
      (next.consecutiveFailures >= p.maxFailures ||
        (Health.recentErrorRate(next.recent) >= p.failureRateThreshold &&
          Health.recentCalls(next.recent, now, p.windowMs) >= p.failureRateMinRequests)))
  if (open) {
    const openings = cleanlyClosed(state, now) ? 0 : state.openings
    next.circuit = { _tag: "Open", since: now, until: now + Health.openDurationMs(p, openings, jitter) }
    next.openings = openings + 1
  }
  return next
}

/**
 * Whether the circuit has stayed closed for a whole recent window since it last closed
 * (or never opened): then a new opening starts again from `recoveryTimeout`.
 *
 * @since 0.1.0
 * @category getters
 */
export const cleanlyClosed = (state: EndpointState, now: number): boolean =>
  state.circuit._tag === "Closed" && now - state.closedAt >= state.policy.windowMs

/**
 * A call was rate limited. The endpoint takes no calls before `until` (the provider's
 * `Retry-After`, jittered by the caller); this is not a health failure, so the circuit and
 * the recent error rate are left alone, but a probe gives its slot back.
 *
 * @since 0.1.0
 * @category transitions
 */
export const onRateLimited = (state: EndpointState, until: number, probe: Probe): EndpointState => {
  const next = clone(state)
  next.active = Math.max(0, state.active - 1)
  next.failures = state.failures + 1
  next.rateLimited = state.rateLimited + 1
  next.cooldownUntil = Math.max(state.cooldownUntil, until)
  next.circuit = endProbe(state.circuit, probe)
  return next
}

/**
 * Rests the endpoint until `until` without a call of its own ending (another endpoint of
 * its quota group was rate limited).
 *
 * @since 0.1.0
 * @category transitions
 */
export const coolDown = (state: EndpointState, until: number): EndpointState => {
  const next = clone(state)
  next.cooldownUntil = Math.max(state.cooldownUntil, until)
  return next
}

/**
 * The endpoint's credentials were refused: it is held out, as by `forceUnhealthy`, until
 * `forceHealthy` (a key does not fix itself).
 *
 * @since 0.1.0
 * @category transitions
 */
export const onUnauthorized = (state: EndpointState, probe: Probe): EndpointState => {
  const next = clone(state)
  next.active = Math.max(0, state.active - 1)
  next.failures = state.failures + 1
  next.held = true
  next.circuit = endProbe(state.circuit, probe)
  return next
}

/**
 * A call ended without an outcome (it was interrupted): it gives its slot back and
 * counts neither way. An interrupted probe frees its probe slot.
 *
 * @since 0.1.0
 * @category transitions
 */
export const onCancel = (state: EndpointState, probe: Probe): EndpointState => {
  const next = clone(state)
  next.active = Math.max(0, state.active - 1)
  next.circuit = endProbe(state.circuit, probe)
  return next
}

/**
 * The shared store turned away a call this state had admitted: the call is taken back
 * (its slot, its probe and what it counted against the limits), and the endpoint takes no
 * calls for `reason` until `until`.
 *
 * @since 0.1.0
 * @category transitions
 */
export const onSharedRefusal = (
  state: EndpointState,
  probe: Probe,
  reservedAt: number,
  tokens: number,
  reason: SharedReason,
  until: number
): EndpointState => {
  const next = clone(onCancel(state, probe))
  if (state.quota !== undefined) next.quota = unreserve(state.quota, reservedAt, tokens)
  next.sharedUntil = Math.max(state.sharedUntil, until)
  next.sharedReason = reason
  return next
}

const unreserve = (quota: Quota, at: number, tokens: number): Quota => ({
  requestWindow: quota.requestWindow === undefined ? undefined : SlidingWindow.adjust(quota.requestWindow, at, -1),
  tokenWindow: quota.tokenWindow === undefined || tokens === 0
    ? quota.tokenWindow
    : SlidingWindow.adjust(quota.tokenWindow, at, -tokens),
  dayWindow: quota.dayWindow === undefined ? undefined : SlidingWindow.adjust(quota.dayWindow, at, -1),
  // nothing was sent: what the provider said is left is left still
  providerRequests: giveBack(quota.providerRequests, 1),
  providerTokens: tokens > 0 ? giveBack(quota.providerTokens, tokens) : quota.providerTokens
})

const giveBack = (allowance: Allowance | undefined, amount: number): Allowance | undefined =>
  allowance === undefined ? undefined : {
    remaining: Math.min(allowance.remaining + amount, allowance.limit ?? Infinity),
    limit: allowance.limit,
    resetAt: allowance.resetAt
  }

/**
 * Manual recovery: releases a hold, ends a cooldown, closes the circuit and forgets
 * consecutive failures, the recent window, earlier openings and the provider's last word on
 * its limits (a hint that says 0 left). It takes full traffic at
 * once (no slow start).
 *
 * @since 0.1.0
 * @category transitions
 */
export const forceHealthy = (state: EndpointState): EndpointState => {
  const next = clone(state)
  next.held = false
  next.consecutiveFailures = 0
  next.circuit = Health.closed
  next.openings = 0
  next.cooldownUntil = 0
  next.sharedUntil = 0
  // what the provider last said is left is forgotten too (its own windows stay)
  if (state.quota !== undefined) {
    next.quota = { ...state.quota, providerRequests: undefined, providerTokens: undefined }
  }
  next.recent = Health.emptyRecent(state.recent.at)
  return next
}

/**
 * Manual circuit break: the endpoint takes no calls until {@link forceHealthy}.
 *
 * @since 0.1.0
 * @category transitions
 */
export const forceUnhealthy = (state: EndpointState): EndpointState => {
  const next = clone(state)
  next.held = true
  return next
}

/**
 * The endpoint was removed while calls were in flight: it takes no new ones and goes
 * away with its last.
 *
 * @since 0.1.0
 * @category transitions
 */
export const markRemoved = (state: EndpointState): EndpointState => {
  const next = clone(state)
  next.removed = true
  return next
}

/**
 * The peak-EWMA latency estimate at `now` (ms), or `undefined` before the first measured
 * call. It decays only while the endpoint is idle.
 *
 * @since 0.1.0
 * @category getters
 */
export const latencyEstimateMs = (state: EndpointState, now: number): number | undefined =>
  state.latency === undefined
    ? undefined
    : state.active > 0
    // calls in flight: no reason to think the endpoint got faster; and if calls wait for an
    // answer and it has given none for longer than its estimate, it is at least that slow
    // now (a brownout shows before its first slow answer; a stream past its first token
    // waits for nothing)
    ? state.active > state.answeredInFlight ? Math.max(state.latency.ms, now - state.quietSince) : state.latency.ms
    : Health.latencyAt(state.latency, now, state.policy.latencyDecayMs)

/**
 * A stream's first token arrived: an answer, as far as {@link latencyEstimateMs} is
 * concerned; the call no longer waits (release it with {@link onAnsweredEnd} after its
 * ending's transition).
 *
 * @since 0.1.0
 * @category transitions
 */
export const onFirstToken = (state: EndpointState, now: number): EndpointState => {
  const next = clone(state)
  next.quietSince = Math.max(state.quietSince, now)
  next.answeredInFlight = Math.min(state.active, state.answeredInFlight + 1)
  return next
}

/**
 * A call that had answered (see {@link onFirstToken}) ended: applied after the ending's
 * own transition.
 *
 * @since 0.1.0
 * @category transitions
 */
export const onAnsweredEnd = (state: EndpointState): EndpointState => {
  const next = clone(state)
  next.answeredInFlight = Math.max(0, Math.min(state.active, state.answeredInFlight - 1))
  return next
}

/**
 * The share of its normal traffic the endpoint takes now (see `Health.slowStartFactor`).
 *
 * @since 0.1.0
 * @category getters
 */
export const trafficShare = (state: EndpointState, now: number): number =>
  Health.slowStartFactor(state.policy, now - state.closedAt)

/**
 * Average latency of all successful calls (ms), or `undefined` before the first one.
 *
 * @since 0.1.0
 * @category getters
 */
export const averageLatencyMs = (state: EndpointState): number | undefined =>
  state.latencyCount > 0 ? state.latencyTotalMs / state.latencyCount : undefined

/**
 * Failures / (successes + failures) over the endpoint's lifetime.
 *
 * @since 0.1.0
 * @category getters
 */
export const errorRate = (state: EndpointState): number => {
  const total = state.successes + state.failures
  return total === 0 ? 0 : state.failures / total
}

/**
 * The `q`-quantile (0..1, such as 0.95) of the latencies of the last 256 successful calls
 * (time to first token for streamed calls), exact by nearest rank, in ms; `undefined`
 * before the first.
 *
 * @since 0.1.0
 * @category getters
 */
export const latencyQuantile = (state: EndpointState, q: number): number | undefined =>
  LatencyWindow.quantile(state.samples, q)

/**
 * A 95 % confidence interval for the `q`-quantile of the endpoint's latency, from the
 * order statistics of its last 256 successful calls; `undefined` before the first. Few
 * samples or a heavy tail give a wide interval.
 *
 * @since 0.1.0
 * @category getters
 */
export const latencyQuantileBounds = (
  state: EndpointState,
  q: number
): { readonly lower: number; readonly upper: number } | undefined =>
  LatencyWindow.quantileBounds(state.samples, q, 1.96)

/**
 * How many latencies an endpoint keeps for {@link latencyQuantile}: its last 256.
 *
 * @since 0.1.0
 * @category constants
 */
export const latencyWindowSize: number = LatencyWindow.size

/**
 * How many latencies {@link latencyQuantile} is computed from (at most 256).
 *
 * @since 0.1.0
 * @category getters
 */
export const latencySamples = (state: EndpointState): number => state.samples.count

/**
 * Average time to first token of streamed calls (ms), or `undefined` before the first.
 *
 * @since 0.1.0
 * @category getters
 */
export const averageTtftMs = (state: EndpointState): number | undefined =>
  state.meter.ttftCount > 0 ? state.meter.ttftTotalMs / state.meter.ttftCount : undefined
