/**
 * Capacity: requests-per-minute, tokens-per-minute and requests-per-day windows, provider
 * rate-limit headers as hints, and `Strategy.capacity`, at the balancer level on the
 * TestClock (which starts at epoch 0).
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Either, Fiber, Option, Random, TestClock } from "effect"
import type { Balancer, Errors } from "../src/index.js"
import { Outcome, RateLimit, Strategy } from "../src/index.js"
import { endpoint, makeBalancer } from "./helpers.js"

const MINUTE = 60_000

/** Acquires and at once releases as a success (usage / rate-limit hints optional). */
const call = (
  b: Balancer.BalancerService,
  hints?: Balancer.Hints,
  outcome: Outcome.Outcome = Outcome.success()
) => Effect.flatMap(b.acquire(hints), (lease) => Effect.as(b.release(lease, outcome), lease))

const statsOf = (b: Balancer.BalancerService, name: string) =>
  Effect.map(b.stats, (stats) => stats.find((s) => s.name === name)!)

/** Why the first endpoint was passed over, or "admitted" (a lease is not a readable assertion failure). */
const refusal = (acquire: Effect.Effect<Balancer.Lease, Errors.NoEndpointAvailable>) =>
  Effect.map(Effect.either(acquire), (r) => Either.isLeft(r) ? r.left.passedOver[0].reason : "admitted")

const setTime = (ms: number) => Effect.flatMap(Clock.currentTimeMillis, (now) => TestClock.adjust(ms - now))

describe("requests per minute", () => {
  it.scoped("no burst at any minute boundary lets more than rpm through in any 60 s window", () =>
    Effect.gen(function*() {
      const rpm = 20
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { limits: { rpm } })] })
      // bursts right before, at and right after each minute boundary, and every 7.3 s in between
      const times = new Set<number>()
      for (let m = 0; m <= 5; m++) {
        for (const offset of [-1_000, -1, 0, 1, 999, 1_000]) {
          if (m * MINUTE + offset >= 0) times.add(m * MINUTE + offset)
        }
      }
      for (let t = 0; t <= 5 * MINUTE; t += 7_300) times.add(t)
      const admitted: Array<number> = []
      let refusals = 0
      for (const t of [...times].sort((x, y) => x - y)) {
        yield* setTime(t)
        for (let i = 0; i < 2 * rpm; i++) {
          const result = yield* Effect.either(call(b))
          if (Either.isRight(result)) {
            admitted.push(t)
            continue
          }
          refusals++
          const [passed] = result.left.passedOver
          expect(passed.reason).toBe("no-headroom")
          expect(passed.until).toBeGreaterThan(t)
          expect(result.left.retryAt).toBe(passed.until)
          break
        }
      }
      expect(refusals).toBeGreaterThan(0)
      // every window [s, s + 60 s], closed at both ends, starting at an admission (the worst ones)
      for (const s of admitted) {
        expect(admitted.filter((t) => t >= s && t <= s + MINUTE).length).toBeLessThanOrEqual(rpm)
      }
      // conservative by at most a bucket (1 s) per window: the limit is still mostly used
      expect(admitted.length).toBeGreaterThanOrEqual(4 * rpm)
      expect((yield* statsOf(b, "a")).requestsLastMinute).toBeLessThanOrEqual(rpm)
    }))

  it.scoped("a full window says no-headroom with until and retryAt; a waiting acquire gets the slot then", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { limits: { rpm: 3 } })] })
      yield* TestClock.adjust("500 millis")
      for (let i = 0; i < 3; i++) yield* call(b)
      const s = yield* statsOf(b, "a")
      expect(s.requestsLastMinute).toBe(3)
      expect(s.headroom).toBe(0)
      const refused = yield* Effect.flip(b.acquire())
      // bucket 0 leaves the window when bucket 61 starts
      expect(refused.passedOver).toEqual([{ endpoint: "a", reason: "no-headroom", until: 61_000 }])
      expect(refused.retryAt).toBe(61_000)

      // a wait that ends before then fails when it ends
      const short = yield* Effect.fork(Effect.flip(b.acquire({ wait: "10 seconds" })))
      yield* TestClock.adjust("10 seconds")
      const gaveUp = yield* Fiber.join(short)
      expect(gaveUp.retryAt).toBe(61_000)

      const waiter = yield* Effect.fork(b.acquire({ wait: "2 minutes" }))
      yield* setTime(60_999)
      expect(Option.isNone(yield* Fiber.poll(waiter))).toBe(true)
      yield* TestClock.adjust("1 millis")
      const lease = yield* Fiber.join(waiter)
      expect(lease.startedAt).toBe(61_000)
      expect((yield* statsOf(b, "a")).requestsLastMinute).toBe(1)
      yield* b.release(lease, Outcome.success())
    }))

  it.scoped("an interrupted call gives its slot back but stays counted; an interrupted waiter counts nothing", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { limits: { rpm: 2 }, maxConcurrency: 1 })] })
      const hanging = yield* Effect.fork(b.use(() => Effect.never))
      yield* Effect.yieldNow()
      let s = yield* statsOf(b, "a")
      expect(s.active).toBe(1)
      expect(s.requestsLastMinute).toBe(1)
      expect(s.headroom).toBe(0) // maxConcurrency 1, one in flight
      yield* Fiber.interrupt(hanging)
      s = yield* statsOf(b, "a")
      expect(s.active).toBe(0)
      expect(s.successes + s.failures).toBe(0)
      expect(s.requestsLastMinute).toBe(1)
      expect(s.headroom).toBe(0.5)
      // the freed slot takes a call; then the window is full
      yield* call(b)
      expect((yield* statsOf(b, "a")).requestsLastMinute).toBe(2)
      const waiter = yield* Effect.fork(b.acquire({ wait: "5 minutes" }))
      yield* TestClock.adjust("30 seconds")
      yield* Fiber.interrupt(waiter)
      s = yield* statsOf(b, "a")
      expect(s.requestsLastMinute).toBe(2)
      expect(s.active).toBe(0)
    }))
})

describe("tokens per minute", () => {
  it.scoped("the estimate is reserved at acquire and replaced by the reported usage, smaller or larger", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { limits: { tpm: 1_000 } })] })
      const first = yield* b.acquire({ inputTokens: 300, outputTokens: 200 })
      let s = yield* statsOf(b, "a")
      expect(s.tokensLastMinute).toBe(500)
      expect(s.headroom).toBe(0.5)
      // smaller than the estimate
      yield* b.release(first, Outcome.success({ usage: { inputTokens: 100, outputTokens: 50 } }))
      s = yield* statsOf(b, "a")
      expect(s.tokensLastMinute).toBe(150)
      expect(s.inputTokens).toBe(100)
      expect(s.outputTokens).toBe(50)

      yield* TestClock.adjust("10 seconds")
      const second = yield* b.acquire({ inputTokens: 400, outputTokens: 100 })
      expect((yield* statsOf(b, "a")).tokensLastMinute).toBe(650)
      yield* TestClock.adjust("5 seconds")
      // larger than the estimate, corrected at the lease's start (bucket 10), not at its end
      yield* b.release(second, Outcome.success({ usage: { inputTokens: 600, outputTokens: 300 } }))
      s = yield* statsOf(b, "a")
      expect(s.tokensLastMinute).toBe(1_050)
      expect(s.headroom).toBe(0)

      // over the limit: nothing fits, not even a request without an estimate
      const none = yield* Effect.flip(b.acquire())
      expect(none.passedOver).toEqual([{ endpoint: "a", reason: "no-headroom", until: 61_000 }])
      // 100 tokens fit once bucket 0 (150) has left; 200 only once bucket 10 (900) has
      const small = yield* Effect.flip(b.acquire({ inputTokens: 100 }))
      expect(small.passedOver).toEqual([{ endpoint: "a", reason: "no-headroom", until: 61_000 }])
      const big = yield* Effect.flip(b.acquire({ inputTokens: 200 }))
      expect(big.passedOver).toEqual([{ endpoint: "a", reason: "no-headroom", until: 71_000 }])
      yield* setTime(61_000)
      expect((yield* statsOf(b, "a")).tokensLastMinute).toBe(900)
      yield* call(b, { inputTokens: 100 })
      expect((yield* Effect.flip(b.acquire({ inputTokens: 1 }))).retryAt).toBe(71_000)
      yield* setTime(71_000)
      expect((yield* statsOf(b, "a")).tokensLastMinute).toBe(100)
      yield* call(b, { inputTokens: 900 })
    }))

  it.scoped("a request larger than the whole tpm is too-large, with no until", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("small", { limits: { tpm: 1_000 } }), endpoint("big", { limits: { tpm: 10_000 } })]
      })
      const lease = yield* call(b, { inputTokens: 900, outputTokens: 101 })
      expect(lease.endpoint.name).toBe("big")
      const refused = yield* Effect.flip(b.acquire({ inputTokens: 9_000, outputTokens: 1_001 }))
      expect(refused.passedOver).toEqual([
        { endpoint: "small", reason: "too-large" },
        { endpoint: "big", reason: "too-large" }
      ])
      expect(refused.retryAt).toBeUndefined()
      // nothing was reserved by the refusals
      expect((yield* statsOf(b, "small")).tokensLastMinute).toBe(0)
      expect((yield* statsOf(b, "big")).tokensLastMinute).toBe(1_001)
    }))

  it.scoped("without an estimate, the reported usage is counted against tpm", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { limits: { tpm: 1_000 } })] })
      yield* TestClock.adjust("5 seconds")
      yield* call(b, undefined, Outcome.success({ usage: { inputTokens: 400, outputTokens: 200 } }))
      expect((yield* statsOf(b, "a")).tokensLastMinute).toBe(600)
      yield* call(b, undefined, Outcome.success({ usage: { inputTokens: 400, outputTokens: 200 } }))
      // 1_200 tokens in the window: over the limit
      expect(yield* refusal(b.acquire())).toBe("no-headroom")
    }))

  it.scoped("a tpm window filled exactly to its limit admits nothing more, estimate or not", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { limits: { tpm: 1_000 } })] })
      yield* b.acquire({ inputTokens: 600, outputTokens: 400 })
      expect((yield* statsOf(b, "a")).headroom).toBe(0)
      expect(yield* refusal(b.acquire({ inputTokens: 1 }))).toBe("no-headroom")
      expect(yield* refusal(b.acquire())).toBe("no-headroom")
    }))
})

describe("requests per day", () => {
  it.scoped("rpd holds the endpoint for the day (one 24-minute bucket late at most)", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { limits: { rpm: 100, rpd: 2 } })] })
      yield* call(b)
      yield* call(b)
      let s = yield* statsOf(b, "a")
      expect(s.requestsLastDay).toBe(2)
      expect(s.requestsLastMinute).toBe(2)
      expect(s.headroom).toBe(0)
      yield* TestClock.adjust("2 hours")
      const refused = yield* Effect.flip(b.acquire())
      // buckets of 86_400_000 / 60 = 1_440_000 ms; bucket 0 leaves when bucket 61 starts
      expect(refused.passedOver).toEqual([{ endpoint: "a", reason: "no-headroom", until: 61 * 1_440_000 }])
      expect((yield* statsOf(b, "a")).requestsLastMinute).toBe(0)
      yield* setTime(61 * 1_440_000 - 1)
      expect((yield* Effect.flip(b.acquire())).passedOver[0].reason).toBe("no-headroom")
      yield* TestClock.adjust("1 millis")
      yield* call(b)
      s = yield* statsOf(b, "a")
      expect(s.requestsLastDay).toBe(1)
    }))
})

describe("provider rate-limit headers", () => {
  it.scoped("remaining requests 0 holds the endpoint until the reset, then it admits again", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a"), endpoint("b")], strategy: "round-robin" })
      yield* TestClock.adjust("1 second")
      const now = yield* Clock.currentTimeMillis
      yield* call(
        b,
        { exclude: ["b"] },
        Outcome.success({
          rateLimit: RateLimit.remaining({
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "20s"
          }, now)
        })
      )
      expect((yield* statsOf(b, "a")).headroom).toBe(1) // no limit header: no share to show
      const refused = yield* Effect.flip(b.acquire({ exclude: ["b"] }))
      expect(refused.passedOver).toEqual([
        { endpoint: "a", reason: "no-headroom", until: 21_000 },
        { endpoint: "b", reason: "excluded" }
      ])
      expect(refused.retryAt).toBe(21_000)
      // meanwhile everything goes to b
      for (let i = 0; i < 4; i++) expect((yield* call(b)).endpoint.name).toBe("b")
      const waiter = yield* Effect.fork(b.acquire({ exclude: ["b"], wait: "1 minute" }))
      yield* TestClock.adjust("19999 millis")
      expect(Option.isNone(yield* Fiber.poll(waiter))).toBe(true)
      yield* TestClock.adjust("1 millis")
      const lease = yield* Fiber.join(waiter)
      expect(lease.endpoint.name).toBe("a")
      expect(lease.startedAt).toBe(21_000)
      yield* b.release(lease, Outcome.success())
      yield* call(b, { exclude: ["b"] })
    }))

  it.scoped("a failure's headers count too; the allowance is spent by each call and its limit shows as headroom", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")] })
      const headers = {
        "X-RateLimit-Limit-Requests": "100",
        "X-RateLimit-Remaining-Requests": "3",
        "X-RateLimit-Reset-Requests": "6m0s"
      }
      yield* call(
        b,
        undefined,
        Outcome.failure("overloaded", { countsAgainstHealth: false, rateLimit: RateLimit.remaining(headers, 0) })
      )
      expect((yield* statsOf(b, "a")).headroom).toBe(0.03)
      yield* call(b)
      yield* call(b)
      expect((yield* statsOf(b, "a")).headroom).toBe(0.01)
      yield* call(b)
      expect((yield* statsOf(b, "a")).headroom).toBe(0)
      const refused = yield* Effect.flip(b.acquire())
      expect(refused.passedOver).toEqual([{ endpoint: "a", reason: "no-headroom", until: 360_000 }])
      yield* setTime(360_000)
      yield* call(b)
      expect((yield* statsOf(b, "a")).headroom).toBe(1)
    }))

  it.scoped("remaining tokens hold back requests whose estimate does not fit, until the reset", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")] })
      yield* call(
        b,
        undefined,
        Outcome.success({
          rateLimit: RateLimit.remaining({
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "300",
            "x-ratelimit-reset-tokens": "10s"
          }, 0)
        })
      )
      expect((yield* statsOf(b, "a")).headroom).toBe(0.3)
      const tooMany = yield* Effect.flip(b.acquire({ inputTokens: 250, outputTokens: 150 }))
      expect(tooMany.passedOver).toEqual([{ endpoint: "a", reason: "no-headroom", until: 10_000 }])
      // 200 fit, and are taken from what is left
      yield* call(b, { inputTokens: 150, outputTokens: 50 })
      expect((yield* statsOf(b, "a")).headroom).toBe(0.1)
      yield* call(b, { inputTokens: 100 })
      expect((yield* Effect.flip(b.acquire({ inputTokens: 1 }))).retryAt).toBe(10_000)
      yield* TestClock.adjust("10 seconds")
      yield* call(b, { inputTokens: 5_000 })
    }))

  it.scoped("a hint never loosens the endpoint's own window", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { limits: { rpm: 2 } })] })
      const plenty = RateLimit.remaining({
        "x-ratelimit-limit-requests": "5000",
        "x-ratelimit-remaining-requests": "1000",
        "x-ratelimit-reset-requests": "1s"
      }, 0)
      yield* call(b, undefined, Outcome.success({ rateLimit: plenty }))
      yield* call(b, undefined, Outcome.success({ rateLimit: plenty }))
      const s = yield* statsOf(b, "a")
      expect(s.requestsLastMinute).toBe(2)
      expect(s.headroom).toBe(0)
      const refused = yield* Effect.flip(b.acquire())
      expect(refused.passedOver).toEqual([{ endpoint: "a", reason: "no-headroom", until: 61_000 }])
      // and once the hint has reset, the window still decides
      yield* TestClock.adjust("30 seconds")
      expect((yield* Effect.flip(b.acquire())).retryAt).toBe(61_000)
    }))
})

describe("RateLimit.remaining", () => {
  const now = Date.parse("2026-11-22T10:00:00Z")

  it("parses OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens}", () => {
    expect(RateLimit.remaining({
      "x-ratelimit-limit-requests": "60",
      "x-ratelimit-limit-tokens": "150000",
      "x-ratelimit-remaining-requests": "59",
      "x-ratelimit-remaining-tokens": "149984",
      "x-ratelimit-reset-requests": "1s",
      "x-ratelimit-reset-tokens": "6m0s"
    }, now)).toEqual({
      requests: { remaining: 59, limit: 60, resetAt: now + 1_000 },
      tokens: { remaining: 149_984, limit: 150_000, resetAt: now + 360_000 }
    })
    // capitalised, and only one of the two limits
    expect(RateLimit.remaining({ "X-RateLimit-Remaining-Tokens": "10", "X-RateLimit-Reset-Tokens": "20ms" }, now))
      .toEqual({ requests: undefined, tokens: { remaining: 10, limit: undefined, resetAt: now + 20 } })
  })

  it("parses Anthropic's anthropic-ratelimit-*, taking the token limit with the fewest left (output tokens aside)", () => {
    expect(RateLimit.remaining({
      "anthropic-ratelimit-requests-limit": "4000",
      "anthropic-ratelimit-requests-remaining": "3201",
      "anthropic-ratelimit-requests-reset": "2026-11-22T10:00:12Z",
      "anthropic-ratelimit-tokens-limit": "400000",
      "anthropic-ratelimit-tokens-remaining": "312000",
      "anthropic-ratelimit-tokens-reset": "2026-11-22T10:00:45Z",
      "anthropic-ratelimit-input-tokens-limit": "200000",
      "anthropic-ratelimit-input-tokens-remaining": "150000",
      "anthropic-ratelimit-input-tokens-reset": "2026-11-22T10:00:30Z",
      "anthropic-ratelimit-output-tokens-limit": "80000",
      "anthropic-ratelimit-output-tokens-remaining": "7000",
      "anthropic-ratelimit-output-tokens-reset": "2026-11-22T10:00:05Z"
    }, now)).toEqual({
      requests: { remaining: 3_201, limit: 4_000, resetAt: now + 12_000 },
      // the output-tokens limit is left out: a request's whole estimate is checked against it
      tokens: { remaining: 150_000, limit: 200_000, resetAt: now + 30_000 }
    })
  })

  it("a limit without a reset is taken to be per minute; unreadable headers say nothing", () => {
    expect(RateLimit.remaining({ "anthropic-ratelimit-requests-remaining": "5" }, now)).toEqual({
      requests: { remaining: 5, limit: undefined, resetAt: now + 60_000 },
      tokens: undefined
    })
    expect(RateLimit.remaining({}, now)).toBeUndefined()
    expect(RateLimit.remaining({ "content-type": "application/json" }, now)).toBeUndefined()
    // Azure's "-1" (no limit known) and other junk are ignored
    expect(RateLimit.remaining({ "x-ratelimit-remaining-tokens": "-1", "x-ratelimit-reset-tokens": "0" }, now))
      .toBeUndefined()
    expect(RateLimit.remaining({ "x-ratelimit-remaining-requests": "many" }, now)).toBeUndefined()
  })
})

describe("Strategy.capacity", () => {
  it.scoped("drains traffic toward the endpoint with headroom, about 5:1 at 20 % vs 100 %, before any refusal", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a", { limits: { rpm: 1_000 } }), endpoint("b", { limits: { rpm: 1_000 } })],
        strategy: Strategy.capacity
      })
      for (let i = 0; i < 800; i++) yield* call(b, { exclude: ["b"] })
      expect((yield* statsOf(b, "a")).headroom).toBe(0.2)
      expect((yield* statsOf(b, "b")).headroom).toBe(1)
      const picks = { a: 0, b: 0 }
      for (let i = 0; i < 240; i++) {
        const lease = yield* call(b)
        picks[lease.endpoint.name as "a" | "b"]++
      }
      // a's share goes from 1/6 (0.2 vs 1) to about 0.14 / (0.14 + 0.8) as both fill up
      expect(picks.a + picks.b).toBe(240)
      const ratio = picks.b / picks.a
      expect(ratio).toBeGreaterThan(3.5)
      expect(ratio).toBeLessThan(9)
      const s = yield* b.stats
      expect(s.map((x) => x.requestsLastMinute)).toEqual([800 + picks.a, picks.b])
    }).pipe(Effect.withRandom(Random.make("capacity drains"))))

  it.scoped("an endpoint without headroom is not picked; with no limits, headroom is full", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("limited", { limits: { rpm: 5 } }), endpoint("free")],
        strategy: "capacity"
      })
      for (let i = 0; i < 5; i++) yield* call(b, { exclude: ["free"] })
      const names = new Set<string>()
      for (let i = 0; i < 50; i++) names.add((yield* call(b)).endpoint.name)
      expect([...names]).toEqual(["free"])
      expect((yield* statsOf(b, "free")).headroom).toBe(1)
      expect((yield* statsOf(b, "free")).requestsLastMinute).toBeNull()
    }).pipe(Effect.withRandom(Random.make("capacity full"))))
})

describe("quota groups", () => {
  it.scoped("what the provider says of the account's limits reaches every endpoint of the group", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [
          endpoint("a", { quotaGroup: "acct" }),
          endpoint("b", { quotaGroup: "acct" }),
          endpoint("other")
        ],
        strategy: "round-robin"
      })
      const hint = RateLimit.remaining(
        {
          "x-ratelimit-remaining-requests": "0",
          "x-ratelimit-limit-requests": "60",
          "x-ratelimit-reset-requests": "20s"
        },
        0
      )
      yield* call(b, { exclude: ["b", "other"] }, Outcome.success({ rateLimit: hint }))
      const error = yield* Effect.flip(b.acquire({ exclude: ["other"] }))
      expect(error.passedOver).toEqual([
        { endpoint: "a", reason: "no-headroom", until: 20_000 },
        { endpoint: "b", reason: "no-headroom", until: 20_000 },
        { endpoint: "other", reason: "excluded" }
      ])
      expect((yield* statsOf(b, "other")).headroom).toBe(1)
      yield* TestClock.adjust("20 seconds")
      expect(yield* refusal(b.acquire({ exclude: ["other", "a"] }))).toBe("admitted")
    }))
})
