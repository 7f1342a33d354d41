/**
 * The shared store's contract, run against `Store.memory` and the Redis store (a real
 * redis-server on 127.0.0.1): two balancers over one store behave as two processes with
 * the same keys. Real time throughout (the Redis scripts run on the server's clock).
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Context, Duration, Effect, Either, Exit, Fiber, Layer, Queue } from "effect"
import type { Endpoint } from "../src/index.js"
import { Balancer, Errors, Outcome, Store } from "../src/index.js"
import * as RedisStore from "../src/RedisStore.js"
import { endpoint } from "./helpers.js"
import { startRedis } from "./support/redisServer.js"
import { useRedis } from "./support/useRedis.js"

const redis = useRedis()

let runs = 0
/** A fresh namespace per test, so tests never see each other's keys. */
const redisLayer = () => RedisStore.layer({ url: redis.url, prefix: `test-${process.pid}-${Date.now()}-${runs++}` })

/** Two balancers ("processes") over one store. */
const twoBalancers = (store: Layer.Layer<Store.Store, unknown>, options: Balancer.Options) =>
  Effect.gen(function*() {
    const context = yield* Effect.orDie(Layer.build(store))
    const make = () => Effect.orDie(Effect.provide(Balancer.make(options), context))
    return [yield* make(), yield* make()] as const
  })

const ok = (b: Balancer.BalancerService, hints?: Balancer.Hints, outcome: Outcome.Outcome = Outcome.success()) =>
  Effect.flatMap(b.acquire(hints), (lease) => Effect.as(b.release(lease, outcome), lease.endpoint.name))

const tryCall = (b: Balancer.BalancerService, hints?: Balancer.Hints, outcome?: Outcome.Outcome) =>
  Effect.either(ok(b, hints, outcome))

const statsOf = (b: Balancer.BalancerService, name: string) =>
  Effect.map(b.stats, (stats) => stats.find((s) => s.name === name)!)

const stores: ReadonlyArray<readonly [string, () => Layer.Layer<Store.Store, unknown>]> = [
  ["memory", () => Store.memory],
  ["redis", redisLayer]
]

describe.each(stores)("shared store contract: %s", (_, layer) => {
  it.live("rpm: two balancers together admit exactly the limit", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* twoBalancers(layer(), { endpoints: [endpoint("x", { limits: { rpm: 5 } })] })
      const results = yield* Effect.forEach(Array.from({ length: 20 }), (_, i) => tryCall(i % 2 === 0 ? a : b))
      expect(results.filter(Either.isRight)).toHaveLength(5)
      const refused = results.filter(Either.isLeft).map((e) => e.left)
      expect(refused.every((e) => e._tag === "NoEndpointAvailable")).toBe(true)
      const first = refused[0] as Errors.NoEndpointAvailable
      expect(first.passedOver[0]).toMatchObject({ endpoint: "x", reason: "no-headroom" })
      expect(first.passedOver[0].until).toBeGreaterThan(Date.now())
      // a refused call is taken back: the local slot and window are free again
      expect((yield* statsOf(a, "x")).active).toBe(0)
    })))

  it.live("a refused endpoint is passed over for another, in the same call", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* twoBalancers(layer(), {
        endpoints: [endpoint("x", { limits: { rpm: 2 }, priority: 0 }), endpoint("y", { priority: 1 })]
      })
      expect(yield* ok(a)).toBe("x")
      expect(yield* ok(a)).toBe("x")
      // b has sent nothing to x, but the cluster has spent x's minute
      expect(yield* ok(b)).toBe("y")
      expect((yield* statsOf(b, "x")).active).toBe(0)
    })))

  it.live("tpm: reported usage corrects the estimate for every balancer", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* twoBalancers(layer(), { endpoints: [endpoint("x", { limits: { tpm: 1000 } })] })
      yield* ok(a, { inputTokens: 600 }, Outcome.success({ usage: { inputTokens: 50, outputTokens: 50 } }))
      // 100 used, not 600: 600 more fit
      expect(yield* ok(b, { inputTokens: 600 })).toBe("x")
      // 700 used (b reported nothing): 400 do not fit
      const refused = yield* tryCall(a, { inputTokens: 400 })
      expect(Either.isLeft(refused)).toBe(true)
    })))

  it.live("tpm: calls without an estimate are counted by their reported usage, and need room for one token", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* twoBalancers(layer(), { endpoints: [endpoint("x", { limits: { tpm: 100 } })] })
      yield* ok(a, undefined, Outcome.success({ usage: { inputTokens: 60, outputTokens: 40 } }))
      // the window is full for the cluster: b, which sent nothing, is turned away
      const refused = yield* tryCall(b)
      expect(Either.isLeft(refused)).toBe(true)
    })))

  it.live("a call the store turns away does not use up what the provider said is left", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* twoBalancers(layer(), { endpoints: [endpoint("x")] })
      const hint = { requests: { remaining: 1, limit: 10, resetAt: Date.now() + 60_000 }, tokens: undefined }
      yield* ok(a, undefined, Outcome.success({ rateLimit: hint }))
      yield* tryCall(b, undefined, Outcome.failure(new Errors.RateLimited({ retryAfter: Duration.millis(100) })))
      // turned away by the shared cooldown: nothing was sent
      expect(Either.isLeft(yield* tryCall(a))).toBe(true)
      yield* Effect.sleep("250 millis")
      // the one request the provider said is left is still there
      expect(yield* ok(a)).toBe("x")
    })))

  it.live("a probe that fails for its own request (a 400) does not reopen the circuit for all", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* twoBalancers(layer(), {
        health: { maxFailures: 1, recoveryTimeout: "200 millis" },
        endpoints: [endpoint("x", { priority: 0 }), endpoint("y", { priority: 1 })]
      })
      yield* tryCall(a, undefined, Outcome.failure(new Errors.Unavailable({ status: 503 })))
      yield* Effect.sleep("250 millis")
      const probe = yield* b.acquire()
      expect(probe.endpoint.name).toBe("x")
      yield* b.release(probe, Outcome.failure(new Errors.BadRequest({ status: 400 })))
      // still half-open, not open again: the next call is another probe of x
      expect(yield* ok(b)).toBe("x")
    })))

  it.live("a 429 seen by one balancer rests the endpoint and its quota group for all", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* twoBalancers(layer(), {
        endpoints: [
          endpoint("x", { quotaGroup: "key-1", priority: 0 }),
          endpoint("x2", { quotaGroup: "key-1", priority: 1 }),
          endpoint("y", { priority: 2 })
        ]
      })
      const limited = new Errors.RateLimited({ retryAfter: Duration.seconds(2) })
      yield* tryCall(a, undefined, Outcome.failure(limited))
      expect(yield* ok(b)).toBe("y")
      const stats = yield* statsOf(b, "x")
      expect(stats.status).toBe("unhealthy")
    })))

  it.live("a circuit opened in one balancer is open in the other; one probe for both; its success closes it for all", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* twoBalancers(layer(), {
        health: { maxFailures: 2, recoveryTimeout: "300 millis", halfOpenProbes: 1 },
        endpoints: [endpoint("x", { priority: 0 }), endpoint("y", { priority: 1 })]
      })
      const failed = Outcome.failure(new Errors.Unavailable({ status: 503 }))
      yield* tryCall(a, undefined, failed)
      yield* tryCall(a, undefined, failed)
      expect((yield* statsOf(a, "x")).circuit).toBe("open")
      // b saw no failure, yet sends nothing to x
      expect(yield* ok(b)).toBe("y")
      expect(yield* ok(b)).toBe("y")
      yield* Effect.sleep("350 millis")
      // half-open: b's call is the cluster's probe; a's, at the same time, is turned away
      const probe = yield* b.acquire()
      expect(probe.endpoint.name).toBe("x")
      const other = yield* a.acquire()
      expect(other.endpoint.name).toBe("y")
      yield* a.release(other, Outcome.success())
      yield* b.release(probe, Outcome.success())
      // closed for all: a's own circuit is still open locally until its probe, b routes to x
      expect(yield* ok(b)).toBe("x")
    })))

  it.live("halfOpenProbes: 3 lets at most 3 probes in, from all balancers together", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* twoBalancers(layer(), {
        health: { maxFailures: 1, recoveryTimeout: "200 millis", halfOpenProbes: 3 },
        endpoints: [endpoint("x", { priority: 0 }), endpoint("y", { priority: 1 })]
      })
      yield* tryCall(a, undefined, Outcome.failure(new Errors.Unavailable({ status: 503 })))
      yield* Effect.sleep("250 millis")
      // several calls reserved in the same millisecond each take their own probe slot
      const leases = yield* Effect.all([a, a, a, b, b, b].map((x) => Effect.map(x.acquire(), (l) => [x, l] as const)), {
        concurrency: "unbounded"
      })
      expect(leases.filter(([, l]) => l.endpoint.name === "x")).toHaveLength(3)
      yield* Effect.forEach(leases, ([x, l]) => x.release(l, Outcome.success()), { discard: true })
    })))

  it.live("forceHealthy in one balancer closes the circuit for all", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* twoBalancers(layer(), {
        health: { maxFailures: 1, recoveryTimeout: "1 minutes" },
        endpoints: [endpoint("x", { priority: 0 }), endpoint("y", { priority: 1 })]
      })
      yield* tryCall(a, undefined, Outcome.failure(new Errors.Unavailable({ status: 503 })))
      yield* a.forceHealthy("x")
      // b never saw x fail nor was turned away: without the shared close it would go to y
      expect(yield* ok(b)).toBe("x")
      expect((yield* statsOf(b, "x")).shared).toBe(null)
    })))

  it.live("a failed cluster probe reopens the circuit for all", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* twoBalancers(layer(), {
        health: { maxFailures: 1, recoveryTimeout: "200 millis", recoveryFactor: 1 },
        endpoints: [endpoint("x", { priority: 0 }), endpoint("y", { priority: 1 })]
      })
      const failed = Outcome.failure(new Errors.Unavailable({ status: 503 }))
      yield* tryCall(a, undefined, failed)
      yield* Effect.sleep("250 millis")
      const probe = yield* b.acquire()
      expect(probe.endpoint.name).toBe("x")
      yield* b.release(probe, failed)
      expect(yield* ok(b)).toBe("y")
      expect(yield* ok(a)).toBe("y")
    })))

  it.live("the balancer's budget is spent by all balancers together", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* twoBalancers(layer(), {
        budget: { limit: 1, period: "1 hours" },
        endpoints: [endpoint("x", { cost: { inputPerMillion: 1_000_000, outputPerMillion: 0 } })]
      })
      // one call of one input token costs 1: the whole budget
      yield* ok(a, undefined, Outcome.success({ usage: { inputTokens: 1, outputTokens: 0 } }))
      const refused = yield* tryCall(b)
      expect(Either.isLeft(refused)).toBe(true)
      if (Either.isLeft(refused) && refused.left._tag === "NoEndpointAvailable") {
        expect(refused.left.passedOver[0].reason).toBe("over-budget")
      }
    })))

  it.live("an endpoint's own budget too", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* twoBalancers(layer(), {
        endpoints: [
          endpoint("x", {
            cost: { inputPerMillion: 1_000_000, outputPerMillion: 0 },
            budget: { limit: 2, period: "1 hours" }
          })
        ]
      })
      yield* ok(a, undefined, Outcome.success({ usage: { inputTokens: 2, outputTokens: 0 } }))
      expect(Either.isLeft(yield* tryCall(b))).toBe(true)
    })))
})

const endpointsOf = (names: ReadonlyArray<string>): ReadonlyArray<Endpoint.Input> => names.map((n) => endpoint(n))

describe("shared store fallback", () => {
  it.live("a store that does not answer: every call is served locally, one StoreFellBack event", () =>
    Effect.scoped(Effect.gen(function*() {
      const context = yield* Layer.build(Store.unavailable("test"))
      const balancer = yield* Effect.orDie(
        Effect.provide(Balancer.make({ endpoints: endpointsOf(["x", "y"]) }), context)
      )
      const events = yield* balancer.subscribe
      const results = yield* Effect.forEach(Array.from({ length: 20 }), () => tryCall(balancer))
      expect(results.every(Either.isRight)).toBe(true)
      const seen = Chunk.toReadonlyArray(yield* Queue.takeAll(events))
      expect(seen.filter((e) => e._tag === "StoreFellBack")).toEqual([
        expect.objectContaining({ _tag: "StoreFellBack", name: "unavailable", reason: "test" })
      ])
    })))

  it.live("a store whose admission dies (a bug in it): the call dies, and its reservation is given back", () =>
    Effect.scoped(Effect.gen(function*() {
      const memory = Context.get(yield* Layer.build(Store.memory), Store.Store)
      const broken: Store.StoreService = { ...memory, admit: () => Effect.dieMessage("admit broke") }
      const balancer = yield* Effect.orDie(
        Effect.provideService(Balancer.make({ endpoints: endpointsOf(["x"]) }), Store.Store, broken)
      )
      const exit = yield* Effect.exit(balancer.use(() => Effect.succeed(1)))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      expect((yield* balancer.stats).map((s) => s.active)).toEqual([0])
    })))

  it.live("without a store the balancer is as before (local state only)", () =>
    Effect.scoped(Effect.gen(function*() {
      const a = yield* Effect.orDie(Balancer.make({ endpoints: [endpoint("x", { limits: { rpm: 2 } })] }))
      const b = yield* Effect.orDie(Balancer.make({ endpoints: [endpoint("x", { limits: { rpm: 2 } })] }))
      const results = yield* Effect.forEach([a, a, a, b, b, b], (x) => tryCall(x))
      expect(results.filter(Either.isRight)).toHaveLength(4)
    })))
})

describe("Redis store", () => {
  it.live("bad settings fail at layer build with a clear error", () =>
    Effect.gen(function*() {
      const bad = yield* Effect.flip(Effect.scoped(RedisStore.make({ url: "http://127.0.0.1:1" })))
      expect(bad.message).toContain("url must start with redis:// or rediss://")
      const prefix = yield* Effect.flip(Effect.scoped(RedisStore.make({ url: redis.url, prefix: "a{b}" })))
      expect(prefix.message).toContain("prefix")
      const timeout = yield* Effect.flip(Effect.scoped(RedisStore.make({ url: redis.url, timeout: -1 })))
      expect(timeout.message).toContain("timeout")
    }))

  it.live("an unreachable server fails at build, naming it without its password", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(RedisStore.make({
        url: "redis://user:s3cret-pass@127.0.0.1:1",
        connectTimeout: "300 millis"
      })))
      expect(error._tag).toBe("RedisStoreError")
      expect(error.message).toContain("redis://127.0.0.1:1")
      expect(error.message).not.toContain("s3cret")
    }))

  it.live("every key it writes expires by itself", () =>
    Effect.scoped(Effect.gen(function*() {
      const prefix = `expiry-${process.pid}-${Date.now()}`
      const context = yield* Layer.build(RedisStore.layer({ url: redis.url, prefix }))
      const balancer = yield* Effect.orDie(Effect.provide(
        Balancer.make({
          budget: { limit: 100, period: "1 hours" },
          health: { maxFailures: 1 },
          endpoints: [
            endpoint("x", {
              limits: { rpm: 100, tpm: 100_000, rpd: 1000 },
              quotaGroup: "g",
              cost: { inputPerMillion: 1, outputPerMillion: 1 },
              budget: { limit: 10, period: "1 days" }
            })
          ]
        }),
        context
      ))
      yield* ok(balancer, { inputTokens: 10 }, Outcome.success({ usage: { inputTokens: 100, outputTokens: 5 } }))
      yield* tryCall(
        balancer,
        undefined,
        Outcome.failure(new Errors.RateLimited({ retryAfter: Duration.millis(100) }))
      )
      yield* Effect.sleep("150 millis")
      yield* tryCall(balancer, undefined, Outcome.failure(new Errors.Unavailable({})))
      const { Redis } = yield* Effect.promise(() => import("ioredis"))
      const client = new Redis(redis.url)
      const keys = yield* Effect.promise(() => client.keys(`{${prefix}}:*`))
      expect(keys.length).toBeGreaterThanOrEqual(5)
      const ttls = yield* Effect.promise(() => Promise.all(keys.map((k) => client.pttl(k))))
      yield* Effect.promise(() => client.quit())
      // -1 would be a key without expiry
      expect(ttls.filter((t) => t < 0)).toEqual([])
    })))
})

describe("Redis killed mid-run", () => {
  it.live(
    "no call fails, the fallback is announced, and sharing resumes when Redis is back",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const own = yield* Effect.promise(() => startRedis())
        yield* Effect.addFinalizer(() => Effect.promise(() => own.stop()))
        const prefix = `kill-${process.pid}-${Date.now()}`
        const context = yield* Layer.build(RedisStore.layer({ url: own.url, prefix }))
        const balancer = yield* Effect.orDie(Effect.provide(
          Balancer.make({ endpoints: [endpoint("x", { limits: { rpm: 100_000 } })] }),
          context
        ))
        const events = yield* balancer.subscribe
        const results: Array<Either.Either<string, unknown>> = []
        const calls = (n: number) =>
          Effect.forEach(Array.from({ length: n }), () =>
            Effect.zipRight(
              Effect.map(tryCall(balancer), (r) => {
                results.push(r)
              }),
              Effect.sleep("2 millis")
            ), { discard: true })
        // traffic runs through the kill and the restart
        const traffic = yield* Effect.fork(Effect.forever(calls(10)))
        yield* Effect.sleep("200 millis")
        yield* Effect.promise(() => own.kill())
        yield* Effect.sleep("500 millis")
        yield* Effect.promise(() => own.restart())
        const resumed = yield* Effect.timeout(
          Effect.iterate([] as ReadonlyArray<string>, {
            while: (tags) => !tags.includes("StoreResumed"),
            body: (tags) => Effect.map(Queue.take(events), (event) => [...tags, event._tag])
          }),
          "5 seconds"
        )
        yield* Effect.sleep("100 millis")
        yield* Fiber.interrupt(traffic)
        expect(resumed.filter((t) => t === "StoreFellBack")).toHaveLength(1)
        expect(results.length).toBeGreaterThan(100)
        expect(results.filter(Either.isLeft)).toEqual([])
        // shared again: the restarted (empty) server counts this process's calls
        const { Redis } = yield* Effect.promise(() => import("ioredis"))
        const client = new Redis(own.url)
        const counted = yield* Effect.promise(() => client.hvals(`{${prefix}}:rpm:x`))
        yield* Effect.promise(() => client.quit())
        expect(counted.reduce((sum, c) => sum + Number(c), 0)).toBeGreaterThan(0)
      })),
    30_000
  )
})
