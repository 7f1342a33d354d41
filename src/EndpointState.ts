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
  removed: false
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
 * A full endpoint frees up when a call ends, which has no known time.
 *
 * @since 0.1.0
 * @category getters
 */
export const availableAt = (state: EndpointState): number | undefined =>
  !state.removed && !state.held && state.circuit._tag === "Open" ? state.circuit.until : undefined

/**
 * @since 0.1.0
 * @category getters
 */
export const status = (state: EndpointState, now: number): Health.Status => {
  if (state.held || state.removed) return "unhealthy"
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
      return latency !== undefined && latency >= p.degradedLatencyMs ? "degraded" : "healthy"
    }
  }
}

/**
 * A call was admitted; `probe` is true when it is a half-open probe.
 *
 * @since 0.1.0
 * @category transitions
 */
export const onAcquire = (state: EndpointState, probe: boolean): EndpointState => ({
  ...state,
  active: state.active + 1,
  circuit: probe
    ? { _tag: "HalfOpen", probes: state.circuit._tag === "HalfOpen" ? state.circuit.probes + 1 : 1 }
    : state.circuit
})

const endProbe = (circuit: Health.Circuit, probe: boolean): Health.Circuit =>
  probe && circuit._tag === "HalfOpen" ? { _tag: "HalfOpen", probes: Math.max(0, circuit.probes - 1) } : circuit

/**
 * A call succeeded. A successful probe closes the circuit.
 *
 * @since 0.1.0
 * @category transitions
 */
export const onSuccess = (
  state: EndpointState,
  now: number,
  latencyMs: number | undefined,
  probe: boolean
): EndpointState => ({
  ...state,
  active: Math.max(0, state.active - 1),
  successes: state.successes + 1,
  consecutiveFailures: 0,
  latencyTotalMs: latencyMs === undefined ? state.latencyTotalMs : state.latencyTotalMs + latencyMs,
  latencyCount: latencyMs === undefined ? state.latencyCount : state.latencyCount + 1,
  recent: Health.record(state.recent, now, state.policy.windowMs, false, latencyMs),
  circuit: probe && state.circuit._tag === "HalfOpen" ? Health.closed : state.circuit
})

/**
 * A call failed. `countsAgainstHealth` is false for failures that are not the endpoint's
 * fault (a bad request); those update the counters but not the circuit. A failed probe,
 * or the `maxFailures`-th consecutive failure of a closed circuit, opens it.
 *
 * @since 0.1.0
 * @category transitions
 */
export const onFailure = (
  state: EndpointState,
  now: number,
  latencyMs: number | undefined,
  probe: boolean,
  countsAgainstHealth: boolean = true
): EndpointState => {
  const active = Math.max(0, state.active - 1)
  if (!countsAgainstHealth) {
    return { ...state, active, failures: state.failures + 1, circuit: endProbe(state.circuit, probe) }
  }
  const consecutiveFailures = state.consecutiveFailures + 1
  const open = (probe && state.circuit._tag === "HalfOpen") ||
    (state.circuit._tag === "Closed" && consecutiveFailures >= state.policy.maxFailures)
  return {
    ...state,
    active,
    failures: state.failures + 1,
    consecutiveFailures,
    recent: Health.record(state.recent, now, state.policy.windowMs, true, latencyMs),
    circuit: open ? { _tag: "Open", since: now, until: now + state.policy.recoveryTimeoutMs } : state.circuit
  }
}

/**
 * A call ended without an outcome (it was interrupted): it gives its slot back and
 * counts neither way. An interrupted probe frees its probe slot.
 *
 * @since 0.1.0
 * @category transitions
 */
export const onCancel = (state: EndpointState, probe: boolean): EndpointState => ({
  ...state,
  active: Math.max(0, state.active - 1),
  circuit: endProbe(state.circuit, probe)
})

/**
 * Manual recovery: releases a hold, closes the circuit and forgets consecutive failures.
 *
 * @since 0.1.0
 * @category transitions
 */
export const forceHealthy = (state: EndpointState): EndpointState => ({
  ...state,
  held: false,
  consecutiveFailures: 0,
  circuit: Health.closed
})

/**
 * Manual circuit break: the endpoint takes no calls until {@link forceHealthy}.
 *
 * @since 0.1.0
 * @category transitions
 */
export const forceUnhealthy = (state: EndpointState): EndpointState => ({ ...state, held: true })

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
