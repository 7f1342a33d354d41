/**
 * Batches: many chat requests through the router with bounded concurrency, one item per
 * request (a failure is that item's, not the batch's), progress as a callback, as a
 * `Stream` and as a progress bar.
 *
 * The provider is an inline stand-in that answers after a random latency; every section
 * runs on `TestClock` with a seeded `Random`, so the output is the same on every run:
 *
 *   npx tsx --tsconfig tsconfig.examples.json examples/batch.ts
 *
 * docs/batch.md quotes trimmed copies of the sections below.
 */
import { Console, Effect, Fiber, Layer, Random, Stream, TestClock, TestContext } from "effect"
import type { Chat } from "effect-llm-balancer"
import { Balancer, Batch, Errors, Provider, Router, Strategy } from "effect-llm-balancer"

// --- the setup: three endpoints, an inline provider -----------------------------------

/**
 * Answers after 200 to 1,500 ms. The "flaky" deployment fails every second call it gets with
 * a 503 (the router fails the request over to another endpoint).
 */
const stub = (): Provider.Provider => {
  let flakyCalls = 0
  return {
    complete: (endpoint, request) =>
      Effect.gen(function*() {
        yield* Effect.sleep(yield* Random.nextIntBetween(200, 1_500))
        if (endpoint.name === "flaky" && ++flakyCalls % 2 === 0) {
          return yield* Effect.fail(new Errors.Unavailable({ endpoint: endpoint.name, status: 503 }))
        }
        return {
          text: `${request.messages[0].content.toUpperCase()}!`,
          finishReason: "stop" as const,
          usage: { inputTokens: 12, outputTokens: 4 },
          toolCalls: undefined,
          rateLimit: undefined
        }
      }),
    stream: () => Stream.die("not used here")
  }
}

const AppLayer = Layer.mergeAll(
  Router.layer().pipe(Layer.provideMerge(Balancer.layer({
    endpoints: [
      { name: "openai-us", provider: "openai", model: "gpt-4o-mini", weight: 2 },
      { name: "openai-eu", provider: "openai", model: "gpt-4o-mini" },
      { name: "flaky", provider: "openai", model: "gpt-4o-mini" }
    ],
    strategy: Strategy.smoothWeightedRoundRobin
  }))),
  // a function, not a value: every section gets a fresh stub
  Layer.suspend(() => Provider.layer({ openai: stub() }))
)

const ask = (content: string): Chat.RequestInput => ({ messages: [{ role: "user", content }], maxTokens: 50 })

const requests: ReadonlyArray<Chat.RequestInput> = [
  ask("one"),
  ask("two"),
  { messages: [{ role: "robot" as never, content: "three" }] }, // invalid: fails as InvalidRequest
  ask("four"),
  { ...ask("five"), tags: ["vision"] }, // no endpoint has the tag: fails as RoutingFailed
  ask("six"),
  ask("seven"),
  ask("eight"),
  ask("nine"),
  ask("ten")
]

const describeItem = (item: Batch.Item) =>
  Batch.Item.$match(item, {
    Success: ({ index, response }) =>
      `#${index} ok      ${response.text.padEnd(7)} from ${response.endpoint.name}` +
      (response.attempts.length > 1 ? ` (after ${response.attempts.map((a) => a.outcome).join(", ")})` : ""),
    Failure: ({ error, index }) =>
      `#${index} failed  ${error._tag} (${
        error._tag === "RoutingFailed" ? error.reason : [...new Set(error.issues.map((i) => i.path))].join(", ")
      })`
  })

/** Runs the batch in the background and moves the TestClock on until it is done. */
const onTestClock = <A, E, R>(batch: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(batch)
    yield* TestClock.adjust("1 minute")
    return yield* Fiber.join(fiber)
  })

// --- Batch.run: items in input order, progress as a callback ---------------------------

const run = Effect.gen(function*() {
  let done = 0
  const items = yield* Batch.run(requests, {
    concurrency: 4,
    policy: { timeout: "30 seconds" },
    // called at the start and whenever a request starts or ends; here: log each end
    onProgress: (p) =>
      p.done === done ? Effect.void : Effect.suspend(() => {
        done = p.done
        return Console.log(`  ${Batch.format(p)}`)
      })
  })
  for (const item of items) yield* Console.log(describeItem(item))
})

// --- Batch.stream: items as they complete ----------------------------------------------

const stream = Batch.stream(requests, { concurrency: 3 }).pipe(
  Stream.runForEach((item) => Console.log(describeItem(item)))
)

// --- Batch.make: results, and the progress as a Stream ----------------------------------

const make = Effect.scoped(Effect.gen(function*() {
  const batch = yield* Batch.make(requests, { concurrency: 4 })
  // the progress stream ends with the batch; print each time a request ends
  const printer = yield* Effect.fork(
    batch.progress.pipe(
      Stream.changesWith((a, b) => a.done === b.done),
      Stream.runForEach((p) =>
        Console.log(`  ${p.done}/${p.total} at ${p.elapsedMs} ms ${JSON.stringify(p.perEndpoint)}`)
      )
    )
  )
  const items = yield* batch.results
  yield* Fiber.join(printer) // let it print the last change before the scope closes
  yield* Console.log(`${items.filter(Batch.isSuccess).length} of ${items.length} succeeded`)
}))

// --- Batch.progressBar ------------------------------------------------------------------

// What the bar draws, with a writer that collects the redraws (a terminal shows them on
// one line; here each redraw is printed on its own line).
const bar = Effect.gen(function*() {
  const frames: Array<string> = []
  yield* Batch.run(requests.slice(0, 4), {
    concurrency: 2,
    onProgress: Batch.progressBar({ write: (s) => frames.push(s), isTTY: true, width: 20 })
  })
  for (const frame of frames) yield* Console.log(JSON.stringify(frame))
})

// In an app: draw on stdout only when it is a terminal (nothing when piped, as here).
const terminal = Batch.run(requests, {
  onProgress: Batch.progressBar({ write: (s) => process.stdout.write(s), isTTY: process.stdout.isTTY === true })
}).pipe(Effect.flatMap((items) => Console.log(`${items.length} items`)))

// --- a bad concurrency fails the batch, typed, before any request -----------------------

const invalid = Batch.run(requests, { concurrency: 0 }).pipe(
  Effect.catchTag("InvalidConfig", (error) => Console.log(error.message))
)

// --- run every section --------------------------------------------------------------------

const section = <A, E>(title: string, effect: Effect.Effect<A, E, Router.Router | Provider.Providers>) =>
  Effect.zipRight(
    Console.log(`\n== ${title}`),
    onTestClock(effect).pipe(
      Effect.provide(AppLayer),
      Effect.provide(TestContext.TestContext),
      Effect.withRandom(Random.make("batch"))
    )
  )

Effect.runPromise(Effect.all([
  section("Batch.run", run),
  section("Batch.stream", stream),
  section("Batch.make", make),
  section("Batch.progressBar", bar),
  section("Batch.progressBar on process.stdout", terminal),
  section("a bad concurrency", invalid)
], { discard: true })).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
