/**
 * Budgets (per endpoint and for the whole balancer), spend from reported usage, model
 * groups and `Strategy.cost`, at the balancer level on the TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Fiber, Option, Random, TestClock } from "effect"
import type { Endpoint } from "../src/index.js"
import { Balancer, Outcome, Strategy } from "../src/index.js"
import { endpoint, makeBalancer } from "./helpers.js"

const HOUR = 3_600_000

const call = (
  b: Balancer.BalancerService,
  hints?: Balancer.Hints,
  outcome: Outcome.Outcome = Outcome.success()
) => Effect.flatMap(b.acquire(hints), (lease) => Effect.as(b.release(lease, outcome), lease.endpoint.name))

/** A success that used `input` and `output` tokens. */
const used = (inputTokens: number, outputTokens: number) => Outcome.success({ usage: { inputTokens, outputTokens } })

const statsOf = (b: Balancer.BalancerService, name: string) =>
  Effect.map(b.stats, (stats) => stats.find((s) => s.name === name)!)

const picks = (b: Balancer.BalancerService, n: number, hints?: Balancer.Hints) =>
  Effect.forEach(Array.from({ length: n }), () => call(b, hints))

const setTime = (ms: number) => Effect.flatMap(Clock.currentTimeMillis, (now) => TestClock.adjust(ms - now))

const priced = (name: string, inputPerMillion: number, outputPerMillion: number, extra: Partial<Endpoint.Input> = {}) =>
  endpoint(name, { cost: { inputPerMillion, outputPerMillion }, ...extra })

describe("endpoint budget", () => {
  it.scoped("spent out, it is over-budget until the next epoch-aligned period, then takes calls again", () =>
    Effect.gen(function*() {
      const start = Date.parse("2026-03-01T15:20:00Z")
      const midnight = Date.parse("2026-03-02T00:00:00Z")
      yield* setTime(start)
      const b = yield* makeBalancer({
        // 10 per day (the default period), 4 per call of 100k + 100k tokens
        endpoints: [priced("a", 10, 30, { budget: { limit: 10 } }), priced("b", 1, 3)],
        strategy: "round-robin"
      })
      const onA = { exclude: ["b"] }
      yield* call(b, onA, used(100_000, 100_000))
      yield* call(b, onA, used(100_000, 100_000))
      let s = yield* statsOf(b, "a")
      expect(s.spent).toBe(8)
      expect(s.budget).toEqual({ limit: 10, spent: 8, periodEnd: midnight })
      // past its soft limit (0.8 x 10) it steps aside for the cheaper "b"
      expect(yield* picks(b, 4)).toEqual(["b", "b", "b", "b"])
      // under its limit it still takes a call, which overshoots it
      yield* call(b, onA, used(100_000, 100_000))
      s = yield* statsOf(b, "a")
      expect(s.spent).toBe(12)
      expect(s.budget).toEqual({ limit: 10, spent: 12, periodEnd: midnight })
      expect(s.inputTokens).toBe(300_000)
      expect(s.outputTokens).toBe(300_000)

      const refused = yield* Effect.flip(b.acquire(onA))
      expect(refused.passedOver).toEqual([
        { endpoint: "a", reason: "over-budget", until: midnight },
        { endpoint: "b", reason: "excluded" }
      ])
      expect(refused.retryAt).toBe(midnight)
      yield* setTime(midnight - 1)
      expect((yield* Effect.flip(b.acquire(onA))).passedOver[0]).toEqual({
        endpoint: "a",
        reason: "over-budget",
        until: midnight
      })
      // a waiter gets it when the period rolls over
      const waiter = yield* Effect.fork(b.acquire({ ...onA, wait: "1 minute" }))
      yield* Effect.yieldNow()
      expect(Option.isNone(yield* Fiber.poll(waiter))).toBe(true)
      yield* TestClock.adjust("1 millis")
      const lease = yield* Fiber.join(waiter)
      expect(lease.endpoint.name).toBe("a")
      expect(lease.startedAt).toBe(midnight)
      s = yield* statsOf(b, "a")
      expect(s.budget).toEqual({ limit: 10, spent: 0, periodEnd: midnight + 24 * HOUR })
      expect(s.spent).toBe(12)
      yield* b.release(lease, used(100_000, 100_000))
      expect((yield* statsOf(b, "a")).budget).toEqual({ limit: 10, spent: 4, periodEnd: midnight + 24 * HOUR })
      // back in rotation
      expect(yield* picks(b, 2)).toEqual(["b", "a"])
    }))

  it.scoped("spend is usage x cost per million, in stats and in the summary", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [priced("a", 2.5, 10, { budget: { limit: 1, period: "1 hour" } }), endpoint("free")]
      })
      yield* call(b, { exclude: ["free"] }, used(1_234, 567))
      // (1_234 x 2.5 + 567 x 10) / 1e6
      const s = yield* statsOf(b, "a")
      expect(s.spent).toBe(0.008755)
      expect(s.budget).toEqual({ limit: 1, spent: 0.008755, periodEnd: HOUR })
      // no usage reported: nothing spent; an endpoint without cost spends nothing
      yield* call(b, { exclude: ["free"] })
      yield* call(b, { exclude: ["a"] }, used(1_000_000, 1_000_000))
      expect((yield* statsOf(b, "a")).spent).toBe(0.008755)
      expect((yield* statsOf(b, "free")).spent).toBe(0)
      expect((yield* statsOf(b, "free")).budget).toBeNull()
      const summary = yield* b.summary
      expect(summary.spent).toBe(0.008755)
      expect(summary.budget).toBeNull()
    }))
})

describe("soft limits and rounding", () => {
  it.scoped("past its soft limit an endpoint steps aside only for one that costs no more", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [priced("cheap", 1, 1, { budget: { limit: 1 } }), priced("dear", 10, 10)],
        strategy: "round-robin"
      })
      // 0.9 of 1 spent: past the soft limit (0.8), but "dear" costs more, so "cheap" still serves
      yield* call(b, { exclude: ["dear"] }, used(450_000, 450_000))
      expect(yield* picks(b, 4)).toEqual(["dear", "cheap", "dear", "cheap"])
    }))

  it.scoped("ten calls of 0.0003 spend a budget of 0.003 (sums of prices are not exact)", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [priced("a", 1, 2, { budget: { limit: 0.003 } })] })
      // 100 input + 100 output tokens: 0.0001 + 0.0002
      for (let i = 0; i < 10; i++) yield* call(b, undefined, used(100, 100))
      const error = yield* Effect.flip(b.acquire())
      expect(error.passedOver.map((p) => p.reason)).toEqual(["over-budget"])
    }))
})

describe("balancer budget", () => {
  it.scoped("past the soft limit only the cheapest endpoints (within 5 %) take calls, even under round-robin", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [
          priced("cheap", 1, 1),
          priced("near", 1.04, 1.04), // within 5 % of cheap
          priced("mid", 1.06, 1.06), // 6 % more
          priced("pricey", 10, 10)
        ],
        strategy: "round-robin",
        budget: { limit: 100, period: "1 hour", softLimit: 0.5 }
      })
      expect(yield* picks(b, 4)).toEqual(["cheap", "near", "mid", "pricey"])
      // 20 per call on pricey: 60 after three, past the soft limit of 50
      for (let i = 0; i < 3; i++) {
        yield* call(b, { exclude: ["cheap", "near", "mid"] }, used(1_000_000, 1_000_000))
      }
      expect((yield* b.summary).budget).toEqual({
        limit: 100,
        spent: 60,
        softLimit: 0.5,
        periodStart: 0,
        periodEnd: HOUR
      })
      expect(yield* picks(b, 6)).toEqual(["cheap", "near", "cheap", "near", "cheap", "near"])
      // the cheapest among the candidates the request leaves
      expect(yield* picks(b, 3, { exclude: ["cheap", "near"] })).toEqual(["mid", "mid", "mid"])
      // a new period starts below the soft limit again
      yield* setTime(HOUR)
      expect((yield* b.summary).budget?.spent).toBe(0)
      // every endpoint again, the cycle going on after mid
      expect(yield* picks(b, 4)).toEqual(["pricey", "cheap", "near", "mid"])
    }))

  it.scoped("the cheapest depends on the request's estimated input and output tokens", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [priced("cheap-in", 1, 20), priced("cheap-out", 5, 2)],
        strategy: "round-robin",
        budget: { limit: 10, softLimit: 0 }
      })
      // soft limit 0: thrifty from the start
      expect(yield* picks(b, 3, { inputTokens: 10_000, outputTokens: 100 })).toEqual([
        "cheap-in",
        "cheap-in",
        "cheap-in"
      ])
      expect(yield* picks(b, 3, { inputTokens: 100, outputTokens: 10_000 })).toEqual([
        "cheap-out",
        "cheap-out",
        "cheap-out"
      ])
      // without an estimate: a million of each, 21 vs 7
      expect(yield* picks(b, 2)).toEqual(["cheap-out", "cheap-out"])
    }))

  it.scoped("at the cap, endpoints with prices stop taking calls until the period ends; one priced 0 still does", () =>
    Effect.gen(function*() {
      yield* setTime(HOUR / 2)
      const b = yield* makeBalancer({
        endpoints: [priced("paid", 1, 1), priced("free", 0, 0), endpoint("unpriced")],
        strategy: "round-robin",
        budget: { limit: 2, period: "1 hour" }
      })
      yield* call(b, { exclude: ["free", "unpriced"] }, used(1_000_000, 1_000_000))
      expect((yield* b.summary).budget).toEqual({
        limit: 2,
        spent: 2,
        softLimit: 0.8,
        periodStart: 0,
        periodEnd: HOUR
      })
      expect((yield* b.summary).spent).toBe(2)
      const refused = yield* Effect.flip(b.acquire({ exclude: ["free", "unpriced"] }))
      expect(refused.passedOver).toEqual([
        { endpoint: "paid", reason: "over-budget", until: HOUR },
        { endpoint: "free", reason: "excluded" },
        { endpoint: "unpriced", reason: "excluded" }
      ])
      expect(refused.retryAt).toBe(HOUR)
      // the free endpoint is the cheapest; an unpriced one is not preferred, but still serves
      expect(yield* picks(b, 3)).toEqual(["free", "free", "free"])
      expect(yield* picks(b, 2, { exclude: ["free"] })).toEqual(["unpriced", "unpriced"])
      // spending on the free endpoint costs nothing
      yield* call(b, { exclude: ["paid", "unpriced"] }, used(5_000_000, 5_000_000))
      expect((yield* b.summary).budget?.spent).toBe(2)

      yield* setTime(HOUR)
      expect((yield* b.summary).budget).toEqual({
        limit: 2,
        spent: 0,
        softLimit: 0.8,
        periodStart: HOUR,
        periodEnd: 2 * HOUR
      })
      expect(yield* picks(b, 1, { exclude: ["free", "unpriced"] })).toEqual(["paid"])
      expect((yield* b.summary).spent).toBe(2)
    }))

  it.effect("a bad budget fails Balancer.make with InvalidConfig naming each field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(Balancer.make({
        endpoints: [endpoint("a")],
        budget: { limit: 0, period: "0 seconds", softLimit: 2, limt: 5 } as never
      })))
      expect(error._tag).toBe("InvalidConfig")
      expect(error.issues.map((i) => i.path).sort()).toEqual([
        "budget.limit",
        "budget.limt",
        "budget.period",
        "budget.softLimit"
      ])
      const message = (path: string) => error.issues.find((i) => i.path === path)?.message
      expect(message("budget.limit")).toBe("must be a finite number greater than 0, got 0")
      expect(message("budget.softLimit")).toBe("must be a number from 0 to 1, got 2")
      expect(message("budget.period")).toBe("must be longer than 0")
      expect(message("budget.limt")).toMatch(/^is unexpected/)
      expect(error.message).toContain("  - budget.limit: must be a finite number greater than 0, got 0")

      const endpointError = yield* Effect.flip(Effect.scoped(Balancer.make({
        endpoints: [endpoint("a", { budget: { limit: -1, period: "soon" } }), endpoint("b", { budget: {} as never })]
      })))
      expect(endpointError.issues.map((i) => i.path)).toEqual([
        "endpoints[0].budget.limit",
        "endpoints[0].budget.period",
        "endpoints[1].budget.limit"
      ])
      expect(endpointError.issues[0].message).toBe("must be a finite number greater than 0, got -1")
      expect(endpointError.issues[2].message).toBe("is missing")
    }))
})

describe("model groups", () => {
  it.scoped("Hints.group routes only to that group (its group, or its model without one)", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [
          endpoint("gpt-1", { model: "gpt-4o" }),
          endpoint("fast-1", { model: "gpt-4o-mini", group: "fast" }),
          endpoint("fast-2", { model: "claude-3-5-haiku", group: "fast" }),
          endpoint("gpt-2", { model: "gpt-4o" }),
          endpoint("named-like-a-model", { model: "other", group: "gpt-4o-mini" })
        ],
        strategy: "round-robin"
      })
      expect((yield* b.stats).map((s) => s.group)).toEqual(["gpt-4o", "fast", "fast", "gpt-4o", "gpt-4o-mini"])
      expect(yield* picks(b, 4, { group: "fast" })).toEqual(["fast-1", "fast-2", "fast-1", "fast-2"])
      // round-robin goes on after fast-2, the last pick
      expect(yield* picks(b, 3, { group: "gpt-4o" })).toEqual(["gpt-2", "gpt-1", "gpt-2"])
      // a group is matched, not a model: fast-1's model is gpt-4o-mini, but its group is "fast"
      expect(yield* picks(b, 2, { group: "gpt-4o-mini" })).toEqual(["named-like-a-model", "named-like-a-model"])
      const none = yield* Effect.flip(b.acquire({ group: "fast", exclude: ["fast-1"], tags: ["vision"] }))
      expect(none.passedOver).toEqual([
        { endpoint: "gpt-1", reason: "other-group" },
        { endpoint: "fast-1", reason: "excluded" },
        { endpoint: "fast-2", reason: "missing-tags" },
        { endpoint: "gpt-2", reason: "other-group" },
        { endpoint: "named-like-a-model", reason: "other-group" }
      ])
      expect(none.retryAt).toBeUndefined()
      const unknown = yield* Effect.flip(b.acquire({ group: "o1" }))
      expect(unknown.passedOver.every((p) => p.reason === "other-group")).toBe(true)
      expect(unknown.passedOver.length).toBe(5)
    }))
})

describe("Strategy.cost", () => {
  it.scoped("takes the cheapest endpoint, and skips an over-budget one for the next cheapest", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [
          priced("pricey", 5, 5),
          priced("cheap", 1, 1, { budget: { limit: 2, period: "1 hour" } }),
          priced("mid", 2, 2)
        ],
        strategy: Strategy.cost()
      })
      expect(yield* picks(b, 5)).toEqual(["cheap", "cheap", "cheap", "cheap", "cheap"])
      // 2 spent: cheap is over its budget
      yield* call(b, undefined, used(1_000_000, 1_000_000))
      expect((yield* statsOf(b, "cheap")).budget).toEqual({ limit: 2, spent: 2, periodEnd: HOUR })
      expect(yield* picks(b, 5)).toEqual(["mid", "mid", "mid", "mid", "mid"])
      const refused = yield* Effect.flip(b.acquire({ exclude: ["pricey", "mid"] }))
      expect(refused.passedOver[1]).toEqual({ endpoint: "cheap", reason: "over-budget", until: HOUR })
      yield* setTime(HOUR)
      expect(yield* picks(b, 3)).toEqual(["cheap", "cheap", "cheap"])
    }).pipe(Effect.withRandom(Random.make("cost budget"))))
})
