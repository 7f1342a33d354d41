import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Random, TestClock } from "effect"
import { Endpoint, EndpointState, Health, Outcome, Strategy } from "../src/index.js"
import { endpoint, makeBalancer } from "./helpers.js"

describe("Strategy.powerOfTwo (peak EWMA)", () => {
  it.scoped("moves traffic off a slow endpoint within a few calls and back once it is fast again", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a"), endpoint("b"), endpoint("slow")],
        strategy: Strategy.powerOfTwo
      })
      let slowMs = 100
      const pickAndAnswer = Effect.gen(function*() {
        const lease = yield* b.acquire()
        const name = lease.endpoint.name
        yield* b.release(lease, Outcome.success({ latency: name === "slow" ? slowMs : 100 }))
        yield* TestClock.adjust("100 millis")
        return name
      })
      const share = (names: ReadonlyArray<string>) => names.filter((n) => n === "slow").length / names.length
      const before = yield* Effect.replicateEffect(pickAndAnswer, 300)
      expect(share(before)).toBeGreaterThan(0.2)
      slowMs = 2_000
      const brownout = yield* Effect.replicateEffect(pickAndAnswer, 600)
      // the first slow answer makes it expensive at once
      const firstSlow = brownout.indexOf("slow")
      expect(brownout.slice(firstSlow + 1, firstSlow + 20)).not.toContain("slow")
      expect(share(brownout)).toBeLessThan(0.05)
      slowMs = 100
      const after = yield* Effect.replicateEffect(pickAndAnswer, 600)
      // idle, its estimate decays, it is tried again, and it is fast: traffic comes back
      expect(share(after.slice(300))).toBeGreaterThan(0.2)
    }).pipe(Effect.withRandom(Random.make("p2c brownout"))))

  it.scoped("equal endpoints under steady concurrent load: none takes more than its fair share + 10 %", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: ["a", "b", "c", "d"].map((n) => endpoint(n)),
        strategy: Strategy.powerOfTwo
      })
      const picks = new Map<string, number>()
      const fibers: Array<Fiber.RuntimeFiber<void, unknown>> = []
      for (let tick = 0; tick < 200; tick++) {
        for (let i = 0; i < 5; i++) {
          fibers.push(
            yield* Effect.fork(b.use((e) => {
              picks.set(e.name, (picks.get(e.name) ?? 0) + 1)
              return Effect.sleep(`${200 + 50 * i} millis`)
            }))
          )
        }
        yield* TestClock.adjust("100 millis")
      }
      yield* TestClock.adjust("1 second")
      yield* Effect.forEach(fibers, Fiber.join)
      const total = [...picks.values()].reduce((x, y) => x + y, 0)
      expect(total).toBe(1000)
      for (const count of picks.values()) expect(count / total).toBeLessThanOrEqual(0.35)
      expect((yield* b.stats).every((s) => s.active === 0)).toBe(true)
    }).pipe(Effect.withRandom(Random.make("p2c steady"))))

  it.scoped("an endpoint never measured is neither starved nor flooded", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("a"), endpoint("b")],
        strategy: Strategy.powerOfTwo
      })
      // a and b are measured at 100 ms; then a fresh endpoint joins
      for (let i = 0; i < 20; i++) {
        const lease = yield* b.acquire()
        yield* b.release(lease, Outcome.success({ latency: 100 }))
      }
      yield* b.addEndpoint(endpoint("new"))
      const names: Array<string> = []
      for (let i = 0; i < 300; i++) {
        const lease = yield* b.acquire()
        names.push(lease.endpoint.name)
        yield* b.release(lease, Outcome.success({ latency: 100 }))
      }
      const share = names.filter((n) => n === "new").length / names.length
      expect(share).toBeGreaterThan(0.2)
      expect(share).toBeLessThan(0.5)
    }).pipe(Effect.withRandom(Random.make("p2c new"))))

  it("the peak EWMA jumps up at once, decays toward faster answers and toward zero while idle", () => {
    let e = Health.observeLatency(undefined, 0, 100, 10_000)
    expect(e).toEqual({ ms: 100, at: 0 })
    e = Health.observeLatency(e, 1_000, 1_000, 10_000)
    expect(e.ms).toBe(1_000)
    e = Health.observeLatency(e, 11_000, 100, 10_000)
    // one time constant later: weight 1/e on the old value
    expect(e.ms).toBeCloseTo(1_000 * Math.exp(-1) + 100 * (1 - Math.exp(-1)), 6)
    expect(Health.latencyAt(e, 21_000, 10_000)).toBeCloseTo(e.ms * Math.exp(-1), 6)
    const fresh = Either.getOrThrow(Endpoint.decodeEither(endpoint("fresh")))
    let state = EndpointState.make(0, fresh, Health.resolve(Health.defaultPolicy, fresh), 0)
    expect(EndpointState.latencyEstimateMs(state, 0)).toBeUndefined()
    state = EndpointState.onSuccess(EndpointState.onAcquire(state, false), 0, 250, undefined)
    expect(EndpointState.latencyEstimateMs(state, 0)).toBe(250)
    expect(EndpointState.latencyEstimateMs(state, 10_000)).toBeCloseTo(250 * Math.exp(-1), 6)
  })

  it("after a quiet spell a normal answer takes over; hanging calls stop the decay and count as slowness; a slow failure counts", () => {
    const decay = 10_000
    const idle = Health.observeLatency(Health.observeLatency(undefined, 0, 2_000, decay), 30_000, 100, decay)
    expect(idle).toEqual({ ms: 100, at: 30_000 })
    const a = Either.getOrThrow(Endpoint.decodeEither(endpoint("a")))
    let state = EndpointState.make(0, a, Health.resolve(Health.defaultPolicy, a), 0)
    state = EndpointState.onSuccess(EndpointState.onAcquire(state, false), 0, 500, undefined)
    const busy = EndpointState.onAcquire(state, false, 0)
    // a call in flight for a minute without an answer: the endpoint is at least that slow now
    expect(EndpointState.latencyEstimateMs(busy, 60_000)).toBe(60_000)
    // a call just started after a quiet spell: the endpoint has not shown it got faster
    const justBusy = EndpointState.onAcquire(state, false, 59_900)
    expect(EndpointState.latencyEstimateMs(justBusy, 60_000)).toBe(500)
    expect(EndpointState.latencyEstimateMs(state, 60_000)).toBeLessThan(2)
    // a stream past its first token waits for nothing: however long it streams, no slowness
    const streaming = EndpointState.onFirstToken(EndpointState.onAcquire(state, false, 0), 100)
    expect(EndpointState.latencyEstimateMs(streaming, 60_000)).toBe(500)
    // a second call waiting behind it ages from when it started
    const waiting = EndpointState.onAcquire(streaming, false, 1_000)
    expect(EndpointState.latencyEstimateMs(waiting, 61_000)).toBe(60_000)
    // the stream ends: the count of answered calls in flight goes with it
    const ended = EndpointState.onAnsweredEnd(EndpointState.onSuccess(streaming, 60_000, 60_000, undefined))
    expect(ended.answeredInFlight).toBe(0)
    expect(ended.active).toBe(0)
    const timedOut = EndpointState.onFailure(busy, 60_000, 30_000, undefined)
    expect(EndpointState.latencyEstimateMs(timedOut, 60_000)).toBe(30_000)
  })

  it.scoped("weight is capacity: under load a heavier endpoint takes more", () =>
    Effect.gen(function*() {
      const b = yield* makeBalancer({
        endpoints: [endpoint("big", { weight: 5 }), endpoint("small1"), endpoint("small2")],
        strategy: Strategy.powerOfTwo
      })
      for (let i = 0; i < 30; i++) {
        const lease = yield* b.acquire()
        yield* b.release(lease, Outcome.success({ latency: 100 }))
      }
      const held = yield* Effect.forEach(Array.from({ length: 70 }), () => b.acquire())
      const big = held.filter((l) => l.endpoint.name === "big").length
      expect(big / held.length).toBeGreaterThan(0.55)
    }).pipe(Effect.withRandom(Random.make("p2c weight"))))
})
