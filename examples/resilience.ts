/**
 * Resilience: provider errors, failover with `Router.execute`, rate limits, reading
 * Retry-After headers, quota groups, deadlines, hedging, per-tier limits, `RoutingFailed`, the retry budget, the
 * circuit's growing open periods and slow start, panic routing, events and metrics.
 *
 * The "providers" are scripted: each endpoint answers with a value or a `ProviderError`.
 * Every section runs on `TestClock` with a seeded `Random`, so minutes of back-off and
 * recovery take no time and the output is the same on every run:
 *
 *   npx tsx --tsconfig tsconfig.examples.json examples/resilience.ts
 *
 * docs/resilience.md quotes trimmed copies of the sections below.
 */
import {
  Clock,
  Console,
  Duration,
  Effect,
  Fiber,
  Layer,
  Metric,
  MetricState,
  Random,
  Schedule,
  TestClock,
  TestContext
} from "effect"
import type { Endpoint, Event, Health } from "effect-llm-balancer"
import { Balancer, Errors, RateLimit, Router } from "effect-llm-balancer"

// --- helpers: a scripted provider, and printing -----------------------------------------

type Answer = (n: number) => Effect.Effect<string, Errors.ProviderError>

/** A scripted provider: `answers[name](n)` is how endpoint `name` answers its n-th call. */
const scripted = (answers: Record<string, Answer>) => {
  const calls = new Map<string, number>()
  return (endpoint: Endpoint.Endpoint) =>
    Effect.suspend(() => {
      const n = (calls.get(endpoint.name) ?? 0) + 1
      calls.set(endpoint.name, n)
      return answers[endpoint.name](n)
    })
}

const answer = (name: string) => Effect.succeed(`answer from ${name}`)
const unavailable = (name: string) => Effect.fail(new Errors.Unavailable({ endpoint: name, status: 503 }))
const ok = (name: string): Answer => () => answer(name)
const down = (name: string): Answer => () => unavailable(name)
const hang: Answer = () => Effect.never

/** TestClock starts at 0, so epoch milliseconds read as the time since the start. */
const t = (ms: number) => `t=${Number((ms / 1000).toFixed(3))}s`

const showAttempts = (attempts: ReadonlyArray<Errors.Attempt>) =>
  attempts.map((a) => `#${a.number}${a.hedge ? " hedge" : ""} ${a.endpoint} ${a.outcome} at ${t(a.startedAt)}`)
    .join(", ")

const describe = (event: Event.Event): string => {
  switch (event._tag) {
    case "EndpointUnhealthy":
      return `${event.name} UNHEALTHY (${event.reason})${
        event.until === undefined ? "" : `, probe at ${t(event.until)}`
      }`
    case "EndpointRateLimited":
      return `${event.name} RATE LIMITED until ${t(event.until)}`
    case "EndpointProbing":
      return `${event.name} PROBING`
    case "AttemptEnded":
      return `${event.name} attempt #${event.attempt}${
        event.hedge ? " (hedge)" : ""
      }: ${event.outcome} after ${event.latencyMs} ms`
    case "EndpointRecovered":
      return `${event.name} RECOVERED (${event.reason})`
    default:
      return `${event.name} ${event._tag}`
  }
}

/**
 * Subscribes to the events and returns an effect that prints those published since it
 * last ran; the router's `AttemptEnded` events only when `attempts` is true.
 */
const watchEvents = (attempts = false) =>
  Effect.gen(function*() {
    const balancer = yield* Balancer.Balancer
    const events = yield* balancer.subscribe
    return Effect.flatMap(
      events.takeAll,
      Effect.forEach(
        (event) => attempts || event._tag !== "AttemptEnded" ? Console.log(`  event: ${describe(event)}`) : Effect.void,
        { discard: true }
      )
    )
  })

const status = Effect.map(
  Balancer.stats,
  (stats) => stats.map((s) => `${s.name} ${s.status}/${s.circuit}${s.held ? " (held)" : ""}`).join(", ")
)

// --- the Router layer over a Balancer -----------------------------------------------------

const RouterLayer = Router.layer().pipe(
  Layer.provideMerge(Balancer.layer({
    endpoints: [
      { name: "openai", provider: "openai", model: "gpt-4o-mini" },
      { name: "azure", provider: "openai", model: "gpt-4o-mini" },
      { name: "anthropic", provider: "anthropic", model: "claude-3-5-haiku-latest", priority: 1 }
    ],
    strategy: "round-robin"
  }))
)

/** The same wiring for the other sections: a router over a balancer with these options. */
const routed = (options: Balancer.Options, router?: Router.Options) =>
  Router.layer(router).pipe(Layer.provideMerge(Balancer.layer(options)))

const endpoints = (...names: ReadonlyArray<string>) =>
  names.map((name) => ({ name, provider: "openai", model: "gpt-4o-mini" }))

// --- failover -----------------------------------------------------------------------------

const failover = Effect.gen(function*() {
  const printAttempts = yield* watchEvents(true) // every attempt is on the event stream too
  const printHealth = yield* watchEvents()
  const call = scripted({ openai: down("openai"), azure: ok("azure"), anthropic: ok("anthropic") })
  // openai fails with a 503: the router tries another endpoint at once
  const first = yield* Router.execute(call)
  yield* Console.log(`${first.value} | ${showAttempts(first.attempts)}`)
  yield* printAttempts
  // the next calls fail over the same way, until three failures in a row open openai's circuit
  for (let i = 0; i < 3; i++) {
    const next = yield* Router.execute(call)
    yield* Console.log(`${next.value} | ${showAttempts(next.attempts)}`)
    yield* printHealth
  }
}).pipe(Effect.scoped, Effect.provide(RouterLayer))

// --- back-off only once every endpoint was tried ------------------------------------------

const backoff = Effect.gen(function*() {
  // both endpoints fail once; "a" answers on its second call
  const call = scripted({
    a: (n) => n === 1 ? unavailable("a") : answer("a"),
    b: down("b")
  })
  const fiber = yield* Effect.fork(Router.execute(call)) // the default back-off
  yield* TestClock.adjust("1 second")
  const result = yield* Fiber.join(fiber)
  yield* Console.log(`${result.value} | ${showAttempts(result.attempts)}`)
}).pipe(Effect.provide(routed({ endpoints: endpoints("a", "b"), strategy: "round-robin" })))

// --- a 429 with Retry-After ---------------------------------------------------------------

const rateLimited = Effect.gen(function*() {
  const balancer = yield* Balancer.Balancer
  const printEvents = yield* watchEvents()
  const call = scripted({
    openai: () =>
      Effect.fail(new Errors.RateLimited({ endpoint: "openai", status: 429, retryAfter: Duration.seconds(10) })),
    azure: ok("azure"),
    anthropic: ok("anthropic")
  })
  const result = yield* Router.execute(call)
  yield* Console.log(`${result.value} | ${showAttempts(result.attempts)}`)
  yield* printEvents
  // not a health failure: the circuit stays closed, the endpoint rests until its time
  yield* Console.log(`  ${yield* status}`)
  const refused = yield* Effect.flip(balancer.acquire({ exclude: ["azure", "anthropic"] }))
  const [openai] = refused.passedOver
  yield* Console.log(`  openai passed over: ${openai.reason} until ${t(openai.until ?? 0)}`)

  // no call reaches it before then
  const next = yield* Effect.replicateEffect(Router.execute(call), 3)
  yield* Console.log(`  next calls: ${next.map((r) => r.endpoint.name).join(", ")}`)
  yield* TestClock.adjust(Duration.millis(openai.until ?? 0))
  yield* Console.log(`  at ${t(openai.until ?? 0)}: ${yield* status}`)
}).pipe(Effect.scoped, Effect.provide(RouterLayer))

// --- reading Retry-After: from a 429's headers to RateLimited({ retryAfter }) --------------

const retryAfterHeaders = Effect.gen(function*() {
  yield* TestClock.setTime(Date.parse("2026-11-22T10:00:00Z")) // for the dates below
  const now = yield* Clock.currentTimeMillis
  const answers: ReadonlyArray<readonly [string, RateLimit.Headers]> = [
    ["retry-after-ms first", { "retry-after-ms": "1500", "retry-after": "2" }],
    ["retry-after in seconds", { "Retry-After": "20" }],
    ["retry-after as an HTTP date", { "retry-after": "Sun, 22 Nov 2026 10:00:30 GMT" }],
    ["OpenAI, requests ran out", {
      "x-ratelimit-remaining-requests": "0",
      "x-ratelimit-reset-requests": "1s",
      "x-ratelimit-remaining-tokens": "149984",
      "x-ratelimit-reset-tokens": "6m0s"
    }],
    ["Anthropic, none says 0", {
      "anthropic-ratelimit-requests-reset": "2026-11-22T10:00:12Z",
      "anthropic-ratelimit-tokens-reset": "2026-11-22T10:00:45Z"
    }],
    ["nothing readable", { "retry-after": "soon" }]
  ]
  for (const [title, headers] of answers) {
    const wait = RateLimit.retryAfter(headers, now)
    yield* Console.log(
      `${title.padEnd(28)} ${wait === undefined ? "undefined: rateLimitCooldown applies" : Duration.format(wait)}`
    )
  }

  // in a provider implementation: a 429 becomes RateLimited, with the wait its headers ask for;
  // the balancer rests the endpoint that long, times 1 to 1.5
  const response = { status: 429, headers: { "retry-after": "20" } }
  const call = (endpoint: Endpoint.Endpoint) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.fail(
        new Errors.RateLimited({
          endpoint: endpoint.name,
          status: response.status,
          retryAfter: RateLimit.retryAfter(response.headers, now)
        })
      ))
  const error = yield* Effect.flip(Balancer.use(call))
  const [openai] = yield* Balancer.stats
  yield* Console.log(`${error.message}; resting ${((openai.cooldownUntil ?? now) - now) / 1000} s`)
}).pipe(Effect.provide(Balancer.layer({ endpoints: endpoints("openai") })))

// --- a refused key ------------------------------------------------------------------------

const refusedKey = Effect.gen(function*() {
  const printEvents = yield* watchEvents()
  const call = scripted({
    "key-1": () => Effect.fail(new Errors.Unauthorized({ endpoint: "key-1", status: 401 })),
    "key-2": ok("key-2")
  })
  const result = yield* Router.execute(call)
  yield* Console.log(`${result.value} | ${showAttempts(result.attempts)}`)
  yield* printEvents
  yield* TestClock.adjust("1 hour") // a key does not fix itself: held until forceHealthy
  yield* Console.log(`  an hour later: ${yield* status}`)
}).pipe(Effect.scoped, Effect.provide(routed({ endpoints: endpoints("key-1", "key-2"), strategy: "round-robin" })))

// --- a quota group: endpoints that share one key cool down together -----------------------

const quotaGroup = Effect.gen(function*() {
  const printEvents = yield* watchEvents()
  const call = scripted({
    "org-a-us": () =>
      Effect.fail(new Errors.RateLimited({ endpoint: "org-a-us", status: 429, retryAfter: Duration.seconds(20) })),
    "org-a-eu": ok("org-a-eu"),
    "org-b": ok("org-b")
  })
  const result = yield* Router.execute(call)
  yield* Console.log(`${result.value} | ${showAttempts(result.attempts)}`)
  yield* printEvents
}).pipe(
  Effect.scoped,
  Effect.provide(routed({
    endpoints: [
      { name: "org-a-us", provider: "openai", model: "gpt-4o-mini", quotaGroup: "org-a" },
      { name: "org-a-eu", provider: "openai", model: "gpt-4o-mini", quotaGroup: "org-a" },
      { name: "org-b", provider: "openai", model: "gpt-4o-mini" }
    ],
    strategy: "round-robin"
  }))
)

// --- a larger context window --------------------------------------------------------------

const contextWindow = Effect.gen(function*() {
  const call = scripted({
    "mini-8k": () => Effect.fail(new Errors.ContextLengthExceeded({ endpoint: "mini-8k", status: 400 })),
    "big-128k": ok("big-128k")
  })
  // the prompt is too long for the 8k model: the router moves the call to a larger window
  const moved = yield* Router.execute(call)
  yield* Console.log(`${moved.value} | ${showAttempts(moved.attempts)}`)
  // when the caller knows the prompt's size, it says so and skips the small window
  const direct = yield* Router.execute(call, { hints: { minContextWindow: 100_000 } })
  yield* Console.log(`${direct.value} | ${showAttempts(direct.attempts)}`)
}).pipe(Effect.provide(routed({
  endpoints: [
    { name: "mini-8k", provider: "openai", model: "gpt-4o-mini", contextWindow: 8_000 },
    { name: "big-128k", provider: "openai", model: "gpt-4o", contextWindow: 128_000, priority: 1 }
  ]
})))

// --- one deadline for the whole call ------------------------------------------------------

const deadline = Effect.gen(function*() {
  const call = scripted({ a: hang, b: hang, c: hang }) // every endpoint hangs
  const fiber = yield* Effect.fork(
    Router.execute(call, { timeout: "5 seconds", attemptTimeout: "2 seconds", maxAttempts: 5 })
  )
  yield* TestClock.adjust("5 seconds")
  const error = yield* Effect.flip(Fiber.join(fiber))
  yield* Console.log(error.message)
  for (const a of error.attempts) {
    yield* Console.log(`  #${a.number} ${a.endpoint} at ${t(a.startedAt)}: ${a.outcome} after ${a.latencyMs} ms`)
  }
  // c's attempt was cut short by the call's deadline, not by its own limit: c is not blamed
  const cut = error.lastError?._tag === "Timeout" && error.lastError.cutByDeadline === true
  const inARow = (yield* Balancer.stats).map((s) => `${s.name} ${s.consecutiveFailures}`).join(", ")
  yield* Console.log(`  cut by the deadline: ${cut}; failures in a row: ${inARow}`)
}).pipe(Effect.provide(routed({ endpoints: endpoints("a", "b", "c"), strategy: "round-robin" })))

// --- hedging ------------------------------------------------------------------------------

const hedging = Effect.gen(function*() {
  const call = scripted({
    slow: () => Effect.as(Effect.sleep("8 seconds"), "answer from slow"),
    quick: () => Effect.as(Effect.sleep("1 second"), "answer from quick")
  })
  // no answer after 2 s: a twin starts on another endpoint; the first answer wins
  const fiber = yield* Effect.fork(Router.execute(call, { hedge: { delay: "2 seconds" } }))
  yield* TestClock.adjust("3 seconds")
  const result = yield* Fiber.join(fiber)
  yield* Console.log(`${result.value} | ${showAttempts(result.attempts)}`)
}).pipe(Effect.provide(routed({ endpoints: endpoints("slow", "quick"), strategy: "round-robin" })))

// --- limits per tier ------------------------------------------------------------------------

const tiers = Effect.gen(function*() {
  const call = scripted({ "p-1": down("p-1"), "p-2": down("p-2"), "p-3": down("p-3"), backup: ok("backup") })
  // three attempts, all spent on the primary tier: the backup is never tried
  const spent = yield* Effect.flip(Router.execute(call))
  yield* Console.log(spent.message)
  // at most one attempt on tier 0, then the backup tier
  const limited = yield* Router.execute(call, { tiers: { 0: { maxAttempts: 1 } } })
  yield* Console.log(`${limited.value} | ${showAttempts(limited.attempts)}`)
  // maxAttempts 0 skips the tier
  const skipped = yield* Router.execute(call, { tiers: { 0: { maxAttempts: 0 } } })
  yield* Console.log(`${skipped.value} | ${showAttempts(skipped.attempts)}`)
}).pipe(Effect.provide(routed({
  endpoints: [
    ...endpoints("p-1", "p-2", "p-3"),
    { name: "backup", provider: "anthropic", model: "claude-3-5-haiku-latest", priority: 1 }
  ],
  strategy: "round-robin",
  health: { maxFailures: 10 } // keep the circuits closed for this section
})))

// --- why a routed call fails: RoutingFailed's reasons -------------------------------------

const reasons = Effect.gen(function*() {
  const fail = (call: ReturnType<typeof scripted>, policy?: Router.Policy) =>
    Effect.flatMap(Effect.flip(Router.execute(call, policy)), (error) => Console.log(error.message))
  const badRequest: Answer = () => Effect.fail(new Errors.BadRequest({ status: 400, detail: "unknown parameter" }))

  // not-retryable: another endpoint would refuse the request too
  yield* fail(scripted({ a: badRequest, b: ok("b") }))
  // attempts-exhausted: maxAttempts were made
  yield* fail(scripted({ a: down("a"), b: down("b") }), { maxAttempts: 2 })
  // no-endpoint: nothing can take the call (here, no endpoint has the tag)
  yield* fail(scripted({ a: ok("a"), b: ok("b") }), { hints: { tags: ["gpu"] } })
  // invalid-policy: the call's policy is unusable; `detail` names every bad field
  yield* fail(scripted({ a: ok("a"), b: ok("b") }), { maxAttempts: 0, tiers: { 1: { maxAttempts: -1 } } })
}).pipe(Effect.provide(routed({ endpoints: endpoints("a", "b"), strategy: "round-robin" })))

// retry-budget: a router whose budget allows no retry at all
const overBudget = Effect.gen(function*() {
  const error = yield* Effect.flip(Router.execute(scripted({ a: down("a"), b: ok("b") })))
  yield* Console.log(error.message)
}).pipe(Effect.provide(routed(
  { endpoints: endpoints("a", "b"), strategy: "round-robin" },
  { retryBudget: { percent: 0, minPerSecond: 0 } }
)))

// no-endpoint with retryAt: the lone endpoint's circuit is open; the caller comes back then
const comeBack = Effect.gen(function*() {
  let down = true
  const call = scripted({ solo: () => down ? unavailable("solo") : answer("solo") })
  const fiber = yield* Effect.fork(Router.execute(call))
  yield* TestClock.adjust("1 second") // the back-off before the router tries "solo" again
  const error = yield* Effect.flip(Fiber.join(fiber))
  yield* Console.log(`${error.message}; retryAt ${t(error.retryAt ?? 0)}`)
  down = false
  yield* TestClock.setTime(error.retryAt ?? 0)
  const result = yield* Router.execute(call)
  yield* Console.log(`${result.value} | ${showAttempts(result.attempts)}`)
}).pipe(Effect.provide(routed({ endpoints: endpoints("solo"), health: { maxFailures: 1 } })))

// bad router options: Router.make (and Router.layer) fail with InvalidConfig
const badOptions = Effect.gen(function*() {
  const error = yield* Effect.flip(Router.make({ retryBudget: { percent: -1 }, defaults: { maxAttempts: 0 } }))
  yield* Console.log(error.message)
}).pipe(Effect.provide(Balancer.layer({ endpoints: endpoints("a") })))

// --- the retry budget in a total outage ---------------------------------------------------

const outage = Effect.gen(function*() {
  let attempts = 0
  const call = (endpoint: Endpoint.Endpoint) =>
    Effect.suspend(() => {
      attempts++
      return unavailable(endpoint.name)
    })
  const reasons = new Map<string, number>()
  // 100 calls a second for 20 seconds, every endpoint down
  for (let second = 0; second < 20; second++) {
    const before = attempts
    const errors = yield* Effect.forEach(
      Array.from({ length: 100 }),
      () => Effect.flip(Router.execute(call)),
      { concurrency: "unbounded" }
    )
    for (const e of errors) reasons.set(e.reason, (reasons.get(e.reason) ?? 0) + 1)
    if (second === 0 || second === 19) yield* Console.log(`second ${second + 1}: ${attempts - before} attempts`)
    yield* TestClock.adjust("1 second")
  }
  yield* Console.log(
    `2000 calls, ${attempts} attempts (${(attempts / 2000).toFixed(2)} per call; 3.00 without a budget); ` +
      [...reasons].map(([reason, n]) => `${reason} ${n}`).join(", ")
  )
}).pipe(Effect.provide(routed({
  endpoints: endpoints("a", "b", "c"),
  // keep the circuits closed: this section is about the budget alone
  health: { maxFailures: 1_000_000, failureRateThreshold: 1, failureRateMinRequests: 1_000_000 }
})))

// --- the circuit: growing open periods, then slow start -----------------------------------

const recovery = Effect.gen(function*() {
  const printEvents = yield* watchEvents()
  let primaryDown = true
  const call = scripted({
    primary: () => primaryDown ? unavailable("primary") : answer("primary"),
    secondary: ok("secondary")
  })
  /** `n` routed calls one after the other: how many "primary" served, and its traffic share. */
  const traffic = (n: number) =>
    Effect.gen(function*() {
      const results = yield* Effect.replicateEffect(Router.execute(call), n)
      const served = results.filter((r) => r.endpoint.name === "primary").length
      const [primary] = yield* Balancer.stats
      return `primary served ${served} of ${n} (trafficShare ${primary.trafficShare})`
    })
  const untilProbe = Effect.map(Balancer.stats, ([primary]) => primary.unhealthyUntil ?? 0)

  yield* Console.log(`${t(0)}: ${yield* traffic(6)}`) // 3 failures in a row open the circuit
  yield* printEvents
  for (let i = 0; i < 3; i++) {
    const at = yield* untilProbe
    if (i === 2) primaryDown = false // back up before the third probe
    yield* TestClock.adjust(Duration.millis(at - (yield* TestClock.currentTimeMillis)))
    yield* Console.log(`${t(at)}: ${yield* traffic(2)}`) // the first call is the probe
    yield* printEvents
  }
  // closed again: its share of traffic ramps from 10 % to full over slowStart (30 s)
  for (let i = 0; i < 3; i++) {
    yield* TestClock.adjust("10 seconds")
    yield* Console.log(`10 s later: ${yield* traffic(100)}`)
  }
}).pipe(
  Effect.scoped,
  Effect.provide(routed({ endpoints: endpoints("primary", "secondary"), strategy: "round-robin" }))
)

// --- open periods, by the factor or from a Schedule ----------------------------------------

/**
 * Opens the circuit of a lone endpoint six times and prints how long each open period lasts.
 * Between two openings its probe fails or, with `closedFor`, succeeds, and the endpoint then
 * serves that long before it fails again.
 */
const openPeriods = (title: string, health: Health.PolicyInput, closedFor?: Duration.DurationInput) =>
  Effect.gen(function*() {
    const periods: Array<string> = []
    for (let i = 0; i < 6; i++) {
      if (i > 0 && closedFor !== undefined) {
        yield* Balancer.use(() => answer("a")) // the probe succeeds: closed
        yield* TestClock.adjust(closedFor)
      }
      // failed calls open the circuit: 3 in a row when it is closed, or a failed probe
      while ((yield* Balancer.stats)[0].unhealthyUntil === null) {
        yield* Effect.ignore(Balancer.use(() => unavailable("a")))
      }
      const until = (yield* Balancer.stats)[0].unhealthyUntil ?? 0
      const now = yield* TestClock.currentTimeMillis
      periods.push(`${Number(((until - now) / 1000).toFixed(1))}`)
      yield* TestClock.adjust(Duration.millis(until - now))
    }
    yield* Console.log(`${title}: ${periods.join(", ")} s`)
  }).pipe(Effect.provide(Balancer.layer({ endpoints: endpoints("a"), health })))

const growth = Effect.all([
  openPeriods("every probe fails", {}),
  // closed by each probe, but down again 10 s later: a flapping endpoint, the periods still grow
  openPeriods("closed 10 s in between", {}, "10 seconds"),
  // closed for a whole window (30 s) in between: each opening starts again from recoveryTimeout
  openPeriods("closed 30 s in between", {}, "30 seconds"),
  // Fibonacci from 2 s instead of recoveryTimeout x recoveryFactor
  openPeriods("from a Schedule", { recoverySchedule: Schedule.fibonacci("2 seconds") })
], { discard: true })

// --- panic routing ------------------------------------------------------------------------

const panic = (on: boolean) =>
  Effect.gen(function*() {
    const failing = (name: string) =>
      Effect.ignore(Balancer.use(() => unavailable(name), { exclude: [name === "a" ? "b" : "a"] }))
    yield* Effect.repeatN(failing("a"), 2) // a's circuit opens at t=0s
    yield* TestClock.adjust("1 second")
    yield* Effect.repeatN(failing("b"), 2) // b's at t=1s
    const outcome = yield* Effect.either(Balancer.use((endpoint) => Effect.succeed(endpoint.name)))
    yield* Console.log(
      `panic ${on ? "on: " : "off:"} ${
        outcome._tag === "Right"
          ? `sent to ${outcome.right}, the first to reopen`
          : `NoEndpointAvailable, retryAt ${t(outcome.left.retryAt ?? 0)}`
      }`
    )
  }).pipe(Effect.provide(Balancer.layer({ endpoints: endpoints("a", "b"), panic: on })))

// --- metrics ------------------------------------------------------------------------------

const metrics = Effect.gen(function*() {
  // the router's own counters are exported as Router.metrics
  const { failedRequests, hedges, requests, retries } = Router.metrics
  for (const [name, counter] of Object.entries({ requests, retries, hedges, failedRequests })) {
    yield* Console.log(`${name}: ${(yield* Metric.value(counter)).count}`)
  }
  // series tagged by endpoint and outcome (or event) are in the snapshot of every metric
  const totals = new Map<string, number>()
  for (const pair of yield* Metric.snapshot) {
    const name = pair.metricKey.name
    if (!name.startsWith("llm_balancer_") || !MetricState.isCounterState(pair.metricState)) continue
    const by = pair.metricKey.tags.find((tag) => tag.key === "outcome" || tag.key === "event")
    if (by === undefined) continue
    const key = `${name}{${by.key}="${by.value}"}`
    totals.set(key, (totals.get(key) ?? 0) + Number(pair.metricState.count))
  }
  for (const [key, value] of [...totals].sort(([a], [b]) => a.localeCompare(b))) {
    yield* Console.log(`${key} ${value}`)
  }
})

// Each section gets its own TestClock and the same seed: the output repeats exactly.
const section = <A, E>(title: string, effect: Effect.Effect<A, E>) =>
  Effect.zipRight(
    Console.log(`\n== ${title}`),
    effect.pipe(Effect.provide(TestContext.TestContext), Effect.withRandom(Random.make("resilience")))
  )

Effect.runPromise(Effect.all([
  section("failover", failover),
  section("back-off", backoff),
  section("a 429 with Retry-After", rateLimited),
  section("reading Retry-After", retryAfterHeaders),
  section("a refused key", refusedKey),
  section("a quota group", quotaGroup),
  section("a larger context window", contextWindow),
  section("one deadline", deadline),
  section("hedging", hedging),
  section("limits per tier", tiers),
  section("RoutingFailed", Effect.all([reasons, overBudget, comeBack, badOptions], { discard: true })),
  section("the retry budget in a total outage", outage),
  section("open periods grow, then slow start", recovery),
  section("open periods, by the factor or from a Schedule", growth),
  section("panic routing", Effect.zipRight(panic(false), panic(true))),
  section("metrics, summed over endpoints", metrics)
], { discard: true })).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
