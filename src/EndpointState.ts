/**
 * The live state of one endpoint: an immutable record, changed only by the pure
 * transition functions below, which take the time (epoch milliseconds from `Clock`) as an
 * argument. The balancer keeps every endpoint's record in one table and applies these
 * functions atomically; tests call them directly.
 *
 * @since 0.1.0
 */
import type { Endpoint } from "./Endpoint.js"
import type { PassedOver } from "./Errors.js"
import * as Health from "./Health.js"

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
  /** Calls that ended rate limited (also counted in `failures`). */
  readonly rateLimited: number
  /** Times the circuit opened since it last closed cleanly: the exponent of the open period. */
  readonly openings: number
  /** When the circuit last closed after being open (epoch ms), for slow start; -Infinity if never. */
  readonly closedAt: number
  /** Peak-EWMA latency of successful calls; `undefined` until the first one reports a latency. */
  readonly latency: Health.LatencyEstimate | undefined
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
  latencyTotalMs: 0,
  latencyCount: 0,
  recent: Health.emptyRecent(now),
  circuit: Health.closed,
  held: false,
  removed: false,
  cooldownUntil: 0,
  rateLimited: 0,
  openings: 0,
  closedAt: -Infinity,
  latency: undefined
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
  latencyTotalMs: s.latencyTotalMs,
  latencyCount: s.latencyCount,
  recent: s.recent,
  circuit: s.circuit,
  held: s.held,
  removed: s.removed,
  cooldownUntil: s.cooldownUntil,
  rateLimited: s.rateLimited,
  openings: s.openings,
  closedAt: s.closedAt,
  latency: s.latency
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
 * @since 0.1.0
 * @category getters
 */
export const admission = (state: EndpointState, now: number): Admission => {
  if (state.removed) return "removed"
  if (state.held) return "held-unhealthy"
  if (now < state.cooldownUntil) return "cooling-down"
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
  return max !== undefined && state.active >= max ? "at-capacity" : result
}

/**
 * When a passed-over endpoint is known to be able to serve again (epoch ms), if known.
 * A full endpoint frees up when a call ends, which has no known time; an open circuit
 * when it admits a probe; a rate-limited endpoint when its cooldown ends.
 *
 * @since 0.1.0
 * @category getters
 */
export const availableAt = (state: EndpointState, now: number): number | undefined => {
  switch (admission(state, now)) {
    case "unhealthy":
      return state.circuit._tag === "Open" ? Math.max(state.circuit.until, state.cooldownUntil) : undefined
    case "cooling-down":
      return state.circuit._tag === "Open" ? Math.max(state.circuit.until, state.cooldownUntil) : state.cooldownUntil
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
export const onAcquire = (state: EndpointState, probe: boolean): EndpointState => {
  const next = clone(state)
  next.active = state.active + 1
  const circuit = state.circuit
  if (probe && circuit._tag !== "Closed") {
    next.circuit = circuit._tag === "HalfOpen"
      ? { _tag: "HalfOpen", probes: circuit.probes + 1, successes: circuit.successes, since: circuit.since }
      : { _tag: "HalfOpen", probes: 1, successes: 0, since: circuit.since }
  }
  return next
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
  probe: Probe
): EndpointState => {
  const next = clone(state)
  next.active = Math.max(0, state.active - 1)
  next.successes = state.successes + 1
  next.consecutiveFailures = 0
  if (latencyMs !== undefined) {
    next.latencyTotalMs = state.latencyTotalMs + latencyMs
    next.latencyCount = state.latencyCount + 1
    next.latency = Health.observeLatency(state.latency, now, latencyMs, state.policy.latencyDecayMs)
  }
  next.recent = Health.record(state.recent, now, state.policy.windowMs, false, latencyMs)
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
  jitter: number = 0
): EndpointState => {
  const next = clone(state)
  next.active = Math.max(0, state.active - 1)
  next.failures = state.failures + 1
  if (!countsAgainstHealth) {
    next.circuit = endProbe(state.circuit, probe)
    return next
  }
  next.consecutiveFailures = state.consecutiveFailures + 1
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
 * Manual recovery: releases a hold, ends a cooldown, closes the circuit and forgets
 * consecutive failures, the recent window and earlier openings. It takes full traffic at
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
    // calls in flight have not answered yet: no reason to think the endpoint got faster
    ? state.latency.ms
    : Health.latencyAt(state.latency, now, state.policy.latencyDecayMs)

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
