/**
 * What a run measured, as plain JSON: every request's outcome, and the aggregates a
 * reader compares routers by (success rate, latency percentiles, attempts, what reached
 * an endpoint while it was failing, how fast a fault was noticed and got over, 429s,
 * cost, traffic share over time). Built only from simulated time and seeded draws, so
 * one seed gives one report, byte for byte.
 */
import { Duration } from "effect"
import type { SimulatedEndpointState, TimedFault } from "./fleet.js"
import type { Fault, Scenario } from "./schema.js"

/** One request, from its arrival to its answer or error. */
export interface RequestRecord {
  readonly id: number
  /** Arrival, ms since the start of the run. */
  readonly at: number
  readonly latencyMs: number
  readonly ok: boolean
  /** Why it failed: the router's reason and the last error's tag (`"attempts-exhausted: Unavailable"`). */
  readonly error?: string
  /** Attempts it took (hedges included). */
  readonly attempts: number
  /** The endpoint that answered. */
  readonly endpoint?: string
}

export interface Percentiles {
  readonly p50: number | null
  readonly p95: number | null
  readonly p99: number | null
  readonly p999: number | null
  readonly max: number | null
}

/** How one fault went for the router under test. */
export interface FaultReport {
  readonly type: Fault["type"]
  readonly endpoint: string
  /** ms since the start. */
  readonly from: number
  readonly to: number
  /** Attempts the endpoint received during the fault. */
  readonly attempts: number
  /** Its share of all attempts during the fault. */
  readonly share: number
  /** Its share of attempts in the minute before the fault (what it normally takes). */
  readonly normalShare: number
  /**
   * From the fault's start until its share (over the next 5 s) fell below a tenth of its
   * normal share; null if it never did.
   */
  readonly detectedAfterMs: number | null
  /** Attempts it received from the fault's start until then. */
  readonly attemptsBeforeDetected: number
  /**
   * From the fault's end until a 5 s window ended in which its share was back to 80 % of
   * normal; null if it never was.
   */
  readonly recoveredAfterMs: number | null
  /** For flapping: the attempts in each down period. */
  readonly perDownPeriod?: ReadonlyArray<number>
}

export interface EndpointReport {
  readonly name: string
  readonly attempts: number
  readonly successes: number
  readonly failures: number
  /** Attempts cut before they answered (a lost hedge race, a timeout, the end of the run). */
  readonly cancelled: number
  /** 429s it answered. */
  readonly rateLimited: number
  /** Attempts started while its faults made it fail or hang. */
  readonly sentWhileFailing: number
  /** Attempts started after it answered 429 and before the `Retry-After` it gave. */
  readonly sentBeforeRetryAfter: number
  readonly share: number
  readonly cost: number
  /** Active health checks it answered (they are not calls). */
  readonly healthChecks: number
}

/** One slice of the run's timeline. */
export interface Bucket {
  /** Start, ms since the start of the run. */
  readonly at: number
  readonly requests: number
  readonly failed: number
  /** Latency of the successful requests that arrived in the slice. */
  readonly p50: number | null
  readonly p99: number | null
  /** Attempts started per endpoint, in fleet order (the last slice: until the run drained). */
  readonly attempts: ReadonlyArray<number>
  /** Circuit per endpoint at the slice's end, in fleet order. */
  readonly circuits: ReadonlyArray<"closed" | "open" | "half-open">
}

export interface Report {
  readonly scenario: string
  readonly router: string
  readonly seed: number
  /** Simulated length of the traffic, ms. */
  readonly durationMs: number
  readonly requests: number
  readonly succeeded: number
  readonly failed: number
  readonly successRate: number
  /** End-to-end latency of the successful requests, ms. */
  readonly latency: Percentiles
  /** The longest any request took, failed ones included. */
  readonly maxLatencyMs: number
  /** Requests that took longer than the routing deadline (`routing.timeout`). */
  readonly overDeadline: number
  readonly attempts: number
  readonly attemptsPerRequest: number
  /** 429s answered by the fleet. */
  readonly rateLimited: number
  readonly rateLimitedShare: number
  readonly sentWhileFailing: number
  readonly sentBeforeRetryAfter: number
  readonly cost: number
  readonly endpoints: ReadonlyArray<EndpointReport>
  readonly faults: ReadonlyArray<FaultReport>
  /** Slice length, ms. */
  readonly bucketMs: number
  readonly timeline: ReadonlyArray<Bucket>
  readonly records: ReadonlyArray<RequestRecord>
}

const round = (n: number, digits = 3) => {
  const f = 10 ** digits
  return Math.round(n * f) / f
}

/** The `q`-quantile of sorted values (nearest rank). */
export const quantile = (sorted: ReadonlyArray<number>, q: number): number | null =>
  sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]

export const percentiles = (values: ReadonlyArray<number>): Percentiles => {
  const sorted = [...values].sort((a, b) => a - b)
  const q = (p: number) => {
    const v = quantile(sorted, p)
    return v === null ? null : round(v, 1)
  }
  return { p50: q(0.5), p95: q(0.95), p99: q(0.99), p999: q(0.999), max: q(1) }
}

/** Attempts with start times in [from, to), by binary search over the sorted times. */
const countIn = (times: ReadonlyArray<number>, from: number, to: number): number =>
  lowerBound(times, to) -
  lowerBound(times, from)

const lowerBound = (times: ReadonlyArray<number>, value: number): number => {
  let lo = 0
  let hi = times.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (times[mid] < value) lo = mid + 1
    else hi = mid
  }
  return lo
}

const WINDOW = 5_000
const STEP = 100

export interface Collected {
  readonly scenario: Scenario
  readonly router: string
  readonly seed: number
  readonly start: number
  readonly durationMs: number
  readonly fleet: ReadonlyArray<SimulatedEndpointState>
  readonly records: ReadonlyArray<RequestRecord>
  readonly bucketMs: number
  readonly circuits: ReadonlyArray<ReadonlyArray<"closed" | "open" | "half-open">>
  readonly deadlineMs: number | undefined
}

export const build = (c: Collected): Report => {
  const { fleet, records } = c
  const all = mergeSorted(fleet.map((e) => e.attemptTimes))
  const ok = records.filter((r) => r.ok)
  const attempts = fleet.reduce((n, e) => n + e.attempts, 0)
  const rateLimited = fleet.reduce((n, e) => n + e.rateLimited, 0)
  const buckets = Math.max(1, Math.ceil(c.durationMs / c.bucketMs))
  const timeline: Array<Bucket> = []
  const byBucket: Array<Array<RequestRecord>> = Array.from({ length: buckets }, () => [])
  for (const r of records) byBucket[Math.min(buckets - 1, Math.floor(r.at / c.bucketMs))].push(r)
  for (let b = 0; b < buckets; b++) {
    const from = b * c.bucketMs
    const inBucket = byBucket[b]
    const latencies = percentiles(inBucket.filter((r) => r.ok).map((r) => r.latencyMs))
    timeline.push({
      at: from,
      requests: inBucket.length,
      failed: inBucket.filter((r) => !r.ok).length,
      p50: latencies.p50,
      p99: latencies.p99,
      // the last slice also holds the attempts made while the run drained
      attempts: fleet.map((e) => countIn(e.attemptTimes, from, b === buckets - 1 ? Infinity : from + c.bucketMs)),
      circuits: c.circuits[b] ?? fleet.map(() => "closed" as const)
    })
  }
  const faults: Array<FaultReport> = []
  fleet.forEach((e) => {
    for (const timed of e.faults) faults.push(faultReport(c, e, timed, all))
  })
  faults.sort((a, b) => a.from - b.from || (a.endpoint < b.endpoint ? -1 : a.endpoint > b.endpoint ? 1 : 0))
  return {
    scenario: c.scenario.name,
    router: c.router,
    seed: c.seed,
    durationMs: c.durationMs,
    requests: records.length,
    succeeded: ok.length,
    failed: records.length - ok.length,
    successRate: records.length === 0 ? 1 : round(ok.length / records.length, 5),
    latency: percentiles(ok.map((r) => r.latencyMs)),
    maxLatencyMs: round(records.reduce((m, r) => Math.max(m, r.latencyMs), 0), 1),
    overDeadline: c.deadlineMs === undefined ? 0 : records.filter((r) => r.latencyMs > c.deadlineMs! + 1e-6).length,
    attempts,
    attemptsPerRequest: records.length === 0 ? 0 : round(attempts / records.length, 4),
    rateLimited,
    rateLimitedShare: attempts === 0 ? 0 : round(rateLimited / attempts, 5),
    sentWhileFailing: fleet.reduce((n, e) => n + e.sentWhileFailing, 0),
    sentBeforeRetryAfter: fleet.reduce((n, e) => n + e.sentBeforeRetryAfter, 0),
    cost: round(fleet.reduce((n, e) => n + e.cost, 0), 6),
    endpoints: fleet.map((e) => ({
      name: e.name,
      attempts: e.attempts,
      successes: e.successes,
      failures: e.failures,
      cancelled: e.cancelled,
      rateLimited: e.rateLimited,
      sentWhileFailing: e.sentWhileFailing,
      sentBeforeRetryAfter: e.sentBeforeRetryAfter,
      share: attempts === 0 ? 0 : round(e.attempts / attempts, 4),
      cost: round(e.cost, 6),
      healthChecks: e.healthChecks
    })),
    faults,
    bucketMs: c.bucketMs,
    timeline,
    records
  }
}

const mergeSorted = (lists: ReadonlyArray<ReadonlyArray<number>>): Array<number> => lists.flat().sort((a, b) => a - b)

const faultReport = (
  c: Collected,
  e: SimulatedEndpointState,
  timed: TimedFault,
  all: ReadonlyArray<number>
): FaultReport => {
  const from = timed.from - c.start
  const to = timed.to - c.start
  const mine = e.attemptTimes
  const share = (a: number, b: number) => {
    const total = countIn(all, a, b)
    return total === 0 ? undefined : countIn(mine, a, b) / total
  }
  const before = countIn(all, Math.max(0, from - 60_000), from)
  const normalShare = before >= 20
    ? countIn(mine, Math.max(0, from - 60_000), from) / before
    : e.endpoint.weight / c.fleet.reduce((n, x) => n + x.endpoint.weight, 0)
  let detected: number | null = null
  for (let t = from; t < to; t += STEP) {
    const s = share(t, t + WINDOW)
    if (s !== undefined && s < normalShare / 10) {
      detected = t
      break
    }
  }
  let recovered: number | null = null
  const end = c.durationMs
  for (let t = to; t + WINDOW <= end; t += STEP) {
    const s = share(t, t + WINDOW)
    if (s !== undefined && s >= 0.8 * normalShare) {
      recovered = t + WINDOW - to
      break
    }
  }
  const fault = timed.fault
  let perDownPeriod: Array<number> | undefined
  if (fault.type === "flapping") {
    perDownPeriod = []
    const up = Duration.toMillis(fault.up)
    const period = up + Duration.toMillis(fault.down)
    for (let t = from + up; t < to; t += period) perDownPeriod.push(countIn(mine, t, Math.min(to, t + period - up)))
  }
  return {
    type: fault.type,
    endpoint: e.name,
    from,
    to,
    attempts: countIn(mine, from, to),
    share: round(share(from, to) ?? 0, 4),
    normalShare: round(normalShare, 4),
    detectedAfterMs: detected === null ? null : detected - from,
    attemptsBeforeDetected: detected === null ? countIn(mine, from, to) : countIn(mine, from, detected),
    recoveredAfterMs: recovered,
    ...(perDownPeriod !== undefined ? { perDownPeriod } : {})
  }
}
