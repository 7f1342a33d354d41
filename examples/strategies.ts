/**
 * The built-in strategies and a custom one, each shown by the endpoints it picks.
 *
 *   npx tsx --tsconfig tsconfig.examples.json examples/strategies.ts
 *
 * docs/strategies.md quotes trimmed copies of the sections below.
 */
import { Config, ConfigProvider, Console, Effect, Random, TestClock, TestContext } from "effect"
import type { Endpoint } from "effect-llm-balancer"
import { Balancer, Outcome, Strategy } from "effect-llm-balancer"

// Three endpoints with weights 5, 1 and 1 (and prices, for the custom strategy).
const endpoints: ReadonlyArray<Endpoint.Input> = [
  {
    name: "a",
    provider: "openai",
    model: "gpt-4o-mini",
    weight: 5,
    cost: { inputPerMillion: 0.15, outputPerMillion: 0.6 }
  },
  {
    name: "b",
    provider: "anthropic",
    model: "claude-3-5-haiku-latest",
    cost: { inputPerMillion: 0.8, outputPerMillion: 4 }
  },
  {
    name: "c",
    provider: "mistral",
    model: "mistral-small-latest",
    cost: { inputPerMillion: 0.1, outputPerMillion: 0.3 }
  }
]

/** `n` calls one after the other: the name of the endpoint each one got. */
const sequential = (n: number) =>
  Effect.forEach(
    Array.from({ length: n }),
    () => Balancer.use((endpoint) => Effect.succeed(endpoint.name))
  )

/** `n` calls in flight at once (acquired and held): the endpoint each one got. */
const concurrent = (n: number) =>
  Effect.gen(function*() {
    const leases = yield* Effect.forEach(Array.from({ length: n }), () => Balancer.acquire())
    yield* Effect.forEach(leases, (lease) => Balancer.release(lease, Outcome.success()))
    return leases.map((lease) => lease.endpoint.name)
  })

const counts = (names: ReadonlyArray<string>) => {
  const count = new Map<string, number>()
  for (const name of names) count.set(name, (count.get(name) ?? 0) + 1)
  return ["a", "b", "c"].map((name) => `${name} ${String(count.get(name) ?? 0).padStart(4)}`).join("  ")
}

/**
 * Builds a balancer with `strategy` and prints the picks. With a `seed`, the balancer is
 * built under a seeded `Random`: it draws its seed from `Random` once, when it is built.
 */
const show = (
  strategy: Strategy.Strategy,
  picks: Effect.Effect<ReadonlyArray<string>, unknown, Balancer.Balancer>,
  seed?: number
) => {
  const run = Effect.gen(function*() {
    const names = yield* picks
    yield* Console.log(
      `${strategy.name.padEnd(28)} first 14: ${names.slice(0, 14).join(" ")}   of ${names.length}: ${counts(names)}`
    )
  }).pipe(Effect.provide(Balancer.layer({ endpoints, strategy })))
  return seed === undefined ? run : Effect.withRandom(run, Random.make(seed))
}

// --- a custom strategy ----------------------------------------------------------------

// The cheapest by input price; ties go to the one with the fewest calls in flight.
// `select` gets the eligible candidates (at least one) and the strategy's state, and
// returns the index it chose with the next state. It must be pure.
const cheapest = Strategy.make({
  name: "cheapest",
  initial: undefined,
  select: (candidates, state) => {
    let best = 0
    for (let i = 1; i < candidates.length; i++) {
      const price = candidates[i].endpoint.cost?.inputPerMillion ?? Infinity
      const bestPrice = candidates[best].endpoint.cost?.inputPerMillion ?? Infinity
      if (price < bestPrice || (price === bestPrice && candidates[i].active < candidates[best].active)) best = i
    }
    return [best, state]
  }
})

// A custom strategy has no name in configuration files; put it into the configuration
// that `BalancerLive` reads (the prefix names bad fields by their full path).
const CheapestFromConfig = Balancer.layerConfig(
  Config.map(Config.nested(Balancer.config, "balancer"), (options) => ({ ...options, strategy: cheapest })),
  "balancer"
)

const fromConfig = Effect.gen(function*() {
  const balancer = yield* Balancer.Balancer
  yield* Console.log(`from config: ${balancer.strategy}, picks ${(yield* sequential(4)).join(" ")}`)
}).pipe(
  Effect.provide(CheapestFromConfig),
  Effect.withConfigProvider(ConfigProvider.fromJson({ balancer: { endpoints } }))
)

// --- power of two: traffic leaves a slow endpoint, and comes back -----------------------

const brownout = (strategy: Strategy.Strategy) =>
  Effect.gen(function*() {
    let slowMs = 100
    // one call every 100 ms (on TestClock), released with its latency: "slow" takes slowMs
    const calls = (n: number) =>
      Effect.gen(function*() {
        const names: Array<string> = []
        for (let i = 0; i < n; i++) {
          const lease = yield* Balancer.acquire()
          const name = lease.endpoint.name
          yield* Balancer.release(lease, Outcome.success({ latency: name === "slow" ? slowMs : 100 }))
          yield* TestClock.adjust("100 millis")
          names.push(name)
        }
        return names
      })
    const report = (title: string, names: ReadonlyArray<string>) => {
      const count = (name: string) => String(names.filter((n) => n === name).length).padStart(3)
      return Console.log(`${title.padEnd(28)} a ${count("a")}  b ${count("b")}  slow ${count("slow")}`)
    }

    yield* report("t=0-10s   all take 100 ms", yield* calls(100))
    slowMs = 2_000 // its first slow answer makes "slow" expensive at once
    for (let t = 10; t < 30; t += 10) yield* report(`t=${t}-${t + 10}s  slow takes 2 s`, yield* calls(100))
    slowMs = 100 // idle, its estimate decays: it is tried again, and it is fast
    for (let t = 30; t < 90; t += 10) yield* report(`t=${t}-${t + 10}s  slow is fast`, yield* calls(100))
  }).pipe(
    Effect.provide(Balancer.layer({
      endpoints: ["a", "b", "slow"].map((name) => ({ name, provider: "openai", model: "gpt-4o-mini" })),
      strategy
    })),
    Effect.provide(TestContext.TestContext), // the balancer is built on TestClock
    Effect.withRandom(Random.make(42))
  )

// --- composing a strategy: rank, criteria, prefer, explore ----------------------------

// x and y cost the same, z 4 % more, w 16 times as much; y and w are in the EU
const menu: ReadonlyArray<Endpoint.Input> = [
  { name: "x", provider: "openai", model: "gpt-4o-mini", cost: { inputPerMillion: 0.15, outputPerMillion: 0.6 } },
  {
    name: "y",
    provider: "openai",
    model: "gpt-4o-mini",
    tags: ["region:eu"],
    cost: { inputPerMillion: 0.15, outputPerMillion: 0.6 }
  },
  {
    name: "z",
    provider: "mistral",
    model: "mistral-small-latest",
    cost: { inputPerMillion: 0.16, outputPerMillion: 0.62 }
  },
  {
    name: "w",
    provider: "openai",
    model: "gpt-4o",
    tags: ["region:eu"],
    cost: { inputPerMillion: 2.5, outputPerMillion: 10 }
  }
]
// how long each one takes to answer (ms)
const answersIn: Record<string, number> = { x: 400, y: 900, z: 420, w: 300 }

// the cheapest within 10 %, of those the fastest at p50 (within 20 %), then the least loaded
const thrifty = Strategy.rank({
  name: "thrifty",
  by: [Strategy.byCost({ tolerance: 0.1 }), Strategy.byLatency({ percentile: "p50" })],
  then: Strategy.leastConnections
})
// the same, but one pick in ten at random: a slow or dear endpoint is measured again
const curious = Strategy.explore(thrifty, 0.1)
// EU endpoints when one of them can serve, any other when none can
const euFirst = Strategy.prefer(Strategy.roundRobin, (c) => c.endpoint.tags.includes("region:eu"))

/** `n` calls, one a second (on TestClock), each answering in its endpoint's time. */
const timed = (n: number) =>
  Effect.forEach(Array.from({ length: n }), () =>
    Effect.gen(function*() {
      const lease = yield* Balancer.acquire()
      const name = lease.endpoint.name
      yield* Balancer.release(lease, Outcome.success({ latency: answersIn[name] }))
      yield* TestClock.adjust("1 second")
      return name
    }))

const menuCounts = (names: ReadonlyArray<string>) =>
  ["x", "y", "z", "w"].map((name) => `${name} ${names.filter((n) => n === name).length}`).join(", ")

const composed = Effect.gen(function*() {
  const onMenu = <A>(strategy: Strategy.Strategy, f: Effect.Effect<A, unknown, Balancer.Balancer>) =>
    Effect.provide(f, Balancer.layer({ endpoints: menu, strategy }))

  yield* onMenu(
    thrifty,
    Effect.gen(function*() {
      // x, y and z are within 10 % of the cheapest; each is measured 5 times, then y is too slow
      yield* Console.log(`thrifty, first 15: ${(yield* timed(15)).join(" ")}`)
      yield* Console.log(`thrifty, next 8:   ${(yield* timed(8)).join(" ")}`)
    })
  )
  yield* onMenu(
    curious,
    Effect.gen(function*() {
      yield* Console.log(`explore(thrifty, 0.1), 1,000 calls: ${menuCounts(yield* timed(1000))}`)
    })
  )
  yield* onMenu(
    euFirst,
    Effect.gen(function*() {
      const before = yield* timed(4)
      yield* Balancer.forceUnhealthy("y")
      yield* Balancer.forceUnhealthy("w")
      const without = yield* timed(4)
      yield* Console.log(`prefer EU: ${before.join(" ")} | y and w held out: ${without.join(" ")}`)
    })
  )
}).pipe(Effect.provide(TestContext.TestContext), Effect.withRandom(Random.make(42)))

// --- eligibility comes before the strategy --------------------------------------------

const eligibility = Effect.gen(function*() {
  const balancer = yield* Balancer.Balancer
  // Round robin skips an endpoint that cannot serve without shifting the cycle.
  const before = yield* sequential(6)
  yield* balancer.forceUnhealthy("b")
  const during = yield* sequential(4)
  yield* balancer.forceHealthy("b")
  const after = yield* sequential(6)
  yield* Console.log(`round robin: ${before.join(" ")} | b held out: ${during.join(" ")} | back: ${after.join(" ")}`)
}).pipe(Effect.provide(Balancer.layer({ endpoints, strategy: Strategy.roundRobin })))

const tiers = Effect.gen(function*() {
  // "backup" (priority 1) only serves when no endpoint of tier 0 can: here when both
  // primaries are full.
  const picks = yield* concurrent(5)
  yield* Console.log(`tiers, 5 calls in flight: ${picks.join(" ")}`)
}).pipe(
  Effect.provide(Balancer.layer({
    endpoints: [
      { name: "primary-1", provider: "openai", model: "gpt-4o-mini", maxConcurrency: 2 },
      { name: "primary-2", provider: "openai", model: "gpt-4o-mini", maxConcurrency: 2 },
      { name: "backup", provider: "anthropic", model: "claude-3-5-haiku-latest", priority: 1 }
    ]
  })),
  Effect.withRandom(Random.make(42)) // the default strategy, power of two, draws at random
)

const main = Effect.gen(function*() {
  yield* Console.log("== 1,000 calls one after the other (weights a 5, b 1, c 1)")
  yield* show(Strategy.roundRobin, sequential(1000))
  yield* show(Strategy.smoothWeightedRoundRobin, sequential(1000))
  // seeded: a balancer built under the same seed makes the same picks, run after run
  yield* show(Strategy.weightedRandom, sequential(1000), 42)
  // one call at a time: nobody has a call in flight, so the ties go round robin
  yield* show(Strategy.leastConnections, sequential(1000))
  // built on TestClock, so that every call takes 0 ms: equal latencies, the weighted draws decide
  yield* Effect.provide(show(Strategy.powerOfTwo, sequential(1000), 42), TestContext.TestContext)
  // capacity: without limits every endpoint has full headroom, so it is weighted random
  yield* show(Strategy.capacity, sequential(1000), 42)
  // latency: on TestClock every call takes 0 ms; each endpoint is measured 5 times first
  yield* Effect.provide(show(Strategy.latency(), sequential(1000), 42), TestContext.TestContext)
  // cost: the price of a million input and a million output tokens, c is the cheapest
  yield* show(Strategy.cost(), sequential(1000))
  yield* show(cheapest, sequential(1000))
  yield* fromConfig

  yield* Console.log("\n== 14 calls in flight at once")
  yield* show(Strategy.roundRobin, concurrent(14))
  yield* show(Strategy.leastConnections, concurrent(14))
  // nothing measured yet: the fewer calls in flight per unit of weight wins
  yield* show(Strategy.powerOfTwo, concurrent(14), 7)
  yield* show(Strategy.capacity, concurrent(14), 7)
  // nothing measured yet: each endpoint gets one call to measure, then all tie
  yield* show(Strategy.latency(), concurrent(14), 7)
  yield* show(Strategy.cost(), concurrent(14))
  yield* show(cheapest, concurrent(14))

  yield* Console.log("\n== power-of-two, one call every 100 ms: calls per 10 s")
  yield* brownout(Strategy.powerOfTwo)
  yield* Console.log("\n== least-connections, the same calls")
  yield* brownout(Strategy.leastConnections)

  yield* Console.log("\n== composing a strategy")
  yield* composed

  yield* Console.log("\n== eligibility comes first")
  yield* eligibility
  yield* tiers
})

Effect.runPromise(main).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
