import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import * as LatencyWindow from "../src/internal/latencyWindow.js"
import * as random from "../src/internal/random.js"

/** The nearest-rank `q`-quantile of ascending `sorted`: the value of rank ⌈q·n⌉ (at least 1). */
const nearestRank = (sorted: ReadonlyArray<number>, q: number): number =>
  sorted[Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length))) - 1]

/** The nearest-rank `q`-quantile of `values`, computed from scratch. */
const exactQuantile = (values: ReadonlyArray<number>, q: number): number =>
  nearestRank(values.slice().sort((a, b) => a - b), q)

/** The samples the window should hold after `series`: its last `size`, oldest first. */
const lastWindow = (series: ReadonlyArray<number>): ReadonlyArray<number> => series.slice(-LatencyWindow.size)

/** The ring read back oldest first. */
const ringInOrder = (window: LatencyWindow.LatencyWindow): ReadonlyArray<number> => {
  if (window.count < LatencyWindow.size) return Array.from(window.samples.subarray(0, window.count))
  const out: Array<number> = []
  for (let k = 0; k < LatencyWindow.size; k++) out.push(window.samples[(window.next + k) % LatencyWindow.size])
  return out
}

const isSorted = (xs: ArrayLike<number>, count: number): boolean => {
  for (let i = 1; i < count; i++) if (xs[i - 1] > xs[i]) return false
  return true
}

const fixedQs = [0.5, 0.95, 0.99] as const

/** What is wrong with `window` given that it should hold `recent` (oldest first), or `undefined`. */
const check = (window: LatencyWindow.LatencyWindow, recent: ReadonlyArray<number>, q: number): string | undefined => {
  if (window.count !== recent.length) return `count ${window.count}, expected ${recent.length}`
  if (!isSorted(window.sorted, window.count)) {
    return `sorted copy out of order: ${window.sorted.subarray(0, window.count)}`
  }
  const expected = recent.slice().sort((a, b) => a - b)
  for (let k = 0; k < expected.length; k++) {
    if (!Object.is(window.sorted[k], expected[k])) return `sorted[${k}] = ${window.sorted[k]}, expected ${expected[k]}`
  }
  for (const x of [...fixedQs, q]) {
    const got = LatencyWindow.quantile(window, x)
    const want = nearestRank(expected, x)
    if (got !== want) return `quantile(${x}) = ${got}, expected ${want}`
  }
  return undefined
}

// latencies in ms: any double, or a few small integers so that duplicates and ties are the norm
const latency = fc.oneof(
  fc.double({ min: 0, max: 600_000, noNaN: true }),
  fc.integer({ min: 0, max: 5 }),
  fc.constantFrom(100, 100, 250, 1_000)
)

/**
 * Series short and long: fast-check's default size would keep arrays under a dozen
 * elements, which never fills the 256-slot ring, so the long ones are forced past it.
 */
const seriesArb = fc.oneof(
  fc.array(latency, { minLength: 1, maxLength: 40 }),
  fc.array(latency, { minLength: 250, maxLength: 700, size: "max" })
)

/** A seeded lognormal-ish body (median 800 ms) with a slow tail (7 % between 5 s and 30 s), rounded to 0.1 ms. */
const recordedSeries = (n: number, seed: number): ReadonlyArray<number> => {
  const rng = random.fromSeed(seed)
  const out: Array<number> = []
  for (let i = 0; i < n; i++) {
    if (rng() < 0.07) {
      out.push(Math.round((5_000 + 25_000 * rng()) * 10) / 10)
    } else {
      const z = Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng())
      out.push(Math.round(800 * Math.exp(0.6 * z) * 10) / 10)
    }
  }
  return out
}

describe("the latency window (256 samples, kept sorted)", () => {
  it("holds 256 samples", () => {
    expect(LatencyWindow.size).toBe(256)
    const window = LatencyWindow.make()
    expect(window.samples.length).toBe(256)
    expect(window.sorted.length).toBe(256)
    expect(LatencyWindow.quantile(window, 0.5)).toBeUndefined()
  })

  it("after every add: the exact nearest-rank p50, p95, p99 and any q of the last 256 samples, a sorted copy and the ring in order", () => {
    let wrapped = 0
    fc.assert(
      fc.property(
        seriesArb,
        fc.double({ min: 0, max: 1, noNaN: true }),
        (series, q) => {
          const window = LatencyWindow.make()
          for (let i = 0; i < series.length; i++) {
            LatencyWindow.add(window, series[i])
            const recent = series.slice(Math.max(0, i + 1 - LatencyWindow.size), i + 1)
            const problem = check(window, recent, q)
            // (expect only on a mismatch: calling it ~20 times per add would make this test slow)
            if (problem !== undefined) expect({ after: i + 1, problem }).toBeUndefined()
          }
          expect(ringInOrder(window)).toEqual(lastWindow(series))
          if (series.length > LatencyWindow.size) wrapped++
        }
      ),
      { numRuns: 120 }
    )
    // the ring did wrap around in a good share of the runs
    expect(wrapped).toBeGreaterThan(20)
  })

  it("q at the edges: 0 gives the minimum, 1 the maximum, and one sample is every quantile", () => {
    fc.assert(
      fc.property(seriesArb, (series) => {
        const window = LatencyWindow.make()
        for (const x of series) LatencyWindow.add(window, x)
        const recent = lastWindow(series)
        expect(LatencyWindow.quantile(window, 0)).toBe(Math.min(...recent))
        expect(LatencyWindow.quantile(window, 1)).toBe(Math.max(...recent))
      }),
      { numRuns: 200 }
    )
    const one = LatencyWindow.make()
    LatencyWindow.add(one, 42)
    for (const q of [0, 0.01, 0.5, 0.95, 0.99, 1]) expect(LatencyWindow.quantile(one, q)).toBe(42)
  })

  it("runs of equal values and a window full of ties evict the right copies", () => {
    const window = LatencyWindow.make()
    const series: Array<number> = []
    // 300 x 5 ms, then 300 x 1 ms, then alternating 5 and 1: every eviction removes one of many equals
    for (let i = 0; i < 300; i++) series.push(5)
    for (let i = 0; i < 300; i++) series.push(1)
    for (let i = 0; i < 300; i++) series.push(i % 2 === 0 ? 5 : 1)
    for (let i = 0; i < series.length; i++) {
      LatencyWindow.add(window, series[i])
      const recent = lastWindow(series.slice(0, i + 1))
      expect(Array.from(window.sorted.subarray(0, window.count))).toEqual(recent.slice().sort((a, b) => a - b))
    }
    expect(LatencyWindow.quantile(window, 0.5)).toBe(1)
    expect(LatencyWindow.quantile(window, 0.51)).toBe(5)
  })

  it("memory is constant: the same two 256-slot arrays after 100,000 adds", () => {
    const window = LatencyWindow.make()
    const samples = window.samples
    const sorted = window.sorted
    const rng = random.fromSeed(7)
    const series: Array<number> = []
    for (let i = 0; i < 100_000; i++) {
      const x = Math.floor(rng() * 5_000)
      series.push(x)
      LatencyWindow.add(window, x)
    }
    expect(window.samples).toBe(samples)
    expect(window.sorted).toBe(sorted)
    expect(window.samples.length).toBe(256)
    expect(window.sorted.length).toBe(256)
    expect(window.count).toBe(256)
    expect(window.next).toBe(100_000 % 256)
    expect(Object.keys(window).sort()).toEqual(["count", "next", "samples", "sorted"])
    expect(isSorted(window.sorted, window.count)).toBe(true)
    for (const q of fixedQs) expect(LatencyWindow.quantile(window, q)).toBe(exactQuantile(lastWindow(series), q))
  })

  it("p95 tracking is within 1 % of the exact p95 on a recorded series", () => {
    const series = recordedSeries(10_000, 20_240_601)
    // the series is what it claims: a body around 800 ms and a tail of several seconds
    const overall = { p50: exactQuantile(series, 0.5), p95: exactQuantile(series, 0.95) }
    expect(overall.p50).toBeGreaterThan(600)
    expect(overall.p50).toBeLessThan(1_000)
    expect(overall.p95).toBeGreaterThan(3_000)
    const window = LatencyWindow.make()
    let checked = 0
    let exact = 0
    let worst = 0
    for (let i = 0; i < series.length; i++) {
      LatencyWindow.add(window, series[i])
      // many points: the first 300 (filling and first wrap), then every 7th
      if (i >= 300 && i % 7 !== 0) continue
      const truth = exactQuantile(series.slice(Math.max(0, i + 1 - 256), i + 1), 0.95)
      const tracked = LatencyWindow.quantile(window, 0.95)!
      const error = Math.abs(tracked - truth) / truth
      worst = Math.max(worst, error)
      expect(error).toBeLessThanOrEqual(0.01)
      if (tracked === truth) exact++
      checked++
    }
    expect(checked).toBeGreaterThan(1_500)
    // it is not merely close: nearest rank over the window is exact
    expect(worst).toBe(0)
    expect(exact).toBe(checked)
  })
})

describe("the confidence interval of a percentile", () => {
  it("contains the percentile, and is a point for a constant series", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 5_000 }), { minLength: 1, maxLength: 600 }),
        fc.constantFrom(0.5, 0.95, 0.99),
        (series, q) => {
          const window = LatencyWindow.make()
          for (const x of series) LatencyWindow.add(window, x)
          const bounds = LatencyWindow.quantileBounds(window, q, 1.96)!
          const p = LatencyWindow.quantile(window, q)!
          expect(bounds.lower).toBeLessThanOrEqual(p)
          expect(bounds.upper).toBeGreaterThanOrEqual(p)
        }
      ),
      { numRuns: 300 }
    )
    const constant = LatencyWindow.make()
    for (let i = 0; i < 300; i++) LatencyWindow.add(constant, 120)
    expect(LatencyWindow.quantileBounds(constant, 0.95, 1.96)).toEqual({ lower: 120, upper: 120 })
    expect(LatencyWindow.quantileBounds(LatencyWindow.make(), 0.95, 1.96)).toBeUndefined()
    // 1..256: p95 is 244; the interval spans the ranks 236..251
    const ramp = LatencyWindow.make()
    for (let i = 1; i <= 256; i++) LatencyWindow.add(ramp, i)
    expect(LatencyWindow.quantileBounds(ramp, 0.95, 1.96)).toEqual({ lower: 236, upper: 251 })
  })
})
