/**
 * Getting started with effect-llm-balancer: a balancer over two endpoints, `use` and
 * `acquire`/`release`, hints, errors, stats, events and `BalancerLive`.
 *
 * The "provider" here is a stand-in that answers after a few milliseconds, so the file
 * runs offline:
 *
 *   npx tsx --tsconfig tsconfig.examples.json examples/getting-started.ts
 *
 * docs/getting-started.md and the README quote trimmed copies of the sections below.
 */
import { ConfigProvider, Console, Data, Effect, Exit, Fiber, Stream } from "effect"
import { Balancer, Endpoint, Outcome, Strategy } from "effect-llm-balancer"

// --- quick start --------------------------------------------------------------------

// A stand-in for a real provider call: answers after 10 ms.
const complete = (endpoint: Endpoint.Endpoint, prompt: string) =>
  Effect.succeed(`${endpoint.name} (${endpoint.model}) answers "${prompt}"`).pipe(Effect.delay("10 millis"))

const BalancerLayer = Balancer.layer({
  endpoints: [
    { name: "openai-us", provider: "openai", model: "gpt-4o-mini", weight: 2 },
    { name: "anthropic", provider: "anthropic", model: "claude-3-5-haiku-latest" }
  ],
  strategy: Strategy.smoothWeightedRoundRobin
})

const quickStart = Effect.gen(function*() {
  for (const prompt of ["one", "two", "three"]) {
    // acquire an endpoint, run the call, record its outcome and latency, release
    const answer = yield* Balancer.use((endpoint) => complete(endpoint, prompt))
    yield* Console.log(answer)
  }
  const stats = yield* Balancer.stats
  yield* Console.log(stats.map((s) => `${s.name}: ${s.status}, ${s.successes} ok`).join(" | "))
})

// --- the endpoint model ---------------------------------------------------------------

// Every field an endpoint has; only name, provider and model are required.
const everyField = Endpoint.decode({
  name: "azure-eu-1", // unique in the balancer
  provider: "openai", // which provider implementation serves it
  model: "gpt-4o", // the provider's model id
  baseUrl: "https://my-resource.openai.azure.com/openai/v1",
  apiKey: "sk-not-a-real-key", // wrapped in Redacted, never printed
  weight: 3, // share of traffic for weighted strategies (default 1)
  priority: 0, // fallback tier, 0 first (default 0)
  tags: ["region:eu", "vision"], // labels a request can require (default [])
  maxConcurrency: 16, // calls in flight at once (default: unlimited)
  limits: { rpm: 500, tpm: 200_000, rpd: 10_000 },
  cost: { inputPerMillion: 2.5, outputPerMillion: 10 },
  contextWindow: 128_000, // input + output tokens; Hints.minContextWindow reads it
  quotaGroup: "azure-eu", // endpoints sharing one key or account: a 429 cools them all down
  maxFailures: 5, // overrides the health policy for this endpoint
  recoveryTimeout: "1 minute" // overrides the health policy for this endpoint
})

const endpointModel = Effect.gen(function*() {
  const endpoint = yield* everyField
  yield* Console.log(`${endpoint.name}: weight ${endpoint.weight}, key ${String(endpoint.apiKey)}`)
  // bad input: every bad field is named, not only the first
  const bad = yield* Effect.flip(Endpoint.decode({ name: "x", model: "", weight: 0, wieght: 2 }))
  for (const issue of bad.issues) yield* Console.log(`  ${issue.path}: ${issue.message}`)
})

// --- use vs acquire / release ---------------------------------------------------------

class BadRequest extends Data.TaggedError("BadRequest")<{ readonly reason: string }> {}

// A provider call that rejects empty prompts: the caller's fault, not the endpoint's.
const strictComplete = (endpoint: Endpoint.Endpoint, prompt: string) =>
  prompt === "" ? Effect.fail(new BadRequest({ reason: "empty prompt" })) : complete(endpoint, prompt)

// `use` counts every failure of the call against the endpoint. With acquire/release you
// decide the outcome yourself; acquireUseRelease still guarantees the release.
const callWithOutcome = (prompt: string) =>
  Effect.acquireUseRelease(
    Balancer.acquire(),
    (lease) => strictComplete(lease.endpoint, prompt),
    (lease, exit) =>
      Balancer.release(
        lease,
        Exit.isSuccess(exit)
          ? Outcome.success({ usage: { inputTokens: 12, outputTokens: 40 } })
          : Exit.isInterrupted(exit)
          ? Outcome.cancelled
          : Outcome.failure(exit.cause, { countsAgainstHealth: false })
      )
  )

const acquireRelease = Effect.gen(function*() {
  yield* Console.log(yield* callWithOutcome("hello"))
  yield* callWithOutcome("").pipe(
    Effect.catchTag("BadRequest", (error) => Console.log(`failed with BadRequest: ${error.reason}`))
  )
  const stats = yield* Balancer.stats
  yield* Console.log(stats.map((s) => `${s.name}: ${s.failures} failed, ${s.consecutiveFailures} in a row`).join(" | "))
})

// --- hints: exclude, tags, wait -------------------------------------------------------

const HintsLayer = Balancer.layer({
  endpoints: [
    { name: "us-1", provider: "openai", model: "gpt-4o-mini", tags: ["region:us"], maxConcurrency: 1 },
    { name: "eu-1", provider: "openai", model: "gpt-4o-mini", tags: ["region:eu", "vision"], maxConcurrency: 1 }
  ],
  // a fixed order, so that the output below is the same every run
  strategy: "round-robin"
})

const hints = Effect.gen(function*() {
  // tags: the endpoint must have all of them
  yield* Console.log(yield* Balancer.use((e) => complete(e, "bonjour"), { tags: ["region:eu"] }))
  // exclude: for example the endpoints already tried
  yield* Console.log(yield* Balancer.use((e) => complete(e, "retry"), { exclude: ["eu-1"] }))
  // wait: both endpoints are busy for 50 ms; wait for a slot instead of failing at once
  const busy = yield* Effect.fork(Effect.all([
    Balancer.use(() => Effect.sleep("50 millis")),
    Balancer.use(() => Effect.sleep("50 millis"))
  ], { concurrency: 2 }))
  yield* Effect.sleep("5 millis")
  const start = Date.now()
  const answer = yield* Balancer.use((e) => complete(e, "patient"), { wait: "1 second" })
  yield* Console.log(`${answer} after waiting ~${Math.round((Date.now() - start) / 10) * 10} ms`)
  yield* Fiber.join(busy)

  // acquire({ wait }) works in acquireUseRelease too, whose acquire step is uninterruptible:
  // the wait still ends on time
  const busyAgain = yield* Effect.fork(Balancer.use(() => Effect.sleep("50 millis"), { tags: ["region:us"] }))
  yield* Effect.sleep("5 millis")
  const waited = Date.now()
  const gaveUp = yield* Effect.flip(Effect.acquireUseRelease(
    Balancer.acquire({ tags: ["region:us"], wait: "20 millis" }),
    (lease) => complete(lease.endpoint, "too late"),
    (lease) => Balancer.release(lease, Outcome.cancelled)
  ))
  yield* Console.log(`${gaveUp._tag} after waiting ~${Math.round((Date.now() - waited) / 10) * 10} ms`)
  yield* Fiber.join(busyAgain)
})

// --- errors ---------------------------------------------------------------------------

const errors = Effect.gen(function*() {
  // NoEndpointAvailable: says, per endpoint, why it was passed over
  const none = yield* Effect.flip(Balancer.use((e) => complete(e, "hi"), { tags: ["gpu"] }))
  yield* Console.log(`${none._tag}: ${none.passedOver.map((p) => `${p.endpoint} ${p.reason}`).join(", ")}`)

  // ... and, when circuits are open, when the earliest endpoint can serve again
  const fail = Effect.ignore(Balancer.use(() => Effect.fail("503 Service Unavailable")))
  yield* Effect.repeatN(fail, 5) // 3 failures in a row open each circuit
  const down = yield* Effect.flip(Balancer.acquire())
  yield* Console.log(
    `${down.passedOver.map((p) => `${p.endpoint} ${p.reason}`).join(", ")}; retry in ~${
      Math.round(((down.retryAt ?? 0) - Date.now()) / 1000)
    } s`
  )

  // UnknownEndpoint: an operation named an endpoint the balancer does not have
  const unknown = yield* Effect.flip(Balancer.forceHealthy("us-2"))
  yield* Console.log(unknown.message)

  // InvalidConfig: building the layer fails, naming every bad field at once
  const invalid = yield* Effect.flip(Effect.provide(
    Balancer.stats,
    Balancer.layer({
      endpoints: [
        { name: "a", provider: "openai", model: "gpt-4o-mini", weight: -1 },
        { name: "a", provider: "openai", model: "" }
      ],
      strategy: "fastest" as Strategy.BuiltInName,
      health: { maxFailures: 0 }
    })
  ))
  yield* Console.log(invalid.message)
})

// --- stats and events -----------------------------------------------------------------

const statsAndEvents = Effect.gen(function*() {
  const balancer = yield* Balancer.Balancer
  // subscribed from here on, for as long as the scope lasts: every event is kept for the
  // consumer, even before its fiber first runs
  const events = yield* balancer.subscribe
  const printer = yield* Effect.fork(
    Stream.fromQueue(events).pipe(
      Stream.takeUntil((event) => event._tag === "EndpointRemoved"), // the last event we expect
      Stream.runForEach((event) => Console.log(`event: ${event._tag} ${event.name}`))
    )
  )

  yield* balancer.addEndpoint({ name: "mistral", provider: "mistral", model: "mistral-small-latest" })
  yield* Effect.repeatN(Balancer.use((e) => complete(e, "hi")), 5)
  yield* balancer.removeEndpoint("anthropic")
  yield* Fiber.join(printer)

  const [first] = yield* balancer.stats
  yield* Console.log(first)
}).pipe(Effect.scoped)

// --- BalancerLive: the configuration from a ConfigProvider ----------------------------

const fromConfig = Effect.gen(function*() {
  const balancer = yield* Balancer.Balancer
  const names = (yield* balancer.endpoints).map((e) => `${e.name} (tier ${e.priority})`)
  yield* Console.log(`${balancer.strategy}: ${names.join(", ")}`)
}).pipe(
  Effect.provide(Balancer.BalancerLive),
  // or a parsed JSON file, or ConfigProvider.fromMap with keys like "balancer.endpoints[0].name"
  Effect.withConfigProvider(ConfigProvider.fromJson({
    balancer: {
      endpoints: [
        { name: "openai", provider: "openai", model: "gpt-4o-mini", apiKey: "sk-from-config" },
        { name: "backup", provider: "anthropic", model: "claude-3-5-haiku-latest", priority: 1 }
      ],
      strategy: "round-robin",
      health: { maxFailures: 5, recoveryTimeout: "1 minute" }
    }
  }))
)

// Bad values are named by their full path. A ConfigProvider only hands over the keys that
// are asked for, so a misspelt key ("wieght") is not seen: the endpoint keeps weight 1.
const badConfig = (json: object) =>
  Effect.flip(Effect.provide(Balancer.stats, Balancer.BalancerLive)).pipe(
    Effect.withConfigProvider(ConfigProvider.fromJson(json)),
    Effect.flatMap((error) => Console.log(error.message))
  )

const configErrors = Effect.gen(function*() {
  yield* badConfig({
    balancer: {
      endpoints: [
        { name: "a", provider: "openai", model: "gpt-4o-mini", weight: -1 },
        { name: "b", provider: "openai", model: "", wieght: 2 }
      ],
      health: { recoveryTimeout: "soon" }
    }
  })
  // no balancer section at all (or an empty endpoint list)
  yield* badConfig({ balancer: { strategy: "round-robin" } })
})

const section = (title: string) => Console.log(`\n== ${title}`)

const main = Effect.gen(function*() {
  yield* section("quick start")
  yield* Effect.provide(quickStart, BalancerLayer)
  yield* section("the endpoint model")
  yield* endpointModel
  yield* section("acquire / release")
  yield* Effect.provide(acquireRelease, BalancerLayer)
  yield* section("hints")
  yield* Effect.provide(hints, HintsLayer)
  yield* section("errors")
  yield* Effect.provide(errors, HintsLayer)
  yield* section("stats and events")
  yield* Effect.provide(statsAndEvents, BalancerLayer)
  yield* section("BalancerLive")
  yield* fromConfig
  yield* configErrors
})

Effect.runPromise(main).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
