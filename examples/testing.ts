/**
 * Testing an app that uses the library: the app's own code and routing layers, with
 * `MockProvider.layer` in place of the real providers, on `TestClock` under a seeded
 * `Random`. Minutes of traffic, outages and back-off take milliseconds, and the output is
 * the same on every run (the clock starts at 0):
 *
 *   npx tsx --tsconfig tsconfig.examples.json examples/testing.ts
 *
 * docs/testing.md quotes trimmed copies of the sections below.
 */
import { FetchHttpClient } from "@effect/platform"
import { Console, Duration, Effect, Fiber, Layer, Random, Stream, TestClock, TestContext } from "effect"
import type { Chat } from "effect-llm-balancer"
import { Anthropic, Balancer, Errors, Llm, MockProvider, OpenAiCompatible, Provider, Router } from "effect-llm-balancer"

// --- the app ------------------------------------------------------------------------------

/** What the app does: one-line summaries, within 20 seconds, 5 seconds per attempt. */
export const summarize = (text: string) =>
  Llm.complete(
    { system: "Summarize in one line.", messages: [{ role: "user", content: text }], maxTokens: 60 },
    { timeout: "20 seconds", attemptTimeout: "5 seconds" }
  )

/** The routing: the same layer in production and in tests. */
export const RoutingLive = Router.layer().pipe(
  Layer.provideMerge(Balancer.layer({
    endpoints: [
      { name: "openai", provider: "openai", model: "gpt-4o-mini" },
      { name: "anthropic", provider: "anthropic", model: "claude-3-5-haiku-latest" }
    ]
  }))
)

/** The real providers: what tests replace. */
export const ProvidersLive = Provider.layer({ openai: OpenAiCompatible.make(), anthropic: Anthropic.make() }).pipe(
  Layer.provide(FetchHttpClient.layer)
)

export const AppLive = Layer.merge(RoutingLive, ProvidersLive)

// --- the test layer: one mock stands in for both providers -------------------------------

const ProvidersTest = MockProvider.layer({
  name: ["openai", "anthropic"],
  default: {
    latency: MockProvider.logNormal({ median: "400 millis", p99: "2 seconds" }),
    answer: (request) => `Summary of ${request.messages[0].content}.`
  },
  endpoints: {
    // openai is down from the first minute to the third
    openai: { outages: [{ from: "1 minute", to: "3 minutes" }] }
  }
})

const AppTest = Layer.merge(RoutingLive, ProvidersTest)

// --- an outage: every call is answered, and the mock saw where they went -----------------

const outage = Effect.gen(function*() {
  // one call every 10 seconds for 5 minutes, each in its own fiber
  const calls: Array<Fiber.Fiber<Chat.Response, unknown>> = []
  for (let i = 0; i < 30; i++) {
    calls.push(yield* Effect.fork(summarize(`report ${i}`)))
    yield* TestClock.adjust("10 seconds")
  }
  const answers = yield* Fiber.joinAll(calls)
  yield* Console.log(`answered: ${answers.length} of 30, by ${tally(answers.map((a) => a.endpoint.name))}`)

  // what each endpoint received, minute by minute: the probes during the outage included
  const sent = yield* MockProvider.requests
  for (let minute = 0; minute < 5; minute++) {
    const inMinute = sent.filter((r) => Math.floor(r.at / 60_000) === minute)
    yield* Console.log(`  minute ${minute}: ${tally(inMinute.map((r) => r.endpoint))}`)
  }
  const failed = answers.flatMap((a) => a.attempts).filter((a) => a.outcome !== "Success")
  yield* Console.log(
    `  failed attempts: ${failed.length}, ${
      Array.from(new Set(failed.map((a) => `${a.endpoint} ${a.outcome}`))).join(", ")
    }, at ${failed.map((a) => t(a.startedAt)).join(" ")}`
  )
  const first = sent[0]
  yield* Console.log(`  first request: ${first.endpoint}, ${first.kind}, "${first.request.messages[0].content}"`)
  yield* Console.log(`  its answer: "${answers[0].text}"`)
})

// --- scripted outcomes: a 429 with Retry-After, then an exact answer ---------------------

const scripted = Effect.gen(function*() {
  const retryAfter = Duration.seconds(30)
  yield* MockProvider.script(
    "openai",
    MockProvider.fail(new Errors.RateLimited({ endpoint: "openai", status: 429, retryAfter }))
  )
  yield* MockProvider.script("anthropic", MockProvider.fail("Unavailable"), MockProvider.answer("Exactly this."))
  const fiber = yield* Effect.fork(summarize("the quarterly report"))
  yield* TestClock.adjust("5 seconds")
  const answer = yield* Fiber.join(fiber)
  yield* Console.log(`"${answer.text}" from ${answer.endpoint.name} after ${answer.attempts.length} attempts:`)
  for (const a of answer.attempts) yield* Console.log(`  ${a.endpoint} ${a.outcome} at ${t(a.startedAt)}`)
  const [openai] = (yield* Balancer.stats).filter((s) => s.name === "openai")
  yield* Console.log(`  openai rests until ${t(openai.cooldownUntil ?? 0)} (Retry-After 30 s, times 1 to 1.5)`)
})

// --- a stream that stalls before its first token ------------------------------------------

const stalled = Effect.gen(function*() {
  yield* MockProvider.setBehaviour("openai", { stall: {} })
  yield* MockProvider.setBehaviour("anthropic", {
    timeToFirstToken: 300,
    tokensPerSecond: 20,
    answer: "Once upon a time."
  })
  const events: Array<string> = []
  const fiber = yield* Effect.fork(Stream.runForEach(
    Llm.stream({ messages: [{ role: "user", content: "a long story" }] }, { attemptTimeout: "2 seconds" }),
    (event) => Effect.sync(() => events.push(show(event)))
  ))
  yield* TestClock.adjust("1 minute")
  yield* Fiber.join(fiber)
  yield* Console.log(events.join("\n"))
  const sent = yield* MockProvider.requests
  yield* Console.log(`the mock saw: ${sent.map((r) => `${r.endpoint} (${r.kind}) at ${t(r.at)}`).join(", ")}`)
})

// --- helpers ------------------------------------------------------------------------------

/** TestClock starts at 0: epoch milliseconds read as the time since the start. */
const t = (ms: number) => `${Number((ms / 1000).toFixed(3))}s`

const tally = (names: ReadonlyArray<string>) =>
  ["openai", "anthropic"].map((name) => `${name} ${names.filter((n) => n === name).length}`).join(", ")

const show = (event: Chat.StreamEvent): string => {
  switch (event._tag) {
    case "Started":
      return `Started on ${event.endpoint.name}: ${
        event.attempts.map((a) => `${a.endpoint} ${a.outcome} after ${a.latencyMs} ms`).join(", ")
      }`
    case "Delta":
      return `Delta "${event.text}"`
    case "Finish":
      return `Finish ${event.finishReason}, ${event.usage?.inputTokens} tokens in, ${event.usage?.outputTokens} out`
  }
}

// --- run every section: each on its own TestClock, under a seeded Random -----------------

const run = <A, E>(
  title: string,
  section: Effect.Effect<A, E, Router.Router | Balancer.Balancer | Provider.Providers | MockProvider.MockProvider>
) =>
  Effect.zipRight(
    Console.log(`\n== ${title}`),
    section.pipe(
      Effect.provide(AppTest), // built inside: on the TestClock and the seeded Random below
      Effect.provide(TestContext.TestContext),
      Effect.withRandom(Random.make("testing"))
    )
  )

const main = Effect.gen(function*() {
  yield* run("an outage, with calls every 10 seconds", outage)
  yield* run("scripted outcomes", scripted)
  yield* run("a stream that stalls before its first token", stalled)
})

Effect.runPromise(main).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
