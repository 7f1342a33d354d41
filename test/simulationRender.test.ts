import { describe, expect, it } from "@effect/vitest"
import { html } from "../src/internal/simulation/html.js"
import type { Report } from "../src/internal/simulation/report.js"
import { progressLine, table } from "../src/internal/simulation/text.js"

const report = (router: string, p99: number | null): Report => ({
  scenario: "tiny <scenario>",
  router,
  seed: 1,
  durationMs: 30_000,
  requests: 4,
  succeeded: 3,
  failed: 1,
  successRate: 0.75,
  latency: { p50: 120, p95: 300, p99: 400, p999: 400, max: 400 },
  maxLatencyMs: 900,
  overDeadline: 0,
  attempts: 5,
  attemptsPerRequest: 1.25,
  rateLimited: 1,
  rateLimitedShare: 0.2,
  sentWhileFailing: 2,
  sentBeforeRetryAfter: 0,
  cost: 0.0123,
  endpoints: ["east<b>&", "west"].map((name, i) => ({
    name,
    attempts: i === 0 ? 3 : 2,
    successes: i === 0 ? 2 : 1,
    failures: 1,
    cancelled: 0,
    rateLimited: i,
    sentWhileFailing: i === 0 ? 2 : 0,
    sentBeforeRetryAfter: 0,
    share: i === 0 ? 0.6 : 0.4,
    cost: 0.006,
    healthChecks: 0
  })),
  faults: [{
    type: "outage",
    endpoint: "east<b>&",
    from: 10_000,
    to: 20_000,
    attempts: 1,
    share: 0.5,
    normalShare: 0.5,
    detectedAfterMs: 2_000,
    attemptsBeforeDetected: 1,
    recoveredAfterMs: null
  }],
  bucketMs: 10_000,
  timeline: [
    { at: 0, requests: 2, failed: 0, p50: 100, p99: 200, attempts: [1, 1], circuits: ["closed", "closed"] },
    { at: 10_000, requests: 1, failed: 1, p50: null, p99: null, attempts: [1, 0], circuits: ["open", "closed"] },
    { at: 20_000, requests: 1, failed: 0, p50: 150, p99, attempts: [1, 1], circuits: ["half-open", "closed"] }
  ],
  records: []
})

const reports = [report("default", 250), report("round-robin", null)]

describe("simulation rendering", () => {
  it("html escapes user text, draws SVG and is deterministic", () => {
    const page = html(reports, { title: "Run <1>", generatedAt: "2026-01-01" })
    expect(page).toContain("east&lt;b&gt;&amp;")
    expect(page).not.toContain("east<b>&")
    expect(page).not.toContain("<scenario>")
    expect(page).toContain("Run &lt;1&gt;")
    expect(page).toContain("<svg")
    expect(page).not.toMatch(/<script|https?:\/\//)
    expect(page).toBe(html(reports, { title: "Run <1>", generatedAt: "2026-01-01" }))
  })

  it("table has a row per router", () => {
    const t = table(reports)
    expect(t).toContain("default")
    expect(t).toContain("round-robin")
    expect(t.split("\n")).toHaveLength(4)
  })

  it("progressLine shows the bar and the percentage", () => {
    const line = progressLine({
      router: "oracle",
      elapsedMs: 6_000,
      durationMs: 24_000,
      requests: 120,
      failed: 3,
      inFlight: 4,
      endpoints: [{ name: "east", share: 0.7, circuit: "closed" }, { name: "west", share: 0.3, circuit: "open" }]
    }, 8)
    expect(line).toContain(" 25%")
    expect(line).toContain("[##......]")
    expect(line).toContain("●")
    expect(line).toContain("○")
  })
})
