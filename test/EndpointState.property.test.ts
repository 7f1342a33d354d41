/**
 * Property tests of the pure transitions in `EndpointState`: random sequences of calls
 * (acquired only when `admission` lets them in), their outcomes (success, failure, rate
 * limited, unauthorized, cancelled), manual overrides and clock advances, with invariants
 * checked after every step; then examples of each circuit and health rule.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Either, FastCheck } from "effect"
import * as Endpoint from "../src/Endpoint.js"
import * as EndpointState from "../src/EndpointState.js"
import * as Health from "../src/Health.js"

type State = EndpointState.EndpointState

const endpointOf = (input: Partial<Endpoint.Input> = {}): Endpoint.Endpoint =>
  Either.getOrThrow(Endpoint.decodeEither({ name: "e", provider: "openai", model: "m", ...input }))

const policyOf = (input: Health.PolicyInput = {}): Health.Policy => Either.getOrThrow(Health.decodePolicy(input))

const T0 = 1_700_000_000_000

const stateOf = (
  endpoint: Partial<Endpoint.Input> = {},
  policy: Health.Policy = Health.defaultPolicy,
  now: number = T0
): State => {
  const e = endpointOf(endpoint)
  return EndpointState.make(1, e, Health.resolve(policy, e), now)
}

type HalfOpen = Extract<Health.Circuit, { _tag: "HalfOpen" }>

// ---------------------------------------------------------------------------------------
// The model: outstanding leases and what has been applied
// ---------------------------------------------------------------------------------------

interface Lease {
  /** The probe's identity (`probeOf` right after a probe acquire), or `undefined` for an ordinary call. */
  readonly probe: EndpointState.Probe
}

interface Model {
  readonly now: number
  readonly leases: ReadonlyArray<Lease>
  readonly successes: number
  /** Every failure, rate-limited and unauthorized calls included. */
  readonly failures: number
  readonly rateLimited: number
  /** Counting failures since the last success or forceHealthy. */
  readonly consecutive: number
  readonly latencies: ReadonlyArray<number>
  /** Set by forceUnhealthy and by an unauthorized call, cleared by forceHealthy. */
  readonly held: boolean
  /** The latest `until` of a rate-limited call, 0 after forceHealthy. */
  readonly cooldownUntil: number
  /**
   * 1 + the exponent of the last opening (`openingsUsed`): an opening uses 0 after a clean
   * close (closed for a whole window, or never opened) and the current count otherwise; a
   * probe-close keeps it, forceHealthy resets it to 0.
   */
  readonly openings: number
  /** When a probe last closed the circuit (-Infinity if never; forceHealthy does not set it). */
  readonly closedAt: number
}

const initialModel = (now: number): Model => ({
  now,
  leases: [],
  successes: 0,
  failures: 0,
  rateLimited: 0,
  consecutive: 0,
  latencies: [],
  held: false,
  cooldownUntil: 0,
  openings: 0,
  closedAt: -Infinity
})

type Op =
  | { readonly _tag: "acquire" }
  | { readonly _tag: "success"; readonly pick: number; readonly latencyMs: number | undefined }
  | {
    readonly _tag: "failure"
    readonly pick: number
    readonly latencyMs: number | undefined
    readonly countsAgainstHealth: boolean
    /** The random part of the open period, in [0, 1). */
    readonly jitter: number
  }
  /** Rate limited until `now + untilInMs` (which may be in the past). */
  | { readonly _tag: "rateLimited"; readonly pick: number; readonly untilInMs: number }
  | { readonly _tag: "unauthorized"; readonly pick: number }
  | { readonly _tag: "cancel"; readonly pick: number }
  | { readonly _tag: "forceHealthy" }
  | { readonly _tag: "forceUnhealthy" }
  | { readonly _tag: "advance"; readonly ms: number }

const fc = FastCheck

const latencyArb = fc.option(fc.integer({ min: 0, max: 10_000 }), { nil: undefined })

const jitterArb = fc.oneof(
  fc.constantFrom(0, 0.5, 0.999_999),
  fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })
)

const opArb: FastCheck.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.constant<Op>({ _tag: "acquire" }), weight: 14 },
  {
    arbitrary: fc.record({ pick: fc.nat(), latencyMs: latencyArb }).map((r): Op => ({ _tag: "success", ...r })),
    weight: 7
  },
  {
    arbitrary: fc.record({
      pick: fc.nat(),
      latencyMs: latencyArb,
      countsAgainstHealth: fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, {
        arbitrary: fc.constant(false),
        weight: 1
      }),
      jitter: jitterArb
    }).map((r): Op => ({ _tag: "failure", ...r })),
    weight: 8
  },
  {
    arbitrary: fc.record({
      pick: fc.nat(),
      untilInMs: fc.oneof(fc.constantFrom(0, 1), fc.integer({ min: -1_000, max: 30_000 }))
    }).map((r): Op => ({ _tag: "rateLimited", ...r })),
    weight: 2
  },
  { arbitrary: fc.nat().map((pick): Op => ({ _tag: "unauthorized", pick })), weight: 1 },
  { arbitrary: fc.nat().map((pick): Op => ({ _tag: "cancel", pick })), weight: 3 },
  { arbitrary: fc.constant<Op>({ _tag: "forceHealthy" }), weight: 2 },
  { arbitrary: fc.constant<Op>({ _tag: "forceUnhealthy" }), weight: 1 },
  {
    arbitrary: fc.oneof(fc.constantFrom(0, 1), fc.integer({ min: 0, max: 60_000 })).map((ms): Op => ({
      _tag: "advance",
      ms
    })),
    weight: 6
  }
)

/**
 * Only calls and clock advances (no manual overrides, rate limits or refused keys), with
 * advances up to several windows: a circuit that closes after probing, reopens within its
 * window or after it, and closes again, many times over.
 */
const flappingOpArb: FastCheck.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.constant<Op>({ _tag: "acquire" }), weight: 14 },
  {
    arbitrary: fc.record({ pick: fc.nat(), latencyMs: latencyArb }).map((r): Op => ({ _tag: "success", ...r })),
    weight: 7
  },
  {
    arbitrary: fc.record({ pick: fc.nat(), latencyMs: latencyArb, jitter: jitterArb }).map((r): Op => ({
      _tag: "failure",
      countsAgainstHealth: true,
      ...r
    })),
    weight: 8
  },
  { arbitrary: fc.nat().map((pick): Op => ({ _tag: "cancel", pick })), weight: 2 },
  {
    arbitrary: fc.oneof(
      fc.constantFrom(0, 1),
      fc.integer({ min: 0, max: 10_000 }),
      fc.integer({ min: 0, max: 150_000 })
    )
      .map((ms): Op => ({ _tag: "advance", ms })),
    weight: 6
  }
)

interface Setup {
  readonly start: number
  readonly endpoint: Partial<Endpoint.Input>
  readonly policy: Health.PolicyInput
}

const setupArb: FastCheck.Arbitrary<Setup> = fc.record({
  start: fc.integer({ min: 0, max: 2_000_000_000_000 }),
  maxFailures: fc.integer({ min: 1, max: 5 }),
  endpointMaxFailures: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }),
  failureRateThreshold: fc.oneof(fc.constantFrom(0, 0.5, 1), fc.double({ min: 0, max: 1, noNaN: true })),
  failureRateMinRequests: fc.oneof(fc.constantFrom(0, 20), fc.integer({ min: 0, max: 12 })),
  // short ones often, for many open / half-open cycles
  recoveryTimeoutMs: fc.oneof(fc.integer({ min: 1, max: 5_000 }), fc.integer({ min: 1, max: 60_000 })),
  endpointRecoveryTimeout: fc.option(fc.oneof(fc.integer({ min: 1, max: 60_000 }), fc.constant("15 seconds")), {
    nil: undefined
  }),
  recoveryFactor: fc.oneof(fc.constantFrom(1, 2), fc.double({ min: 1, max: 4, noNaN: true })),
  maxRecoveryTimeoutMs: fc.oneof(fc.integer({ min: 0, max: 20_000 }), fc.integer({ min: 0, max: 300_000 })),
  halfOpenProbes: fc.integer({ min: 1, max: 3 }),
  halfOpenSuccesses: fc.integer({ min: 1, max: 3 }),
  slowStartMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 60_000 })),
  // short ones often, for probe-closed circuits that stay closed a whole window and reopen
  windowMs: fc.oneof(fc.integer({ min: 1, max: 5_000 }), fc.integer({ min: 1, max: 120_000 })),
  degradedErrorRate: fc.double({ min: 0, max: 1, noNaN: true }),
  degradedMinRequests: fc.integer({ min: 0, max: 10 }),
  degradedLatencyMs: fc.option(fc.integer({ min: 0, max: 5_000 }), { nil: undefined }),
  maxConcurrency: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined })
}).map((r): Setup => ({
  start: r.start,
  endpoint: {
    ...(r.maxConcurrency === undefined ? {} : { maxConcurrency: r.maxConcurrency }),
    ...(r.endpointMaxFailures === undefined ? {} : { maxFailures: r.endpointMaxFailures }),
    ...(r.endpointRecoveryTimeout === undefined ? {} : { recoveryTimeout: r.endpointRecoveryTimeout })
  },
  policy: {
    maxFailures: r.maxFailures,
    failureRateThreshold: r.failureRateThreshold,
    failureRateMinRequests: r.failureRateMinRequests,
    recoveryTimeout: r.recoveryTimeoutMs,
    recoveryFactor: r.recoveryFactor,
    // below recoveryTimeout sometimes: the cap is then raised to it
    maxRecoveryTimeout: r.maxRecoveryTimeoutMs,
    halfOpenProbes: r.halfOpenProbes,
    halfOpenSuccesses: r.halfOpenSuccesses,
    slowStart: r.slowStartMs,
    window: r.windowMs,
    degradedErrorRate: r.degradedErrorRate,
    degradedMinRequests: r.degradedMinRequests,
    ...(r.degradedLatencyMs === undefined ? {} : { degradedLatency: r.degradedLatencyMs })
  }
}))

/** How often each situation came up over a whole property run, to show it was exercised. */
interface Coverage {
  closed: number
  open: number
  openExpired: number
  /** Open for longer than recoveryTimeout: a repeated opening with a jittered, grown period. */
  openLonger: number
  halfOpen: number
  halfOpenFull: number
  /** Half-open with some successful probes, not yet enough to close. */
  halfOpenPartial: number
  held: number
  coolingDown: number
  atCapacity: number
  degradedClosed: number
  slowStarting: number
  probeSucceeded: number
  probeClosed: number
  probeFailed: number
  probeCancelled: number
  probeRateLimited: number
  probeUnauthorized: number
  /** A closed circuit opened by the recent error rate before maxFailures consecutive failures. */
  openedByErrorRate: number
  /** Closed by a probe less than a window ago: not cleanly closed yet. */
  closedWithinWindow: number
  /** Closed by a probe at least a window ago: cleanly closed again. */
  cleanlyClosedAfterProbe: number
  /** A probe-closed circuit opened again within the window: the open period kept growing. */
  reopenedWithinWindow: number
  /** A probe-closed circuit opened again after a whole window closed: back to recoveryTimeout. */
  reopenedAfterWindow: number
  rateLimited: number
  unauthorized: number
  /** A probe of an earlier half-open period ended (success, failure, rate limit, unauthorized or cancel). */
  staleProbeEnded: number
}

const emptyCoverage = (): Coverage => ({
  closed: 0,
  open: 0,
  openExpired: 0,
  openLonger: 0,
  halfOpen: 0,
  halfOpenFull: 0,
  halfOpenPartial: 0,
  held: 0,
  coolingDown: 0,
  atCapacity: 0,
  degradedClosed: 0,
  slowStarting: 0,
  probeSucceeded: 0,
  probeClosed: 0,
  probeFailed: 0,
  probeCancelled: 0,
  probeRateLimited: 0,
  probeUnauthorized: 0,
  openedByErrorRate: 0,
  closedWithinWindow: 0,
  cleanlyClosedAfterProbe: 0,
  reopenedWithinWindow: 0,
  reopenedAfterWindow: 0,
  rateLimited: 0,
  unauthorized: 0,
  staleProbeEnded: 0
})

/** The admission the documentation describes, in its order of precedence. */
const expectedAdmission = (s: State, now: number): EndpointState.Admission => {
  if (s.removed) return "removed"
  if (s.held) return "held-unhealthy"
  if (now < s.cooldownUntil) return "cooling-down"
  if (s.circuit._tag === "Open" && now < s.circuit.until) return "unhealthy"
  if (s.circuit._tag === "HalfOpen" && s.circuit.probes >= s.policy.halfOpenProbes) return "probing"
  const max = s.endpoint.maxConcurrency
  if (max !== undefined && s.active >= max) return "at-capacity"
  return s.circuit._tag === "Closed" ? "admit" : "probe"
}

/**
 * The open period the documentation describes for the `openings`-th opening in a row (0
 * for the first): recoveryTimeout exactly, then recoveryTimeout plus `jitter` of the growth
 * to recoveryTimeout x recoveryFactor^openings, capped at maxRecoveryTimeout.
 */
const expectedOpenMs = (p: Health.Resolved, openings: number, jitter: number): number => {
  const base = p.recoveryTimeoutMs
  if (openings === 0) return base
  const grown = Math.min(p.maxRecoveryTimeoutMs, base * p.recoveryFactor ** openings)
  return Math.round(base + jitter * (grown - base))
}

/**
 * Whether the documentation calls the circuit cleanly closed: Closed, and either never
 * closed by a probe or closed for at least a whole window since.
 */
const expectedCleanlyClosed = (s: State, closedAt: number, now: number): boolean =>
  s.circuit._tag === "Closed" && (closedAt === -Infinity || now - closedAt >= s.policy.windowMs)

/** The traffic share the documentation describes: 0.1 at the close, linearly up to 1 over slowStart. */
const expectedShare = (p: Health.Resolved, closedAt: number, now: number): number => {
  const since = now - closedAt
  return p.slowStartMs <= 0 || since >= p.slowStartMs ? 1 : 0.1 + 0.9 * since / p.slowStartMs
}

// Cheap assertions for the hot loop (vitest's `expect` is too slow for ~100,000 steps);
// fast-check reports the message with the shrunk counterexample.

/** JSON with non-finite numbers spelled out and object keys sorted, so that field order does not matter. */
const show = (value: unknown): string =>
  JSON.stringify(value, (_, v: unknown) => {
    if (typeof v === "number" && !Number.isFinite(v)) return String(v)
    if (typeof v === "object" && v !== null && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
    }
    return v
  })

const check = (condition: boolean, what: string, context?: unknown): void => {
  if (!condition) throw new Error(context === undefined ? what : `${what}: ${show(context)}`)
}

const same = (actual: unknown, expected: unknown, what: string): void => {
  if (!(Object.is(actual, expected) || show(actual) === show(expected))) {
    throw new Error(`${what}: expected ${show(expected)}, got ${show(actual)}`)
  }
}

const checkInvariants = (s: State, m: Model, coverage: Coverage) => {
  const now = m.now
  const p = s.policy
  const circuit = s.circuit
  const context = {
    now,
    circuit,
    active: s.active,
    held: s.held,
    consecutiveFailures: s.consecutiveFailures,
    cooldownUntil: s.cooldownUntil,
    openings: s.openings,
    closedAt: s.closedAt
  }

  // calls in flight
  check(s.active >= 0, "active >= 0", context)
  same(s.active, m.leases.length, "active = outstanding leases")
  const max = s.endpoint.maxConcurrency
  if (max !== undefined) check(s.active <= max, "active <= maxConcurrency", { max, ...context })
  // counters
  same(s.successes, m.successes, "successes")
  same(s.failures, m.failures, "failures")
  same(s.rateLimited, m.rateLimited, "rateLimited")
  check(s.rateLimited <= s.failures, "rate-limited calls are counted among the failures", context)
  same(s.consecutiveFailures, m.consecutive, "consecutiveFailures")
  same(s.latencyCount, m.latencies.length, "latencyCount")
  const average = EndpointState.averageLatencyMs(s)
  if (m.latencies.length === 0) same(average, undefined, "no average latency before a timed success")
  else {
    check(
      average !== undefined && average >= Math.min(...m.latencies) - 1e-9 && average <= Math.max(...m.latencies) + 1e-9,
      "average latency within the latencies reported",
      { average, latencies: m.latencies }
    )
  }
  const errorRate = EndpointState.errorRate(s)
  check(errorRate >= 0 && errorRate <= 1, "lifetime error rate in [0, 1]", errorRate)
  same(s.removed, false, "removed")
  same(s.held, m.held, "held")
  same(s.cooldownUntil, m.cooldownUntil, "cooldownUntil")
  same(s.openings, m.openings, "openings")
  same(s.closedAt, m.closedAt, "closedAt")
  check(Number.isInteger(s.openings) && s.openings >= 0, "openings a whole number >= 0", context)
  check(s.closedAt <= now, "closedAt <= now", context)

  // a legal circuit
  switch (circuit._tag) {
    case "Closed": {
      // maxFailures consecutive counting failures always open a closed circuit, and only
      // a success or forceHealthy (which reset the count) closes one again
      check(s.consecutiveFailures < p.maxFailures, "Closed => consecutiveFailures < maxFailures", {
        maxFailures: p.maxFailures,
        ...context
      })
      // a probe-close keeps the openings, forceHealthy forgets them: a closed circuit that
      // still counts openings was closed by a probe
      if (s.openings >= 1) {
        check(Number.isFinite(s.closedAt), "Closed with openings >= 1 => closed by a probe (closedAt finite)", context)
      }
      coverage.closed++
      if (Number.isFinite(s.closedAt)) {
        if (now - s.closedAt < p.windowMs) coverage.closedWithinWindow++
        else coverage.cleanlyClosedAfterProbe++
      }
      break
    }
    case "HalfOpen": {
      check(
        Number.isInteger(circuit.probes) && circuit.probes >= 0 && circuit.probes <= p.halfOpenProbes,
        "HalfOpen probes in [0, halfOpenProbes]",
        { halfOpenProbes: p.halfOpenProbes, ...context }
      )
      check(
        Number.isInteger(circuit.successes) && circuit.successes >= 0 && circuit.successes < p.halfOpenSuccesses,
        "HalfOpen successes in [0, halfOpenSuccesses)",
        { halfOpenSuccesses: p.halfOpenSuccesses, ...context }
      )
      check(circuit.since <= now, "HalfOpen since <= now", context)
      check(s.openings >= 1, "HalfOpen => openings >= 1", context)
      // every probe slot taken belongs to a probe of this half-open period still in flight;
      // probes left over from an earlier period hold none
      const currentProbes = m.leases.filter((l) => l.probe === circuit.since).length
      check(circuit.probes <= currentProbes, "HalfOpen probes <= current probe calls in flight", {
        leases: m.leases,
        ...context
      })
      // and each of those holds exactly one (periods' `since` never repeat: recoveryTimeout >= 1 ms)
      same(circuit.probes, currentProbes, "HalfOpen probes = current probe calls in flight")
      coverage.halfOpen++
      if (circuit.probes >= p.halfOpenProbes) coverage.halfOpenFull++
      if (circuit.successes > 0) coverage.halfOpenPartial++
      break
    }
    case "Open": {
      const period = circuit.until - circuit.since
      check(s.openings >= 1, "Open => openings >= 1", context)
      check(
        Number.isInteger(period) && period >= p.recoveryTimeoutMs && period <= p.maxRecoveryTimeoutMs,
        "Open until - since in [recoveryTimeoutMs, maxRecoveryTimeoutMs]",
        { recoveryTimeoutMs: p.recoveryTimeoutMs, maxRecoveryTimeoutMs: p.maxRecoveryTimeoutMs, ...context }
      )
      // an opening with exponent `openingsUsed` (0 after a clean close, the count before it
      // otherwise) leaves openings = openingsUsed + 1: no longer than the growth allows for it
      const grown = Math.min(p.maxRecoveryTimeoutMs, p.recoveryTimeoutMs * p.recoveryFactor ** (s.openings - 1))
      check(period <= grown + 0.5, "Open until - since <= recoveryTimeout x recoveryFactor^(openings - 1)", {
        grown,
        ...context
      })
      // the first opening after a clean close (or ever, or after forceHealthy) lasts
      // recoveryTimeout exactly
      if (s.openings === 1) same(period, p.recoveryTimeoutMs, "a first opening lasts recoveryTimeoutMs exactly")
      check(circuit.until > circuit.since, "Open until > since", context)
      check(circuit.since <= now, "Open since <= now", context)
      if (now < circuit.until) coverage.open++
      else coverage.openExpired++
      if (period > p.recoveryTimeoutMs) coverage.openLonger++
      break
    }
  }
  const openNow = circuit._tag === "Open" && now < circuit.until
  const coolingDown = now < s.cooldownUntil

  // a clean close: Closed for a whole window since a probe closed it (or never closed by one)
  const cleanlyClosed = EndpointState.cleanlyClosed(s, now)
  same(cleanlyClosed, expectedCleanlyClosed(s, m.closedAt, now), "cleanlyClosed")
  if (cleanlyClosed) same(circuit._tag, "Closed", "cleanlyClosed => Closed")

  // admission
  const admission = EndpointState.admission(s, now)
  same(admission, expectedAdmission(s, now), "admission")
  if (s.held) same(admission, "held-unhealthy", "admission when held")
  else if (coolingDown) same(admission, "cooling-down", "admission when cooling down")
  else if (openNow) same(admission, "unhealthy", "admission when open before until")
  if (admission === "admit" || admission === "probe") {
    check(!s.held && !coolingDown && !openNow, "never admits when held, cooling down or open before until", context)
    if (max !== undefined) check(s.active < max, "admits only below maxConcurrency", { max, ...context })
  }
  if (admission === "admit") same(circuit._tag, "Closed", "admit => Closed")
  if (admission === "probe") check(circuit._tag !== "Closed", "probe => not Closed", context)
  if (s.held) coverage.held++
  if (admission === "cooling-down") coverage.coolingDown++
  if (admission === "at-capacity") coverage.atCapacity++
  // the time an endpoint passed over frees up: known only for an open circuit or a cooldown,
  // and always in the future
  const availableAt = admission === "unhealthy" || admission === "cooling-down"
    ? Math.max(circuit._tag === "Open" ? circuit.until : 0, s.cooldownUntil)
    : undefined
  same(EndpointState.availableAt(s, now), availableAt, "availableAt")
  if (availableAt !== undefined) check(availableAt > now, "availableAt is in the future", context)

  // status
  const status = EndpointState.status(s, now)
  same(
    status === "unhealthy",
    s.held || s.removed || openNow || coolingDown,
    "unhealthy <=> held or removed or (Open and now < until) or now < cooldownUntil"
  )
  const routable = !s.held && !coolingDown
  if (status === "healthy") check(circuit._tag === "Closed" && routable, "healthy => Closed and routable", context)
  if (routable && circuit._tag !== "Closed" && !openNow) same(status, "degraded", "half-open or probeable => degraded")
  if (routable && circuit._tag === "Closed") {
    // without recent failures and without slow calls, a closed endpoint is healthy
    const latency = Health.recentLatencyMs(s.recent)
    const slow = latency !== undefined && latency >= p.degradedLatencyMs
    if (s.recent.failures === 0 && !slow) same(status, "healthy", "no recent failure, not slow => healthy")
    // slow over at least degradedMinRequests recent timed successes => degraded
    if (slow && Health.recentTimed(s.recent, now, p.windowMs) >= p.degradedMinRequests) {
      same(status, "degraded", "slow over degradedMinRequests timed successes => degraded")
    }
    if (status === "degraded") coverage.degradedClosed++
  }

  // slow start
  const share = EndpointState.trafficShare(s, now)
  check(share >= 0.1 && share <= 1, "trafficShare in [0.1, 1]", { share, ...context })
  check(Math.abs(share - expectedShare(p, s.closedAt, now)) <= 1e-12, "trafficShare ramps linearly over slowStart", {
    share,
    slowStartMs: p.slowStartMs,
    ...context
  })
  check(share <= EndpointState.trafficShare(s, now + 1), "trafficShare does not fall as time passes", context)
  if (share < 1) coverage.slowStarting++

  // the recent window
  const recent = s.recent
  const rate = Health.recentErrorRate(recent)
  check(rate >= 0 && rate <= 1, "recent error rate in [0, 1]", recent)
  check(recent.failures >= 0 && recent.failures <= recent.calls, "0 <= recent failures <= recent calls", recent)
  check(recent.timed <= recent.calls, "recent timed <= recent calls", recent)
  check(recent.at <= now, "recent.at <= now", { now, recent })
  const calls = Health.recentCalls(recent, now, p.windowMs)
  check(calls >= 0 && calls <= recent.calls, "recent calls only decay", { now, calls, recent })
}

const pickLease = (m: Model, pick: number): number => pick % m.leases.length

const withoutLease = (m: Model, index: number): ReadonlyArray<Lease> => m.leases.filter((_, i) => i !== index)

/** Whether the lease is a probe of the current half-open period (a late probe of an earlier one is not). */
const isCurrentProbe = (s: State, lease: Lease): s is State & { readonly circuit: HalfOpen } =>
  lease.probe !== undefined && s.circuit._tag === "HalfOpen" && s.circuit.since === lease.probe

const countStale = (s: State, lease: Lease, coverage: Coverage): void => {
  if (lease.probe !== undefined && !isCurrentProbe(s, lease)) coverage.staleProbeEnded++
}

/** The circuit after a call of `lease` ended without a health verdict: a current probe gives its slot back. */
const checkSlotGivenBack = (s: State, after: State, lease: Lease, what: string): void => {
  if (isCurrentProbe(s, lease)) {
    same(
      after.circuit,
      {
        _tag: "HalfOpen",
        probes: Math.max(0, s.circuit.probes - 1),
        successes: s.circuit.successes,
        since: s.circuit.since
      },
      `${what} frees the probe slot`
    )
  } else check(after.circuit === s.circuit, `${what} leaves the circuit alone`)
}

/** What no call outcome changes. */
const checkOutcomeKeeps = (s: State, after: State, what: string): void => {
  same(after.active, s.active - 1, `${what} gives its slot back`)
  same(after.removed, s.removed, `${what} keeps removed`)
  if (after.circuit._tag !== "Closed" || s.circuit._tag === "Closed") {
    same(after.closedAt, s.closedAt, `${what} that does not close keeps closedAt`)
  }
}

/** Applies one operation to the state and the model, checking the operation's own postconditions. */
const step = (s: State, m: Model, op: Op, coverage: Coverage): readonly [State, Model] => {
  const now = m.now
  const p = s.policy
  switch (op._tag) {
    case "advance": {
      return [s, { ...m, now: now + op.ms }]
    }
    case "acquire": {
      const admission = EndpointState.admission(s, now)
      if (admission !== "admit" && admission !== "probe") return [s, m]
      const probe = admission === "probe"
      const after = EndpointState.onAcquire(s, probe)
      same(after.active, s.active + 1, "acquire takes a slot")
      same([after.openings, after.closedAt, after.cooldownUntil], [s.openings, s.closedAt, s.cooldownUntil], "acquire")
      if (probe) {
        check(s.circuit._tag !== "Closed", "a probe is admitted only when not Closed", s.circuit)
        if (s.circuit._tag === "Closed") return [after, m]
        // the half-open period keeps the `since` of the open period it came from, and a
        // new one starts without successes
        same(
          after.circuit,
          {
            _tag: "HalfOpen",
            probes: s.circuit._tag === "HalfOpen" ? s.circuit.probes + 1 : 1,
            successes: s.circuit._tag === "HalfOpen" ? s.circuit.successes : 0,
            since: s.circuit.since
          },
          "a probe takes a probe slot"
        )
        same(EndpointState.probeOf(after), s.circuit.since, "a probe's identity is the period's since")
      } else {
        check(after.circuit === s.circuit, "a plain acquire leaves the circuit alone")
        same(EndpointState.probeOf(after), undefined, "an ordinary call has no probe identity")
      }
      const lease: Lease = { probe: probe ? EndpointState.probeOf(after) : undefined }
      return [after, { ...m, leases: [...m.leases, lease] }]
    }
    case "success": {
      if (m.leases.length === 0) return [s, m]
      const index = pickLease(m, op.pick)
      const lease = m.leases[index]
      const after = EndpointState.onSuccess(s, now, op.latencyMs, lease.probe)
      checkOutcomeKeeps(s, after, "a success")
      same(after.consecutiveFailures, 0, "a success resets consecutiveFailures")
      const recorded = Health.record(s.recent, now, p.windowMs, false, op.latencyMs)
      let closedAt = m.closedAt
      if (isCurrentProbe(s, lease)) {
        coverage.probeSucceeded++
        if (s.circuit.successes + 1 >= p.halfOpenSuccesses) {
          same(after.circuit, Health.closed, "the halfOpenSuccesses-th successful probe closes the circuit")
          same(after.openings, s.openings, "a probe-close keeps the openings until a clean close")
          same(after.closedAt, now, "a probe-close starts the slow start")
          // the outage's errors are forgotten, so it is healthy at once (unless held or resting)
          same(after.recent, Health.emptyRecent(now), "a probe-close clears the recent window")
          same(
            EndpointState.status(after, now),
            s.held || now < s.cooldownUntil ? "unhealthy" : "healthy",
            "healthy right after a probe-close"
          )
          same(EndpointState.cleanlyClosed(after, now), false, "a probe-close is not a clean close yet")
          closedAt = now
          coverage.probeClosed++
        } else {
          same(after.recent, recorded, "a successful probe that does not close is recorded")
          same(
            after.circuit,
            {
              _tag: "HalfOpen",
              probes: Math.max(0, s.circuit.probes - 1),
              successes: s.circuit.successes + 1,
              since: s.circuit.since
            },
            "an earlier successful probe frees its slot and counts"
          )
          same(after.openings, s.openings, "a successful probe that does not close keeps the openings")
        }
      } else {
        // a late probe of an earlier period counts as an ordinary call
        same(after.recent, recorded, "a success is recorded")
        check(after.circuit === s.circuit, "any other success leaves the circuit alone")
        same(after.openings, s.openings, "any other success keeps the openings")
        countStale(s, lease, coverage)
      }
      same(after.held, s.held, "a success does not release a hold")
      same(after.cooldownUntil, s.cooldownUntil, "a success does not end a cooldown")
      return [after, {
        ...m,
        leases: withoutLease(m, index),
        successes: m.successes + 1,
        consecutive: 0,
        latencies: op.latencyMs === undefined ? m.latencies : [...m.latencies, op.latencyMs],
        closedAt
      }]
    }
    case "failure": {
      if (m.leases.length === 0) return [s, m]
      const index = pickLease(m, op.pick)
      const lease = m.leases[index]
      const after = EndpointState.onFailure(s, now, op.latencyMs, lease.probe, op.countsAgainstHealth, op.jitter)
      checkOutcomeKeeps(s, after, "a failure")
      const consecutive = op.countsAgainstHealth ? m.consecutive + 1 : m.consecutive
      let openings = m.openings
      countStale(s, lease, coverage)
      if (op.countsAgainstHealth) {
        const recent = Health.record(s.recent, now, p.windowMs, true, op.latencyMs)
        same(after.recent, recent, "a counting failure is recorded")
        const failedProbe = isCurrentProbe(s, lease)
        const byCount = consecutive >= p.maxFailures
        const byRate = Health.recentErrorRate(recent) >= p.failureRateThreshold &&
          Health.recentCalls(recent, now, p.windowMs) >= p.failureRateMinRequests
        const opens = failedProbe || (s.circuit._tag === "Closed" && (byCount || byRate))
        if (opens) {
          // after a clean close the growth starts over; otherwise it continues from the count
          const clean = expectedCleanlyClosed(s, m.closedAt, now)
          const openingsUsed = clean ? 0 : m.openings
          same(
            after.circuit,
            { _tag: "Open", since: now, until: now + expectedOpenMs(p, openingsUsed, op.jitter) },
            "the circuit opens now, for the open period of openingsUsed"
          )
          same(after.openings, openingsUsed + 1, "an opening is counted from openingsUsed")
          openings = openingsUsed + 1
          if (failedProbe) coverage.probeFailed++
          else if (!byCount) coverage.openedByErrorRate++
          if (!failedProbe && m.openings >= 1) {
            if (clean) coverage.reopenedAfterWindow++
            else coverage.reopenedWithinWindow++
          }
        } else {
          check(after.circuit === s.circuit, "a failure that does not open leaves the circuit alone")
          same(after.openings, s.openings, "a failure that does not open keeps the openings")
        }
      } else {
        // not the endpoint's fault: the circuit and the recent window are untouched, but a
        // probe gives its slot back
        check(after.recent === s.recent, "a non-counting failure leaves the recent window alone")
        checkSlotGivenBack(s, after, lease, "a non-counting failure")
        same(after.openings, s.openings, "a non-counting failure keeps the openings")
      }
      same(after.held, s.held, "a failure does not change a hold")
      same(after.cooldownUntil, s.cooldownUntil, "a failure does not change a cooldown")
      return [after, { ...m, leases: withoutLease(m, index), failures: m.failures + 1, consecutive, openings }]
    }
    case "rateLimited": {
      if (m.leases.length === 0) return [s, m]
      const index = pickLease(m, op.pick)
      const lease = m.leases[index]
      const until = now + op.untilInMs
      const after = EndpointState.onRateLimited(s, until, lease.probe)
      checkOutcomeKeeps(s, after, "a rate-limited call")
      same(after.failures, s.failures + 1, "a rate-limited call is a failure")
      same(after.rateLimited, s.rateLimited + 1, "a rate-limited call is counted")
      same(
        after.cooldownUntil,
        Math.max(s.cooldownUntil, until),
        "a rate limit rests the endpoint until the later until"
      )
      check(after.recent === s.recent, "a rate-limited call leaves the recent window alone")
      same(after.consecutiveFailures, s.consecutiveFailures, "a rate-limited call is no health failure")
      same([after.held, after.openings], [s.held, s.openings], "a rate-limited call keeps the hold and the openings")
      checkSlotGivenBack(s, after, lease, "a rate-limited call")
      if (isCurrentProbe(s, lease)) coverage.probeRateLimited++
      countStale(s, lease, coverage)
      coverage.rateLimited++
      return [after, {
        ...m,
        leases: withoutLease(m, index),
        failures: m.failures + 1,
        rateLimited: m.rateLimited + 1,
        cooldownUntil: Math.max(m.cooldownUntil, until)
      }]
    }
    case "unauthorized": {
      if (m.leases.length === 0) return [s, m]
      const index = pickLease(m, op.pick)
      const lease = m.leases[index]
      const after = EndpointState.onUnauthorized(s, lease.probe)
      checkOutcomeKeeps(s, after, "an unauthorized call")
      same(after.failures, s.failures + 1, "an unauthorized call is a failure")
      same(after.held, true, "an unauthorized call holds the endpoint out")
      check(after.recent === s.recent, "an unauthorized call leaves the recent window alone")
      same(after.consecutiveFailures, s.consecutiveFailures, "an unauthorized call is no consecutive failure")
      same(
        [after.rateLimited, after.cooldownUntil, after.openings],
        [s.rateLimited, s.cooldownUntil, s.openings],
        "an unauthorized call keeps the cooldown and the openings"
      )
      checkSlotGivenBack(s, after, lease, "an unauthorized call")
      same(EndpointState.admission(after, now), "held-unhealthy", "unauthorized => held-unhealthy")
      if (isCurrentProbe(s, lease)) coverage.probeUnauthorized++
      countStale(s, lease, coverage)
      coverage.unauthorized++
      return [after, { ...m, leases: withoutLease(m, index), failures: m.failures + 1, held: true }]
    }
    case "cancel": {
      if (m.leases.length === 0) return [s, m]
      const index = pickLease(m, op.pick)
      const lease = m.leases[index]
      const after = EndpointState.onCancel(s, lease.probe)
      checkOutcomeKeeps(s, after, "a cancelled call")
      check(after.recent === s.recent, "a cancelled call leaves the recent window alone")
      same(
        [after.successes, after.failures, after.consecutiveFailures, after.rateLimited],
        [s.successes, s.failures, s.consecutiveFailures, s.rateLimited],
        "a cancelled call counts neither way"
      )
      same([after.held, after.openings, after.cooldownUntil], [s.held, s.openings, s.cooldownUntil], "a cancel")
      checkSlotGivenBack(s, after, lease, "a cancelled call")
      if (isCurrentProbe(s, lease)) coverage.probeCancelled++
      countStale(s, lease, coverage)
      return [after, { ...m, leases: withoutLease(m, index) }]
    }
    case "forceHealthy": {
      const after = EndpointState.forceHealthy(s)
      same(after.circuit, Health.closed, "forceHealthy closes")
      same(after.held, false, "forceHealthy releases a hold")
      same(after.consecutiveFailures, 0, "forceHealthy forgets failures")
      same(after.openings, 0, "forceHealthy forgets the openings")
      same(after.cooldownUntil, 0, "forceHealthy ends a cooldown")
      same(after.closedAt, s.closedAt, "forceHealthy starts no slow start")
      same(after.recent, Health.emptyRecent(s.recent.at), "forceHealthy clears the recent window")
      same(EndpointState.status(after, now), "healthy", "healthy right after forceHealthy")
      same(after.active, s.active, "forceHealthy keeps the calls in flight")
      same(
        [after.successes, after.failures, after.rateLimited],
        [s.successes, s.failures, s.rateLimited],
        "forceHealthy keeps the counters"
      )
      return [after, { ...m, consecutive: 0, held: false, cooldownUntil: 0, openings: 0 }]
    }
    case "forceUnhealthy": {
      const after = EndpointState.forceUnhealthy(s)
      same(after.held, true, "forceUnhealthy holds")
      check(after.circuit === s.circuit, "forceUnhealthy leaves the circuit alone")
      same([after.openings, after.cooldownUntil], [s.openings, s.cooldownUntil], "forceUnhealthy")
      same(EndpointState.status(after, now), "unhealthy", "held => unhealthy")
      same(EndpointState.admission(after, now), "held-unhealthy", "held => held-unhealthy")
      return [after, { ...m, held: true }]
    }
  }
}

describe("EndpointState properties", () => {
  it("invariants hold after every step of random call sequences", () => {
    const coverage = emptyCoverage()
    const run = (ops: FastCheck.Arbitrary<Op>, numRuns: number) =>
      FastCheck.assert(
        FastCheck.property(setupArb, fc.array(ops, { minLength: 1, maxLength: 200, size: "max" }), (setup, ops) => {
          const endpoint = endpointOf(setup.endpoint)
          const policy = Health.resolve(policyOf(setup.policy), endpoint)
          let s = EndpointState.make(7, endpoint, policy, setup.start)
          let m = initialModel(setup.start)
          checkInvariants(s, m, coverage)
          for (const op of ops) {
            ;[s, m] = step(s, m, op, coverage)
            checkInvariants(s, m, coverage)
          }
          // draining every call in flight leaves nothing active
          while (m.leases.length > 0) {
            ;[s, m] = step(s, m, { _tag: "cancel", pick: 0 }, coverage)
            checkInvariants(s, m, coverage)
          }
          expect(s.active).toBe(0)
        }),
        { numRuns }
      )
    // enough runs for the rarer situations (an unauthorized probe) to come up many times
    run(opArb, 2000)
    // and for a probe-closed circuit to reopen, within its window and after it, many times
    run(flappingOpArb, 300)
    // every situation came up many times
    for (const [situation, count] of Object.entries(coverage)) {
      expect(count, situation).toBeGreaterThan(20)
    }
    expect(coverage.closed).toBeGreaterThan(10_000)
  })

  it("only admitting through `admission`, maxConcurrency is never exceeded", () => {
    FastCheck.assert(
      FastCheck.property(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.oneof(fc.constant("acquire" as const), fc.constant("release" as const)), { maxLength: 200 }),
        (maxConcurrency, ops) => {
          let s = stateOf({ maxConcurrency })
          let peak = 0
          for (const op of ops) {
            if (op === "acquire") {
              const admission = EndpointState.admission(s, T0)
              if (admission === "admit") s = EndpointState.onAcquire(s, false)
              else expect(admission).toBe("at-capacity")
            } else if (s.active > 0) s = EndpointState.onSuccess(s, T0, 10, undefined)
            peak = Math.max(peak, s.active)
            expect(s.active).toBeLessThanOrEqual(maxConcurrency)
            expect(EndpointState.admission(s, T0)).toBe(s.active < maxConcurrency ? "admit" : "at-capacity")
          }
          expect(peak).toBeLessThanOrEqual(maxConcurrency)
        }
      ),
      { numRuns: 500 }
    )
  })

  it("the recent error rate stays within [0, 1] and decays without new calls", () => {
    FastCheck.assert(
      FastCheck.property(
        fc.integer({ min: 1, max: 100_000 }),
        fc.array(
          fc.record({ dt: fc.integer({ min: 0, max: 100_000 }), failed: fc.boolean(), latency: latencyArb }),
          { maxLength: 100 }
        ),
        (windowMs, calls) => {
          let recent = Health.emptyRecent(T0)
          let now = T0
          for (const call of calls) {
            now += call.dt
            const before = Health.recentCalls(recent, now, windowMs)
            recent = Health.record(recent, now, windowMs, call.failed, call.latency)
            expect(recent.calls).toBeCloseTo(before + 1, 6)
            const rate = Health.recentErrorRate(recent)
            expect(rate).toBeGreaterThanOrEqual(0)
            expect(rate).toBeLessThanOrEqual(1)
            // later, fewer recent calls, the same rate
            expect(Health.recentCalls(recent, now + windowMs, windowMs)).toBeCloseTo(recent.calls / Math.E, 6)
          }
        }
      ),
      { numRuns: 500 }
    )
  })
})

// ---------------------------------------------------------------------------------------
// Examples
// ---------------------------------------------------------------------------------------

/** Acquires one call (which must be admitted) and returns the state and the call's probe identity. */
const acquire = (s: State, now: number): readonly [State, EndpointState.Probe] => {
  const admission = EndpointState.admission(s, now)
  expect(["admit", "probe"]).toContain(admission)
  const after = EndpointState.onAcquire(s, admission === "probe")
  return [after, admission === "probe" ? EndpointState.probeOf(after) : undefined]
}

const succeed = (s: State, now: number, latencyMs?: number): State => {
  const [acquired, probe] = acquire(s, now)
  return EndpointState.onSuccess(acquired, now, latencyMs, probe)
}

const fail = (s: State, now: number, countsAgainstHealth = true, jitter = 0): State => {
  const [acquired, probe] = acquire(s, now)
  return EndpointState.onFailure(acquired, now, undefined, probe, countsAgainstHealth, jitter)
}

const repeat = (n: number, s: State, f: (s: State) => State): State => {
  let out = s
  for (let i = 0; i < n; i++) out = f(out)
  return out
}

/**
 * Three failures at T0. Default policy: maxFailures 3, error rate 0.5 over 20 calls,
 * recoveryTimeout 5 s (x2 per repeated opening, up to 5 min), 1 probe, 1 successful probe
 * closes, slow start 30 s, window 30 s, degraded at 0.2 over 5 calls.
 */
const opened = (policy: Health.Policy = Health.defaultPolicy): State =>
  repeat(3, stateOf({}, policy), (s) => fail(s, T0))

describe("EndpointState examples", () => {
  it("3 consecutive failures open the circuit for the default 5 seconds", () => {
    expect(Duration.toMillis(Health.defaultPolicy.recoveryTimeout)).toBe(5_000)
    const two = repeat(2, stateOf(), (s) => fail(s, T0))
    expect(two.circuit).toEqual({ _tag: "Closed" })
    expect(two.consecutiveFailures).toBe(2)
    expect(two.openings).toBe(0)
    // too few calls for the error rate to count
    expect(EndpointState.status(two, T0)).toBe("healthy")

    const s = fail(two, T0)
    expect(s.circuit).toEqual({ _tag: "Open", since: T0, until: T0 + 5_000 })
    expect(s.consecutiveFailures).toBe(3)
    expect(s.openings).toBe(1)
    expect(EndpointState.status(s, T0)).toBe("unhealthy")
    expect(EndpointState.admission(s, T0)).toBe("unhealthy")
    expect(EndpointState.availableAt(s, T0)).toBe(T0 + 5_000)
  })

  it("a success in between resets the count", () => {
    let s = repeat(2, stateOf(), (s) => fail(s, T0))
    s = succeed(s, T0)
    s = repeat(2, s, (s) => fail(s, T0))
    expect(s.circuit._tag).toBe("Closed")
    expect(s.consecutiveFailures).toBe(2)
  })

  it("an endpoint's maxFailures and recoveryTimeout override the policy", () => {
    const s = fail(stateOf({ maxFailures: 1, recoveryTimeout: "7 seconds" }), T0)
    expect(s.circuit).toEqual({ _tag: "Open", since: T0, until: T0 + 7_000 })
    // an endpoint's recoveryTimeout longer than maxRecoveryTimeout raises the cap with it
    expect(stateOf({ recoveryTimeout: "10 minutes" }).policy.maxRecoveryTimeoutMs).toBe(600_000)
    expect(stateOf({ recoveryTimeout: "7 seconds" }).policy.maxRecoveryTimeoutMs).toBe(300_000)
  })

  it("Open admits a probe once recoveryTimeout has passed", () => {
    const s = opened()
    expect(EndpointState.admission(s, T0 + 4_999)).toBe("unhealthy")
    expect(EndpointState.status(s, T0 + 4_999)).toBe("unhealthy")
    expect(EndpointState.admission(s, T0 + 5_000)).toBe("probe")
    expect(EndpointState.status(s, T0 + 5_000)).toBe("degraded")

    const [probing, probe] = acquire(s, T0 + 5_000)
    // the probe is identified by the open period it probes
    expect(probe).toBe(T0)
    expect(probing.circuit).toEqual({ _tag: "HalfOpen", probes: 1, successes: 0, since: T0 })
    // one probe at a time; the others skip it
    expect(EndpointState.admission(probing, T0 + 5_000)).toBe("probing")
    expect(EndpointState.status(probing, T0 + 5_000)).toBe("degraded")
  })

  it("a successful probe closes the circuit", () => {
    const [probing, probe] = acquire(opened(), T0 + 5_000)
    const s = EndpointState.onSuccess(probing, T0 + 6_000, 1_000, probe)
    expect(s.circuit).toEqual({ _tag: "Closed" })
    expect(s.consecutiveFailures).toBe(0)
    expect(s.active).toBe(0)
    // the opening is remembered until the endpoint has stayed closed for a whole window
    expect(s.openings).toBe(1)
    expect(s.closedAt).toBe(T0 + 6_000)
    expect(EndpointState.cleanlyClosed(s, T0 + 6_000)).toBe(false)
    // the outage's failures (and the probe itself) leave the recent window
    expect(s.recent).toEqual(Health.emptyRecent(T0 + 6_000))
    expect([s.successes, s.failures]).toEqual([1, 3])
    expect(EndpointState.admission(s, T0 + 6_000)).toBe("admit")
    expect(EndpointState.status(s, T0 + 6_000)).toBe("healthy")
  })

  it("a failed probe opens the circuit again with a new until", () => {
    const [probing, probe] = acquire(opened(), T0 + 5_000)
    // the second opening in a row: recoveryTimeout plus no growth with jitter 0
    const s = EndpointState.onFailure(probing, T0 + 7_000, undefined, probe)
    expect(s.circuit).toEqual({ _tag: "Open", since: T0 + 7_000, until: T0 + 12_000 })
    expect(s.openings).toBe(2)
    expect(s.closedAt).toBe(-Infinity)
    expect(EndpointState.admission(s, T0 + 11_999)).toBe("unhealthy")
    expect(EndpointState.admission(s, T0 + 12_000)).toBe("probe")
  })

  it("an interrupted probe frees its probe slot and counts neither way", () => {
    const [probing, probe] = acquire(opened(), T0 + 5_000)
    const s = EndpointState.onCancel(probing, probe)
    expect(s.circuit).toEqual({ _tag: "HalfOpen", probes: 0, successes: 0, since: T0 })
    expect(s.active).toBe(0)
    expect([s.successes, s.failures, s.consecutiveFailures]).toEqual([0, 3, 3])
    expect(EndpointState.admission(s, T0 + 5_000)).toBe("probe")
  })

  it("a probe failing for a reason that is not the endpoint's frees the slot without reopening", () => {
    const [probing, probe] = acquire(opened(), T0 + 5_000)
    const s = EndpointState.onFailure(probing, T0 + 5_500, 500, probe, false)
    expect(s.circuit).toEqual({ _tag: "HalfOpen", probes: 0, successes: 0, since: T0 })
    expect(s.openings).toBe(1)
    expect(EndpointState.admission(s, T0 + 5_500)).toBe("probe")
  })

  it("failures that do not count against health never open the circuit", () => {
    const s = repeat(10, stateOf(), (s) => fail(s, T0, false))
    expect(s.circuit).toEqual({ _tag: "Closed" })
    expect(s.failures).toBe(10)
    expect(s.consecutiveFailures).toBe(0)
    expect(s.recent.calls).toBe(0)
    expect(EndpointState.status(s, T0)).toBe("healthy")
    expect(EndpointState.errorRate(s)).toBe(1)
  })

  it("with halfOpenSuccesses 2, two successful probes close the circuit", () => {
    const policy = policyOf({ halfOpenSuccesses: 2 })
    const [first, p1] = acquire(opened(policy), T0 + 5_000)
    const one = EndpointState.onSuccess(first, T0 + 5_100, 100, p1)
    // one is not enough: the probe gives its slot back and its success is counted
    expect(one.circuit).toEqual({ _tag: "HalfOpen", probes: 0, successes: 1, since: T0 })
    expect(one.consecutiveFailures).toBe(0)
    expect([one.openings, one.closedAt]).toEqual([1, -Infinity])
    expect(EndpointState.admission(one, T0 + 5_100)).toBe("probe")
    expect(EndpointState.status(one, T0 + 5_100)).toBe("degraded")

    const [second, p2] = acquire(one, T0 + 5_200)
    expect(p2).toBe(T0)
    expect(second.circuit).toEqual({ _tag: "HalfOpen", probes: 1, successes: 1, since: T0 })
    expect(EndpointState.admission(second, T0 + 5_200)).toBe("probing")
    const two = EndpointState.onSuccess(second, T0 + 5_300, 100, p2)
    expect(two.circuit).toEqual({ _tag: "Closed" })
    expect([two.openings, two.closedAt, two.active]).toEqual([1, T0 + 5_300, 0])
    expect(two.recent).toEqual(Health.emptyRecent(T0 + 5_300))
    expect(EndpointState.admission(two, T0 + 5_300)).toBe("admit")
    expect(EndpointState.status(two, T0 + 5_300)).toBe("healthy")

    // a failed probe after one success opens the circuit again; the next period starts over
    const reopened = EndpointState.onFailure(second, T0 + 5_300, undefined, p2)
    expect(reopened.circuit).toEqual({ _tag: "Open", since: T0 + 5_300, until: T0 + 10_300 })
    expect(reopened.openings).toBe(2)
    const [again, p3] = acquire(reopened, T0 + 10_300)
    expect(p3).toBe(T0 + 5_300)
    expect(again.circuit).toEqual({ _tag: "HalfOpen", probes: 1, successes: 0, since: T0 + 5_300 })
    expect(EndpointState.onSuccess(again, T0 + 10_400, 100, p3).circuit).toEqual({
      _tag: "HalfOpen",
      probes: 0,
      successes: 1,
      since: T0 + 5_300
    })

    // with two probes at once, both must succeed
    const both = policyOf({ halfOpenSuccesses: 2, halfOpenProbes: 2 })
    const [withA, a] = acquire(opened(both), T0 + 5_000)
    const [withB, b] = acquire(withA, T0 + 5_000)
    expect(withB.circuit).toEqual({ _tag: "HalfOpen", probes: 2, successes: 0, since: T0 })
    const afterA = EndpointState.onSuccess(withB, T0 + 5_100, 100, a)
    expect(afterA.circuit).toEqual({ _tag: "HalfOpen", probes: 1, successes: 1, since: T0 })
    expect(EndpointState.onSuccess(afterA, T0 + 5_200, 100, b).circuit).toEqual({ _tag: "Closed" })
  })

  it("the circuit opens when the recent error rate reaches failureRateThreshold over failureRateMinRequests calls", () => {
    // maxFailures out of the way: only the error rate (defaults 0.5 over 20 calls) can open it
    const policy = policyOf({ maxFailures: 100 })
    const alternate = (n: number, s: State, now: number) => repeat(n, s, (t) => fail(succeed(t, now), now))
    // 9 failures in 18 calls: the rate is reached, the volume not
    const nine = alternate(9, stateOf({}, policy), T0)
    expect(Health.recentErrorRate(nine.recent)).toBe(0.5)
    expect(Health.recentCalls(nine.recent, T0, 30_000)).toBe(18)
    expect(nine.circuit).toEqual({ _tag: "Closed" })
    // 10 in 20: both
    const ten = alternate(1, nine, T0)
    expect(ten.circuit).toEqual({ _tag: "Open", since: T0, until: T0 + 5_000 })
    expect(ten.consecutiveFailures).toBe(1)
    expect(ten.openings).toBe(1)

    // just under the rate over enough calls: 10 failures in 21 calls
    const under = repeat(10, repeat(11, stateOf({}, policy), (s) => succeed(s, T0)), (s) => fail(s, T0))
    expect(Health.recentErrorRate(under.recent)).toBeCloseTo(10 / 21, 12)
    expect(under.circuit).toEqual({ _tag: "Closed" })
    // the next failure makes 11 in 22
    expect(fail(under, T0).circuit).toEqual({ _tag: "Open", since: T0, until: T0 + 5_000 })

    // the volume is the decayed one: the same 20th call 30 s later sees 19 / e + 1 = 8 calls
    const nineteen = succeed(nine, T0)
    const late = fail(nineteen, T0 + 30_000)
    expect(Health.recentCalls(late.recent, T0 + 30_000, 30_000)).toBeCloseTo(19 / Math.E + 1, 9)
    expect(Health.recentErrorRate(late.recent)).toBeGreaterThan(0.5)
    expect(late.circuit).toEqual({ _tag: "Closed" })

    // failures that do not count against health do not count toward the rate either
    const excused = repeat(20, stateOf({}, policy), (s) => fail(s, T0, false))
    expect(excused.circuit).toEqual({ _tag: "Closed" })
    // and a lower volume or threshold opens sooner: 2 failures in 4 calls
    const eager = alternate(2, stateOf({}, policyOf({ maxFailures: 100, failureRateMinRequests: 4 })), T0)
    expect(eager.circuit).toEqual({ _tag: "Open", since: T0, until: T0 + 5_000 })
    const strict = policyOf({ maxFailures: 100, failureRateThreshold: 0.8 })
    expect(alternate(10, stateOf({}, strict), T0).circuit).toEqual({ _tag: "Closed" })
  })

  it("each opening in a row lasts between recoveryTimeout and recoveryTimeout x recoveryFactor^n, jittered", () => {
    // the first opening lasts recoveryTimeout exactly, whatever the jitter
    const first = repeat(3, stateOf(), (s) => fail(s, T0, true, 0.9))
    expect(first.circuit).toEqual({ _tag: "Open", since: T0, until: T0 + 5_000 })
    const [probing, probe] = acquire(first, T0 + 5_000)
    const second = (jitter: number, p: State = probing) =>
      EndpointState.onFailure(p, T0 + 5_000, undefined, probe, true, jitter)
    // the second: between 5 s and 5 s x 2, the jitter choosing where
    for (const [jitter, ms] of [[0, 5_000], [0.001, 5_005], [0.25, 6_250], [0.5, 7_500], [0.999, 9_995]]) {
      const s = second(jitter)
      expect(s.circuit).toEqual({ _tag: "Open", since: T0 + 5_000, until: T0 + 5_000 + ms })
      expect(s.openings).toBe(2)
    }
    for (let jitter = 0; jitter < 1; jitter += 0.01) {
      const c = second(jitter).circuit
      if (c._tag !== "Open") throw new Error(`not open: ${c._tag}`)
      expect(c.until - c.since).toBeGreaterThanOrEqual(5_000)
      expect(c.until - c.since).toBeLessThanOrEqual(10_000)
    }
    // the third: between 5 s and 5 s x 4
    const [probingAgain, probeAgain] = acquire(second(0.5), T0 + 12_500)
    const third = (jitter: number) =>
      EndpointState.onFailure(probingAgain, T0 + 12_500, undefined, probeAgain, true, jitter)
    expect(third(0).circuit).toEqual({ _tag: "Open", since: T0 + 12_500, until: T0 + 17_500 })
    expect(third(0.5).circuit).toEqual({ _tag: "Open", since: T0 + 12_500, until: T0 + 25_000 })
    expect(third(0.999).circuit).toEqual({ _tag: "Open", since: T0 + 12_500, until: T0 + 32_485 })
    expect(third(0.5).openings).toBe(3)

    // recoveryFactor sets the growth and maxRecoveryTimeout caps it
    const tripled = acquire(opened(policyOf({ recoveryFactor: 3 })), T0 + 5_000)
    expect(second(0.5, tripled[0]).circuit).toEqual({ _tag: "Open", since: T0 + 5_000, until: T0 + 15_000 })
    const capped = acquire(opened(policyOf({ maxRecoveryTimeout: "8 seconds" })), T0 + 5_000)
    expect(second(0.999, capped[0]).circuit).toEqual({ _tag: "Open", since: T0 + 5_000, until: T0 + 12_997 })
    const flat = acquire(opened(policyOf({ recoveryFactor: 1 })), T0 + 5_000)
    expect(second(0.999, flat[0]).circuit).toEqual({ _tag: "Open", since: T0 + 5_000, until: T0 + 10_000 })

    // Health.openDurationMs itself
    const p = Health.resolve(Health.defaultPolicy, endpointOf())
    expect(Health.openDurationMs(p, 0, 0.999)).toBe(5_000)
    expect(Health.openDurationMs(p, 1, 0)).toBe(5_000)
    expect(Health.openDurationMs(p, 1, 0.5)).toBe(7_500)
    expect(Health.openDurationMs(p, 20, 0.999)).toBeLessThanOrEqual(300_000)
    expect(Health.openDurationMs(p, 20, 0.999)).toBeGreaterThan(299_000)
  })

  it("a probe-close keeps the openings for a window: reopening within it grows the period, after it recoveryTimeout again", () => {
    // a brand-new endpoint (never opened, closedAt -Infinity) is cleanly closed; an open one never is
    expect(EndpointState.cleanlyClosed(stateOf(), T0)).toBe(true)
    expect(EndpointState.cleanlyClosed(opened(), T0 + 60_000)).toBe(false)
    const [probing, probe] = acquire(opened(), T0 + 5_000)
    expect(EndpointState.cleanlyClosed(probing, T0 + 60_000)).toBe(false)
    const twice = EndpointState.onFailure(probing, T0 + 5_000, undefined, probe, true, 0.5)
    expect(twice.circuit).toEqual({ _tag: "Open", since: T0 + 5_000, until: T0 + 12_500 })
    expect(twice.openings).toBe(2)
    const [probingAgain, probeAgain] = acquire(twice, T0 + 12_500)
    const closed = EndpointState.onSuccess(probingAgain, T0 + 13_000, 100, probeAgain)
    expect(closed.circuit).toEqual({ _tag: "Closed" })
    expect([closed.openings, closed.closedAt]).toEqual([2, T0 + 13_000])
    // not cleanly closed before a whole window (30 s) has passed since the close
    expect(EndpointState.cleanlyClosed(closed, T0 + 13_000)).toBe(false)
    expect(EndpointState.cleanlyClosed(closed, T0 + 42_999)).toBe(false)
    expect(EndpointState.cleanlyClosed(closed, T0 + 43_000)).toBe(true)

    // reopening within the window: the third opening in a row, between 5 s and 5 s x 4
    const third = (now: number, jitter: number) => repeat(3, closed, (s) => fail(s, now, true, jitter))
    expect(third(T0 + 14_000, 0).circuit).toEqual({ _tag: "Open", since: T0 + 14_000, until: T0 + 19_000 })
    expect(third(T0 + 14_000, 0.5).circuit).toEqual({ _tag: "Open", since: T0 + 14_000, until: T0 + 26_500 })
    expect(third(T0 + 14_000, 0.99).circuit).toEqual({ _tag: "Open", since: T0 + 14_000, until: T0 + 33_850 })
    expect(third(T0 + 14_000, 0.5).openings).toBe(3)
    // up to the last millisecond of the window
    expect(third(T0 + 42_999, 0.5).circuit).toEqual({ _tag: "Open", since: T0 + 42_999, until: T0 + 55_499 })
    expect(third(T0 + 42_999, 0.5).openings).toBe(3)
    // and a flapping endpoint keeps growing: the fourth, between 5 s and 5 s x 8
    const flapping = third(T0 + 14_000, 0.5)
    const [probing3, probe3] = acquire(flapping, T0 + 26_500)
    const closedAgain = EndpointState.onSuccess(probing3, T0 + 27_000, 100, probe3)
    expect([closedAgain.openings, closedAgain.closedAt]).toEqual([3, T0 + 27_000])
    const fourth = repeat(3, closedAgain, (s) => fail(s, T0 + 28_000, true, 0.5))
    expect(fourth.circuit).toEqual({ _tag: "Open", since: T0 + 28_000, until: T0 + 50_500 })
    expect(fourth.openings).toBe(4)

    // reopening after a whole window closed: recoveryTimeout exactly, however high the jitter
    const clean = third(T0 + 43_000, 0.99)
    expect(clean.circuit).toEqual({ _tag: "Open", since: T0 + 43_000, until: T0 + 48_000 })
    expect(clean.openings).toBe(1)
    // successes in between change nothing: only the time since the close counts
    const busy = repeat(3, repeat(10, closed, (s) => succeed(s, T0 + 20_000)), (s) => fail(s, T0 + 43_000, true, 0.99))
    expect(busy.circuit).toEqual({ _tag: "Open", since: T0 + 43_000, until: T0 + 48_000 })
    // the window sets how long it must stay closed
    const short = policyOf({ window: "10 seconds" })
    const [shortProbing, shortProbe] = acquire(
      EndpointState.onFailure(acquire(opened(short), T0 + 5_000)[0], T0 + 5_000, undefined, T0, true, 0.5),
      T0 + 12_500
    )
    const shortClosed = EndpointState.onSuccess(shortProbing, T0 + 13_000, 100, shortProbe)
    expect(repeat(3, shortClosed, (s) => fail(s, T0 + 22_999, true, 0.5)).circuit).toEqual({
      _tag: "Open",
      since: T0 + 22_999,
      until: T0 + 35_499
    })
    expect(repeat(3, shortClosed, (s) => fail(s, T0 + 23_000, true, 0.5)).circuit).toEqual({
      _tag: "Open",
      since: T0 + 23_000,
      until: T0 + 28_000
    })

    // forceHealthy forgets the openings at once (and ends a cooldown), but starts no slow start
    const forced = EndpointState.forceHealthy(
      EndpointState.onRateLimited(EndpointState.onAcquire(twice, false), T0 + 60_000, undefined)
    )
    expect([forced.openings, forced.cooldownUntil, forced.closedAt]).toEqual([0, 0, -Infinity])
    expect(forced.circuit).toEqual({ _tag: "Closed" })
    expect(forced.recent).toEqual(Health.emptyRecent(twice.recent.at))
    const afterForced = repeat(3, forced, (s) => fail(s, T0 + 13_000, true, 0.99))
    expect(afterForced.circuit).toEqual({ _tag: "Open", since: T0 + 13_000, until: T0 + 18_000 })
    expect(afterForced.openings).toBe(1)
    // even right after a probe-close: the close time is kept, the openings are not
    const forcedAfterClose = EndpointState.forceHealthy(closed)
    expect([forcedAfterClose.openings, forcedAfterClose.closedAt]).toEqual([0, T0 + 13_000])
    expect(EndpointState.cleanlyClosed(forcedAfterClose, T0 + 14_000)).toBe(false)
    const afterForcedClose = repeat(3, forcedAfterClose, (s) => fail(s, T0 + 14_000, true, 0.99))
    expect(afterForcedClose.circuit).toEqual({ _tag: "Open", since: T0 + 14_000, until: T0 + 19_000 })
    expect(afterForcedClose.openings).toBe(1)
  })

  it("a probe-close clears the recent window: healthy at once, and the outage's errors cannot reopen it", () => {
    // 5 successes, then 3 failures open the circuit: 3 failures in 8 calls
    const policy = policyOf({ degradedMinRequests: 5 })
    const failing = repeat(3, repeat(5, stateOf({}, policy), (s) => succeed(s, T0)), (s) => fail(s, T0))
    expect(failing.circuit).toEqual({ _tag: "Open", since: T0, until: T0 + 5_000 })
    expect(Health.recentErrorRate(failing.recent)).toBe(3 / 8)
    const [probing, probe] = acquire(failing, T0 + 5_000)
    const s = EndpointState.onSuccess(probing, T0 + 5_000, 100, probe)
    // kept, it would be 3 in 9 calls: degraded
    const kept = Health.record(failing.recent, T0 + 5_000, 30_000, false, 100)
    expect(Health.recentErrorRate(kept)).toBeGreaterThan(0.2)
    expect(Health.recentCalls(kept, T0 + 5_000, 30_000)).toBeGreaterThan(5)
    expect(s.recent).toEqual(Health.emptyRecent(T0 + 5_000))
    expect(EndpointState.status(s, T0 + 5_000)).toBe("healthy")
    // the lifetime counters keep everything
    expect([s.successes, s.failures, s.latencyCount]).toEqual([6, 3, 1])

    // opened by the error rate (2 failures in 4 calls): after the close, one failure is 1 call
    const eager = policyOf({ maxFailures: 100, failureRateMinRequests: 4 })
    const byRate = repeat(2, stateOf({}, eager), (t) => fail(succeed(t, T0), T0))
    expect(byRate.circuit).toEqual({ _tag: "Open", since: T0, until: T0 + 5_000 })
    const [rateProbing, rateProbe] = acquire(byRate, T0 + 5_000)
    const rateClosed = EndpointState.onSuccess(rateProbing, T0 + 5_000, undefined, rateProbe)
    const oneFailure = fail(rateClosed, T0 + 5_000)
    expect(oneFailure.circuit).toEqual({ _tag: "Closed" })
    expect([oneFailure.recent.calls, oneFailure.recent.failures]).toEqual([1, 1])
    // it takes failureRateMinRequests new calls at the rate again
    const reopened = repeat(3, oneFailure, (t) => fail(t, T0 + 5_000, true, 0.5))
    expect(reopened.circuit).toEqual({ _tag: "Open", since: T0 + 5_000, until: T0 + 12_500 })
    expect(reopened.openings).toBe(2)
  })

  it("after a probe closes the circuit, the traffic share ramps linearly from 0.1 to 1 over slowStart", () => {
    // never closed after opening: full share
    const fresh = stateOf()
    expect(fresh.closedAt).toBe(-Infinity)
    expect(EndpointState.trafficShare(fresh, T0)).toBe(1)
    const [probing, probe] = acquire(opened(), T0 + 5_000)
    expect(probing.closedAt).toBe(-Infinity)

    const at = T0 + 6_000
    const s = EndpointState.onSuccess(probing, at, 100, probe)
    expect(s.closedAt).toBe(at)
    expect(EndpointState.trafficShare(s, at)).toBeCloseTo(0.1, 12)
    expect(EndpointState.trafficShare(s, at + 7_500)).toBeCloseTo(0.325, 12)
    expect(EndpointState.trafficShare(s, at + 15_000)).toBeCloseTo(0.55, 12)
    expect(EndpointState.trafficShare(s, at + 29_999)).toBeCloseTo(0.1 + 0.9 * 29_999 / 30_000, 12)
    expect(EndpointState.trafficShare(s, at + 29_999)).toBeLessThan(1)
    expect(EndpointState.trafficShare(s, at + 30_000)).toBe(1)
    expect(EndpointState.trafficShare(s, at + 300_000)).toBe(1)
    for (let t = 0; t <= 30_000; t += 1_000) {
      expect(EndpointState.trafficShare(s, at + t)).toBeCloseTo(0.1 + 0.9 * t / 30_000, 12)
    }
    // calls during the ramp do not restart it
    expect(succeed(s, at + 1_000).closedAt).toBe(at)
    // slowStart sets the ramp's length; 0 turns it off
    const tenSeconds = acquire(opened(policyOf({ slowStart: "10 seconds" })), T0 + 5_000)
    const quick = EndpointState.onSuccess(tenSeconds[0], at, 100, tenSeconds[1])
    expect(EndpointState.trafficShare(quick, at + 5_000)).toBeCloseTo(0.55, 12)
    expect(EndpointState.trafficShare(quick, at + 10_000)).toBe(1)
    const off = acquire(opened(policyOf({ slowStart: 0 })), T0 + 5_000)
    expect(EndpointState.trafficShare(EndpointState.onSuccess(off[0], at, 100, off[1]), at)).toBe(1)
    // forceHealthy takes full traffic at once
    const forced = EndpointState.forceHealthy(opened())
    expect(forced.closedAt).toBe(-Infinity)
    expect(EndpointState.trafficShare(forced, T0)).toBe(1)
  })

  it("a rate-limited call rests the endpoint until `until`, leaving the circuit and the error rate alone", () => {
    const [acquired] = acquire(succeed(stateOf(), T0, 100), T0)
    const s = EndpointState.onRateLimited(acquired, T0 + 2_000, undefined)
    expect(s.active).toBe(0)
    expect([s.successes, s.failures, s.rateLimited, s.consecutiveFailures]).toEqual([1, 1, 1, 0])
    expect(s.cooldownUntil).toBe(T0 + 2_000)
    expect(s.circuit).toBe(acquired.circuit)
    expect(s.recent).toBe(acquired.recent)
    expect([s.held, s.openings]).toEqual([false, 0])
    expect(EndpointState.admission(s, T0)).toBe("cooling-down")
    expect(EndpointState.admission(s, T0 + 1_999)).toBe("cooling-down")
    expect(EndpointState.status(s, T0 + 1_999)).toBe("unhealthy")
    expect(EndpointState.availableAt(s, T0)).toBe(T0 + 2_000)
    // once the cooldown is over nothing is reported, even though the field keeps its value
    expect(EndpointState.availableAt(s, T0 + 2_000)).toBeUndefined()
    expect(EndpointState.admission(s, T0 + 2_000)).toBe("admit")
    expect(EndpointState.status(s, T0 + 2_000)).toBe("healthy")

    // an earlier until does not shorten the rest; a later one extends it
    const [again] = acquire(s, T0 + 2_000)
    expect(EndpointState.onRateLimited(again, T0 + 1_000, undefined).cooldownUntil).toBe(T0 + 2_000)
    const longer = EndpointState.onRateLimited(again, T0 + 9_000, undefined)
    expect([longer.cooldownUntil, longer.rateLimited, longer.failures]).toEqual([T0 + 9_000, 2, 2])
    // rate limits are not health failures: any number of them leaves the circuit closed
    const many = repeat(
      10,
      stateOf(),
      (t) => EndpointState.onRateLimited(EndpointState.onAcquire(t, false), T0, undefined)
    )
    expect(many.circuit).toEqual({ _tag: "Closed" })
    expect([many.failures, many.rateLimited, many.consecutiveFailures, many.recent.calls]).toEqual([10, 10, 0, 0])
    // forceHealthy ends the rest
    const forced = EndpointState.forceHealthy(s)
    expect(forced.cooldownUntil).toBe(0)
    expect(EndpointState.admission(forced, T0)).toBe("admit")

    // a rate-limited probe gives its slot back without reopening; the endpoint rests first
    const [probing, probe] = acquire(opened(), T0 + 5_000)
    const r = EndpointState.onRateLimited(probing, T0 + 8_000, probe)
    expect(r.circuit).toEqual({ _tag: "HalfOpen", probes: 0, successes: 0, since: T0 })
    expect([r.active, r.openings, r.failures, r.rateLimited, r.consecutiveFailures]).toEqual([0, 1, 4, 1, 3])
    expect(EndpointState.admission(r, T0 + 7_999)).toBe("cooling-down")
    expect(EndpointState.status(r, T0 + 7_999)).toBe("unhealthy")
    expect(EndpointState.admission(r, T0 + 8_000)).toBe("probe")
    expect(EndpointState.status(r, T0 + 8_000)).toBe("degraded")

    // open and resting: available at the later of the two
    const [inFlight] = acquire(stateOf(), T0)
    const open = repeat(3, inFlight, (t) => fail(t, T0))
    expect(open.active).toBe(1)
    const early = EndpointState.onRateLimited(open, T0 + 3_000, undefined)
    expect(early.circuit).toBe(open.circuit)
    expect(EndpointState.availableAt(early, T0)).toBe(T0 + 5_000)
    expect(EndpointState.admission(early, T0 + 2_999)).toBe("cooling-down")
    expect(EndpointState.admission(early, T0 + 3_000)).toBe("unhealthy")
    const late = EndpointState.onRateLimited(open, T0 + 8_000, undefined)
    expect(EndpointState.availableAt(late, T0)).toBe(T0 + 8_000)
    expect(EndpointState.admission(late, T0 + 6_000)).toBe("cooling-down")
    expect(EndpointState.admission(late, T0 + 8_000)).toBe("probe")
  })

  it("an unauthorized call holds the endpoint out until forceHealthy", () => {
    const [acquired] = acquire(succeed(stateOf(), T0, 100), T0)
    const s = EndpointState.onUnauthorized(acquired, undefined)
    expect(s.active).toBe(0)
    expect([s.successes, s.failures, s.rateLimited, s.consecutiveFailures]).toEqual([1, 1, 0, 0])
    expect(s.held).toBe(true)
    expect(s.circuit).toBe(acquired.circuit)
    expect(s.recent).toBe(acquired.recent)
    expect([s.cooldownUntil, s.openings]).toEqual([0, 0])
    // a key does not fix itself
    expect(EndpointState.admission(s, T0)).toBe("held-unhealthy")
    expect(EndpointState.admission(s, T0 + 3_600_000)).toBe("held-unhealthy")
    expect(EndpointState.status(s, T0 + 3_600_000)).toBe("unhealthy")
    expect(EndpointState.availableAt(s, T0)).toBeUndefined()

    // an unauthorized probe gives its slot back
    const [probing, probe] = acquire(opened(), T0 + 5_000)
    const u = EndpointState.onUnauthorized(probing, probe)
    expect(u.circuit).toEqual({ _tag: "HalfOpen", probes: 0, successes: 0, since: T0 })
    expect([u.active, u.held, u.openings, u.failures]).toEqual([0, true, 1, 4])
    expect(EndpointState.admission(u, T0 + 5_000)).toBe("held-unhealthy")

    // forceHealthy releases it
    const released = EndpointState.forceHealthy(u)
    expect(released.held).toBe(false)
    expect(released.circuit).toEqual({ _tag: "Closed" })
    expect(EndpointState.admission(released, T0 + 5_000)).toBe("admit")
  })

  it("degraded when the recent error rate reaches 0.2 over at least 5 calls", () => {
    const fourOk = repeat(4, stateOf(), (s) => succeed(s, T0))
    // 1 failure in 5 calls: 0.2
    expect(EndpointState.status(fail(fourOk, T0), T0)).toBe("degraded")
    // 1 in 4: 0.25, but too few calls
    const threeOk = repeat(3, stateOf(), (s) => succeed(s, T0))
    expect(EndpointState.status(fail(threeOk, T0), T0)).toBe("healthy")
    // 1 in 6: below 0.2
    const fiveOk = repeat(5, stateOf(), (s) => succeed(s, T0))
    expect(EndpointState.status(fail(fiveOk, T0), T0)).toBe("healthy")
    // degraded is still routable
    expect(EndpointState.admission(fail(fourOk, T0), T0)).toBe("admit")
  })

  it("degraded when the recent average latency reaches degradedLatency", () => {
    // The latency rule now also needs degradedMinRequests recent timed successes (default 5),
    // so these single-call cases use 1; degradedErrorRate 1 turns the error-rate rule off.
    const policy = policyOf({ degradedLatency: "1 second", degradedMinRequests: 1, degradedErrorRate: 1 })
    expect(EndpointState.status(succeed(stateOf({}, policy), T0, 999), T0)).toBe("healthy")
    expect(EndpointState.status(succeed(stateOf({}, policy), T0, 1_000), T0)).toBe("degraded")
    // an average: 600 and 1,500 make 1,050
    expect(EndpointState.status(succeed(succeed(stateOf({}, policy), T0, 600), T0, 1_500), T0)).toBe("degraded")
    // 400 and 1,500 make 950
    expect(EndpointState.status(succeed(succeed(stateOf({}, policy), T0, 400), T0, 1_500), T0)).toBe("healthy")
    // failures' latency does not count
    const slowFailure = EndpointState.onFailure(
      EndpointState.onAcquire(stateOf({}, policy), false),
      T0,
      5_000,
      undefined
    )
    expect(EndpointState.status(slowFailure, T0)).toBe("healthy")
    const fastThenSlowFailure = EndpointState.onFailure(
      EndpointState.onAcquire(succeed(stateOf({}, policy), T0, 500), false),
      T0,
      5_000,
      undefined
    )
    expect(Health.recentLatencyMs(fastThenSlowFailure.recent)).toBe(500)
    expect(EndpointState.status(fastThenSlowFailure, T0)).toBe("healthy")
    // without a threshold, latency never degrades
    expect(EndpointState.status(succeed(stateOf(), T0, 1e9), T0)).toBe("healthy")
  })

  it("latency degrades only over degradedMinRequests recent timed successes", () => {
    const policy = policyOf({ degradedLatency: "1 second" })
    const fourSlow = repeat(4, stateOf({}, policy), (s) => succeed(s, T0, 2_000))
    expect(EndpointState.status(fourSlow, T0)).toBe("healthy")
    expect(EndpointState.status(succeed(fourSlow, T0, 2_000), T0)).toBe("degraded")
    // a success without a latency is not a timed one
    expect(EndpointState.status(succeed(fourSlow, T0), T0)).toBe("healthy")
  })

  it("decay makes an endpoint healthy again as the volume falls below degradedMinRequests", () => {
    // 2 failures in 10 calls: 0.2 over 10 calls
    let s = repeat(8, stateOf(), (s) => succeed(s, T0))
    s = repeat(2, s, (s) => fail(s, T0))
    expect(EndpointState.status(s, T0)).toBe("degraded")
    // 20 s later: 10 * e^(-2/3) = 5.1 calls still count
    expect(Health.recentCalls(s.recent, T0 + 20_000, 30_000)).toBeCloseTo(5.13, 2)
    expect(EndpointState.status(s, T0 + 20_000)).toBe("degraded")
    // 30 s later: 10 / e = 3.7 calls, below 5
    expect(EndpointState.status(s, T0 + 30_000)).toBe("healthy")
    // and a new success keeps it healthy
    expect(EndpointState.status(succeed(s, T0 + 30_000), T0 + 30_000)).toBe("healthy")
  })

  it("maxConcurrency puts the endpoint at capacity", () => {
    let s = stateOf({ maxConcurrency: 2 })
    s = acquire(s, T0)[0]
    s = acquire(s, T0)[0]
    expect(EndpointState.admission(s, T0)).toBe("at-capacity")
    expect(EndpointState.status(s, T0)).toBe("healthy")
    s = EndpointState.onCancel(s, undefined)
    expect(EndpointState.admission(s, T0)).toBe("admit")
  })

  it("forceUnhealthy holds the endpoint out; forceHealthy closes the circuit and forgets failures", () => {
    const held = EndpointState.forceUnhealthy(stateOf())
    expect(EndpointState.admission(held, T0)).toBe("held-unhealthy")
    expect(EndpointState.status(held, T0)).toBe("unhealthy")
    expect(EndpointState.availableAt(held, T0)).toBeUndefined()
    // still held after the recovery timeout of an open circuit
    const heldOpen = EndpointState.forceUnhealthy(opened())
    expect(EndpointState.admission(opened(), T0 + 5_000)).toBe("probe")
    expect(EndpointState.admission(heldOpen, T0 + 5_000)).toBe("held-unhealthy")
    expect(EndpointState.admission(heldOpen, T0 + 60_000)).toBe("held-unhealthy")
    const released = EndpointState.forceHealthy(heldOpen)
    expect(released.circuit).toEqual({ _tag: "Closed" })
    expect(released.consecutiveFailures).toBe(0)
    expect([released.held, released.openings, released.cooldownUntil, released.closedAt]).toEqual([
      false,
      0,
      0,
      -Infinity
    ])
    // the recent window is cleared, at the time it was last decayed to
    expect(released.recent).toEqual(Health.emptyRecent(heldOpen.recent.at))
    expect(EndpointState.admission(released, T0)).toBe("admit")
    expect(EndpointState.status(released, T0)).toBe("healthy")
  })

  // Guards against latency degradation that never wears off once the window has decayed.
  it("latency degradation wears off once the slow calls have left the recent window", () => {
    // (One slow call no longer degrades at all, see above: this takes 10, over the default 5.)
    const s = repeat(10, stateOf({}, policyOf({ degradedLatency: "1 second" })), (s) => succeed(s, T0, 5_000))
    expect(EndpointState.status(s, T0)).toBe("degraded")
    // 20 s later: 10 * e^(-2/3) = 5.1 timed successes still count
    expect(Health.recentTimed(s.recent, T0 + 20_000, 30_000)).toBeCloseTo(5.13, 2)
    expect(EndpointState.status(s, T0 + 20_000)).toBe("degraded")
    // 30 s later: 10 / e = 3.7, below 5, although the average is still 5 s
    expect(Health.recentLatencyMs(s.recent)).toBe(5_000)
    expect(EndpointState.status(s, T0 + 30_000)).toBe("healthy")
    const later = T0 + 10 * 30_000
    expect(Health.recentCalls(s.recent, later, 30_000)).toBeLessThan(0.001)
    expect(EndpointState.status(s, later)).toBe("healthy")
  })

  /**
   * halfOpenProbes 2, maxFailures 1, recovery 10 s: P1 and P2 probe the period opened at T0;
   * P1 fails, which opens a new period at T0 + 10 s, while P2 is still in flight; P3 and P4
   * probe that one and fill it.
   */
  const twoPeriods = () => {
    const policy = policyOf({ halfOpenProbes: 2, maxFailures: 1, recoveryTimeout: "10 seconds" })
    const first = fail(stateOf({}, policy), T0)
    expect(first.circuit).toEqual({ _tag: "Open", since: T0, until: T0 + 10_000 })
    const [withP1, p1] = acquire(first, T0 + 10_000)
    const [withP2, p2] = acquire(withP1, T0 + 10_000)
    expect([p1, p2]).toEqual([T0, T0])
    expect(EndpointState.admission(withP2, T0 + 10_000)).toBe("probing")
    const second = EndpointState.onFailure(withP2, T0 + 10_000, undefined, p1)
    expect(second.circuit).toEqual({ _tag: "Open", since: T0 + 10_000, until: T0 + 20_000 })
    const [withP3, p3] = acquire(second, T0 + 20_000)
    const [s, p4] = acquire(withP3, T0 + 20_000)
    expect([p3, p4]).toEqual([T0 + 10_000, T0 + 10_000])
    expect(s.circuit).toEqual({ _tag: "HalfOpen", probes: 2, successes: 0, since: T0 + 10_000 })
    expect(s.active).toBe(3)
    expect(EndpointState.admission(s, T0 + 20_000)).toBe("probing")
    return { s, p2, p3 }
  }

  // Guards the probe slot accounting: a late probe of an earlier period frees no slot of the current one.
  it("a probe left over from an earlier half-open period does not free a current slot", () => {
    const { p2, s } = twoPeriods()
    const full = { _tag: "HalfOpen", probes: 2, successes: 0, since: T0 + 10_000 }
    // P2 is interrupted: P3 and P4 are still in flight, no room for another probe
    const cancelled = EndpointState.onCancel(s, p2)
    expect(cancelled.circuit).toEqual(full)
    expect(cancelled.active).toBe(2)
    expect(EndpointState.admission(cancelled, T0 + 20_000)).toBe("probing")
    // the same when P2 fails for a reason that is not the endpoint's
    const excused = EndpointState.onFailure(s, T0 + 20_000, undefined, p2, false)
    expect(excused.circuit).toEqual(full)
    expect(excused.active).toBe(2)
    expect(EndpointState.admission(excused, T0 + 20_000)).toBe("probing")
    // a counting failure of P2 is an ordinary failure: counted, but it does not reopen the circuit
    const failed = EndpointState.onFailure(s, T0 + 20_000, undefined, p2)
    expect(failed.circuit).toEqual(full)
    expect(failed.active).toBe(2)
    expect([failed.failures, failed.consecutiveFailures]).toEqual([s.failures + 1, s.consecutiveFailures + 1])
    // the same when P2 is rate limited or refused
    const limited = EndpointState.onRateLimited(s, T0 + 20_000, p2)
    expect(limited.circuit).toEqual(full)
    expect(limited.active).toBe(2)
    const refused = EndpointState.onUnauthorized(s, p2)
    expect(refused.circuit).toEqual(full)
    expect(refused.active).toBe(2)
  })

  it("a probe left over from an earlier half-open period does not close the current one by succeeding", () => {
    const { p2, p3, s } = twoPeriods()
    const late = EndpointState.onSuccess(s, T0 + 20_500, 100, p2)
    // counted as an ordinary success, the current period still probing
    expect(late.circuit).toEqual({ _tag: "HalfOpen", probes: 2, successes: 0, since: T0 + 10_000 })
    expect(late.active).toBe(2)
    expect([late.successes, late.consecutiveFailures]).toEqual([s.successes + 1, 0])
    expect(EndpointState.admission(late, T0 + 20_500)).toBe("probing")
    expect(EndpointState.status(late, T0 + 20_500)).toBe("degraded")
    // a probe of the current period does close it
    const closed = EndpointState.onSuccess(late, T0 + 21_000, 100, p3)
    expect(closed.circuit).toEqual({ _tag: "Closed" })
    expect(closed.active).toBe(1)

    // the same when forceHealthy ended the probe's period and the circuit opened again
    const [probing, stale] = acquire(opened(), T0 + 5_000)
    expect(stale).toBe(T0)
    const reopened = repeat(3, EndpointState.forceHealthy(probing), (t) => fail(t, T0 + 30_000))
    expect(reopened.circuit).toEqual({ _tag: "Open", since: T0 + 30_000, until: T0 + 35_000 })
    const [probingAgain, current] = acquire(reopened, T0 + 35_000)
    expect(current).toBe(T0 + 30_000)
    const t = EndpointState.onSuccess(probingAgain, T0 + 35_000, undefined, stale)
    expect(t.circuit).toEqual({ _tag: "HalfOpen", probes: 1, successes: 0, since: T0 + 30_000 })
    expect(t.active).toBe(1)
    expect(EndpointState.admission(t, T0 + 35_000)).toBe("probing")
  })
})
