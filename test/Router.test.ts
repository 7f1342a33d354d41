import { describe, expect, it } from "@effect/vitest"
import {
  Cause,
  Chunk,
  Clock,
  Context,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Metric,
  Queue,
  Random,
  Schedule,
  TestClock,
  Tracer
} from "effect"
import type { Endpoint } from "../src/index.js"
import { Balancer, Errors, Outcome, Router, Store } from "../src/index.js"
import { useObserved } from "../src/internal/hotPath.js"
import { endpoint, makeRouter } from "./helpers.js"

const setup = makeRouter

const run = <A, E>(
  context: Context.Context<Router.Router | Balancer.Balancer>,
  effect: Effect.Effect<A, E, Router.Router>
) => Effect.provide(effect, context)

/** A scripted provider: `script[name]` says how each endpoint answers, call by call. */
const scripted = (script: Record<string, (call: number) => Effect.Effect<string, Errors.ProviderError>>) => {
  const calls: Array<string> = []
  const counts = new Map<string, number>()
  const call = (e: Endpoint.Endpoint) =>
    Effect.suspend(() => {
      calls.push(e.name)
      const n = (counts.get(e.name) ?? 0) + 1
      counts.set(e.name, n)
      return script[e.name](n)
    })
  return { call, calls }
}

const ok = (name: string) => () => Effect.succeed(`answer from ${name}`)
const down = (name: string) => () => Effect.fail(new Errors.Unavailable({ endpoint: name, status: 503 }))

describe("Router.execute", () => {
  it.scoped("fails over to another endpoint and reports every attempt", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({ endpoints: [endpoint("a"), endpoint("b")], strategy: "round-robin" })
      const p = scripted({ a: down("a"), b: ok("b") })
      const result = yield* run(context, Router.execute(p.call))
      expect(result.value).toBe("answer from b")
      expect(result.endpoint.name).toBe("b")
      expect(result.attempts.map((a) => [a.endpoint, a.number, a.outcome])).toEqual([
        ["a", 1, "Unavailable"],
        ["b", 2, "Success"]
      ])
    }))

  it.scoped("never tries an endpoint twice while untried ones remain", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({
        endpoints: [endpoint("a"), endpoint("b"), endpoint("c"), endpoint("d")],
        strategy: "least-connections",
        health: { maxFailures: 100 }
      })
      const p = scripted({ a: down("a"), b: down("b"), c: down("c"), d: ok("d") })
      const result = yield* run(context, Router.execute(p.call, { maxAttempts: 4 }))
      expect(new Set(p.calls).size).toBe(4)
      expect(result.endpoint.name).toBe("d")
    }))

  it.scoped("a non-retryable error stops at once and is the last error", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({ endpoints: [endpoint("a"), endpoint("b")], strategy: "round-robin" })
      const p = scripted({ a: () => Effect.fail(new Errors.BadRequest({ status: 400, detail: "bad" })), b: ok("b") })
      const error = yield* Effect.flip(run(context, Router.execute(p.call)))
      expect(error.reason).toBe("not-retryable")
      expect(error.lastError?._tag).toBe("BadRequest")
      expect(p.calls).toEqual(["a"])
      expect(error.message).toContain("Routing failed (not-retryable) after 1 attempt(s) [a: BadRequest]")
    }))

  it.scoped("backs off with the Schedule only once every endpoint was tried", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({
        endpoints: [endpoint("a"), endpoint("b")],
        strategy: "round-robin",
        health: { maxFailures: 100 }
      })
      let n = 0
      const p = scripted({ a: () => (++n < 2 ? down("a")() : ok("a")()), b: down("b") })
      const fiber = yield* Effect.fork(
        run(context, Router.execute(p.call, { maxAttempts: 3, backoff: Schedule.spaced("2 seconds") }))
      )
      yield* TestClock.adjust("1 second")
      // a and b were tried at once, without back-off; the third attempt waits for the schedule
      expect(p.calls).toEqual(["a", "b"])
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      const result = yield* Fiber.join(fiber)
      expect(result.attempts.map((a) => [a.endpoint, a.startedAt])).toEqual([["a", 0], ["b", 0], ["a", 2000]])
    }))

  it.scoped("stops when the retry schedule ends", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({ endpoints: [endpoint("a")], health: { maxFailures: 100 } })
      const p = scripted({ a: down("a") })
      const error = yield* Effect.flip(
        run(context, Router.execute(p.call, { maxAttempts: 10, backoff: Schedule.recurs(2) }))
      )
      expect(error.reason).toBe("attempts-exhausted")
      expect(p.calls).toEqual(["a", "a", "a"])
    }))

  it.scoped("one deadline for the whole call: attempts shrink and the call never outlives it", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({
        endpoints: [endpoint("a"), endpoint("b"), endpoint("c")],
        strategy: "round-robin",
        health: { maxFailures: 100 }
      })
      // every endpoint hangs
      const hang = () => Effect.never
      const p = scripted({ a: hang, b: hang, c: hang })
      const fiber = yield* Effect.fork(
        run(context, Router.execute(p.call, { timeout: "5 seconds", attemptTimeout: "2 seconds", maxAttempts: 5 }))
      )
      yield* TestClock.adjust("5 seconds")
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error.reason).toBe("deadline")
      // 2 s + 2 s + the 1 s that was left
      expect(error.attempts.map((a) => [a.endpoint, a.startedAt, a.latencyMs, a.outcome])).toEqual([
        ["a", 0, 2000, "Timeout"],
        ["b", 2000, 2000, "Timeout"],
        ["c", 4000, 1000, "Timeout"]
      ])
      const stats = yield* Effect.provide(Balancer.stats, context)
      expect(stats.every((s) => s.active === 0)).toBe(true)
    }))

  it.scoped("interrupting the call interrupts the attempt in flight and releases its lease", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({ endpoints: [endpoint("a", { maxConcurrency: 1 })] })
      const fiber = yield* Effect.fork(run(context, Router.execute(() => Effect.never)))
      yield* TestClock.adjust("1 second")
      expect((yield* Effect.provide(Balancer.stats, context))[0].active).toBe(1)
      yield* Fiber.interrupt(fiber)
      const [s] = yield* Effect.provide(Balancer.stats, context)
      expect(s.active).toBe(0)
      expect(s.failures).toBe(0)
    }))

  it.scoped("composes with Effect.timeout like any effect", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({ endpoints: [endpoint("a")] })
      const fiber = yield* Effect.fork(
        run(context, Router.execute(() => Effect.never)).pipe(Effect.timeout("3 seconds"))
      )
      yield* TestClock.adjust("3 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error._tag).toBe("TimeoutException")
      expect((yield* Effect.provide(Balancer.stats, context))[0].active).toBe(0)
    }))

  it.scoped("ContextLengthExceeded moves the call to a larger context window", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({
        endpoints: [
          endpoint("small", { contextWindow: 8_000 }),
          endpoint("small2", { contextWindow: 8_000 }),
          endpoint("large", { contextWindow: 128_000, priority: 1 })
        ],
        strategy: "round-robin"
      })
      const p = scripted({
        small: () => Effect.fail(new Errors.ContextLengthExceeded({ status: 400 })),
        small2: () => Effect.fail(new Errors.ContextLengthExceeded({ status: 400 })),
        large: ok("large")
      })
      const result = yield* run(context, Router.execute(p.call))
      expect(p.calls).toEqual(["small", "large"])
      expect(result.endpoint.name).toBe("large")
      // the caller's fault, not the endpoint's
      const stats = yield* Effect.provide(Balancer.stats, context)
      expect(stats[0].circuit).toBe("closed")
    }))

  it.scoped("no endpoint at all is a clear error", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* setup({ endpoints: [endpoint("a")] })
      yield* balancer.forceUnhealthy("a")
      const error = yield* Effect.flip(run(context, Router.execute(ok("a"))))
      expect(error.reason).toBe("no-endpoint")
      expect(error.lastError?._tag).toBe("NoEndpointAvailable")
    }))
})

describe("observability", () => {
  it.scoped("each attempt runs in a span under the call's, and metrics count calls, attempts and retries", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({ endpoints: [endpoint("a"), endpoint("b")], strategy: "round-robin" })
      const requests = Router.metrics.requests
      const retries = Router.metrics.retries
      const attemptsOnA = Router.metrics.attempts.pipe(
        Metric.tagged("endpoint", "a"),
        Metric.tagged("outcome", "Unavailable")
      )
      const before = yield* Effect.all([Metric.value(requests), Metric.value(retries), Metric.value(attemptsOnA)])
      const spans: Array<[string, unknown, unknown]> = []
      const attemptSpans: Array<Tracer.Span> = []
      const call = (e: Endpoint.Endpoint, n: number) =>
        Effect.gen(function*() {
          const span = yield* Effect.orDie(Effect.currentSpan)
          attemptSpans.push(span)
          const parent = span.parent._tag === "Some" && span.parent.value._tag === "Span" ? span.parent.value.name : ""
          spans.push([span.name, span.attributes.get("llm.endpoint"), parent])
          return n === 1 ? yield* Effect.fail(new Errors.Unavailable({})) : e.name
        })
      // spans are made under an installed tracer (this one forwards to the native one); under
      // Effect's native tracer alone, whose spans go nowhere, they are skipped (they are costly)
      const native = yield* Effect.tracer
      const installed = Tracer.make({ span: (...args) => native.span(...args), context: native.context })
      yield* Effect.withTracer(run(context, Router.execute(call)), installed)
      expect(spans).toEqual([
        ["effect-llm-balancer.attempt", "a", "effect-llm-balancer.execute"],
        ["effect-llm-balancer.attempt", "b", "effect-llm-balancer.execute"]
      ])
      // each attempt's outcome on its own span, the call's on the call's
      expect(attemptSpans.map((span) => span.attributes.get("llm.outcome"))).toEqual(["Unavailable", "Success"])
      const callSpan = attemptSpans[1].parent
      expect(callSpan._tag === "Some" && callSpan.value._tag === "Span" && callSpan.value.attributes.get("llm.outcome"))
        .toBe("Success")
      spans.length = 0
      yield* Effect.withSpan(run(context, Router.execute(call)), "caller")
      expect(spans.map(([name]) => name)).toEqual(["caller", "caller"])
      const after = yield* Effect.all([Metric.value(requests), Metric.value(retries), Metric.value(attemptsOnA)])
      expect(after.map((a, i) => a.count - before[i].count)).toEqual([2, 2, 2])
    }))
})

describe("the balancer's bookkeeping around each attempt", () => {
  // the router records each attempt inside the balancer's own region, before the lease is
  // given back: nothing that happens there may keep the lease, or invent an attempt
  it.scoped("a report that dies still gives the lease back (the call dies with it)", () =>
    Effect.gen(function*() {
      const real = yield* Effect.orDie(Balancer.make({ endpoints: [endpoint("a")] }))
      const wrapped: Balancer.BalancerService = { ...real, reportAttempt: () => Effect.dieMessage("report broke") }
      const router = yield* Effect.orDie(Effect.provideService(Router.make(), Balancer.Balancer, wrapped))
      const exit = yield* Effect.exit(router.execute(() => Effect.succeed(1)))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      expect((yield* real.stats)[0].active).toBe(0)
      // and the balancer still serves
      const again = yield* Effect.orDie(Effect.provideService(Router.make(), Balancer.Balancer, real))
      expect((yield* again.execute(() => Effect.succeed(2))).value).toBe(2)
    }))

  it.scoped("an observer that throws still gives the lease back, on this balancer and on a wrapped one", () =>
    Effect.gen(function*() {
      const real = yield* Effect.orDie(Balancer.make({ endpoints: [endpoint("a")] }))
      const wrapped: Balancer.BalancerService = { ...real, use: (f, hints) => real.use(f, hints) }
      const throwing = () => {
        throw new Error("observer broke")
      }
      for (const balancer of [real, wrapped]) {
        const exit = yield* Effect.exit(useObserved(balancer)(() => Effect.succeed(1), undefined, throwing))
        expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
        expect((yield* real.stats)[0].active).toBe(0)
      }
    }))

  it.scoped("an attempt's metrics carry the labels around it, a wrapped balancer's included", () =>
    Effect.gen(function*() {
      const real = yield* Effect.orDie(Balancer.make({ endpoints: [endpoint("labelled")] }))
      const wrapped: Balancer.BalancerService = {
        ...real,
        use: (f, hints) => Effect.tagMetrics(real.use(f, hints), "tenant", "t1")
      }
      const router = yield* Effect.orDie(Effect.provideService(Router.make(), Balancer.Balancer, wrapped))
      yield* router.execute(() => Effect.succeed(1))
      const keys = (yield* Metric.snapshot)
        .filter((p) =>
          p.metricKey.name === "llm_balancer_attempts_total" &&
          p.metricKey.tags.some((t) => t.key === "endpoint" && t.value === "labelled")
        )
        .map((p) => p.metricKey.tags.map((t) => `${t.key}=${t.value}`).sort().join(","))
      expect(keys).toEqual(["endpoint=labelled,outcome=Success,tenant=t1"])
    }))

  it.scoped("a call annotates only its own span: with spans not collected, none of the caller's", () =>
    Effect.gen(function*() {
      const { router } = yield* makeRouter({ endpoints: [endpoint("a")] })
      const attributesOf = (call: Effect.Effect<unknown, unknown>) =>
        Effect.flatMap(Effect.currentSpan, (span) => Effect.map(call, () => [...span.attributes.keys()])).pipe(
          Effect.withSpan("the caller's"),
          Effect.orDie
        )
      expect(yield* attributesOf(router.execute(() => Effect.succeed(1)))).toEqual([])
      const failing = router.execute(() => Effect.fail(new Errors.Unavailable({ endpoint: "a", status: 503 })), {
        maxAttempts: 1
      })
      expect(yield* attributesOf(Effect.exit(failing))).toEqual([])
    }))

  it.live("a hedge's twin interrupted while the shared store admits it made no call and is no attempt", () =>
    Effect.scoped(Effect.gen(function*() {
      const memory = Context.get(yield* Layer.build(Store.memory), Store.Store)
      let admits = 0
      const slowStore: Store.StoreService = {
        ...memory,
        // the twin's admission (the second) takes longer than the primary's answer
        admit: (request) =>
          ++admits > 1 ? Effect.zipRight(Effect.sleep("300 millis"), memory.admit(request)) : memory.admit(request)
      }
      const balancer = yield* Effect.orDie(
        Effect.provideService(Balancer.make({ endpoints: [endpoint("a"), endpoint("b")] }), Store.Store, slowStore)
      )
      const router = yield* Effect.orDie(Effect.provideService(Router.make(), Balancer.Balancer, balancer))
      let calls = 0
      const routed = yield* router.execute(
        (e) => ++calls === 1 ? Effect.as(Effect.sleep("100 millis"), e.name) : Effect.succeed(e.name),
        { hedge: { delay: "10 millis" } }
      )
      expect(calls).toBe(1)
      expect(routed.attempts.map((a) => [a.endpoint, a.hedge, a.outcome])).toEqual([[
        routed.endpoint.name,
        false,
        "Success"
      ]])
      expect((yield* balancer.stats).map((s) => s.active)).toEqual([0, 0])
    })))

  it.live("the attempts of an answer do not change after it is returned", () =>
    Effect.scoped(Effect.gen(function*() {
      // a foreign balancer whose use returns before an interrupted call has ended: the
      // hedge's loser is recorded after the answer
      const real = yield* Effect.orDie(Balancer.make({ endpoints: [endpoint("slow"), endpoint("fast")] }))
      const detached: Balancer.BalancerService = { ...real, use: (f, hints) => Effect.disconnect(real.use(f, hints)) }
      const router = yield* Effect.orDie(Effect.provideService(Router.make(), Balancer.Balancer, detached))
      const routed = yield* router.execute(
        (e) =>
          e.name === "slow"
            ? Effect.as(Effect.sleep("1 second"), "slow").pipe(Effect.onInterrupt(() => Effect.sleep("20 millis")))
            : Effect.as(Effect.sleep("10 millis"), "fast"),
        { hedge: { delay: "10 millis" } }
      )
      const seen = routed.attempts.length
      yield* Effect.sleep("100 millis")
      expect(routed.attempts.length).toBe(seen)
    })))
})

describe("hedging", () => {
  it.scoped("a slow attempt gets a twin on another endpoint; the first answer wins, the loser is cancelled", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* setup({
        endpoints: [endpoint("slow"), endpoint("fast")],
        strategy: "round-robin"
      })
      const p = scripted({
        slow: () => Effect.as(Effect.sleep("10 seconds"), "slow answer"),
        fast: () => Effect.as(Effect.sleep("100 millis"), "fast answer")
      })
      const fiber = yield* Effect.fork(run(context, Router.execute(p.call, { hedge: { delay: "1 second" } })))
      yield* TestClock.adjust("1100 millis")
      const result = yield* Fiber.join(fiber)
      expect(result.value).toBe("fast answer")
      expect(result.attempts.map((a) => [a.endpoint, a.hedge, a.outcome, a.startedAt, a.latencyMs])).toEqual([
        ["fast", true, "Success", 1000, 100],
        ["slow", false, "Cancelled", 0, 1100]
      ])
      const stats = yield* balancer.stats
      expect(stats.map((s) => [s.name, s.active, s.successes, s.failures])).toEqual([
        ["slow", 0, 0, 0],
        ["fast", 0, 1, 0]
      ])
    }))

  it.scoped("no hedge when the first attempt answers in time, and none when it fails first", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({
        endpoints: [endpoint("a"), endpoint("b")],
        strategy: "round-robin",
        health: { maxFailures: 100 }
      })
      const quick = scripted({ a: ok("a"), b: ok("b") })
      const first = yield* run(context, Router.execute(quick.call, { hedge: { delay: "1 second" } }))
      expect(first.attempts.length).toBe(1)
      // a fast failure goes straight to failover, without waiting for the hedge delay
      const failing = scripted({ a: down("a"), b: down("b") })
      const fiber = yield* Effect.fork(
        run(
          context,
          Router.execute(failing.call, { hedge: { delay: "1 second" }, maxAttempts: 2, backoff: Schedule.stop })
        )
      )
      yield* TestClock.adjust("1 millis")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error.attempts.map((a) => [a.hedge, a.startedAt])).toEqual([[false, 0], [false, 0]])
    }))
})

describe("hedging at p95", () => {
  it.scoped("waits for the endpoint's p95 of recent successful attempts; no hedge before enough samples", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({ endpoints: [endpoint("a"), endpoint("b")], strategy: "round-robin" })
      let n = 0
      let stall = false
      // a answers in 100..139 ms, b in 50 ms; a stalls when asked
      const call = (e: Endpoint.Endpoint): Effect.Effect<string> =>
        e.name === "a"
          ? (stall ? Effect.as(Effect.sleep("10 seconds"), "a late") : Effect.as(Effect.sleep(100 + (n++ % 40)), "a"))
          : Effect.as(Effect.sleep("50 millis"), "b")
      // b's p95 is its every answer (50 ms); the 60 ms floor keeps its twin from starting
      // at the very instant it answers (which of the two comes first is a tie)
      const policy: Router.Policy = { hedge: { delay: "p95", minSamples: 20, minDelay: "60 millis" } }
      // before 20 samples a stalled a is not hedged
      stall = true
      const early = yield* Effect.fork(run(context, Router.execute(call, policy)))
      yield* TestClock.adjust("10 seconds")
      expect((yield* Fiber.join(early)).attempts.map((x) => x.hedge)).toEqual([false])
      stall = false
      for (let i = 0; i < 80; i++) {
        const f = yield* Effect.fork(run(context, Router.execute(call, policy)))
        yield* TestClock.adjust("200 millis")
        yield* Fiber.join(f)
      }
      stall = true
      // the next round robin pick is a: it stalls, and its twin starts at a's p95
      const start = yield* Clock.currentTimeMillis
      const hedged = yield* Effect.fork(run(context, Router.execute(call, policy)))
      yield* TestClock.adjust("1 second")
      const result = yield* Fiber.join(hedged)
      expect(result.value).toBe("b")
      expect(result.attempts.map((x) => [x.endpoint, x.hedge, x.outcome])).toEqual([
        ["b", true, "Success"],
        ["a", false, "Cancelled"]
      ])
      // the twin started at the upper end of a's p95 (its confidence interval, at most its
      // p97.5): 137 to 139 ms; far from both the fast answers (100 ms) and the stall (10 s)
      const twinStart = result.attempts[0].startedAt - start
      expect(twinStart).toBeGreaterThanOrEqual(137)
      expect(twinStart).toBeLessThanOrEqual(139)
    }))
})

describe("hedging edge cases and deadlines", () => {
  it.scoped("a hedged call whose twin cannot start still ends when the first attempt fails", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({ endpoints: [endpoint("only")] })
      const p = scripted({ only: () => Effect.zipRight(Effect.sleep("1 second"), down("only")()) })
      const fiber = yield* Effect.fork(
        run(context, Router.execute(p.call, { hedge: { delay: "100 millis" }, maxAttempts: 1 }))
      )
      yield* TestClock.adjust("1 second")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error.reason).toBe("attempts-exhausted")
      expect(error.lastError?._tag).toBe("Unavailable")
    }))

  it.scoped("waiting for capacity counts against the deadline, and a cut attempt does not blame the endpoint", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* setup({ endpoints: [endpoint("a", { maxConcurrency: 1 })] })
      const held = yield* balancer.acquire()
      const fiber = yield* Effect.fork(
        run(context, Router.execute(ok("a"), { timeout: "1 second", hints: { wait: "5 seconds" } }))
      )
      yield* TestClock.adjust("1 second")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error.reason).toBe("no-endpoint")
      yield* balancer.release(held, Outcome.success())
      // an attempt cut short by the call's deadline is not the endpoint's fault
      const slow = scripted({ a: () => Effect.never })
      const cut = yield* Effect.fork(
        run(context, Router.execute(slow.call, { timeout: "2 seconds", attemptTimeout: "10 seconds" }))
      )
      yield* TestClock.adjust("2 seconds")
      const cutError = yield* Effect.flip(Fiber.join(cut))
      expect(cutError.reason).toBe("deadline")
      expect(cutError.lastError?._tag).toBe("Timeout")
      const [a] = yield* balancer.stats
      expect(a.consecutiveFailures).toBe(0)
      expect(a.active).toBe(0)
    }))

  it.scoped("a call that stops for lack of an endpoint keeps when one frees up", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({ endpoints: [endpoint("a")], health: { maxFailures: 1 } })
      const p = scripted({ a: down("a") })
      const fiber = yield* Effect.fork(run(context, Router.execute(p.call)))
      // the back-off before trying the only endpoint again
      yield* TestClock.adjust("10 seconds")
      const error = yield* Effect.flip(Fiber.join(fiber))
      expect(error.reason).toBe("no-endpoint")
      expect(error.lastError?._tag).toBe("Unavailable")
      expect(error.retryAt).toBe(5_000)
    }))

  it.scoped("a tier with maxAttempts 0 is skipped", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({ endpoints: [endpoint("primary"), endpoint("backup", { priority: 1 })] })
      const p = scripted({ primary: ok("primary"), backup: ok("backup") })
      const result = yield* run(context, Router.execute(p.call, { tiers: { 0: { maxAttempts: 0 } } }))
      expect(result.endpoint.name).toBe("backup")
    }))
})

describe("tiers and quota groups", () => {
  it.scoped("per-tier attempt limits and timeouts", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({
        endpoints: [
          endpoint("p1"),
          endpoint("p2"),
          endpoint("p3"),
          endpoint("backup", { priority: 1 })
        ],
        strategy: "round-robin",
        health: { maxFailures: 100 }
      })
      const hang = () => Effect.never
      const p = scripted({ p1: hang, p2: hang, p3: hang, backup: ok("backup") })
      const fiber = yield* Effect.fork(run(
        context,
        Router.execute(p.call, { maxAttempts: 5, tiers: { 0: { maxAttempts: 2, attemptTimeout: "1 second" } } })
      ))
      yield* TestClock.adjust("2 seconds")
      const result = yield* Fiber.join(fiber)
      // two attempts on tier 0 (1 s each), then tier 1 although p3 was never tried
      expect(result.attempts.map((a) => [a.endpoint, a.outcome, a.latencyMs])).toEqual([
        ["p1", "Timeout", 1000],
        ["p2", "Timeout", 1000],
        ["backup", "Success", 0]
      ])
    }))

  it.scoped("a 429 on one endpoint of a quota group cools the whole group", () =>
    Effect.gen(function*() {
      const { balancer } = yield* setup({
        endpoints: [
          endpoint("key1-us", { quotaGroup: "key1" }),
          endpoint("key1-eu", { quotaGroup: "key1" }),
          endpoint("key2")
        ]
      })
      yield* Effect.either(
        balancer.use(() => Effect.fail(new Errors.RateLimited({ retryAfter: Duration.seconds(20) })), {
          exclude: ["key1-eu", "key2"]
        })
      )
      const stats = yield* balancer.stats
      expect(stats.map((s) => s.status)).toEqual(["unhealthy", "unhealthy", "healthy"])
      const error = yield* Effect.flip(balancer.acquire({ exclude: ["key2"] }))
      expect(error.passedOver.map((x) => x.reason)).toEqual(["cooling-down", "cooling-down", "excluded"])
      expect(error.passedOver[0].until).toBe(error.passedOver[1].until)
    }).pipe(Effect.withRandom(Random.make("quota"))))
})

describe("retry budget", () => {
  it.scoped("a total outage costs at most about 1.1x the attempts once the budget is in force", () =>
    Effect.gen(function*() {
      const { context } = yield* setup(
        {
          endpoints: [endpoint("a"), endpoint("b"), endpoint("c")],
          // keep circuits closed: this test is about the budget alone
          health: { maxFailures: 1_000_000, failureRateThreshold: 1, failureRateMinRequests: 1_000_000 }
        },
        { retryBudget: { percent: 0.1, minPerSecond: 1, ttl: "10 seconds" } }
      )
      const p = scripted({ a: down("a"), b: down("b"), c: down("c") })
      let failed = 0
      const reasons = new Map<string, number>()
      // 2,000 calls over 20 s of TestClock: 100 per second
      for (let second = 0; second < 20; second++) {
        const errors = yield* Effect.forEach(
          Array.from({ length: 100 }),
          () => Effect.flip(run(context, Router.execute(p.call, { maxAttempts: 3 }))),
          { concurrency: "unbounded" }
        )
        for (const e of errors) reasons.set(e.reason, (reasons.get(e.reason) ?? 0) + 1)
        failed += errors.length
        yield* TestClock.adjust("1 second")
      }
      expect(failed).toBe(2000)
      const attempts = p.calls.length
      // without a budget this would be 6,000 attempts (3 per call)
      expect(attempts / 2000).toBeLessThanOrEqual(1.2)
      expect(reasons.get("retry-budget")).toBeGreaterThan(1500)
    }))
})

describe("provider errors and health", () => {
  it.scoped("a 429 cools the endpoint down until Retry-After (x1 to x1.5), without a health failure", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* setup({
        endpoints: [endpoint("a"), endpoint("b")],
        strategy: "round-robin"
      })
      const p = scripted({
        a: () => Effect.fail(new Errors.RateLimited({ status: 429, retryAfter: Duration.seconds(10) })),
        b: ok("b")
      })
      const events = yield* balancer.subscribe
      const result = yield* run(context, Router.execute(p.call))
      expect(result.endpoint.name).toBe("b")
      const a = (yield* balancer.stats)[0]
      expect(a.circuit).toBe("closed")
      expect(a.consecutiveFailures).toBe(0)
      expect(a.status).toBe("unhealthy")
      const refused = yield* Effect.flip(balancer.acquire({ exclude: ["b"] }))
      const until = refused.passedOver[0].until!
      expect(refused.passedOver[0].reason).toBe("cooling-down")
      expect(until).toBeGreaterThanOrEqual(10_000)
      expect(until).toBeLessThanOrEqual(15_000)
      // no request reaches it before the time
      for (let i = 0; i < 20; i++) yield* run(context, Router.execute(p.call))
      expect(p.calls.filter((n) => n === "a").length).toBe(1)
      yield* TestClock.adjust(Duration.millis(until))
      expect((yield* balancer.acquire({ exclude: ["b"] })).endpoint.name).toBe("a")
      const all = Chunk.toReadonlyArray(yield* Queue.takeAll(events))
      expect(all.filter((e) => e._tag === "EndpointRateLimited")).toEqual([
        { _tag: "EndpointRateLimited", name: "a", at: 0, until }
      ])
      // every attempt is on the stream too
      expect(all.filter((e) => e._tag === "AttemptEnded").length).toBe(p.calls.length)
    }).pipe(Effect.withRandom(Random.make("429"))))

  it.scoped("a Retry-After over the cap is treated as an outage", () =>
    Effect.gen(function*() {
      const { balancer } = yield* setup({
        endpoints: [endpoint("a")],
        health: { maxFailures: 1, maxCooldown: "1 minute" }
      })
      yield* Effect.either(
        balancer.use(() => Effect.fail(new Errors.RateLimited({ retryAfter: Duration.hours(1) })))
      )
      const [a] = yield* balancer.stats
      expect(a.circuit).toBe("open")
    }))

  it.scoped("Unauthorized holds the endpoint out until forceHealthy", () =>
    Effect.gen(function*() {
      const { balancer } = yield* setup({ endpoints: [endpoint("a"), endpoint("b")] })
      const events = yield* balancer.subscribe
      yield* Effect.either(
        balancer.use(() => Effect.fail(new Errors.Unauthorized({ status: 401 })), { exclude: ["b"] })
      )
      yield* TestClock.adjust("1 hour")
      const a = (yield* balancer.stats)[0]
      expect(a.held).toBe(true)
      expect(a.status).toBe("unhealthy")
      expect((yield* events.take)._tag).toBe("EndpointUnhealthy")
      yield* balancer.forceHealthy("a")
      expect((yield* balancer.stats)[0].status).toBe("healthy")
    }))

  it.scoped("BadRequest, ContextLengthExceeded and ContentFiltered do not count against the endpoint", () =>
    Effect.gen(function*() {
      const { balancer } = yield* setup({ endpoints: [endpoint("a")], health: { maxFailures: 1 } })
      for (
        const error of [
          new Errors.BadRequest({}),
          new Errors.ContextLengthExceeded({}),
          new Errors.ContentFiltered({})
        ]
      ) {
        yield* Effect.either(balancer.use(() => Effect.fail(error)))
      }
      const [a] = yield* balancer.stats
      expect(a.circuit).toBe("closed")
      expect(a.failures).toBe(3)
      expect(a.consecutiveFailures).toBe(0)
    }))

  it("every ProviderError says whether it is retryable and what it does to health", () => {
    const table = [
      new Errors.RateLimited({}),
      new Errors.Timeout({}),
      new Errors.Unavailable({}),
      new Errors.BadRequest({}),
      new Errors.Unauthorized({}),
      new Errors.ContextLengthExceeded({}),
      new Errors.ContentFiltered({}),
      new Errors.MalformedResponse({}),
      new Errors.UnknownProviderError({})
    ].map((e) => [e._tag, e.retryable, e.healthEffect, Errors.isProviderError(e)])
    expect(table).toEqual([
      ["RateLimited", true, "cooldown", true],
      ["Timeout", true, "counts", true],
      ["Unavailable", true, "counts", true],
      ["BadRequest", false, "ignore", true],
      ["Unauthorized", true, "hold", true],
      ["ContextLengthExceeded", false, "ignore", true],
      ["ContentFiltered", false, "ignore", true],
      ["MalformedResponse", true, "counts", true],
      ["UnknownProviderError", true, "counts", true]
    ])
    expect(Errors.isProviderError(new Error("x"))).toBe(false)
    expect(new Errors.RateLimited({ endpoint: "a", status: 429, retryAfter: Duration.seconds(3) }).message).toBe(
      "RateLimited from a (HTTP 429), retry after 3s"
    )
  })
})
