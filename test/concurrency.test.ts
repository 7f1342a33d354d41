import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Random } from "effect"
import { Outcome } from "../src/index.js"
import { endpoint, makeBalancer } from "./helpers.js"

const N = 10_000

describe("concurrency", () => {
  it.scoped("10,000 concurrent fibers: maxConcurrency holds, in-flight returns to 0, every outcome is counted", () =>
    Effect.gen(function*() {
      const limits = [3, 5, 8, 13]
      const b = yield* makeBalancer({
        endpoints: limits.map((maxConcurrency, i) => endpoint(`e${i}`, { maxConcurrency })),
        // random failures must not open circuits here: this test is about slot accounting
        health: { maxFailures: 1_000_000 }
      })
      const inFlight = new Map<string, number>()
      const peak = new Map<string, number>()
      let ok = 0
      let failed = 0
      const call = (i: number) =>
        b.use((e) =>
          Effect.gen(function*() {
            const now = (inFlight.get(e.name) ?? 0) + 1
            inFlight.set(e.name, now)
            peak.set(e.name, Math.max(peak.get(e.name) ?? 0, now))
            const steps = yield* Random.nextIntBetween(0, 4)
            for (let s = 0; s < steps; s++) yield* Effect.yieldNow()
            inFlight.set(e.name, inFlight.get(e.name)! - 1)
            if ((yield* Random.next) < 0.3) {
              failed++
              return yield* Effect.fail(`failure ${i}`)
            }
            ok++
          }), { wait: "1 hour" })
      const results = yield* Effect.forEach(
        Array.from({ length: N }, (_, i) => i),
        (i) => Effect.either(call(i)),
        { concurrency: "unbounded" }
      )
      expect(results.length).toBe(N)
      expect(ok + failed).toBe(N)
      const stats = yield* b.stats
      for (const [i, s] of stats.entries()) {
        expect(s.active).toBe(0)
        expect(peak.get(s.name) ?? 0).toBeLessThanOrEqual(limits[i])
      }
      // every endpoint was used, and used up to its limit
      expect([...peak.values()].sort((x, y) => x - y)).toEqual(limits)
      expect(stats.reduce((n, s) => n + s.successes, 0)).toBe(ok)
      expect(stats.reduce((n, s) => n + s.failures, 0)).toBe(failed)
    }).pipe(Effect.withRandom(Random.make("concurrency"))))

  it.scoped("10,000 fibers with manual acquire/release and random outcomes: counts balance", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a", { maxConcurrency: 7 }), endpoint("b"), endpoint("c", { weight: 3 })],
        strategy: "weighted-random",
        health: { maxFailures: 1_000_000 }
      })
      let released = 0
      yield* Effect.forEach(
        Array.from({ length: N }, (_, i) => i),
        (i) =>
          Effect.gen(function*() {
            const lease = yield* b.acquire({ wait: "1 hour" })
            yield* Effect.yieldNow()
            const r = yield* Random.next
            yield* b.release(
              lease,
              r < 0.6 ? Outcome.success({ latency: i % 100 }) : r < 0.9 ? Outcome.failure("x") : Outcome.cancelled
            )
            released++
          }),
        { concurrency: "unbounded" }
      )
      const stats = yield* b.stats
      expect(released).toBe(N)
      expect(stats.every((s) => s.active === 0)).toBe(true)
      const counted = stats.reduce((n, s) => n + s.successes + s.failures, 0)
      expect(counted).toBeGreaterThan(N * 0.85)
      expect(counted).toBeLessThan(N * 0.95)
    }).pipe(Effect.withRandom(Random.make(7))))

  it.scoped("fibers interrupted inside use, while waiting, or mid-call leak no slot", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a", { maxConcurrency: 10 }), endpoint("b", { maxConcurrency: 10 })]
      })
      const fibers = yield* Effect.forEach(
        Array.from({ length: 2_000 }, (_, i) => i),
        (i) => Effect.fork(b.use(() => i % 3 === 0 ? Effect.never : Effect.yieldNow(), { wait: "1 hour" }))
      )
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow()
      // interrupt in a shuffled order, some while running, some while waiting for a slot
      const order = yield* Random.shuffle(fibers)
      yield* Effect.forEach(order, (f) => Fiber.interrupt(f), { concurrency: 50 })
      const stats = yield* b.stats
      expect(stats.map((s) => s.active)).toEqual([0, 0])
      // and the balancer still serves
      const lease = yield* b.acquire()
      yield* b.release(lease, Outcome.success())
    }).pipe(Effect.withRandom(Random.make("interrupt"))))
})
