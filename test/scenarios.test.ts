/**
 * Whole scenarios on TestClock: open-loop traffic through the Router and the Balancer to
 * scripted endpoints whose behaviour changes with time.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Context, Effect, Either, Fiber, Layer, Queue, Random, TestClock } from "effect"
import type { Endpoint } from "../src/index.js"
import type { Event } from "../src/index.js"
import { Balancer, Errors, Router } from "../src/index.js"
import { endpoint } from "./helpers.js"

interface Behaviour {
  readonly latencyMs: number
  readonly fails: boolean
}

type Script = (name: string, now: number) => Behaviour

interface Call {
  readonly endpoint: string
  readonly at: number
}

/**
 * Sends `rate` calls per second for `seconds` through a router over `endpoints`, each
 * endpoint behaving as `script` says at the moment the call reaches it. Returns every call
 * an endpoint received, every routed result, and every balancer event.
 */
const simulate = (options: {
  readonly endpoints: ReadonlyArray<Endpoint.Input>
  readonly balancer?: Omit<Balancer.Options, "endpoints">
  readonly policy?: Router.Policy
  readonly script: Script
  readonly rate: number
  readonly seconds: number
}) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      Router.layer().pipe(Layer.provideMerge(Balancer.layer({ ...options.balancer, endpoints: options.endpoints })))
    ).pipe(Effect.orDie)
    const balancer = Context.get(context, Balancer.Balancer)
    const router = Context.get(context, Router.Router)
    // drain the subscription as events come, so that none is dropped however long the run
    const queue = yield* balancer.subscribe
    const events: Array<Event.Event> = []
    yield* Effect.fork(Effect.forever(Effect.map(Queue.take(queue), (e) => events.push(e))))
    const calls: Array<Call> = []
    const call = (e: Endpoint.Endpoint) =>
      Effect.gen(function*() {
        const at = yield* Clock.currentTimeMillis
        calls.push({ endpoint: e.name, at })
        const behaviour = options.script(e.name, at)
        yield* Effect.sleep(behaviour.latencyMs)
        if (behaviour.fails) return yield* Effect.fail(new Errors.Unavailable({ endpoint: e.name, status: 503 }))
        return e.name
      })
    // calls go out in ticks of 250 ms (a burst of rate / 4 each), which keeps the run fast
    const perTick = Math.max(1, Math.round(options.rate / 4))
    const fibers: Array<Fiber.RuntimeFiber<Either.Either<Router.Routed<string>, Errors.RoutingFailed>>> = []
    for (let tick = 0; tick < options.seconds * 4; tick++) {
      for (let i = 0; i < perTick; i++) {
        fibers.push(yield* Effect.fork(Effect.either(router.execute(call, options.policy))))
      }
      yield* TestClock.adjust("250 millis")
    }
    yield* TestClock.adjust("5 minutes")
    const results = yield* Effect.forEach(fibers, Fiber.join)
    const stats = yield* balancer.stats
    return { calls, results, stats, events }
  })

const steady = (latencyMs: number): Behaviour => ({ latencyMs, fails: false })

describe("scenarios", () => {
  it.scoped("hard outage: once ejected, the dead endpoint sees only probes; no caller sees an error", () =>
    Effect.gen(function*() {
      const outage = { from: 20_000, to: 80_000 }
      const run = yield* simulate({
        endpoints: [endpoint("a"), endpoint("b"), endpoint("c")],
        script: (name, now) =>
          name === "b" && now >= outage.from && now < outage.to ? { latencyMs: 5, fails: true } : steady(100),
        rate: 8,
        seconds: 200
      })
      const toB = run.calls.filter((c) => c.endpoint === "b" && c.at >= outage.from && c.at < outage.to)
      const probes = run.events.filter((e) =>
        e._tag === "EndpointProbing" && e.name === "b" && e.at >= outage.from && e.at < outage.to
      )
      // the failures that open the circuit, then nothing but probes
      expect(toB.length).toBeLessThanOrEqual(3 + probes.length)
      expect(probes.length).toBeGreaterThan(0)
      expect(probes.length).toBeLessThan(12)
      expect(run.results.every((r) => Either.isRight(r))).toBe(true)
      // b is back after the outage: its next probe closes the circuit, then slow start ramps
      // it up over 30 s (how soon the probe comes depends on how long the outage made the
      // open periods grow)
      const recovered = run.events.find((e) => e._tag === "EndpointRecovered" && e.name === "b" && e.at >= outage.to)
      expect(recovered).toBeDefined()
      expect(recovered!.at).toBeLessThan(outage.to + 80_000)
      const after = run.calls.filter((c) => c.at >= recovered!.at + 30_000 && c.at < 200_000)
      expect(after.length).toBeGreaterThan(100)
      expect(after.filter((c) => c.endpoint === "b").length / after.length).toBeGreaterThan(0.25)
      expect(run.stats.every((s) => s.active === 0)).toBe(true)
    }).pipe(Effect.withRandom(Random.make("outage"))))

  it.scoped("brownout: least connections moves traffic away from an endpoint 10x slower", () =>
    Effect.gen(function*() {
      const brownout = { from: 30_000, to: 150_000 }
      const run = yield* simulate({
        endpoints: [endpoint("a"), endpoint("b"), endpoint("c")],
        balancer: { strategy: "least-connections" },
        script: (name, now) => name === "b" && now >= brownout.from && now < brownout.to ? steady(2_000) : steady(200),
        rate: 12,
        seconds: 180
      })
      const share = (from: number, to: number) => {
        const window = run.calls.filter((c) => c.at >= from && c.at < to)
        return window.filter((c) => c.endpoint === "b").length / window.length
      }
      expect(share(0, brownout.from)).toBeGreaterThan(0.3)
      expect(share(brownout.from + 10_000, brownout.to)).toBeLessThan(0.12)
      expect(run.results.every((r) => Either.isRight(r))).toBe(true)
    }).pipe(Effect.withRandom(Random.make("brownout"))))

  it.scoped("flapping endpoint (20 s up, 20 s down): at most a probe per open period reaches it while down", () =>
    Effect.gen(function*() {
      const down = (now: number) => Math.floor(now / 20_000) % 2 === 1
      const run = yield* simulate({
        endpoints: [endpoint("a"), endpoint("b"), endpoint("flappy")],
        script: (name, now) => name === "flappy" && down(now) ? { latencyMs: 5, fails: true } : steady(100),
        rate: 10,
        seconds: 200
      })
      const callsWhileDown = run.calls.filter((c) => c.endpoint === "flappy" && down(c.at))
      const opened = run.events.filter((e) => e._tag === "EndpointUnhealthy" && e.name === "flappy")
      const probesWhileDown = run.events.filter((e) =>
        e._tag === "EndpointProbing" && e.name === "flappy" && down(e.at)
      )
      // each down window: the failures that open the circuit (3) once, then only probes
      const downWindows = 5
      expect(callsWhileDown.length).toBeLessThanOrEqual(downWindows * 3 + probesWhileDown.length)
      expect(opened.length).toBeGreaterThanOrEqual(downWindows)
      expect(run.results.every((r) => Either.isRight(r))).toBe(true)
    }).pipe(Effect.withRandom(Random.make("flapping"))))

  it.scoped("all endpoints down: attempts stay near 1.1x calls and every caller gets a clear error", () =>
    Effect.gen(function*() {
      const run = yield* simulate({
        endpoints: [endpoint("a"), endpoint("b"), endpoint("c")],
        // circuits are kept closed so the retry budget alone bounds the attempts
        balancer: { health: { maxFailures: 1_000_000, failureRateThreshold: 1, failureRateMinRequests: 1e9 } },
        script: () => ({ latencyMs: 5, fails: true }),
        rate: 40,
        seconds: 30
      })
      const calls = run.results.length
      expect(run.results.every((r) => Either.isLeft(r))).toBe(true)
      // 10 % of the calls plus the floor of 1 retry a second: about 1.125x here, 3x without a budget
      expect(run.calls.length / calls).toBeLessThanOrEqual(1.15)
    }).pipe(Effect.withRandom(Random.make("total outage"))))
})
