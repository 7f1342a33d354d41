import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Clock, Duration, Effect, Exit, Fiber, Queue, Random, Schedule, Stream, TestClock } from "effect"
import { Balancer, Errors, Outcome } from "../src/index.js"
import { endpoint, makeBalancer, pick } from "./helpers.js"

const abc = [endpoint("a"), endpoint("b"), endpoint("c")]
const fail = (endpoint: { readonly name: string }) => Effect.fail(`boom on ${endpoint.name}`)

describe("health", () => {
  it.scoped("an endpoint is unhealthy after maxFailures consecutive failures and is skipped", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a"), endpoint("b", { maxFailures: 2 })] })
      for (let i = 0; i < 2; i++) {
        const lease = yield* b.acquire({ exclude: ["a"] })
        yield* b.release(lease, Outcome.failure("boom"))
      }
      const stats = yield* b.stats
      const s = stats.find((x) => x.name === "b")!
      expect(s.status).toBe("unhealthy")
      expect(s.circuit).toBe("open")
      // the default first open period is 5 seconds
      expect(s.unhealthyUntil).toBe(5_000)
      expect(s.failures).toBe(2)
      expect(yield* pick(b, 3)).toEqual(["a", "a", "a"])
      expect((yield* b.healthyEndpoints).map((e) => e.name)).toEqual(["a"])
    }))

  it.scoped("a success resets the consecutive failures", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")] })
      const outcomes = [false, false, true, false, false]
      for (const ok of outcomes) {
        const lease = yield* b.acquire()
        yield* b.release(lease, ok ? Outcome.success() : Outcome.failure("x"))
      }
      const [s] = yield* b.stats
      expect(s.circuit).toBe("closed")
      expect(s.consecutiveFailures).toBe(2)
      expect(s.errorRate).toBe(0.8)
    }))

  it.scoped("after recoveryTimeout one probe is admitted; its success closes the circuit", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { recoveryTimeout: "10 seconds" })] })
      // (10 s here; the default is 5 s)
      const events = yield* b.subscribe
      for (let i = 0; i < 3; i++) yield* Effect.either(b.use(fail))
      const refused = yield* Effect.flip(b.acquire())
      expect(refused.passedOver).toEqual([{ endpoint: "a", reason: "unhealthy", until: 10_000 }])
      expect(refused.retryAt).toBe(10_000)

      yield* TestClock.adjust("9999 millis")
      expect((yield* Effect.flip(b.acquire()))._tag).toBe("NoEndpointAvailable")
      yield* TestClock.adjust("1 millis")
      const probe = yield* b.acquire()
      expect(probe.probe).toBe(true)
      // only one probe at a time: other callers skip the endpoint instead of waiting
      const busy = yield* Effect.flip(b.acquire())
      expect(busy.passedOver[0].reason).toBe("probing")
      yield* b.release(probe, Outcome.success())
      const [s] = yield* b.stats
      expect(s.status).toBe("healthy")
      expect(s.circuit).toBe("closed")
      const tags = Chunk.toReadonlyArray(yield* Queue.takeAll(events)).map((e) => e._tag)
      expect(tags).toEqual(["EndpointUnhealthy", "EndpointProbing", "EndpointRecovered"])
    }))

  it.scoped("a failed probe opens the circuit again, for longer each time, until it stays closed a whole window", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a")],
        health: { maxFailures: 1, recoveryTimeout: 5000, recoveryFactor: 2, maxRecoveryTimeout: "30 seconds" }
      })
      yield* Effect.either(b.use(fail))
      expect((yield* b.stats)[0].unhealthyUntil).toBe(5_000)
      // each failed probe: the next period is between the base and base x 2^n (capped)
      const periods: Array<number> = []
      let now = 5_000
      for (let n = 1; n <= 4; n++) {
        yield* TestClock.setTime(now)
        const probe = yield* b.acquire()
        expect(probe.probe).toBe(true)
        yield* b.release(probe, Outcome.failure("still down"))
        const [s] = yield* b.stats
        expect(s.circuit).toBe("open")
        periods.push(s.unhealthyUntil! - now)
        now = s.unhealthyUntil!
      }
      expect(periods[0]).toBeGreaterThanOrEqual(5_000)
      expect(periods[0]).toBeLessThanOrEqual(10_000)
      expect(periods[1]).toBeLessThanOrEqual(20_000)
      for (const p of periods) {
        expect(p).toBeGreaterThanOrEqual(5_000)
        expect(p).toBeLessThanOrEqual(30_000)
      }
      // a probe closes it; failing again at once keeps growing the period (it flaps)...
      yield* TestClock.setTime(now)
      yield* b.release(yield* b.acquire(), Outcome.success())
      yield* Effect.either(b.use(fail))
      expect((yield* b.stats)[0].unhealthyUntil! - now).toBeGreaterThan(5_000)
      // ...while after staying closed for a whole window (30 s), it starts from the base again
      now = (yield* b.stats)[0].unhealthyUntil!
      yield* TestClock.setTime(now)
      yield* b.release(yield* b.acquire(), Outcome.success())
      yield* TestClock.adjust("30 seconds")
      yield* Effect.either(b.use(fail))
      expect((yield* b.stats)[0].unhealthyUntil! - (now + 30_000)).toBe(5_000)
    }).pipe(Effect.withRandom(Random.make("backoff"))))

  it.scoped("the error rate opens the circuit once enough calls were seen", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a")],
        health: { maxFailures: 100, failureRateThreshold: 0.5, failureRateMinRequests: 10 }
      })
      // alternate successes and failures: never 2 failures in a row, but a 50 % error rate
      for (let i = 0; i < 9; i++) {
        yield* Effect.either(b.use(i % 2 === 0 ? () => Effect.void : fail))
      }
      // 4 failures in 9 calls: under the minimum volume
      expect((yield* b.stats)[0].circuit).toBe("closed")
      yield* Effect.either(b.use(fail))
      const [s] = yield* b.stats
      expect(s.consecutiveFailures).toBe(1)
      expect(s.circuit).toBe("open")
    }))

  it.scoped("slow start: a recovered endpoint's share ramps up instead of jumping back", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a"), endpoint("b")],
        strategy: "round-robin",
        health: { maxFailures: 1, recoveryTimeout: "1 second", slowStart: "30 seconds" }
      })
      yield* Effect.either(b.use(fail, { exclude: ["b"] }))
      yield* TestClock.adjust("1 second")
      // the probe closes the circuit
      yield* b.release(yield* b.acquire(), Outcome.success())
      const share = (names: ReadonlyArray<string>) => names.filter((n) => n === "a").length / names.length
      const early = share(yield* pick(b, 400))
      yield* TestClock.adjust("15 seconds")
      const middle = share(yield* pick(b, 400))
      yield* TestClock.adjust("15 seconds")
      const late = share(yield* pick(b, 400))
      // round robin would give a half; slow start starts near 10 % of that
      expect(early).toBeLessThan(0.15)
      expect(middle).toBeGreaterThan(early)
      expect(middle).toBeLessThan(0.45)
      expect(late).toBe(0.5)
    }).pipe(Effect.withRandom(Random.make("slow start"))))

  it.scoped("panic mode routes to the endpoint that reopens first instead of failing", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a", { recoveryTimeout: "20 seconds" }), endpoint("b", { recoveryTimeout: "10 seconds" })],
        health: { maxFailures: 1 },
        panic: true
      })
      yield* Effect.either(b.use(fail, { exclude: ["b"] }))
      yield* Effect.either(b.use(fail, { exclude: ["a"] }))
      expect(yield* pick(b, 2)).toEqual(["b", "b"])
      const calm = yield* makeBalancer({ endpoints: [endpoint("a")], health: { maxFailures: 1 } })
      yield* Effect.either(calm.use(fail))
      expect((yield* Effect.flip(calm.acquire()))._tag).toBe("NoEndpointAvailable")
    }))

  it.scoped("an interrupted probe frees its probe slot", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")], health: { maxFailures: 1, recoveryTimeout: 1000 } })
      yield* Effect.either(b.use(fail))
      yield* TestClock.adjust("1 second")
      const fiber = yield* Effect.fork(b.use(() => Effect.never))
      yield* Effect.yieldNow()
      expect((yield* b.stats)[0].circuit).toBe("half-open")
      yield* Fiber.interrupt(fiber)
      const probe = yield* b.acquire()
      expect(probe.probe).toBe(true)
    }))

  it.scoped("forceUnhealthy holds an endpoint out past any recovery until forceHealthy", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a"), endpoint("b")], strategy: "round-robin" })
      yield* b.forceUnhealthy("a")
      yield* TestClock.adjust("1 hour")
      expect(yield* pick(b, 3)).toEqual(["b", "b", "b"])
      const s = (yield* b.stats).find((x) => x.name === "a")!
      expect(s.status).toBe("unhealthy")
      expect(s.held).toBe(true)
      yield* b.forceHealthy("a")
      expect((yield* pick(b, 2)).sort()).toEqual(["a", "b"])
    }))

  it.scoped("forceHealthy closes an open circuit at once", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")], health: { maxFailures: 1 } })
      yield* Effect.either(b.use(fail))
      expect((yield* b.stats)[0].status).toBe("unhealthy")
      yield* b.forceHealthy("a")
      const [s] = yield* b.stats
      expect(s.status).toBe("healthy")
      expect(s.consecutiveFailures).toBe(0)
    }))

  it.scoped("a failure that is not the endpoint's fault does not open its circuit", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")], health: { maxFailures: 1 } })
      const lease = yield* b.acquire()
      yield* b.release(lease, Outcome.failure("bad request", { countsAgainstHealth: false }))
      const [s] = yield* b.stats
      expect(s.circuit).toBe("closed")
      expect(s.failures).toBe(1)
    }))

  it.scoped("a degraded endpoint serves only when no healthy one can", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("flaky"), endpoint("steady")],
        strategy: "round-robin",
        health: { maxFailures: 100, degradedErrorRate: 0.2, degradedMinRequests: 5 }
      })
      for (let i = 0; i < 10; i++) {
        const lease = yield* b.acquire({ exclude: ["steady"] })
        yield* b.release(lease, i % 2 === 0 ? Outcome.failure("x") : Outcome.success())
      }
      expect((yield* b.stats)[0].status).toBe("degraded")
      expect(yield* pick(b, 4)).toEqual(["steady", "steady", "steady", "steady"])
      yield* b.forceUnhealthy("steady")
      expect(yield* pick(b, 1)).toEqual(["flaky"])
    }))

  it.scoped("use measures latency on the Clock", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")] })
      const fiber = yield* Effect.fork(b.use(() => Effect.sleep("250 millis")))
      yield* TestClock.adjust("250 millis")
      yield* Fiber.join(fiber)
      const [s] = yield* b.stats
      expect(s.avgLatencyMs).toBe(250)
      expect(s.recentLatencyMs).toBe(250)
      expect(s.successes).toBe(1)
    }))

  it.scoped("an explicit latency in the outcome wins over the measured one", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")] })
      const lease = yield* b.acquire()
      yield* b.release(lease, Outcome.success({ latency: Duration.millis(320) }))
      expect((yield* b.stats)[0].avgLatencyMs).toBe(320)
    }))
})

describe("leases", () => {
  it.scoped("a second release of the same lease does nothing", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")] })
      const held = yield* b.acquire()
      const lease = yield* b.acquire()
      yield* b.release(lease, Outcome.success())
      yield* b.release(lease, Outcome.failure("again"))
      const [s] = yield* b.stats
      expect(s.active).toBe(1)
      expect(s.successes).toBe(1)
      expect(s.failures).toBe(0)
      yield* b.release(held, Outcome.cancelled)
      expect((yield* b.stats)[0].active).toBe(0)
    }))

  it.scoped("use releases on failure, defect and interruption; interruption counts neither way", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")] })
      yield* Effect.either(b.use(() => Effect.fail("e")))
      yield* Effect.exit(b.use(() => Effect.die("defect")))
      const fiber = yield* Effect.fork(b.use(() => Effect.never))
      yield* Effect.yieldNow()
      expect((yield* b.stats)[0].active).toBe(1)
      yield* Fiber.interrupt(fiber)
      const [s] = yield* b.stats
      expect(s.active).toBe(0)
      expect(s.failures).toBe(2)
      expect(s.successes).toBe(0)
    }))

  it.scoped("a use whose function throws instead of returning an effect dies, and gives its slot back", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")] })
      const exit = yield* Effect.exit(b.use((): Effect.Effect<void> => {
        throw new Error("boom")
      }))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      const [s] = yield* b.stats
      expect([s.active, s.failures]).toEqual([0, 1])
    }))

  it.scoped("a lease wrapped with Object.create reports and releases as the lease itself, once", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")] })
      const lease = yield* b.acquire()
      const wrapper: Balancer.Lease = Object.assign(Object.create(lease), { tag: "mine" })
      yield* wrapper.report({ usage: { inputTokens: 12, outputTokens: 3 } })
      yield* b.release(wrapper, Outcome.success())
      // released already, through the wrapper: neither the lease nor the wrapper releases again
      yield* b.release(lease, Outcome.failure("again"))
      yield* b.release(wrapper, Outcome.failure("again"))
      const [s] = yield* b.stats
      expect([s.active, s.successes, s.failures, s.inputTokens, s.outputTokens]).toEqual([0, 1, 0, 12, 3])
    }))

  it.scoped("Effect.timeout around use interrupts the call and releases its slot", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { maxConcurrency: 1 })] })
      const fiber = yield* Effect.fork(Effect.timeout(b.use(() => Effect.sleep("1 minute")), "1 second"))
      yield* TestClock.adjust("1 second")
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit)).toBe(true)
      expect((yield* b.stats)[0].active).toBe(0)
      expect(yield* pick(b, 1)).toEqual(["a"])
    }))
})

describe("capacity and waiting", () => {
  it.scoped("maxConcurrency: a full endpoint is passed over as at-capacity", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { maxConcurrency: 2 })] })
      yield* b.acquire()
      yield* b.acquire()
      const error = yield* Effect.flip(b.acquire())
      expect(error).toBeInstanceOf(Errors.NoEndpointAvailable)
      expect(error.passedOver).toEqual([{ endpoint: "a", reason: "at-capacity" }])
      expect(error.retryAt).toBeUndefined()
      expect(error.message).toContain("a: at-capacity")
    }))

  it.scoped("acquire with wait takes the slot as soon as one frees up", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { maxConcurrency: 1 })] })
      const held = yield* b.acquire()
      const waiter = yield* Effect.fork(b.acquire({ wait: "10 seconds" }))
      yield* TestClock.adjust("3 seconds")
      expect(waiter.unsafePoll()).toBeNull()
      yield* b.release(held, Outcome.success())
      const lease = yield* Fiber.join(waiter)
      expect(lease.endpoint.name).toBe("a")
      expect(lease.startedAt).toBe(3000)
    }))

  it.scoped("acquire with wait fails with NoEndpointAvailable when nothing frees up in time", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { maxConcurrency: 1 })] })
      yield* b.acquire()
      const waiter = yield* Effect.fork(Effect.flip(b.acquire({ wait: "2 seconds" })))
      yield* TestClock.adjust("2 seconds")
      const error = yield* Fiber.join(waiter)
      expect(error.passedOver[0].reason).toBe("at-capacity")
    }))

  it.scoped("acquire with wait wakes when an open circuit admits a probe", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a")],
        health: { maxFailures: 1, recoveryTimeout: "5 seconds" }
      })
      yield* Effect.either(b.use(fail))
      const waiter = yield* Effect.fork(b.acquire({ wait: "1 minute" }))
      yield* TestClock.adjust("5 seconds")
      const lease = yield* Fiber.join(waiter)
      expect(lease.probe).toBe(true)
      expect(lease.startedAt).toBe(5000)
    }))

  it.scoped("a waiting acquire can be interrupted and leaks nothing", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { maxConcurrency: 1 })] })
      const held = yield* b.acquire()
      const waiters = yield* Effect.forEach(
        Array.from({ length: 50 }),
        () => Effect.fork(b.use(() => Effect.void, { wait: "1 hour" }))
      )
      yield* Effect.yieldNow()
      yield* Effect.forEach(waiters, Fiber.interrupt)
      yield* b.release(held, Outcome.success())
      const [s] = yield* b.stats
      expect(s.active).toBe(0)
      expect(s.successes).toBe(1)
    }))
})

describe("routing filters", () => {
  it.scoped("lower priority tiers serve only when the tier above cannot", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("primary"), endpoint("backup", { priority: 1 })]
      })
      expect(yield* pick(b, 3)).toEqual(["primary", "primary", "primary"])
      yield* b.forceUnhealthy("primary")
      expect(yield* pick(b, 2)).toEqual(["backup", "backup"])
    }))

  it.scoped("required tags and exclusions narrow the candidates, and the error says why", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("us"), endpoint("eu", { tags: ["region:eu"] }), endpoint("eu2", { tags: ["region:eu"] })],
        strategy: "round-robin"
      })
      expect(yield* pick(b, 2, { tags: ["region:eu"] })).toEqual(["eu", "eu2"])
      expect(yield* pick(b, 2, { tags: ["region:eu"], exclude: ["eu"] })).toEqual(["eu2", "eu2"])
      const error = yield* Effect.flip(b.acquire({ tags: ["region:eu"], exclude: ["eu", "eu2"] }))
      expect(error.passedOver).toEqual([
        { endpoint: "us", reason: "missing-tags" },
        { endpoint: "eu", reason: "excluded" },
        { endpoint: "eu2", reason: "excluded" }
      ])
    }))

  it.scoped("an empty balancer fails with a clear NoEndpointAvailable", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [] })
      const error = yield* Effect.flip(b.acquire())
      expect(error.message).toBe("No endpoint available: the balancer has no endpoints")
    }))

  it.scoped("the error names the earliest time an endpoint frees up", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [
          endpoint("a", { recoveryTimeout: 20_000 }),
          endpoint("b", { recoveryTimeout: 7_000 }),
          endpoint("c")
        ],
        health: { maxFailures: 1 }
      })
      yield* b.forceUnhealthy("c")
      yield* Effect.either(b.use(fail, { exclude: ["b"] }))
      yield* Effect.either(b.use(fail, { exclude: ["a"] }))
      const error = yield* Effect.flip(b.acquire())
      expect(error.passedOver).toEqual([
        { endpoint: "a", reason: "unhealthy", until: 20_000 },
        { endpoint: "b", reason: "unhealthy", until: 7_000 },
        { endpoint: "c", reason: "held-unhealthy" }
      ])
      expect(error.retryAt).toBe(7_000)
      expect(error.message).toContain("the earliest frees up at 1970-01-01T00:00:07.000Z")
    }))
})

describe("adding and removing endpoints", () => {
  it.scoped("a removed endpoint takes no new calls; its calls in flight release cleanly", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: abc, strategy: "round-robin" })
      const events = yield* b.subscribe
      const lease = yield* b.acquire()
      expect(lease.endpoint.name).toBe("a")
      yield* b.removeEndpoint("a")
      expect(yield* pick(b, 4)).toEqual(["b", "c", "b", "c"])
      expect((yield* b.stats).map((s) => s.name)).toEqual(["b", "c"])
      // re-adding the same name makes a new entry that the old lease cannot touch
      yield* b.addEndpoint(endpoint("a"))
      yield* b.release(lease, Outcome.failure("late"))
      const a = (yield* b.stats).find((s) => s.name === "a")!
      expect(a.active).toBe(0)
      expect(a.failures).toBe(0)
      expect(Chunk.toReadonlyArray(yield* Queue.takeAll(events)).map((e) => e._tag)).toEqual([
        "EndpointRemoved",
        "EndpointAdded"
      ])
    }))

  it.scoped("removing and adding during traffic keeps every count consistent", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: abc })
      const traffic = Effect.forEach(
        Array.from({ length: 500 }, (_, i) => i),
        (i) =>
          Effect.either(
            b.use(() => Effect.yieldNow().pipe(Effect.zipRight(i % 7 === 0 ? Effect.fail("x") : Effect.void)))
          ),
        { concurrency: 20 }
      )
      const churn = Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) =>
        Effect.gen(function*() {
          yield* Effect.yieldNow()
          yield* Effect.ignore(b.removeEndpoint(i % 2 === 0 ? "b" : "c"))
          yield* Effect.yieldNow()
          yield* Effect.ignore(b.addEndpoint(endpoint(i % 2 === 0 ? "b" : "c")))
        }))
      yield* Effect.all([traffic, churn], { concurrency: 2 })
      const stats = yield* b.stats
      expect(stats.every((s) => s.active === 0)).toBe(true)
      expect(stats.map((s) => s.name).sort()).toEqual(["a", "b", "c"])
    }))

  it.scoped("removeEndpoint and force* on an unknown name fail with UnknownEndpoint", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: abc })
      const error = yield* Effect.flip(b.removeEndpoint("zzz"))
      expect(error).toBeInstanceOf(Errors.UnknownEndpoint)
      expect(error.message).toBe(`Unknown endpoint "zzz" (known: a, b, c)`)
      expect((yield* Effect.flip(b.forceUnhealthy("zzz")))._tag).toBe("UnknownEndpoint")
    }))
})

describe("stats", () => {
  it.scoped("are plain JSON with the seed's fields", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a", { apiKey: "sk-canary-stats" })] })
      yield* pick(b, 2)
      const stats = yield* b.stats
      const json = JSON.parse(JSON.stringify(stats))
      expect(json).toEqual(stats)
      expect(JSON.stringify(stats)).not.toContain("sk-canary-stats")
      expect(Object.keys(stats[0])).toEqual(expect.arrayContaining([
        "status",
        "active",
        "successes",
        "failures",
        "errorRate",
        "avgLatencyMs",
        "recentLatencyMs"
      ]))
    }))
})

describe("events", () => {
  it.scoped("the events stream delivers changes to a running consumer", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({ endpoints: [endpoint("a")] })
      const collected = yield* Effect.fork(Stream.runCollect(Stream.take(b.events, 2)))
      yield* TestClock.adjust("1 millis")
      yield* b.forceUnhealthy("a")
      yield* b.forceHealthy("a")
      const events = Chunk.toReadonlyArray(yield* Fiber.join(collected))
      expect(events).toEqual([
        { _tag: "EndpointUnhealthy", name: "a", at: 1, reason: "forced", until: undefined },
        { _tag: "EndpointRecovered", name: "a", at: 1, reason: "forced" }
      ])
    }))
})

describe("options", () => {
  it.scoped("a misspelt option is reported, not ignored", () =>
    Effect.gen(function*() {
      const options = { endpoints: [endpoint("a")], stratgy: "round-robin" } as unknown as Parameters<
        typeof makeBalancer
      >[0]
      const error = yield* Effect.flip(Balancer.make(options))
      expect(error.issues).toEqual([{
        path: "stratgy",
        message: "is unexpected, expected one of endpoints, strategy, health, panic, budget, healthCheck"
      }])
    }))
})

describe("recovery schedule", () => {
  it.scoped("open periods can come from a Schedule: the n-th opening in a row lasts its n-th delay", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a"), endpoint("own", { recoveryTimeout: "1 second" })],
        health: {
          maxFailures: 1,
          recoverySchedule: Schedule.exponential("2 seconds").pipe(Schedule.intersect(Schedule.recurs(3)))
        }
      })
      const periods: Array<number> = []
      yield* Effect.either(b.use(fail, { exclude: ["own"] }))
      for (let i = 0; i < 4; i++) {
        const [s] = yield* b.stats
        const now = yield* Clock.currentTimeMillis
        periods.push(s.unhealthyUntil! - now)
        yield* TestClock.setTime(s.unhealthyUntil!)
        yield* b.release(yield* b.acquire({ exclude: ["own"] }), Outcome.failure("still down"))
      }
      // 2 s, 4 s, 8 s, then the schedule has ended and its last delay stays
      expect(periods).toEqual([2000, 4000, 8000, 8000])
      // an endpoint's own recoveryTimeout takes precedence
      yield* Effect.either(b.use(fail, { exclude: ["a"] }))
      const own = (yield* b.stats)[1]
      expect(own.unhealthyUntil! - (yield* Clock.currentTimeMillis)).toBe(1000)
    }))

  it.scoped("a recoverySchedule that is not a Schedule is an InvalidConfig", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Balancer.make({
          endpoints: [],
          health: { recoverySchedule: "5 seconds" as unknown as Schedule.Schedule<unknown> }
        })
      )
      expect(error.issues).toEqual([{ path: "health.recoverySchedule", message: "must be a Schedule" }])
    }))
})
