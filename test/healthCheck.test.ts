import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Random, Scope, TestClock } from "effect"
import { Balancer, Errors, Outcome } from "../src/index.js"
import { endpoint, makeBalancer } from "./helpers.js"

/** A check that records the endpoints it is run on, and answers with `answer`. */
const recording = (answer: (name: string) => Effect.Effect<unknown, unknown> = () => Effect.void) => {
  const calls: Array<string> = []
  const check = (e: { readonly name: string }) =>
    Effect.suspend(() => {
      calls.push(e.name)
      return answer(e.name)
    })
  return { calls, check }
}

/** Fails `n` calls on `name` (the other endpoints excluded), which opens its circuit. */
const failCalls = (b: Balancer.BalancerService, name: string, others: ReadonlyArray<string> = [], n = 3) =>
  Effect.repeatN(Effect.either(b.use(() => Effect.fail(`${name} is down`), { exclude: others })), n - 1)

const statsOf = (b: Balancer.BalancerService, name: string) =>
  Effect.map(b.stats, (stats) => stats.find((s) => s.name === name)!)

describe("healthCheck: a passing check", () => {
  it.scoped("ends the open period within one interval: the next call is the probe, long before recoveryTimeout", () =>
    Effect.gen(function*() {
      const { calls, check } = recording()
      const b = yield* makeBalancer({
        endpoints: [endpoint("a")],
        health: { recoveryTimeout: "60 seconds" },
        healthCheck: { check }
      })
      yield* failCalls(b, "a")
      let s = yield* statsOf(b, "a")
      expect(s.circuit).toBe("open")
      expect(s.unhealthyUntil).toBe(60_000)
      expect(calls).toEqual([])

      // the default interval is 5 s: nothing is checked before
      yield* TestClock.adjust("4999 millis")
      expect(calls).toEqual([])
      const refused = yield* Effect.flip(b.acquire())
      expect(refused.retryAt).toBe(60_000)

      yield* TestClock.adjust("1 millis")
      expect(calls).toEqual(["a"])
      s = yield* statsOf(b, "a")
      // still open (no probe yet), but the open period is over: due for a probe
      expect(s.circuit).toBe("open")
      expect(s.unhealthyUntil).toBeNull()
      expect(s.status).toBe("degraded")

      const probe = yield* b.acquire()
      expect(probe.probe).toBe(true)
      expect(probe.startedAt).toBe(5_000)
      yield* b.release(probe, Outcome.success())
      s = yield* statsOf(b, "a")
      expect(s.circuit).toBe("closed")
      expect(s.status).toBe("healthy")

      // a closed endpoint is not checked
      yield* TestClock.adjust("1 minute")
      expect(calls).toEqual(["a"])
    }))

  it.scoped("runs every `interval` while the circuit is open, and wakes a request waiting for the endpoint", () =>
    Effect.gen(function*() {
      const { calls, check } = recording()
      const b = yield* makeBalancer({
        endpoints: [endpoint("a")],
        health: { recoveryTimeout: "60 seconds" },
        healthCheck: { check, interval: "2 seconds" }
      })
      yield* TestClock.adjust("1 second")
      yield* failCalls(b, "a") // opens at t=1s
      const waiting = yield* Effect.fork(
        b.use((e, lease) => Effect.succeed([e.name, lease.probe] as const), { wait: "1 minute" })
      )
      yield* TestClock.adjust("999 millis")
      expect(calls).toEqual([])
      // the first round is at t=2s (the clock of the balancer's checks started at t=0)
      yield* TestClock.adjust("1 millis")
      expect(calls).toEqual(["a"])
      // woken by the check, not by its own deadline (t=61s) or the end of the open period
      expect(yield* waiting.poll).toEqual(Option.some(Exit.succeed(["a", true] as const)))
      expect((yield* statsOf(b, "a")).circuit).toBe("closed")
    }))

  it.scoped("ends an opening only once; a failed probe opens the circuit again and the check can end that opening", () =>
    Effect.gen(function*() {
      const { calls, check } = recording()
      const b = yield* makeBalancer({
        endpoints: [endpoint("a")],
        health: { recoveryTimeout: "60 seconds", maxRecoveryTimeout: "10 minutes" },
        healthCheck: { check, interval: "5 seconds" }
      })
      yield* failCalls(b, "a")
      yield* TestClock.adjust("5 seconds")
      expect(calls).toEqual(["a"])
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBeNull()

      // no request comes: the opening it ended is not checked again
      yield* TestClock.adjust("20 seconds")
      expect(calls).toEqual(["a"])
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBeNull()

      // the probe fails (calls fail while checks pass): open again, for longer, from now
      const probe = yield* b.acquire()
      expect(probe.probe).toBe(true)
      expect(probe.startedAt).toBe(25_000)
      yield* b.release(probe, Outcome.failure("still down"))
      const reopened = yield* statsOf(b, "a")
      expect(reopened.circuit).toBe("open")
      // the second period: 60 s plus a part of the growth to 120 s
      expect(reopened.unhealthyUntil).toBeGreaterThanOrEqual(25_000 + 60_000)
      expect(reopened.unhealthyUntil).toBeLessThanOrEqual(25_000 + 120_000)

      // the next round (t=30s) checks the new opening and ends it
      yield* TestClock.adjust("5 seconds")
      expect(calls).toEqual(["a", "a"])
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBeNull()
      yield* TestClock.adjust("30 seconds")
      expect(calls).toEqual(["a", "a"])

      const second = yield* b.acquire()
      expect(second.probe).toBe(true)
      expect(second.startedAt).toBe(60_000)
      yield* b.release(second, Outcome.success())
      expect((yield* statsOf(b, "a")).circuit).toBe("closed")
    }).pipe(Effect.withRandom(Random.make("health-check"))))

  it.scoped("a pass that comes back after the circuit moved on (a new opening) does not end the new one", () =>
    Effect.gen(function*() {
      // the check takes 2 s; meanwhile the first opening (5.5 s) ends and its probe fails
      const { calls, check } = recording(() => Effect.sleep("2 seconds"))
      const b = yield* makeBalancer({
        endpoints: [endpoint("a")],
        health: { recoveryTimeout: "5500 millis", recoveryFactor: 4, maxRecoveryTimeout: "1 minute" },
        healthCheck: { check, interval: "5 seconds", timeout: "3 seconds" }
      })
      yield* failCalls(b, "a")
      yield* TestClock.adjust("5500 millis") // the check of the opening at t=0 runs from t=5s
      expect(calls).toEqual(["a"])
      const probe = yield* b.acquire()
      expect(probe.probe).toBe(true)
      yield* b.release(probe, Outcome.failure("still down"))
      const until = (yield* statsOf(b, "a")).unhealthyUntil
      expect(until).toBeGreaterThanOrEqual(5_500 + 5_500)

      // t=7s: the check of the old opening passes, but the circuit has moved on
      yield* TestClock.adjust("1500 millis")
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBe(until)
      expect((yield* Effect.flip(b.acquire())).passedOver[0].reason).toBe("unhealthy")
    }).pipe(Effect.withRandom(Random.make("health-check"))))
})

describe("healthCheck: a failing check", () => {
  it.scoped("stretches the open period to since + maxRecoveryTimeout, so calls probe only that often", () =>
    Effect.gen(function*() {
      const { calls, check } = recording(() => Effect.fail("connection refused"))
      const b = yield* makeBalancer({
        endpoints: [endpoint("a")],
        health: { recoveryTimeout: "10 seconds", maxRecoveryTimeout: "2 minutes" },
        healthCheck: { check }
      })
      yield* TestClock.adjust("1 second")
      yield* failCalls(b, "a") // opens at t=1s, until t=11s
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBe(11_000)

      yield* TestClock.adjust("4 seconds") // the round at t=5s
      expect(calls).toEqual(["a"])
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBe(1_000 + 120_000)

      // past the original recoveryTimeout: still no probe
      yield* TestClock.adjust("10 seconds")
      expect(calls).toEqual(["a", "a", "a"])
      const refused = yield* Effect.flip(b.acquire())
      expect(refused.passedOver).toEqual([{ endpoint: "a", reason: "unhealthy", until: 121_000 }])
      expect(refused.retryAt).toBe(121_000)

      // it is checked every interval while open, and stays stretched to the same point
      yield* TestClock.setTime(120_000)
      expect(calls.length).toBe(24)
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBe(121_000)
      yield* TestClock.setTime(121_000)
      const probe = yield* b.acquire()
      expect(probe.probe).toBe(true)
      // the probe fails: a new opening, stretched again by the next failing check
      yield* b.release(probe, Outcome.failure("still down"))
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBeLessThan(121_000 + 120_000)
      yield* TestClock.setTime(125_000)
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBe(121_000 + 120_000)
    }).pipe(Effect.withRandom(Random.make("health-check"))))

  it.scoped("a check that never answers fails after `timeout` (default 2 s)", () =>
    Effect.gen(function*() {
      const { calls, check } = recording(() => Effect.never)
      const b = yield* makeBalancer({
        endpoints: [endpoint("a")],
        health: { recoveryTimeout: "10 seconds", maxRecoveryTimeout: "1 minute" },
        healthCheck: { check }
      })
      yield* failCalls(b, "a")
      yield* TestClock.adjust("5 seconds")
      expect(calls).toEqual(["a"])
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBe(10_000)
      yield* TestClock.adjust("1999 millis")
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBe(10_000)
      yield* TestClock.adjust("1 millis")
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBe(60_000)

      // once the (stretched) open period is over, the endpoint waits for a request to probe
      // it: it is not checked any more
      yield* TestClock.setTime(60_000)
      const checked = calls.length
      expect(checked).toBeGreaterThan(1)
      yield* TestClock.adjust("1 minute")
      expect(calls.length).toBe(checked)
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBeNull()
      expect((yield* b.acquire()).probe).toBe(true)
    }))

  it.scoped("a check that dies counts as failing, and so does one that answers after `timeout`", () =>
    Effect.gen(function*() {
      const { calls, check } = recording((name) =>
        name === "dies" ? Effect.die(new Error("bug in the check")) : Effect.sleep("3 seconds")
      )
      const b = yield* makeBalancer({
        endpoints: [endpoint("dies"), endpoint("slow")],
        health: { recoveryTimeout: "10 seconds", maxRecoveryTimeout: "1 minute" },
        healthCheck: { check, timeout: "2500 millis" }
      })
      yield* failCalls(b, "dies", ["slow"])
      yield* failCalls(b, "slow", ["dies"])
      yield* TestClock.adjust("5 seconds")
      expect(calls).toEqual(["dies", "slow"])
      expect((yield* statsOf(b, "dies")).unhealthyUntil).toBe(60_000)
      yield* TestClock.adjust("2499 millis")
      expect((yield* statsOf(b, "slow")).unhealthyUntil).toBe(10_000)
      yield* TestClock.adjust("1 millis")
      expect((yield* statsOf(b, "slow")).unhealthyUntil).toBe(60_000)
    }))
})

describe("healthCheck: what is checked", () => {
  it.scoped("only open circuits: neither closed endpoints nor held ones", () =>
    Effect.gen(function*() {
      const { calls, check } = recording(() => Effect.fail("down"))
      const b = yield* makeBalancer({
        endpoints: [endpoint("open"), endpoint("closed"), endpoint("held"), endpoint("held-closed")],
        health: { recoveryTimeout: "1 minute", maxRecoveryTimeout: "10 minutes" },
        healthCheck: { check }
      })
      yield* failCalls(b, "open", ["closed", "held", "held-closed"])
      yield* failCalls(b, "held", ["open", "closed", "held-closed"])
      yield* b.forceUnhealthy("held")
      yield* b.forceUnhealthy("held-closed")
      expect((yield* statsOf(b, "held")).circuit).toBe("open")

      yield* TestClock.adjust("5 seconds")
      expect(calls).toEqual(["open"])
      yield* TestClock.adjust("10 seconds")
      expect(calls).toEqual(["open", "open", "open"])
      // the hold kept the open period as it was
      expect((yield* statsOf(b, "held")).unhealthyUntil).toBe(60_000)

      // once it is closed, "open" is not checked any more either
      yield* b.forceHealthy("open")
      yield* TestClock.adjust("30 seconds")
      expect(calls).toEqual(["open", "open", "open"])
    }))

  it.scoped("a balancer without open circuits never runs the check", () =>
    Effect.gen(function*() {
      const { calls, check } = recording()
      const b = yield* makeBalancer({ endpoints: [endpoint("a")], healthCheck: { check, interval: "1 second" } })
      // failures below maxFailures do not open the circuit
      yield* failCalls(b, "a", [], 2)
      yield* TestClock.adjust("1 minute")
      expect(calls).toEqual([])
    }))

  it.scoped("checks count as calls neither way: successes, failures and the circuit's counters stay", () =>
    Effect.gen(function*() {
      const { calls, check } = recording((name) => name === "passes" ? Effect.void : Effect.fail("down"))
      const b = yield* makeBalancer({
        endpoints: [endpoint("passes"), endpoint("fails")],
        health: { recoveryTimeout: "1 minute", maxRecoveryTimeout: "10 minutes" },
        healthCheck: { check }
      })
      yield* b.use(() => Effect.void, { exclude: ["fails"] })
      yield* failCalls(b, "passes", ["fails"])
      yield* failCalls(b, "fails", ["passes"])
      const counters = (s: Balancer.EndpointStats) => ({
        active: s.active,
        successes: s.successes,
        failures: s.failures,
        consecutiveFailures: s.consecutiveFailures,
        errorRate: s.errorRate,
        recentErrorRate: s.recentErrorRate
      })
      const before = (yield* b.stats).map(counters)
      expect(before).toEqual([
        { active: 0, successes: 1, failures: 3, consecutiveFailures: 3, errorRate: 0.75, recentErrorRate: 0.75 },
        { active: 0, successes: 0, failures: 3, consecutiveFailures: 3, errorRate: 1, recentErrorRate: 1 }
      ])
      yield* TestClock.adjust("20 seconds")
      expect(calls).toEqual(["passes", "fails", "fails", "fails", "fails"])
      const after = yield* b.stats
      expect(after.map((s) => [s.successes, s.failures, s.consecutiveFailures, s.errorRate])).toEqual([
        [1, 3, 3, 0.75],
        [0, 3, 3, 1]
      ])
      expect(after.map((s) => s.circuit)).toEqual(["open", "open"])
    }))
})

describe("healthCheck: options", () => {
  const make = (healthCheck: unknown) =>
    Effect.flip(Balancer.make({ endpoints: [endpoint("a")], healthCheck: healthCheck as Balancer.HealthCheck }))

  it.scoped("a check that is not a function is an InvalidConfig at healthCheck.check, a missing one says so", () =>
    Effect.gen(function*() {
      const wrong = yield* make({ check: "GET /models" })
      expect(wrong).toBeInstanceOf(Errors.InvalidConfig)
      expect(wrong.issues).toEqual([
        { path: "healthCheck.check", message: "must be a function from an endpoint to an effect" }
      ])
      expect((yield* make({})).issues).toEqual([
        { path: "healthCheck.check", message: "is missing: a function from an endpoint to an effect" }
      ])
    }))

  it.scoped("healthCheck that is not an object is an InvalidConfig at healthCheck", () =>
    Effect.gen(function*() {
      for (const bad of [null, "GET /models", 5]) {
        const error = yield* make(bad)
        expect(error.issues).toEqual([
          { path: "healthCheck", message: "must be an object with a check function (and interval, timeout)" }
        ])
      }
    }))

  it.scoped("a bad interval or timeout is an InvalidConfig naming it; every bad field is reported", () =>
    Effect.gen(function*() {
      const check = () => Effect.void
      expect((yield* make({ check, interval: 0 })).issues).toEqual([
        { path: "healthCheck.interval", message: "must be longer than 0" }
      ])
      expect((yield* make({ check, timeout: "0 seconds" })).issues).toEqual([
        { path: "healthCheck.timeout", message: "must be longer than 0" }
      ])
      const both = yield* make({ check, interval: -5, timeout: "soon" })
      expect(both.issues.map((i) => i.path)).toEqual(["healthCheck.interval", "healthCheck.timeout"])
      expect(both.issues[0].message).toContain("negative")
      // together with the other options' issues
      const error = yield* Effect.flip(Balancer.make({
        endpoints: [endpoint("a")],
        strategy: "fastest-please" as "round-robin",
        healthCheck: { check, interval: Number.NaN }
      }))
      expect(error.issues.map((i) => i.path)).toEqual(["strategy", "healthCheck.interval"])
    }))

  it.scoped("good options build: durations as strings, numbers of milliseconds and Durations", () =>
    Effect.gen(function*() {
      const { calls, check } = recording()
      const b = yield* makeBalancer({
        endpoints: [endpoint("a")],
        health: { recoveryTimeout: "1 minute" },
        healthCheck: { check, interval: 1500, timeout: "1 second" }
      })
      yield* failCalls(b, "a")
      yield* TestClock.adjust("1499 millis")
      expect(calls).toEqual([])
      yield* TestClock.adjust("1 millis")
      expect(calls).toEqual(["a"])
    }))
})

describe("healthCheck: known bugs", () => {
  // BUG (src/internal/balancer.ts, healthChecks): `hc.check(entry.endpoint)` is called
  // outside any Effect.suspend/try, so a check function that throws (rather than returning a
  // failing effect) is a defect of the whole round; it ends `Effect.forever` and the checking
  // fiber dies silently: no endpoint is checked again for the balancer's lifetime. Expected:
  // the throw counts as that one check failing (like `Effect.die`). Remove `.fails` once fixed.
  it.scoped("a check function that throws fails that check only; later rounds still run", () =>
    Effect.gen(function*() {
      const calls: Array<string> = []
      const b = yield* makeBalancer({
        endpoints: [endpoint("a")],
        health: { recoveryTimeout: "1 minute", maxRecoveryTimeout: "10 minutes" },
        healthCheck: {
          check: (e) => {
            calls.push(e.name)
            if (calls.length === 1) throw new Error("bug in the check")
            return Effect.void
          }
        }
      })
      yield* failCalls(b, "a")
      yield* TestClock.adjust("5 seconds")
      expect(calls).toEqual(["a"])
      yield* TestClock.adjust("5 seconds")
      expect(calls).toEqual(["a", "a"])
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBeNull()
    }))
})

describe("healthCheck: lifetime", () => {
  it.scoped("closing the balancer's scope stops the checks, and interrupts one in flight", () =>
    Effect.gen(function*() {
      let interrupted = 0
      const { calls, check } = recording(() =>
        Effect.sleep("1 second").pipe(
          Effect.zipRight(Effect.fail("down")),
          Effect.onInterrupt(() =>
            Effect.sync(() => {
              interrupted++
            })
          )
        )
      )
      const scope = yield* Scope.make()
      const b = yield* Balancer.make({
        endpoints: [endpoint("a")],
        health: { recoveryTimeout: "1 minute", maxRecoveryTimeout: "10 minutes" },
        healthCheck: { check }
      }).pipe(Scope.extend(scope), Effect.orDie)
      yield* failCalls(b, "a")
      yield* TestClock.adjust("5 seconds")
      expect(calls).toEqual(["a"])
      // the first check ends at 6 s (and stretches the open period to 10 minutes); rounds do
      // not wait for checks, so the next starts at 10 s and its check is in flight at 10.5 s
      yield* TestClock.adjust("5500 millis")
      expect(calls).toEqual(["a", "a"])
      expect(interrupted).toBe(0)
      yield* Scope.close(scope, Exit.void)
      expect(interrupted).toBe(1)
      yield* TestClock.adjust("5 minutes")
      expect(calls).toEqual(["a", "a"])
      // the balancer itself still answers; its circuit just waits for its open period
      expect((yield* statsOf(b, "a")).unhealthyUntil).toBe(600_000)
    }))
})

describe("healthCheck: independence and events", () => {
  it.scoped("a check that hangs delays no other endpoint's checks, and is not run twice at once", () =>
    Effect.gen(function*() {
      const { calls, check } = recording((name) => name === "a" ? Effect.never : Effect.fail("down"))
      const b = yield* makeBalancer({
        endpoints: [endpoint("a"), endpoint("b")],
        health: { recoveryTimeout: "1 minute", maxRecoveryTimeout: "10 minutes" },
        healthCheck: { check, timeout: "1 minute" }
      })
      yield* failCalls(b, "a", ["b"])
      yield* failCalls(b, "b", ["a"])
      yield* TestClock.adjust("5 seconds")
      expect(calls).toEqual(["a", "b"])
      // b is checked every 5 s (its checks fail fast); a's check still hangs and is not
      // started again while it does
      yield* TestClock.adjust("20 seconds")
      expect(calls.filter((n) => n === "a")).toEqual(["a"])
      expect(calls.filter((n) => n === "b").length).toBeGreaterThanOrEqual(4)
    }))

  it.scoped("a check that changes a circuit is published as EndpointChecked", () =>
    Effect.gen(function*() {
      let passing = false
      const { check } = recording(() => passing ? Effect.void : Effect.fail("down"))
      const b = yield* makeBalancer({
        endpoints: [endpoint("a")],
        health: { recoveryTimeout: "1 minute", maxRecoveryTimeout: "10 minutes" },
        healthCheck: { check }
      })
      const events = yield* b.subscribe
      yield* failCalls(b, "a")
      yield* TestClock.adjust("5 seconds")
      passing = true
      yield* TestClock.adjust("5 seconds")
      const checked = (yield* events.takeAll).pipe((chunk) => [...chunk]).filter((e) => e._tag === "EndpointChecked")
      expect(checked).toEqual([
        { _tag: "EndpointChecked", name: "a", at: 5_000, passed: false, until: 600_000 },
        { _tag: "EndpointChecked", name: "a", at: 10_000, passed: true, until: 10_000 }
      ])
    }))
})
