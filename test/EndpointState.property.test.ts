/**
 * Property tests of the pure transitions in `EndpointState`: random sequences of calls
 * (acquired only when `admission` lets them in), their outcomes, manual overrides and
 * clock advances, with invariants checked after every step; then examples of each
 * circuit and health rule.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck } from "effect"
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
  readonly failures: number
  /** Counting failures since the last success or forceHealthy. */
  readonly consecutive: number
  readonly latencies: ReadonlyArray<number>
}

type Op =
  | { readonly _tag: "acquire" }
  | { readonly _tag: "success"; readonly pick: number; readonly latencyMs: number | undefined }
  | {
    readonly _tag: "failure"
    readonly pick: number
    readonly latencyMs: number | undefined
    readonly countsAgainstHealth: boolean
  }
  | { readonly _tag: "cancel"; readonly pick: number }
  | { readonly _tag: "forceHealthy" }
  | { readonly _tag: "forceUnhealthy" }
  | { readonly _tag: "advance"; readonly ms: number }

const fc = FastCheck

const latencyArb = fc.option(fc.integer({ min: 0, max: 10_000 }), { nil: undefined })

const opArb: FastCheck.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.constant<Op>({ _tag: "acquire" }), weight: 12 },
  {
    arbitrary: fc.record({ pick: fc.nat(), latencyMs: latencyArb }).map((r): Op => ({ _tag: "success", ...r })),
    weight: 6
  },
  {
    arbitrary: fc.record({
      pick: fc.nat(),
      latencyMs: latencyArb,
      countsAgainstHealth: fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, {
        arbitrary: fc.constant(false),
        weight: 1
      })
    }).map((r): Op => ({ _tag: "failure", ...r })),
    weight: 8
  },
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

interface Setup {
  readonly start: number
  readonly endpoint: Partial<Endpoint.Input>
  readonly policy: Health.PolicyInput
}

const setupArb: FastCheck.Arbitrary<Setup> = fc.record({
  start: fc.integer({ min: 0, max: 2_000_000_000_000 }),
  maxFailures: fc.integer({ min: 1, max: 5 }),
  endpointMaxFailures: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }),
  recoveryTimeoutMs: fc.integer({ min: 1, max: 60_000 }),
  endpointRecoveryTimeout: fc.option(fc.oneof(fc.integer({ min: 1, max: 60_000 }), fc.constant("15 seconds")), {
    nil: undefined
  }),
  halfOpenProbes: fc.integer({ min: 1, max: 3 }),
  windowMs: fc.integer({ min: 1, max: 120_000 }),
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
    recoveryTimeout: r.recoveryTimeoutMs,
    halfOpenProbes: r.halfOpenProbes,
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
  halfOpen: number
  halfOpenFull: number
  held: number
  atCapacity: number
  degradedClosed: number
  probeSucceeded: number
  probeFailed: number
  probeCancelled: number
  /** A probe of an earlier half-open period ended (success, failure or cancel). */
  staleProbeEnded: number
}

const emptyCoverage = (): Coverage => ({
  closed: 0,
  open: 0,
  openExpired: 0,
  halfOpen: 0,
  halfOpenFull: 0,
  held: 0,
  atCapacity: 0,
  degradedClosed: 0,
  probeSucceeded: 0,
  probeFailed: 0,
  probeCancelled: 0,
  staleProbeEnded: 0
})

/** The admission the documentation describes, in its order of precedence. */
const expectedAdmission = (s: State, now: number): EndpointState.Admission => {
  if (s.removed) return "removed"
  if (s.held) return "held-unhealthy"
  if (s.circuit._tag === "Open" && now < s.circuit.until) return "unhealthy"
  if (s.circuit._tag === "HalfOpen" && s.circuit.probes >= s.policy.halfOpenProbes) return "probing"
  const max = s.endpoint.maxConcurrency
  if (max !== undefined && s.active >= max) return "at-capacity"
  return s.circuit._tag === "Closed" ? "admit" : "probe"
}

// Cheap assertions for the hot loop (vitest's `expect` is too slow for ~100,000 steps);
// fast-check reports the message with the shrunk counterexample.

const show = (value: unknown): string =>
  JSON.stringify(value, (_, v) => typeof v === "number" && !Number.isFinite(v) ? String(v) : v)

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
  const context = { now, circuit, active: s.active, held: s.held, consecutiveFailures: s.consecutiveFailures }

  // calls in flight
  check(s.active >= 0, "active >= 0", context)
  same(s.active, m.leases.length, "active = outstanding leases")
  const max = s.endpoint.maxConcurrency
  if (max !== undefined) check(s.active <= max, "active <= maxConcurrency", { max, ...context })
  // counters
  same(s.successes, m.successes, "successes")
  same(s.failures, m.failures, "failures")
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

  // a legal circuit
  switch (circuit._tag) {
    case "Closed": {
      // maxFailures consecutive counting failures always open a closed circuit, and only
      // a success or forceHealthy (which reset the count) closes one again
      check(s.consecutiveFailures < p.maxFailures, "Closed => consecutiveFailures < maxFailures", {
        maxFailures: p.maxFailures,
        ...context
      })
      coverage.closed++
      break
    }
    case "HalfOpen": {
      check(
        Number.isInteger(circuit.probes) && circuit.probes >= 0 && circuit.probes <= p.halfOpenProbes,
        "HalfOpen probes in [0, halfOpenProbes]",
        { halfOpenProbes: p.halfOpenProbes, ...context }
      )
      check(circuit.since <= now, "HalfOpen since <= now", context)
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
      break
    }
    case "Open": {
      same(circuit.until, circuit.since + p.recoveryTimeoutMs, "Open until = since + recoveryTimeoutMs")
      check(circuit.until > circuit.since, "Open until > since", context)
      check(circuit.since <= now, "Open since <= now", context)
      if (now < circuit.until) coverage.open++
      else coverage.openExpired++
      break
    }
  }
  const openNow = circuit._tag === "Open" && now < circuit.until

  // admission
  const admission = EndpointState.admission(s, now)
  same(admission, expectedAdmission(s, now), "admission")
  if (s.held) same(admission, "held-unhealthy", "admission when held")
  else if (openNow) same(admission, "unhealthy", "admission when open before until")
  if (admission === "admit" || admission === "probe") {
    check(!s.held && !openNow, "never admits when held or open before until", context)
    if (max !== undefined) check(s.active < max, "admits only below maxConcurrency", { max, ...context })
  }
  if (admission === "admit") same(circuit._tag, "Closed", "admit => Closed")
  if (admission === "probe") check(circuit._tag !== "Closed", "probe => not Closed", context)
  if (s.held) coverage.held++
  if (admission === "at-capacity") coverage.atCapacity++
  same(
    EndpointState.availableAt(s),
    !s.held && circuit._tag === "Open" ? circuit.until : undefined,
    "availableAt"
  )

  // status
  const status = EndpointState.status(s, now)
  same(status === "unhealthy", s.held || openNow, "unhealthy <=> held or (Open and now < until)")
  if (status === "healthy") check(circuit._tag === "Closed" && !s.held, "healthy => Closed and not held", context)
  if (!s.held && circuit._tag !== "Closed" && !openNow) same(status, "degraded", "half-open or probeable => degraded")
  if (!s.held && circuit._tag === "Closed") {
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
const isCurrentProbe = (
  s: State,
  lease: Lease
): s is State & { readonly circuit: Extract<Health.Circuit, { _tag: "HalfOpen" }> } =>
  lease.probe !== undefined && s.circuit._tag === "HalfOpen" && s.circuit.since === lease.probe

const countStale = (s: State, lease: Lease, coverage: Coverage): void => {
  if (lease.probe !== undefined && !isCurrentProbe(s, lease)) coverage.staleProbeEnded++
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
      if (probe) {
        check(s.circuit._tag !== "Closed", "a probe is admitted only when not Closed", s.circuit)
        if (s.circuit._tag === "Closed") return [after, m]
        // the half-open period keeps the `since` of the open period it came from
        same(
          after.circuit,
          {
            _tag: "HalfOpen",
            probes: s.circuit._tag === "HalfOpen" ? s.circuit.probes + 1 : 1,
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
      same(after.consecutiveFailures, 0, "a success resets consecutiveFailures")
      if (isCurrentProbe(s, lease)) {
        same(after.circuit, Health.closed, "a successful probe closes the circuit")
        coverage.probeSucceeded++
      } else {
        // a late probe of an earlier period counts as an ordinary call
        check(after.circuit === s.circuit, "any other success leaves the circuit alone")
        countStale(s, lease, coverage)
      }
      same(after.held, s.held, "a success does not release a hold")
      return [after, {
        ...m,
        leases: withoutLease(m, index),
        successes: m.successes + 1,
        consecutive: 0,
        latencies: op.latencyMs === undefined ? m.latencies : [...m.latencies, op.latencyMs]
      }]
    }
    case "failure": {
      if (m.leases.length === 0) return [s, m]
      const index = pickLease(m, op.pick)
      const lease = m.leases[index]
      const after = EndpointState.onFailure(s, now, op.latencyMs, lease.probe, op.countsAgainstHealth)
      const consecutive = op.countsAgainstHealth ? m.consecutive + 1 : m.consecutive
      countStale(s, lease, coverage)
      if (op.countsAgainstHealth) {
        const failedProbe = isCurrentProbe(s, lease)
        const opens = failedProbe || (s.circuit._tag === "Closed" && consecutive >= p.maxFailures)
        if (opens) {
          same(after.circuit, { _tag: "Open", since: now, until: now + p.recoveryTimeoutMs }, "the circuit opens now")
          if (failedProbe) coverage.probeFailed++
        } else check(after.circuit === s.circuit, "a failure that does not open leaves the circuit alone")
      } else {
        // not the endpoint's fault: the circuit and the recent window are untouched, but a
        // probe gives its slot back
        check(after.recent === s.recent, "a non-counting failure leaves the recent window alone")
        if (isCurrentProbe(s, lease)) {
          same(
            after.circuit,
            { _tag: "HalfOpen", probes: Math.max(0, s.circuit.probes - 1), since: s.circuit.since },
            "frees the probe slot"
          )
        } else check(after.circuit === s.circuit, "a non-counting failure leaves the circuit alone")
      }
      same(after.held, s.held, "a failure does not change a hold")
      return [after, { ...m, leases: withoutLease(m, index), failures: m.failures + 1, consecutive }]
    }
    case "cancel": {
      if (m.leases.length === 0) return [s, m]
      const index = pickLease(m, op.pick)
      const lease = m.leases[index]
      const after = EndpointState.onCancel(s, lease.probe)
      check(after.recent === s.recent, "a cancelled call leaves the recent window alone")
      same(after.consecutiveFailures, s.consecutiveFailures, "a cancelled call counts neither way")
      if (isCurrentProbe(s, lease)) {
        same(
          after.circuit,
          { _tag: "HalfOpen", probes: Math.max(0, s.circuit.probes - 1), since: s.circuit.since },
          "frees the probe slot"
        )
        coverage.probeCancelled++
      } else {
        check(after.circuit === s.circuit, "a cancelled call leaves the circuit alone")
        countStale(s, lease, coverage)
      }
      return [after, { ...m, leases: withoutLease(m, index) }]
    }
    case "forceHealthy": {
      const after = EndpointState.forceHealthy(s)
      same(after.circuit, Health.closed, "forceHealthy closes")
      same(after.held, false, "forceHealthy releases a hold")
      same(after.consecutiveFailures, 0, "forceHealthy forgets failures")
      same(after.active, s.active, "forceHealthy keeps the calls in flight")
      return [after, { ...m, consecutive: 0 }]
    }
    case "forceUnhealthy": {
      const after = EndpointState.forceUnhealthy(s)
      same(after.held, true, "forceUnhealthy holds")
      check(after.circuit === s.circuit, "forceUnhealthy leaves the circuit alone")
      same(EndpointState.status(after, now), "unhealthy", "held => unhealthy")
      same(EndpointState.admission(after, now), "held-unhealthy", "held => held-unhealthy")
      return [after, m]
    }
  }
}

describe("EndpointState properties", () => {
  it("invariants hold after every step of random call sequences", () => {
    const coverage = emptyCoverage()
    FastCheck.assert(
      FastCheck.property(setupArb, fc.array(opArb, { minLength: 1, maxLength: 200, size: "max" }), (setup, ops) => {
        const endpoint = endpointOf(setup.endpoint)
        const policy = Health.resolve(policyOf(setup.policy), endpoint)
        let s = EndpointState.make(7, endpoint, policy, setup.start)
        let m: Model = { now: setup.start, leases: [], successes: 0, failures: 0, consecutive: 0, latencies: [] }
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
      { numRuns: 1000 }
    )
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

const fail = (s: State, now: number, countsAgainstHealth = true): State => {
  const [acquired, probe] = acquire(s, now)
  return EndpointState.onFailure(acquired, now, undefined, probe, countsAgainstHealth)
}

const repeat = (n: number, s: State, f: (s: State) => State): State => {
  let out = s
  for (let i = 0; i < n; i++) out = f(out)
  return out
}

/** Default policy: maxFailures 3, recoveryTimeout 30 s, 1 probe, window 30 s, 0.2 over 5 calls. */
const opened = (): State => repeat(3, stateOf(), (s) => fail(s, T0))

describe("EndpointState examples", () => {
  it("3 consecutive failures open the circuit", () => {
    const two = repeat(2, stateOf(), (s) => fail(s, T0))
    expect(two.circuit).toEqual({ _tag: "Closed" })
    expect(two.consecutiveFailures).toBe(2)
    // too few calls for the error rate to count
    expect(EndpointState.status(two, T0)).toBe("healthy")

    const s = fail(two, T0)
    expect(s.circuit).toEqual({ _tag: "Open", since: T0, until: T0 + 30_000 })
    expect(s.consecutiveFailures).toBe(3)
    expect(EndpointState.status(s, T0)).toBe("unhealthy")
    expect(EndpointState.admission(s, T0)).toBe("unhealthy")
    expect(EndpointState.availableAt(s)).toBe(T0 + 30_000)
  })

  it("a success in between resets the count", () => {
    let s = repeat(2, stateOf(), (s) => fail(s, T0))
    s = succeed(s, T0)
    s = repeat(2, s, (s) => fail(s, T0))
    expect(s.circuit._tag).toBe("Closed")
    expect(s.consecutiveFailures).toBe(2)
  })

  it("an endpoint's maxFailures and recoveryTimeout override the policy", () => {
    const s = fail(stateOf({ maxFailures: 1, recoveryTimeout: "5 seconds" }), T0)
    expect(s.circuit).toEqual({ _tag: "Open", since: T0, until: T0 + 5_000 })
  })

  it("Open admits a probe once recoveryTimeout has passed", () => {
    const s = opened()
    expect(EndpointState.admission(s, T0 + 29_999)).toBe("unhealthy")
    expect(EndpointState.status(s, T0 + 29_999)).toBe("unhealthy")
    expect(EndpointState.admission(s, T0 + 30_000)).toBe("probe")
    expect(EndpointState.status(s, T0 + 30_000)).toBe("degraded")

    const [probing, probe] = acquire(s, T0 + 30_000)
    // the probe is identified by the open period it probes
    expect(probe).toBe(T0)
    expect(probing.circuit).toEqual({ _tag: "HalfOpen", probes: 1, since: T0 })
    // one probe at a time; the others skip it
    expect(EndpointState.admission(probing, T0 + 30_000)).toBe("probing")
    expect(EndpointState.status(probing, T0 + 30_000)).toBe("degraded")
  })

  it("a successful probe closes the circuit", () => {
    const [probing, probe] = acquire(opened(), T0 + 30_000)
    const s = EndpointState.onSuccess(probing, T0 + 31_000, 1_000, probe)
    expect(s.circuit).toEqual({ _tag: "Closed" })
    expect(s.consecutiveFailures).toBe(0)
    expect(s.active).toBe(0)
    expect(EndpointState.admission(s, T0 + 31_000)).toBe("admit")
  })

  it("a failed probe opens the circuit again with a new until", () => {
    const [probing, probe] = acquire(opened(), T0 + 30_000)
    const s = EndpointState.onFailure(probing, T0 + 32_000, undefined, probe)
    expect(s.circuit).toEqual({ _tag: "Open", since: T0 + 32_000, until: T0 + 62_000 })
    expect(EndpointState.admission(s, T0 + 61_999)).toBe("unhealthy")
    expect(EndpointState.admission(s, T0 + 62_000)).toBe("probe")
  })

  it("an interrupted probe frees its probe slot and counts neither way", () => {
    const [probing, probe] = acquire(opened(), T0 + 30_000)
    const s = EndpointState.onCancel(probing, probe)
    expect(s.circuit).toEqual({ _tag: "HalfOpen", probes: 0, since: T0 })
    expect(s.active).toBe(0)
    expect([s.successes, s.failures, s.consecutiveFailures]).toEqual([0, 3, 3])
    expect(EndpointState.admission(s, T0 + 30_000)).toBe("probe")
  })

  it("a probe failing for a reason that is not the endpoint's frees the slot without reopening", () => {
    const [probing, probe] = acquire(opened(), T0 + 30_000)
    const s = EndpointState.onFailure(probing, T0 + 30_500, 500, probe, false)
    expect(s.circuit).toEqual({ _tag: "HalfOpen", probes: 0, since: T0 })
    expect(EndpointState.admission(s, T0 + 30_500)).toBe("probe")
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
    expect(EndpointState.availableAt(held)).toBeUndefined()
    // still held after the recovery timeout of an open circuit
    const heldOpen = EndpointState.forceUnhealthy(opened())
    expect(EndpointState.admission(heldOpen, T0 + 60_000)).toBe("held-unhealthy")
    const released = EndpointState.forceHealthy(heldOpen)
    expect(released.circuit).toEqual({ _tag: "Closed" })
    expect(released.consecutiveFailures).toBe(0)
    expect(EndpointState.admission(released, T0)).toBe("admit")
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
    expect(s.circuit).toEqual({ _tag: "HalfOpen", probes: 2, since: T0 + 10_000 })
    expect(s.active).toBe(3)
    expect(EndpointState.admission(s, T0 + 20_000)).toBe("probing")
    return { s, p2, p3 }
  }

  // Guards the probe slot accounting: a late probe of an earlier period frees no slot of the current one.
  it("a probe left over from an earlier half-open period does not free a current slot", () => {
    const { p2, s } = twoPeriods()
    const full = { _tag: "HalfOpen", probes: 2, since: T0 + 10_000 }
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
  })

  it("a probe left over from an earlier half-open period does not close the current one by succeeding", () => {
    const { p2, p3, s } = twoPeriods()
    const late = EndpointState.onSuccess(s, T0 + 20_500, 100, p2)
    // counted as an ordinary success, the current period still probing
    expect(late.circuit).toEqual({ _tag: "HalfOpen", probes: 2, since: T0 + 10_000 })
    expect(late.active).toBe(2)
    expect([late.successes, late.consecutiveFailures]).toEqual([s.successes + 1, 0])
    expect(EndpointState.admission(late, T0 + 20_500)).toBe("probing")
    expect(EndpointState.status(late, T0 + 20_500)).toBe("degraded")
    // a probe of the current period does close it
    const closed = EndpointState.onSuccess(late, T0 + 21_000, 100, p3)
    expect(closed.circuit).toEqual({ _tag: "Closed" })
    expect(closed.active).toBe(1)

    // the same when forceHealthy ended the probe's period and the circuit opened again
    const [probing, stale] = acquire(opened(), T0 + 30_000)
    expect(stale).toBe(T0)
    const reopened = repeat(3, EndpointState.forceHealthy(probing), (t) => fail(t, T0 + 30_000))
    expect(reopened.circuit).toEqual({ _tag: "Open", since: T0 + 30_000, until: T0 + 60_000 })
    const [probingAgain, current] = acquire(reopened, T0 + 60_000)
    expect(current).toBe(T0 + 30_000)
    const t = EndpointState.onSuccess(probingAgain, T0 + 60_000, undefined, stale)
    expect(t.circuit).toEqual({ _tag: "HalfOpen", probes: 1, since: T0 + 30_000 })
    expect(t.active).toBe(1)
    expect(EndpointState.admission(t, T0 + 60_000)).toBe("probing")
  })
})
