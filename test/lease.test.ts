/**
 * What a call reports through its lease: usage, provider hints and the first token of a
 * stream, taken into account by `use` and by `release`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, TestClock } from "effect"
import { Outcome, RateLimit } from "../src/index.js"
import { endpoint, makeBalancer } from "./helpers.js"

describe("Lease.report and Lease.firstToken", () => {
  it.scoped("use: a streamed call's first token sets the routing latency, usage prices it and corrects tpm", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a", { limits: { tpm: 10_000 }, cost: { inputPerMillion: 2, outputPerMillion: 8 } })]
      })
      const fiber = yield* Effect.fork(b.use((_, lease) =>
        Effect.gen(function*() {
          yield* Effect.sleep("300 millis")
          yield* lease.firstToken
          yield* Effect.sleep("1700 millis")
          // a second first token does not move the first
          yield* lease.firstToken
          yield* lease.report({ usage: { inputTokens: 1_000, outputTokens: 340 } })
        }), { inputTokens: 1_000, outputTokens: 4_000 }))
      yield* TestClock.adjust("1 millis")
      expect((yield* b.stats)[0].tokensLastMinute).toBe(5_000)
      yield* TestClock.adjust("2 seconds")
      yield* Fiber.join(fiber)
      const [s] = yield* b.stats
      expect(s.latencyP50Ms).toBe(300)
      expect(s.avgTimeToFirstTokenMs).toBe(300)
      expect(s.avgLatencyMs).toBe(2_000)
      expect(s.tokensPerSecond).toBe(200)
      expect(s.tokensLastMinute).toBe(1_340)
      expect([s.inputTokens, s.outputTokens]).toEqual([1_000, 340])
      expect(s.spent).toBeCloseTo((1_000 * 2 + 340 * 8) / 1_000_000, 9)
    }))

  it.scoped("release: the outcome's own fields win over the report, field by field", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a", { cost: { inputPerMillion: 1, outputPerMillion: 1 } })]
      })
      const lease = yield* b.acquire()
      yield* lease.report({ usage: { inputTokens: 10, outputTokens: 10 }, timeToFirstToken: "50 millis" })
      yield* lease.report({ usage: { inputTokens: 100, outputTokens: 100 } })
      yield* b.release(lease, Outcome.success({ latency: "1 second", usage: { inputTokens: 500, outputTokens: 500 } }))
      const [s] = yield* b.stats
      expect([s.inputTokens, s.outputTokens]).toEqual([500, 500])
      expect(s.avgTimeToFirstTokenMs).toBe(50)
    }))

  it.scoped("a failed call's provider hint still tightens the endpoint's allowance", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")] })
      const hint = RateLimit.remaining(
        {
          "x-ratelimit-remaining-requests": "0",
          "x-ratelimit-limit-requests": "500",
          "x-ratelimit-reset-requests": "20s"
        },
        0
      )
      const failed = yield* Effect.either(
        b.use((_, lease) => Effect.zipRight(lease.report({ rateLimit: hint }), Effect.fail("upstream hiccup")))
      )
      expect(failed._tag).toBe("Left")
      const error = yield* Effect.flip(b.acquire())
      expect(error.passedOver).toEqual([{ endpoint: "a", reason: "no-headroom", until: 20_000 }])
      expect(error.retryAt).toBe(20_000)
      yield* TestClock.adjust("20 seconds")
      const lease = yield* b.acquire()
      expect(lease.endpoint.name).toBe("a")
    }))

  it.scoped("an interrupted call keeps its request counted and gives its slot back", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { limits: { rpm: 2 }, maxConcurrency: 1 })] })
      const fiber = yield* Effect.fork(b.use(() => Effect.never))
      yield* TestClock.adjust("1 millis")
      expect((yield* b.stats)[0].active).toBe(1)
      yield* Fiber.interrupt(fiber)
      const [s] = yield* b.stats
      expect([s.active, s.requestsLastMinute]).toEqual([0, 1])
      yield* b.use(() => Effect.void)
      const error = yield* Effect.flip(b.acquire())
      expect(error.passedOver[0].reason).toBe("no-headroom")
    }))
})

describe("a stream past its first token", () => {
  it.scoped("does not make its endpoint look slow however long it streams; its release settles the count", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")] })
      const warm = yield* b.acquire()
      yield* TestClock.adjust("200 millis")
      yield* b.release(warm, Outcome.success())
      const estimate = Effect.map(b.stats, (s) => s[0].latencyEstimateMs)
      expect(yield* estimate).toBe(200)
      const stream = yield* b.acquire()
      yield* TestClock.adjust("100 millis")
      yield* stream.firstToken
      yield* stream.firstToken // a second mark changes nothing
      yield* TestClock.adjust("1 minute")
      expect(yield* estimate).toBe(200)
      yield* b.release(stream, Outcome.success())
      // the next call that waits without an answer is counted as slowness again
      yield* b.acquire()
      yield* TestClock.adjust("10 seconds")
      expect(yield* estimate).toBe(10_000)
    }))
})
