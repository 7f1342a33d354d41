/**
 * Cases found in review, each a bug that once existed: they keep it from coming back.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Schedule, TestClock } from "effect"
import type { Endpoint } from "../src/index.js"
import { Balancer, Errors, Outcome, Router } from "../src/index.js"
import { endpoint, makeRouter } from "./helpers.js"

const setup = makeRouter

describe("regressions", () => {
  it.scoped("a cooldown that is over is not reported, so a waiter does not spin on a past retryAt", () =>
    Effect.gen(function*() {
      const { balancer } = yield* setup({ endpoints: [endpoint("a", { maxConcurrency: 1 })] })
      yield* Effect.either(
        balancer.use(() => Effect.fail(new Errors.RateLimited({ retryAfter: Duration.millis(10) })))
      )
      yield* TestClock.adjust("50 millis")
      yield* balancer.acquire()
      const error = yield* Effect.flip(balancer.acquire())
      expect(error.passedOver).toEqual([{ endpoint: "a", reason: "at-capacity" }])
      expect(error.retryAt).toBeUndefined()
      // a wait on a full endpoint sleeps until the wait is over, it does not poll
      const waiter = yield* Effect.fork(Effect.flip(balancer.acquire({ wait: "300 millis" })))
      yield* TestClock.adjust("300 millis")
      expect((yield* Fiber.join(waiter)).passedOver[0].reason).toBe("at-capacity")
    }))

  it.scoped("when a probe closes the circuit, every waiter gets in at once", () =>
    Effect.gen(function*() {
      const { balancer } = yield* setup({
        endpoints: [endpoint("a")],
        health: { maxFailures: 1, recoveryTimeout: "1 second", slowStart: 0 }
      })
      yield* Effect.either(balancer.use(() => Effect.fail(new Errors.Unavailable({}))))
      yield* TestClock.adjust("1 second")
      const probe = yield* balancer.acquire()
      const starts: Array<number> = []
      const waiters = yield* Effect.forEach(Array.from({ length: 5 }), () =>
        Effect.fork(
          balancer.use(
            (_, lease) =>
              Effect.sync(() => starts.push(lease.startedAt)).pipe(Effect.zipRight(Effect.sleep("1 second"))),
            {
              wait: "1 minute"
            }
          )
        ))
      yield* TestClock.adjust("100 millis")
      yield* balancer.release(probe, Outcome.success())
      yield* TestClock.adjust("10 millis")
      expect(starts).toEqual([1100, 1100, 1100, 1100, 1100])
      yield* TestClock.adjust("1 second")
      yield* Effect.forEach(waiters, Fiber.join)
    }))

  it.scoped("a hedge that finds no other endpoint does not spend the retry budget", () =>
    Effect.gen(function*() {
      const { router } = yield* setup({ endpoints: [endpoint("only")], health: { maxFailures: 1_000 } }, {
        retryBudget: { percent: 0.5, minPerSecond: 0.1, ttl: "10 seconds" }
      })
      const slow = () => Effect.as(Effect.sleep("1 second"), "ok")
      for (let i = 0; i < 20; i++) {
        const fiber = yield* Effect.fork(router.execute(slow, { hedge: { delay: "100 millis" } }))
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(fiber)
      }
      const failing = yield* Effect.fork(
        Effect.flip(
          router.execute(() => Effect.fail(new Errors.Unavailable({})), { backoff: Schedule.spaced("10 millis") })
        )
      )
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(failing)
      expect(error.attempts.length).toBe(3)
    }))

  it.scoped("when both attempts of a hedged round fail, the one that failed last is reported", () =>
    Effect.gen(function*() {
      const { router } = yield* setup({
        endpoints: [endpoint("first", { contextWindow: 8_000 }), endpoint("twin")],
        strategy: "round-robin"
      })
      const call = (e: Endpoint.Endpoint) =>
        e.name === "first"
          ? Effect.zipRight(Effect.sleep("3 seconds"), Effect.fail(new Errors.ContextLengthExceeded({})))
          : Effect.zipRight(Effect.sleep("500 millis"), Effect.fail(new Errors.Unavailable({})))
      const fiber = yield* Effect.fork(router.execute(call, { hedge: { delay: "1 second" }, maxAttempts: 1 }))
      yield* TestClock.adjust("3 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error.lastError?._tag).toBe("ContextLengthExceeded")
    }))

  it.scoped("an endpoint added later follows the recoverySchedule too", () =>
    Effect.gen(function*() {
      const { balancer } = yield* setup({
        endpoints: [],
        health: { maxFailures: 1, recoverySchedule: Schedule.spaced("1 hour") }
      })
      yield* balancer.addEndpoint(endpoint("late"))
      yield* Effect.either(balancer.use(() => Effect.fail(new Errors.Unavailable({}))))
      expect((yield* balancer.stats)[0].unhealthyUntil).toBe(3_600_000)
    }))

  it.scoped("bad input is a typed error, not a defect", () =>
    Effect.gen(function*() {
      const nullOptions = yield* Effect.flip(Balancer.make(null as unknown as Balancer.Options))
      expect(nullOptions.issues).toEqual([{ path: "", message: "must be an object of options" }])
      const badBudget = yield* Effect.flip(
        Layer.build(
          Router.layer({ retryBudget: { percent: NaN, ttl: "soon" as never } }).pipe(
            Layer.provide(Balancer.layer({ endpoints: [endpoint("a")] }))
          )
        )
      )
      expect(badBudget._tag).toBe("InvalidConfig")
      const { router } = yield* setup({ endpoints: [endpoint("a")] })
      const badPolicy = yield* Effect.flip(
        router.execute(() => Effect.succeed(1), { maxAttempts: NaN, timeout: "a while" as never })
      )
      expect(badPolicy.reason).toBe("invalid-policy")
      expect(badPolicy.message).toContain("maxAttempts must be a whole number of at least 1, got NaN")
      expect(badPolicy.message).toContain(`timeout must be a duration`)
    }))

  it.scoped("consecutive failures: a success of a call older than the run of failures does not end it, a newer one does", () =>
    Effect.gen(function*() {
      const { balancer } = yield* setup({ endpoints: [endpoint("a")], health: { maxFailures: 3 } })
      const circuit = Effect.map(balancer.stats, (s) => [s[0].circuit, s[0].consecutiveFailures] as const)
      // an outage: a slow call started before it answers well during it
      const old = yield* balancer.acquire()
      yield* TestClock.adjust("1 second")
      const failing = () =>
        Effect.flatMap(balancer.acquire(), (l) => balancer.release(l, Outcome.failure(new Errors.Unavailable({}))))
      yield* failing()
      yield* failing()
      yield* balancer.release(old, Outcome.success())
      expect(yield* circuit).toEqual(["closed", 2])
      yield* failing()
      expect((yield* circuit)[0]).toBe("open")
    }))

  it.scoped("consecutive failures: calls started after the first failing one that succeed end the run (a timeout in a normal tail opens nothing)", () =>
    Effect.gen(function*() {
      const { balancer } = yield* setup({ endpoints: [endpoint("a")], health: { maxFailures: 3 } })
      const consecutive = Effect.map(balancer.stats, (s) => s[0].consecutiveFailures)
      // many calls in flight: the oldest times out, a younger one succeeds, and so on
      const first = yield* balancer.acquire()
      yield* TestClock.adjust("100 millis")
      const younger = yield* balancer.acquire()
      yield* TestClock.adjust("4 seconds")
      yield* balancer.release(first, Outcome.failure(new Errors.Timeout({})))
      expect(yield* consecutive).toBe(1)
      yield* balancer.release(younger, Outcome.success())
      expect(yield* consecutive).toBe(0)
    }))
})
