/**
 * Health tracking: failures open the circuit, a probe closes it again (a failed probe
 * opens it for longer), active health checks end an open period once the endpoint answers
 * again, DEGRADED endpoints are used last, interrupted calls count neither way, and an
 * operator can force an endpoint out and back in. Most sections run
 * on `TestClock`, so a 30-second recovery takes no time; the last one reads its
 * configuration with `BalancerLive` and recovers on the real clock after 200 ms.
 *
 *   npx tsx --tsconfig tsconfig.examples.json examples/health.ts
 *
 * docs/health.md quotes trimmed copies of the sections below.
 */
import { HttpClient, HttpClientRequest, HttpClientResponse } from "@effect/platform"
import {
  ConfigProvider,
  Console,
  Data,
  Duration,
  Effect,
  Fiber,
  Layer,
  Queue,
  Random,
  Ref,
  TestClock,
  TestContext
} from "effect"
import type { Event } from "effect-llm-balancer"
import { Balancer, OpenAiCompatible, Outcome } from "effect-llm-balancer"

class Unavailable extends Data.TaggedError("Unavailable")<{ readonly endpoint: string }> {}

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)}s`

const describe = (event: Event.Event): string => {
  switch (event._tag) {
    case "EndpointUnhealthy":
      return `${event.name} UNHEALTHY (${event.reason})${
        event.until === undefined ? "" : `, probe at t=${seconds(event.until)}`
      }`
    case "EndpointProbing":
      return `${event.name} PROBING`
    case "EndpointRecovered":
      return `${event.name} RECOVERED (${event.reason})`
    default:
      return `${event.name} ${event._tag}`
  }
}

/**
 * Subscribes to the balancer's events and returns an effect that prints the ones published
 * since it last ran. The subscription keeps every event from the moment it is made, for as
 * long as the scope lasts; reading it in the same fiber needs no printer fiber and no
 * `TestClock.adjust(0)`, and the output comes out in a fixed order.
 */
const watchEvents = Effect.gen(function*() {
  const balancer = yield* Balancer.Balancer
  const events = yield* balancer.subscribe
  return Effect.flatMap(
    Queue.takeAll(events),
    Effect.forEach((event) => Console.log(`       event: ${describe(event)}`), { discard: true })
  )
})

/** Each endpoint's status and circuit. */
const status = Effect.gen(function*() {
  const stats = yield* Balancer.stats
  return stats.map((s) => `${s.name} ${s.status}/${s.circuit}`).join(", ")
})

// --- the circuit: Closed -> Open -> HalfOpen -> Closed, on TestClock ------------------

const CircuitLayer = Balancer.layer({
  endpoints: [
    { name: "primary", provider: "openai", model: "gpt-4o-mini" },
    { name: "backup", provider: "anthropic", model: "claude-3-5-haiku-latest", priority: 1 }
  ],
  health: { maxFailures: 3, recoveryTimeout: "30 seconds" }
})

const circuit = Effect.gen(function*() {
  const printEvents = yield* watchEvents // prints the events published since it last ran
  const primaryDown = yield* Ref.make(true)
  // a scripted provider: "primary" fails while it is down
  const call = Balancer.use((endpoint) =>
    Effect.flatMap(Ref.get(primaryDown), (down) =>
      down && endpoint.name === "primary"
        ? Effect.fail(new Unavailable({ endpoint: endpoint.name }))
        : Effect.succeed(endpoint.name))
  ).pipe(Effect.catchTag("Unavailable", (e) => Effect.succeed(`${e.endpoint} failed`)))
  const calls = (n: number) => Effect.map(Effect.replicateEffect(call, n), (names) => names.join(", "))

  yield* Console.log(`t=0s   ${yield* calls(3)}`) // three failures in a row open the circuit
  yield* printEvents
  yield* Console.log(`       ${yield* status}`)
  yield* Console.log(`       ${yield* calls(2)}`) // the backup tier serves meanwhile

  yield* TestClock.adjust("30 seconds") // the circuit admits one probe
  yield* Console.log(`t=30s  ${yield* calls(2)}`) // the probe fails: open again, for longer
  yield* printEvents
  yield* Console.log(`       ${yield* status}`)

  yield* Ref.set(primaryDown, false)
  // the second open period is 30 s plus a random part of the growth to 60 s
  const [primary] = yield* Balancer.stats
  const probeAt = primary.unhealthyUntil ?? 0
  yield* TestClock.adjust(Duration.millis(probeAt - 30_000))
  yield* Console.log(`t=${seconds(probeAt)} ${yield* calls(3)}`) // the probe succeeds: closed
  yield* printEvents
  yield* Console.log(`       ${yield* status}`)
}).pipe(Effect.scoped, Effect.provide(CircuitLayer))

// --- active health checks: GET {baseUrl}/models while the circuit is open --------------

/** Passes when `GET {baseUrl}/models` answers 2xx (OpenAI-compatible endpoints). */
const listModels = (client: HttpClient.HttpClient): Balancer.HealthCheck => {
  const ok = HttpClient.filterStatusOk(client) // a 503 or a 401 fails the check
  return {
    check: (endpoint) => {
      const base = (endpoint.baseUrl ?? OpenAiCompatible.defaultBaseUrl).replace(/\/+$/, "")
      const request = HttpClientRequest.get(`${base}/models`)
      return ok.execute(
        endpoint.apiKey === undefined ? request : HttpClientRequest.bearerToken(request, endpoint.apiKey)
      )
    },
    interval: "5 seconds", // the defaults
    timeout: "2 seconds"
  }
}

// the check needs its HttpClient when the balancer is built
const CheckedLayer = Layer.unwrapEffect(
  Effect.map(HttpClient.HttpClient, (client) =>
    Balancer.layer({
      endpoints: [{ name: "primary", provider: "openai", model: "gpt-4o-mini", baseUrl: "https://llm.example.com/v1" }],
      health: { recoveryTimeout: "30 seconds" },
      healthCheck: listModels(client)
    }))
)

/** A stand-in for the provider's API, so that the example runs offline: 503 while it is down. */
let apiDown = true
const FakeApi = Layer.succeed(
  HttpClient.HttpClient,
  HttpClient.make((request) =>
    Effect.sync(() =>
      HttpClientResponse.fromWeb(
        request,
        new Response(apiDown ? "down" : `{"data":[]}`, { status: apiDown ? 503 : 200 })
      )
    )
  )
)

const checked = Effect.gen(function*() {
  const printEvents = yield* watchEvents
  const fail = Effect.ignore(Balancer.use(() => Effect.fail(new Unavailable({ endpoint: "primary" }))))
  const probeAt = Effect.map(
    Balancer.stats,
    ([s]) => s.unhealthyUntil === null ? "now" : `t=${seconds(s.unhealthyUntil)}`
  )
  yield* Effect.repeatN(fail, 2) // three failures: open for 30 s
  yield* printEvents
  yield* TestClock.adjust("5 seconds") // the check at t=5s gets a 503: open until since + maxRecoveryTimeout
  yield* Console.log(`t=5s   ${yield* status}, probe at ${yield* probeAt}`)
  apiDown = false // the outage ends at t=5s
  yield* TestClock.adjust("5 seconds") // the check at t=10s passes: the open period ends
  yield* Console.log(`t=10s  ${yield* status}, probe at ${yield* probeAt}`)
  const served = yield* Balancer.use((endpoint, lease) => Effect.succeed(`${endpoint.name} probe=${lease.probe}`))
  yield* Console.log(`t=10s  ${served}`)
  yield* printEvents
  yield* Console.log(`       ${yield* status}`)
}).pipe(Effect.scoped, Effect.provide(CheckedLayer.pipe(Layer.provide(FakeApi)))) // FetchHttpClient.layer for real

// --- DEGRADED and the decaying recent window ------------------------------------------

const DegradedLayer = Balancer.layer({
  endpoints: [
    { name: "a", provider: "openai", model: "gpt-4o-mini" },
    { name: "b", provider: "openai", model: "gpt-4o-mini" }
  ],
  // the defaults, spelled out, plus a latency threshold
  health: { window: "30 seconds", degradedErrorRate: 0.2, degradedMinRequests: 5, degradedLatency: "5 seconds" },
  // round robin shows who is eligible plainly (the default, power of two, would also weigh speed)
  strategy: "round-robin"
})

/** Reports an outcome for a call on `name` (acquire/release let us script it exactly). */
const report = (name: string, outcome: Outcome.Outcome) =>
  Effect.flatMap(
    Balancer.acquire({ exclude: name === "a" ? ["b"] : ["a"] }),
    (lease) => Balancer.release(lease, outcome)
  )

const picks = (n: number) =>
  Effect.map(Effect.replicateEffect(Balancer.use((e) => Effect.succeed(e.name)), n), (names) => names.join(" "))

const degraded = Effect.gen(function*() {
  // 1 failure in 5 recent calls: an error rate of 0.2, over the minimum volume of 5
  yield* Effect.repeatN(report("a", Outcome.success({ latency: "800 millis" })), 3)
  yield* report("a", Outcome.failure(new Unavailable({ endpoint: "a" })))
  yield* Console.log(`${yield* status}; picks: ${yield* picks(4)}`) // healthy before degraded

  // 30 s later the same calls weigh e^-1 ≈ 0.37 as much: 1.8 recent calls, under 5
  yield* TestClock.adjust("30 seconds")
  yield* Console.log(`30 s later: ${yield* status}; picks: ${yield* picks(4)}`)
}).pipe(Effect.provide(DegradedLayer))

const slow = Effect.gen(function*() {
  // slow answers degrade too, once degradedLatency is set, but one slow call is not enough:
  // it takes about degradedMinRequests recent successes, as for the error rate
  const slowCall = report("b", Outcome.success({ latency: "12 seconds" }))
  yield* slowCall
  yield* Console.log(`1 slow call: ${yield* status}`)
  yield* Effect.repeatN(slowCall, 4)
  yield* Console.log(`5 slow calls: ${yield* status}; picks: ${yield* picks(4)}`)

  // and it wears off as the window decays: 30 s later the 5 calls weigh about 1.8
  yield* TestClock.adjust("30 seconds")
  yield* Console.log(`30 s later: ${yield* status}; picks: ${yield* picks(4)}`)
}).pipe(Effect.provide(DegradedLayer))

// --- interrupted calls count neither way ----------------------------------------------

const interrupted = Effect.gen(function*() {
  const hang = Effect.never // an endpoint that never answers
  // on "a", a timeout around `use` interrupts the call: the slot is freed, nothing recorded
  const outside = yield* Effect.fork(Effect.timeout(Balancer.use(() => hang, { exclude: ["b"] }), "10 seconds"))
  // on "b", a timeout inside `use` makes the call fail: it counts against the endpoint
  const inside = yield* Effect.fork(Balancer.use(() => Effect.timeout(hang, "10 seconds"), { exclude: ["a"] }))
  yield* TestClock.adjust("10 seconds")
  yield* Fiber.await(outside)
  yield* Fiber.await(inside)
  const stats = yield* Balancer.stats
  for (const s of stats) {
    yield* Console.log(`${s.name}: ${s.active} active, ${s.successes} ok, ${s.failures} failed`)
  }
}).pipe(Effect.provide(DegradedLayer))

// --- forceUnhealthy / forceHealthy ----------------------------------------------------

const forced = Effect.gen(function*() {
  const printEvents = yield* watchEvents
  // take "primary" out of rotation, for maintenance say, until forceHealthy
  yield* Balancer.forceUnhealthy("primary")
  yield* printEvents
  yield* Console.log(`held: ${yield* status}; picks: ${yield* picks(2)}`)
  const error = yield* Effect.flip(Balancer.acquire({ exclude: ["backup"] }))
  yield* Console.log(`without backup: ${error.passedOver.map((p) => `${p.endpoint} ${p.reason}`).join(", ")}`)
  // forceHealthy also closes an open circuit and forgets consecutive failures, the recent
  // window and earlier openings
  yield* Balancer.forceHealthy("primary")
  yield* printEvents
  yield* Console.log(`released: ${yield* status}; picks: ${yield* picks(2)}`)
}).pipe(Effect.scoped, Effect.provide(CircuitLayer))

// --- BalancerLive from a ConfigProvider, and a real 200 ms recovery -------------------

const config = ConfigProvider.fromJson({
  balancer: {
    endpoints: [
      { name: "solo", provider: "openai", model: "gpt-4o-mini", maxFailures: 2 } // overrides health.maxFailures
    ],
    strategy: "least-connections",
    health: { maxFailures: 3, recoveryTimeout: "200 millis", window: "10 seconds" }
  }
})

const liveStatus = Effect.map(
  Balancer.stats,
  (stats) => stats.map((s) => `${s.name} ${s.status}/${s.circuit}`).join(", ")
)

const liveRecovery = Effect.gen(function*() {
  const fail = Effect.ignore(Balancer.use(() => Effect.fail(new Unavailable({ endpoint: "solo" }))))
  yield* Effect.repeatN(fail, 1) // 2 failures: open for 200 ms
  yield* Console.log(`after 2 failures: ${yield* liveStatus}`)
  // wait for the circuit to admit a probe instead of failing at once (no polling)
  const start = Date.now()
  const name = yield* Balancer.use((endpoint) => Effect.succeed(endpoint.name), { wait: "1 second" })
  yield* Console.log(`probe on ${name} after ~${Math.round((Date.now() - start) / 50) * 50} ms: ${yield* liveStatus}`)
}).pipe(Effect.provide(Balancer.BalancerLive), Effect.withConfigProvider(config))

// TestClock sections each get their own TestContext, and run apart from the real-clock one.
// The balancer draws its seed from `Random` when it is built (for jitter and random picks):
// a seeded `Random` makes the output repeat exactly.
const onTestClock = <A, E>(title: string, section: Effect.Effect<A, E>) =>
  Effect.zipRight(
    Console.log(`\n== ${title} (TestClock)`),
    section.pipe(Effect.provide(TestContext.TestContext), Effect.withRandom(Random.make("health")))
  )

await Effect.runPromise(Effect.all([
  onTestClock("the circuit", circuit),
  onTestClock("active health checks", checked),
  onTestClock("DEGRADED and the recent window", degraded),
  onTestClock("slow answers", slow),
  onTestClock("interrupted calls", interrupted),
  onTestClock("forceUnhealthy / forceHealthy", forced)
], { discard: true }))

await Effect.runPromise(Effect.zipRight(Console.log("\n== BalancerLive, real clock"), liveRecovery))
