import { describe, expect, it } from "@effect/vitest"
import { Effect, Random } from "effect"
import { Outcome, Strategy } from "../src/index.js"
import { endpoint, makeBalancer, pick } from "./helpers.js"

const abc = [endpoint("a"), endpoint("b"), endpoint("c")]

describe("Strategy.roundRobin", () => {
  it.scoped("cycles through the endpoints in order", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: abc, strategy: Strategy.roundRobin })
      expect(yield* pick(b, 9)).toEqual(["a", "b", "c", "a", "b", "c", "a", "b", "c"])
    }))

  it.scoped("skips an unhealthy endpoint without shifting the cycle", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: abc, strategy: "round-robin" })
      expect(yield* pick(b, 1)).toEqual(["a"])
      yield* b.forceUnhealthy("b")
      expect(yield* pick(b, 4)).toEqual(["c", "a", "c", "a"])
      yield* b.forceHealthy("b")
      expect(yield* pick(b, 3)).toEqual(["b", "c", "a"])
    }))

  it.scoped("is fair over any window while leases overlap", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: abc, strategy: Strategy.roundRobin })
      const leases = yield* Effect.forEach(Array.from({ length: 30 }), () => b.acquire())
      const names = leases.map((l) => l.endpoint.name)
      for (let start = 0; start + 3 <= names.length; start++) {
        expect(new Set(names.slice(start, start + 3)).size).toBe(3)
      }
      yield* Effect.forEach(leases, (l) => b.release(l, Outcome.success()))
    }))
})

describe("Strategy.weightedRandom", () => {
  it.scoped("picks in proportion to weight (chi-square over 10,000 seeded picks)", () =>
    Effect.gen(function*() {
      const weights = [1, 2, 3, 4]
      const b = yield* makeBalancer({
        endpoints: weights.map((weight, i) => endpoint(`e${i}`, { weight })),
        strategy: Strategy.weightedRandom
      })
      const n = 10_000
      const names = yield* pick(b, n)
      const counts = weights.map((_, i) => names.filter((x) => x === `e${i}`).length)
      const total = weights.reduce((a, w) => a + w, 0)
      const chiSquare = counts.reduce((acc, observed, i) => {
        const expected = (n * weights[i]) / total
        return acc + (observed - expected) ** 2 / expected
      }, 0)
      // 3 degrees of freedom: 16.27 is the 0.1 % critical value
      expect(chiSquare).toBeLessThan(16.27)
    }).pipe(Effect.withRandom(Random.make("weighted-random-seed"))))

  it.scoped("the same seed gives the same picks", () =>
    Effect.gen(function*() {
      const run = Effect.scoped(
        Effect.flatMap(
          makeBalancer({ endpoints: abc, strategy: Strategy.weightedRandom }),
          (b) => pick(b, 50)
        )
      )
      const first = yield* Effect.withRandom(run, Random.make(42))
      const second = yield* Effect.withRandom(run, Random.make(42))
      const other = yield* Effect.withRandom(run, Random.make(43))
      expect(first).toEqual(second)
      expect(first).not.toEqual(other)
    }))
})

describe("Strategy.leastConnections", () => {
  it.scoped("sends each new call to the endpoint with the fewest in flight", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: abc, strategy: Strategy.leastConnections })
      const held = yield* Effect.forEach(Array.from({ length: 3 }), () => b.acquire())
      expect(held.map((l) => l.endpoint.name).sort()).toEqual(["a", "b", "c"])
      yield* b.release(held[1], Outcome.success())
      const next = yield* b.acquire()
      expect(next.endpoint.name).toBe(held[1].endpoint.name)
    }))

  it.scoped("ties go round robin, so sequential calls do not pile onto the first endpoint", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: abc, strategy: Strategy.leastConnections })
      expect(yield* pick(b, 6)).toEqual(["a", "b", "c", "a", "b", "c"])
    }))

  it.scoped("weighs load by weight (active / weight)", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("big", { weight: 3 }), endpoint("small", { weight: 1 })],
        strategy: Strategy.leastConnections
      })
      const held = yield* Effect.forEach(Array.from({ length: 8 }), () => b.acquire())
      const big = held.filter((l) => l.endpoint.name === "big").length
      expect(big).toBe(6)
    }))
})

describe("Strategy.smoothWeightedRoundRobin", () => {
  it.scoped("interleaves like nginx: weights 5, 1, 1 give a a b a c a a", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a", { weight: 5 }), endpoint("b"), endpoint("c")],
        strategy: Strategy.smoothWeightedRoundRobin
      })
      expect((yield* pick(b, 14)).join(" ")).toBe("a a b a c a a a a b a c a a")
    }))

  it.scoped("keeps exact proportions over a cycle", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("x", { weight: 2 }), endpoint("y", { weight: 3 })],
        strategy: Strategy.smoothWeightedRoundRobin
      })
      const names = yield* pick(b, 50)
      expect(names.filter((n) => n === "x").length).toBe(20)
    }))
})

describe("a user-written strategy", () => {
  it.scoped("is a plain value made with Strategy.make", () =>
    Effect.gen(function*() {
      const last = Strategy.make({
        name: "last",
        initial: 0,
        select: (candidates, count) => [candidates.length - 1, count + 1]
      })
      const b = yield* makeBalancer({ endpoints: abc, strategy: last })
      expect(b.strategy).toBe("last")
      expect(yield* pick(b, 3)).toEqual(["c", "c", "c"])
    }))

  it.scoped("an out-of-range choice is a defect that names the strategy", () =>
    Effect.gen(function*() {
      const broken = Strategy.make({ name: "broken", initial: undefined, select: (_, s) => [7, s] })
      const b = yield* makeBalancer({ endpoints: abc, strategy: broken })
      const defect = yield* Effect.flip(Effect.sandbox(b.acquire()))
      expect(String(defect)).toContain(`Strategy "broken" chose index 7 among 3 candidates`)
      const stats = yield* b.stats
      expect(stats.every((s) => s.active === 0)).toBe(true)
    }))
})
