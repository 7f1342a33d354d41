import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import * as LatencyWindow from "../src/internal/latencyWindow.js"

describe("the router's latency window", () => {
  it("gives the exact nearest-rank percentile of its last 128 samples, in constant memory", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(FastCheck.double({ min: 0, max: 600_000, noNaN: true }), { minLength: 1, maxLength: 1_000 }),
        FastCheck.double({ min: 0.01, max: 1, noNaN: true }),
        (series, q) => {
          const window = LatencyWindow.make()
          for (const x of series) LatencyWindow.add(window, x)
          const recent = series.slice(-LatencyWindow.size).sort((a, b) => a - b)
          const exact = recent[Math.min(recent.length, Math.max(1, Math.ceil(q * recent.length))) - 1]
          expect(window.samples.length).toBe(LatencyWindow.size)
          expect(LatencyWindow.quantile(window, q)).toBe(exact)
        }
      ),
      { numRuns: 500 }
    )
  })
})
