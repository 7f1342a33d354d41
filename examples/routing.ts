/**
 * Routing that knows capacity, latency and cost: rate limits as sliding windows, a
 * provider's rate-limit headers, model groups, budgets, the latency strategy on the time to
 * the first token, and an A/B test of two strategies.
 *
 * Every section runs on `TestClock` under a seeded `Random`, so the output is the same on
 * every run (the clock starts at 0, the Unix epoch):
 *
 *   npx tsx --tsconfig tsconfig.examples.json examples/routing.ts
 *
 * docs/capacity-and-cost.md and docs/strategies.md quote trimmed copies of the sections below.
 */
import { Clock, Console, Effect, Fiber, Random, TestClock, TestContext } from "effect"
import type { Errors } from "effect-llm-balancer"
import { Balancer, Outcome, RateLimit, Strategy } from "effect-llm-balancer"

/** Counts per name, in the order given: `big 21  small 9`. */
const tally = (names: ReadonlyArray<string>, order: ReadonlyArray<string>) =>
  order.map((name) => `${name} ${String(names.filter((n) => n === name).length).padStart(3)}`).join("  ")

/** The time on the clock, in seconds. */
const clockSeconds = Effect.map(Clock.currentTimeMillis, (ms) => ms / 1000)

/** Why each endpoint was passed over, with `until` in seconds on the clock. */
const reasons = (error: Errors.NoEndpointAvailable) =>
  error.passedOver
    .map((p) => `${p.endpoint} ${p.reason}${p.until === undefined ? "" : ` until t=${p.until / 1000}s`}`)
    .join(", ")

// --- rate limits, and what a provider says is left ------------------------------------

const CapacityLayer = Balancer.layer({
  endpoints: [
    // two deployments with their own quotas: requests and tokens per minute
    { name: "big", provider: "openai", model: "gpt-4o-mini", limits: { rpm: 60, tpm: 100_000 } },
    { name: "small", provider: "openai", model: "gpt-4o-mini", limits: { rpm: 30, tpm: 20_000 } }
  ],
  // each pick is random, in proportion to weight x the share of its limits left
  strategy: Strategy.capacity
})

// the request's size, estimated before the call: counted against tpm when it is admitted
const estimate = { inputTokens: 600, outputTokens: 200 }

/**
 * One call of ~800 tokens: reserved at its estimate, then corrected to the usage the
 * provider reported (650 tokens). `headers` are the response's rate-limit headers.
 */
const call = (headers: RateLimit.Headers = {}) =>
  Balancer.use(
    (endpoint, lease) =>
      Effect.gen(function*() {
        // ... the provider call goes here; then report what its response said
        const now = yield* Clock.currentTimeMillis
        yield* lease.report({
          usage: { inputTokens: 500, outputTokens: 150 },
          rateLimit: RateLimit.remaining(headers, now) // undefined when they say nothing
        })
        return endpoint.name
      }),
    estimate
  )

/** One call a second for `n` seconds. */
const everySecond = (n: number) =>
  Effect.forEach(Array.from({ length: n }), () => Effect.zipLeft(call(), TestClock.adjust("1 second")))

const capacity = Effect.gen(function*() {
  const split = (title: string, names: ReadonlyArray<string>) =>
    Console.log(`${title.padEnd(34)} ${tally(names, ["big", "small"])}`)

  yield* split("t=0-30s   one call a second", yield* everySecond(30))
  for (const s of yield* Balancer.stats) {
    const { headroom, name, requestsLastMinute, tokensLastMinute } = s
    yield* Console.log(`  ${name}: ${JSON.stringify({ requestsLastMinute, tokensLastMinute, headroom })}`)
  }

  // the provider says "big"'s key has no requests left for 12 s (another process shares it)
  const name = yield* call({
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "12s"
  })
  yield* Console.log(`t=${yield* clockSeconds}s the answer on ${name} says: 0 requests left, reset in 12s`)
  yield* split("t=30-45s  after that answer", yield* everySecond(15))

  // a request bigger than a whole tokens-per-minute limit
  const large = yield* Balancer.acquire({ inputTokens: 25_000, outputTokens: 1_000 })
  yield* Balancer.release(large, Outcome.cancelled)
  const tooLarge = yield* Effect.flip(Balancer.acquire({ inputTokens: 25_000, outputTokens: 1_000, exclude: ["big"] }))
  yield* Console.log(`26,000 tokens: served by ${large.endpoint.name}; without big: ${reasons(tooLarge)}`)

  // a burst: both windows fill up, and the error says when each one has room again
  const burst: Array<Balancer.Lease> = []
  for (;;) {
    const result = yield* Effect.either(Balancer.acquire(estimate))
    if (result._tag === "Left") {
      yield* Console.log(`t=${yield* clockSeconds}s burst of ${burst.length} calls, then: ${reasons(result.left)}`)
      yield* Console.log(`  retryAt t=${result.left.retryAt! / 1000}s`)
      break
    }
    burst.push(result.right)
  }
  yield* Effect.forEach(burst, (lease) => Balancer.release(lease, Outcome.success()))

  // waiting: no polling, the waiter wakes when the earliest window has room
  const start = yield* clockSeconds
  const waiting = yield* Effect.fork(Balancer.acquire({ ...estimate, wait: "1 minute" }))
  yield* TestClock.adjust("1 minute")
  const lease = yield* Fiber.join(waiting)
  yield* Console.log(`waited from t=${start}s: got ${lease.endpoint.name} at t=${lease.startedAt / 1000}s`)
}).pipe(Effect.provide(CapacityLayer))

// --- model groups ---------------------------------------------------------------------

const GroupsLayer = Balancer.layer({
  endpoints: [
    // two providers' small models, interchangeable for this app: one group, "fast"
    { name: "openai-mini", provider: "openai", model: "gpt-4o-mini", group: "fast" },
    { name: "haiku", provider: "anthropic", model: "claude-3-5-haiku-latest", group: "fast" },
    // two deployments of one model: without a group, the model is the group
    { name: "openai-4o", provider: "openai", model: "gpt-4o" },
    { name: "azure-4o", provider: "azure", model: "gpt-4o" }
  ]
})

const groups = Effect.gen(function*() {
  const picks = (group: string, n: number) =>
    Effect.forEach(Array.from({ length: n }), () => Balancer.use((e) => Effect.succeed(e.name), { group }))
  yield* Console.log(`group "fast":   ${(yield* picks("fast", 6)).join(" ")}`)
  yield* Console.log(`group "gpt-4o": ${(yield* picks("gpt-4o", 6)).join(" ")}`)
  const none = yield* Effect.flip(Balancer.use((e) => Effect.succeed(e.name), { group: "gpt-5" }))
  yield* Console.log(`group "gpt-5":  ${reasons(none)}`)
  const stats = yield* Balancer.stats
  yield* Console.log(`stats: ${stats.map((s) => `${s.name} (${s.group})`).join(", ")}`)
}).pipe(Effect.provide(GroupsLayer))

// --- the cost strategy and an endpoint's budget ---------------------------------------

const CostLayer = Balancer.layer({
  endpoints: [
    {
      name: "mini",
      provider: "openai",
      model: "gpt-4o-mini",
      cost: { inputPerMillion: 0.15, outputPerMillion: 0.6 },
      // this key may spend $0.003 a day; past 80 % of it, other endpoints come first
      budget: { limit: 0.003, period: "1 day", softLimit: 0.8 }
    },
    {
      name: "haiku",
      provider: "anthropic",
      model: "claude-3-5-haiku-latest",
      cost: { inputPerMillion: 0.8, outputPerMillion: 4 }
    },
    { name: "gpt-4o", provider: "openai", model: "gpt-4o", cost: { inputPerMillion: 2.5, outputPerMillion: 10 } }
  ],
  // the cheapest for each request (within 5 %), spread by power of two among them
  strategy: Strategy.cost()
})

/** A call of 1,000 input and 250 output tokens: $0.0003 on mini, $0.0018 on haiku. */
const priced = (exclude?: ReadonlyArray<string>) =>
  Balancer.use(
    (endpoint, lease) => Effect.as(lease.report({ usage: { inputTokens: 1_000, outputTokens: 250 } }), endpoint.name),
    // the estimate prices the request before the call, for the strategy and the budgets
    { inputTokens: 1_000, outputTokens: 250, exclude }
  )

const cost = Effect.gen(function*() {
  const spent = Effect.map(Balancer.stats, (stats) => stats.map((s) => `${s.name} $${s.spent.toFixed(4)}`).join(", "))
  const names = yield* Effect.forEach(Array.from({ length: 12 }), () => priced())
  yield* Console.log(`12 calls: ${names.join(" ")}`)
  yield* Console.log(`  spent: ${yield* spent}`)

  // requests that only mini may serve: past its soft limit it still serves, up to its cap
  const onlyMini = yield* Effect.forEach(
    Array.from({ length: 3 }),
    () => Effect.either(priced(["haiku", "gpt-4o"]))
  )
  yield* Console.log(
    `only mini may serve: ${
      onlyMini.map((r) => r._tag === "Right" ? r.right : `NoEndpointAvailable (${reasons(r.left)})`).join(", ")
    }`
  )
  const [mini] = yield* Balancer.stats
  yield* Console.log(`  mini's budget: ${JSON.stringify(mini.budget)}`)

  // a new period: mini is first again
  yield* TestClock.adjust("1 day")
  yield* Console.log(`next day: ${(yield* Effect.forEach(Array.from({ length: 4 }), () => priced())).join(" ")}`)
}).pipe(Effect.provide(CostLayer))

// --- a budget for the whole balancer ------------------------------------------------------

const BudgetLayer = Balancer.layer({
  endpoints: [
    { name: "gpt-4o", provider: "openai", model: "gpt-4o", cost: { inputPerMillion: 2.5, outputPerMillion: 10 } },
    { name: "mini", provider: "openai", model: "gpt-4o-mini", cost: { inputPerMillion: 0.15, outputPerMillion: 0.6 } },
    // a model of our own, priced at 0, as a backup tier
    {
      name: "local",
      provider: "vllm",
      model: "llama-3.1-8b",
      cost: { inputPerMillion: 0, outputPerMillion: 0 },
      priority: 1
    }
  ],
  // the default strategy (power of two); $0.05 a day for the whole balancer
  budget: { limit: 0.05, period: "1 day", softLimit: 0.5 }
})

const budget = Effect.gen(function*() {
  const batch = (title: string, n: number) =>
    Effect.gen(function*() {
      const names = yield* Effect.forEach(Array.from({ length: n }), () => priced())
      const summary = yield* Balancer.summary
      yield* Console.log(
        `${title.padEnd(24)} ${tally(names, ["gpt-4o", "mini", "local"])}   spent today $${
          summary.budget!.spent.toFixed(4)
        }`
      )
    })
  yield* batch("calls 1-10", 10)
  yield* batch("calls 11-20", 10)
  yield* batch("calls 21-60", 40)
  yield* batch("calls 61-100", 40)
  yield* batch("calls 101-110", 10)
  const summary = yield* Balancer.summary
  yield* Console.log(`summary: spent $${summary.spent.toFixed(4)}, budget ${JSON.stringify(summary.budget)}`)
  yield* TestClock.adjust("1 day")
  yield* batch("next day, 10 calls", 10)
}).pipe(Effect.provide(BudgetLayer))

// --- the latency strategy, on the time to the first token ------------------------------

/** How each endpoint streams: time to first token, then output tokens per second. */
const streams: Record<string, { readonly ttftMs: number; readonly tokensPerSecond: number }> = {
  // "a" starts fast and writes slowly, "b" starts slowly, "c" starts fast
  a: { ttftMs: 300, tokensPerSecond: 50 },
  b: { ttftMs: 900, tokensPerSecond: 150 },
  c: { ttftMs: 340, tokensPerSecond: 100 },
  d: { ttftMs: 250, tokensPerSecond: 100 }
}

/**
 * A streamed call of 300 output tokens, one every second. A stand-in for the provider: on
 * `TestClock`, time passes when we say so.
 */
const streamed = (markFirstToken: boolean) =>
  Effect.zipLeft(
    Balancer.use((endpoint, lease) =>
      Effect.gen(function*() {
        const { tokensPerSecond, ttftMs } = streams[endpoint.name]
        yield* TestClock.adjust(ttftMs)
        if (markFirstToken) yield* lease.firstToken // the first token is here
        yield* TestClock.adjust((300 / tokensPerSecond) * 1000) // the rest of the answer
        yield* lease.report({ usage: { inputTokens: 200, outputTokens: 300 } })
        return endpoint.name
      })
    ),
    TestClock.adjust("1 second")
  )

const latencyEndpoints = ["a", "b", "c"].map((name) => ({ name, provider: "openai", model: "gpt-4o-mini" }))

const latencyWith = (markFirstToken: boolean) =>
  Effect.gen(function*() {
    const names = yield* Effect.forEach(Array.from({ length: 300 }), () => streamed(markFirstToken))
    yield* Console.log(`${markFirstToken ? "with" : "without"} firstToken, 300 calls: ${tally(names, ["a", "b", "c"])}`)
    if (!markFirstToken) return
    for (const s of yield* Balancer.stats) {
      yield* Console.log(
        `  ${s.name}: p50 ${s.latencyP50Ms} ms, p95 ${s.latencyP95Ms} ms, avg ${s.avgLatencyMs} ms, ` +
          `first token ${s.avgTimeToFirstTokenMs} ms, ${s.tokensPerSecond} tokens/s`
      )
    }
    // a new endpoint is measured one call at a time: it wins while it has no call in flight,
    // until it has 5 measured calls
    yield* Balancer.addEndpoint({ name: "d", provider: "openai", model: "gpt-4o-mini" })
    const next = yield* Effect.forEach(Array.from({ length: 12 }), () => streamed(true))
    yield* Console.log(`"d" added (first token in 250 ms), next 12 calls: ${next.join(" ")}`)
  }).pipe(Effect.provide(Balancer.layer({ endpoints: latencyEndpoints, strategy: Strategy.latency() })))

// --- an A/B test of two strategies ------------------------------------------------------

const ExperimentLayer = Balancer.layer({
  endpoints: [
    { name: "gpt-4o", provider: "openai", model: "gpt-4o", cost: { inputPerMillion: 2.5, outputPerMillion: 10 } },
    { name: "mini", provider: "openai", model: "gpt-4o-mini", cost: { inputPerMillion: 0.15, outputPerMillion: 0.6 } }
  ],
  // 20 % of the picks by the cost strategy, the rest by power of two
  strategy: Strategy.experiment({ control: Strategy.powerOfTwo, candidate: Strategy.cost(), fraction: 0.2 })
})

const experiment = Effect.gen(function*() {
  const ttft: Record<string, number> = { "gpt-4o": 400, mini: 700 }
  for (let i = 0; i < 500; i++) {
    const lease = yield* Balancer.acquire({ inputTokens: 1_000, outputTokens: 250 })
    yield* Balancer.release(
      lease,
      Outcome.success({
        latency: ttft[lease.endpoint.name] + 2_000,
        timeToFirstToken: ttft[lease.endpoint.name],
        usage: { inputTokens: 1_000, outputTokens: 250 }
      })
    )
    yield* TestClock.adjust("1 second")
  }
  const summary = yield* Balancer.summary
  yield* Console.log(`strategy: ${summary.strategy}`)
  for (const arm of summary.arms) yield* Console.log(`  ${JSON.stringify(arm)}`)
}).pipe(Effect.provide(ExperimentLayer))

// --- run every section --------------------------------------------------------------------

const onTestClock = <A, E>(title: string, section: Effect.Effect<A, E>) =>
  Effect.zipRight(
    Console.log(`\n== ${title}`),
    section.pipe(Effect.provide(TestContext.TestContext), Effect.withRandom(Random.make("routing")))
  )

const main = Effect.gen(function*() {
  yield* onTestClock("rate limits and provider hints (Strategy.capacity)", capacity)
  yield* onTestClock("model groups", groups)
  yield* onTestClock("the cost strategy and an endpoint's budget", cost)
  yield* onTestClock("a budget for the whole balancer", budget)
  yield* onTestClock("the latency strategy", Effect.zipRight(latencyWith(false), latencyWith(true)))
  yield* onTestClock("an A/B test: power-of-two vs cost", experiment)
})

Effect.runPromise(main).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
