/**
 * The built-in scenarios and the bars the default configuration must clear on them,
 * checked by a test on short versions and by the bench on the full ones.
 */
import type { Report } from "./report.js"
import type { Contender } from "./run.js"
import type { ScenarioInput } from "./schema.js"

type Behaviour = ScenarioInput["endpoints"][number]["simulate"]

const typical: Behaviour = { latency: { median: "800 millis", p99: "3 seconds" }, tokensPerSecond: 100 }

const fleet = (n = 4, behaviour: Behaviour = typical, extra: (i: number) => object = () => ({})) =>
  Array.from({ length: n }, (_, i) => ({
    name: ["east", "west", "north", "south", "central", "edge"][i] ?? `endpoint-${i + 1}`,
    provider: "simulated",
    model: "chat",
    simulate: behaviour,
    ...extra(i)
  })) as ScenarioInput["endpoints"]

/** Makes every duration in a scenario `factor` times shorter (the short versions the tests run). */
export interface BuiltIn {
  readonly scenario: (scale: number) => ScenarioInput
  /** The routers it compares, ours first. */
  readonly contenders: ReadonlyArray<Contender>
  /** The bars, checked on the reports (in `contenders` order). */
  readonly bars: (reports: ReadonlyArray<Report>) => ReadonlyArray<Bar>
}

/** One bar: what is measured, its value and the limit it must keep. */
export interface Bar {
  readonly name: string
  readonly value: number
  readonly limit: number
  /** Whether `value` must stay at or below `limit`, or reach at least it. */
  readonly direction: "at-most" | "at-least"
  readonly pass: boolean
}

const atMost = (name: string, value: number, limit: number): Bar => ({
  name,
  value,
  limit,
  direction: "at-most",
  pass: value <= limit
})
const atLeast = (name: string, value: number, limit: number): Bar => ({
  name,
  value,
  limit,
  direction: "at-least",
  pass: value >= limit
})

const ours: Contender = { _tag: "Balancer", name: "default" }
const baselines: ReadonlyArray<Contender> = [
  { _tag: "Baseline", name: "round-robin" },
  { _tag: "Baseline", name: "seeds" },
  { _tag: "Baseline", name: "litellm" },
  { _tag: "Baseline", name: "oracle" }
]
const standard = [ours, ...baselines]

const s = (seconds: number, scale: number) => `${Math.round((seconds * 1000) / scale)} millis`

const byRouter = (reports: ReadonlyArray<Report>, name: string): Report => {
  const report = reports.find((r) => r.router === name)
  if (report === undefined) throw new Error(`no report for ${name}`)
  return report
}

export const builtIns = {
  steady: {
    scenario: (scale) => ({
      name: "steady",
      description: "four equal endpoints under steady load: the load is spread evenly",
      traffic: { rate: 20, duration: s(600, scale) },
      endpoints: fleet()
    }),
    contenders: standard,
    bars: (reports) => {
      const r = byRouter(reports, "default")
      const fair = 1 / r.endpoints.length
      return [atMost("largest traffic share / fair share", Math.max(...r.endpoints.map((e) => e.share)) / fair, 1.1)]
    }
  },
  brownout: {
    scenario: (scale) => ({
      name: "brownout",
      description: "one endpoint 10x slower for 120 s",
      traffic: { rate: 20, duration: s(360, scale) },
      faults: [{ type: "brownout", endpoint: "west", from: s(120, scale), to: s(240, scale), factor: 10 }],
      endpoints: fleet()
    }),
    contenders: standard,
    bars: (reports) => {
      const r = byRouter(reports, "default")
      const oracle = byRouter(reports, "oracle")
      return [
        atMost("share of the slow endpoint during the brownout", r.faults[0].share, 0.05),
        atMost("p99 / oracle p99", (r.latency.p99 ?? Infinity) / (oracle.latency.p99 ?? 1), 1.2)
      ]
    }
  },
  outage: {
    scenario: (scale) => ({
      name: "outage",
      description: "one endpoint refuses connections for 10 minutes",
      traffic: { rate: 20, duration: s(840, scale) },
      faults: [{ type: "outage", endpoint: "west", from: s(120, scale), to: s(720, scale) }],
      endpoints: fleet()
    }),
    contenders: standard,
    bars: (reports) => {
      const r = byRouter(reports, "default")
      const f = r.faults[0]
      return [
        atMost("attempts before it was ejected", f.attemptsBeforeDetected, 5),
        atMost("attempts during the outage", f.attempts, 15),
        atMost("failed requests / requests", r.failed / r.requests, 0.001),
        atMost("seconds to 80 % of its share after it recovered", (f.recoveredAfterMs ?? Infinity) / 1000, 60)
      ]
    }
  },
  hang: {
    scenario: (scale) => ({
      name: "hang",
      description: "one endpoint accepts calls and never answers for 5 minutes; callers have a 20 s deadline",
      traffic: { rate: 20, duration: s(420, scale) },
      faults: [{ type: "hang", endpoint: "west", from: s(60, scale), to: s(360, scale) }],
      // an attempt may take 8 s (normal answers take up to about 6), the whole call 20 s
      routing: { timeout: "20 seconds", attemptTimeout: "8 seconds" },
      endpoints: fleet()
    }),
    contenders: standard,
    bars: (reports) => {
      const r = byRouter(reports, "default")
      return [atMost("calls over their deadline", r.overDeadline, 0)]
    }
  },
  "rate-limit": {
    scenario: (scale) => ({
      name: "rate-limit",
      description: "one endpoint allows 120 requests per minute, offered about 300; the balancer is not told",
      traffic: { rate: 20, duration: s(300, scale) },
      endpoints: fleet(4, typical, (i) => i === 0 ? { simulate: { ...typical, limits: { rpm: 120 } } } : {})
    }),
    contenders: standard,
    bars: (
      reports
    ) => [atMost("calls sent before a Retry-After ran out", byRouter(reports, "default").sentBeforeRetryAfter, 0)]
  },
  "rate-limit-known": {
    scenario: (scale) => ({
      name: "rate-limit-known",
      description: "the same limit, declared on the endpoint (capacity tracking on)",
      traffic: { rate: 20, duration: s(300, scale) },
      endpoints: fleet(
        4,
        typical,
        (i) => i === 0 ? { limits: { rpm: 120 }, simulate: { ...typical, limits: { rpm: 120 } } } : {}
      )
    }),
    contenders: standard,
    bars: (reports) => {
      const r = byRouter(reports, "default")
      return [
        atMost("calls sent before a Retry-After ran out", r.sentBeforeRetryAfter, 0),
        atMost("429s / attempts", r.rateLimitedShare, 0.01)
      ]
    }
  },
  "total-outage": {
    scenario: (scale) => ({
      name: "total-outage",
      description: "every endpoint down for 2 minutes",
      traffic: { rate: 20, duration: s(360, scale) },
      faults: [{ type: "outage", endpoint: "*", from: s(120, scale), to: s(240, scale) }],
      endpoints: fleet()
    }),
    contenders: standard,
    bars: (reports) => {
      const r = byRouter(reports, "default")
      return [atMost("attempts / requests", r.attemptsPerRequest, 1.1)]
    }
  },
  flapping: {
    scenario: (scale) => ({
      name: "flapping",
      description: "one endpoint up 20 s, down 20 s, for 5 minutes",
      traffic: { rate: 20, duration: s(420, scale) },
      faults: [{
        type: "flapping",
        endpoint: "west",
        from: s(60, scale),
        to: s(360, scale),
        up: s(20, scale),
        down: s(20, scale)
      }],
      endpoints: fleet()
    }),
    contenders: standard,
    bars: (reports) => {
      const f = byRouter(reports, "default").faults[0]
      const later = (f.perDownPeriod ?? []).slice(1)
      return [atMost("calls in a down period after the first (most)", Math.max(0, ...later), 4)]
    }
  },
  stalls: {
    scenario: (scale) => ({
      name: "stalls",
      description: "1.5 % of calls are 10x slower to their first token",
      traffic: { rate: 20, duration: s(600, scale) },
      faults: [{ type: "stalls", endpoint: "*", from: "0 millis", to: s(600, scale), probability: 0.015, factor: 10 }],
      endpoints: fleet(4, { latency: { median: "800 millis", p99: "1200 millis" } })
    }),
    contenders: [
      ours,
      { _tag: "Balancer", name: "default + hedge at p95", routing: { hedge: { delay: "p95" } } },
      ...baselines
    ],
    bars: (reports) => {
      const plain = byRouter(reports, "default")
      const hedged = byRouter(reports, "default + hedge at p95")
      return [
        atLeast("p99 cut by hedging", 1 - (hedged.latency.p99 ?? Infinity) / (plain.latency.p99 ?? 1), 0.3),
        atMost("extra attempts from hedging", hedged.attemptsPerRequest / plain.attemptsPerRequest - 1, 0.05)
      ]
    }
  },
  cost: {
    scenario: (scale) => ({
      name: "cost",
      description: "a cheap and an expensive endpoint under a budget",
      traffic: { rate: 10, duration: s(600, scale) },
      budget: { limit: 5 / scale, period: "1 hour" },
      endpoints: [
        {
          name: "cheap",
          provider: "simulated",
          model: "chat",
          cost: { inputPerMillion: 0.15, outputPerMillion: 0.6 },
          simulate: typical
        },
        {
          name: "premium",
          provider: "simulated",
          model: "chat",
          cost: { inputPerMillion: 2.5, outputPerMillion: 10 },
          simulate: { latency: { median: "600 millis", p99: "2 seconds" }, tokensPerSecond: 150 }
        }
      ]
    }),
    contenders: [ours, { _tag: "Balancer", name: "default without budget", budget: false }, ...baselines],
    bars: (reports) => {
      const capped = byRouter(reports, "default")
      const free = byRouter(reports, "default without budget")
      return [
        atMost("spend / cap", capped.cost / ((5 * capped.durationMs) / 600_000), 1),
        atLeast("success rate / without the budget", capped.successRate / free.successRate, 0.999)
      ]
    }
  },
  demo: {
    scenario: (scale) => ({
      name: "demo",
      description: "four providers; a brownout, an outage and a 429 burst",
      traffic: { rate: 20, duration: s(720, scale), inputTokens: { median: 600, p99: 4000 }, outputTokens: 250 },
      faults: [
        { type: "brownout", endpoint: "azure", from: s(120, scale), to: s(240, scale), factor: 8 },
        { type: "outage", endpoint: "anthropic", from: s(300, scale), to: s(480, scale) },
        { type: "rate-limit", endpoint: "groq", from: s(540, scale), to: s(660, scale), rpm: 60 }
      ],
      endpoints: [
        {
          name: "openai",
          provider: "openai",
          model: "gpt-4o-mini",
          group: "chat",
          cost: { inputPerMillion: 0.15, outputPerMillion: 0.6 },
          simulate: { latency: { median: "700 millis", p99: "3 seconds" }, tokensPerSecond: 90 }
        },
        {
          name: "azure",
          provider: "openai",
          model: "gpt-4o-mini",
          group: "chat",
          cost: { inputPerMillion: 0.15, outputPerMillion: 0.6 },
          simulate: { latency: { median: "800 millis", p99: "3500 millis" }, tokensPerSecond: 80 }
        },
        {
          name: "anthropic",
          provider: "anthropic",
          model: "claude-3-5-haiku-latest",
          group: "chat",
          cost: { inputPerMillion: 0.8, outputPerMillion: 4 },
          simulate: { latency: { median: "900 millis", p99: "4 seconds" }, tokensPerSecond: 70 }
        },
        {
          name: "groq",
          provider: "openai",
          model: "llama-3.1-8b-instant",
          group: "chat",
          cost: { inputPerMillion: 0.05, outputPerMillion: 0.08 },
          simulate: { latency: { median: "300 millis", p99: "1500 millis" }, tokensPerSecond: 400 }
        }
      ]
    }),
    contenders: [ours, { _tag: "Baseline", name: "round-robin" }, { _tag: "Baseline", name: "oracle" }],
    bars: (reports) => {
      const r = byRouter(reports, "default")
      const rr = byRouter(reports, "round-robin")
      return [
        atMost("failed requests / requests", r.failed / r.requests, 0.001),
        atMost("p99 / round robin's p99", (r.latency.p99 ?? Infinity) / (rr.latency.p99 ?? 1), 1),
        atMost("calls sent before a Retry-After ran out", r.sentBeforeRetryAfter, 0)
      ]
    }
  }
} satisfies Record<string, BuiltIn>

export type BuiltInName = keyof typeof builtIns
