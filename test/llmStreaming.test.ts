/**
 * Llm.stream and Llm.complete end to end on MockProvider, on TestClock: failover before the
 * first token when an endpoint stalls, cut streams, interrupted consumers, time to first
 * token and latency routing, and token usage in stats and the tokens-per-minute window.
 * (test/llm.test.ts has the basic cases on inline providers.)
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Context, Effect, Fiber, Layer, Random, Stream, TestClock } from "effect"
import type { Balancer, Endpoint, Router } from "../src/index.js"
import { Chat, Llm, MockProvider, Strategy } from "../src/index.js"
import { endpoint, makeRouter } from "./helpers.js"

const setup = (options: {
  readonly endpoints: ReadonlyArray<Endpoint.Input>
  readonly strategy?: Balancer.Options["strategy"]
  readonly mock: MockProvider.Options
}) =>
  Effect.gen(function*() {
    const { balancer, context } = yield* makeRouter({
      endpoints: options.endpoints,
      strategy: options.strategy ?? "round-robin"
    })
    const mockContext = yield* Layer.build(MockProvider.layer(options.mock)).pipe(Effect.orDie)
    const all = Context.merge(context, mockContext)
    const statsOf = (name: string) => Effect.map(balancer.stats, (stats) => stats.find((s) => s.name === name)!)
    return {
      balancer,
      mock: Context.get(mockContext, MockProvider.MockProvider),
      statsOf,
      stream: (request: Chat.RequestInput, policy?: Router.Policy) =>
        Stream.provideContext(Llm.stream(request, policy), all),
      complete: (request: Chat.RequestInput, policy?: Router.Policy) =>
        Effect.provide(Llm.complete(request, policy), all)
    }
  })

const request = { messages: [{ role: "user" as const, content: "tell me a story" }], maxTokens: 50 }

/** What a consumer saw: each event (a Delta by its text) and when, and the error it ended with. */
const consume = (stream: Stream.Stream<Chat.StreamEvent, { readonly _tag: string }>) =>
  Effect.gen(function*() {
    const seen: Array<string> = []
    const error = yield* Stream.runForEach(stream, (event) =>
      Effect.map(Clock.currentTimeMillis, (t) => {
        seen.push(`${event._tag === "Delta" ? event.text.trim() : event._tag}@${t}`)
      })).pipe(Effect.flip, Effect.option)
    return { seen, error }
  })

const words = (n: number) => Array.from({ length: n }, (_, i) => `w${i}`).join(" ")

describe("Llm streaming on MockProvider", () => {
  it.scoped("a stream whose first endpoint stalls past attemptTimeout fails over before its first token", () =>
    Effect.gen(function*() {
      const { mock, statsOf, stream } = yield* setup({
        endpoints: [endpoint("a"), endpoint("b")],
        mock: {
          default: { timeToFirstToken: 300, tokensPerSecond: 10, answer: "once upon a time" },
          endpoints: { a: { stall: {} } }
        }
      })
      const fiber = yield* Effect.fork(consume(stream(request, { attemptTimeout: "2 seconds" })))
      yield* TestClock.adjust("1 minute")
      const { error, seen } = yield* Fiber.join(fiber)
      expect(error._tag).toBe("None")
      // b starts when a's attempt times out at 2 s; its first token 300 ms later
      expect(seen).toEqual(["Started@2300", "once@2300", "upon@2400", "a@2500", "time@2600", "Finish@2600"])
      expect((yield* mock.requests).map((r) => `${r.endpoint}@${r.at}`)).toEqual(["a@0", "b@2000"])
      const a = yield* statsOf("a")
      expect([a.active, a.failures, a.consecutiveFailures]).toEqual([0, 1, 1])
      const b = yield* statsOf("b")
      expect([b.active, b.successes, b.avgTimeToFirstTokenMs, b.avgLatencyMs]).toEqual([0, 1, 300, 600])
    }))

  it.scoped("the attempts name the stall as a Timeout on a", () =>
    Effect.gen(function*() {
      const { stream } = yield* setup({
        endpoints: [endpoint("a"), endpoint("b")],
        mock: { endpoints: { a: { stall: {} } } }
      })
      const fiber = yield* Effect.fork(Stream.runHead(stream(request, { attemptTimeout: "1 second" })))
      yield* TestClock.adjust("1 minute")
      const started = yield* Fiber.join(fiber)
      expect(started._tag === "Some" && started.value._tag === "Started" && started.value.attempts).toMatchObject([
        { endpoint: "a", outcome: "Timeout", latencyMs: 1000 },
        { endpoint: "b", outcome: "Success" }
      ])
    }))

  it.scoped("a stream cut after k tokens ends with MalformedResponse, counts against the endpoint, opens its circuit", () =>
    Effect.gen(function*() {
      const { statsOf, stream } = yield* setup({
        endpoints: [endpoint("a", { maxFailures: 2 }), endpoint("b")],
        mock: {
          default: { timeToFirstToken: 100, tokensPerSecond: 10, answer: "one two three four five" },
          endpoints: { a: { cut: { afterTokens: 3 } } }
        }
      })
      const fiber = yield* Effect.fork(Effect.forEach(Array.from({ length: 6 }), () => consume(stream(request))))
      yield* TestClock.adjust("1 minute")
      const runs = yield* Fiber.join(fiber)
      // round robin: a, b, a (two cuts in a row open a's circuit), then b only
      const onA = runs.filter((r) => r.error._tag === "Some")
      expect(onA.length).toBe(2)
      for (const run of onA) {
        // three tokens, then the cut when the fourth was due; no failover after the first token
        expect(run.seen.map((s) => s.split("@")[0])).toEqual(["Started", "one", "two", "three"])
        expect(run.error._tag === "Some" && run.error.value._tag).toBe("MalformedResponse")
      }
      const a = yield* statsOf("a")
      expect([a.active, a.successes, a.failures, a.circuit]).toEqual([0, 0, 2, "open"])
      const b = yield* statsOf("b")
      expect([b.active, b.successes]).toEqual([0, 4])
    }))

  it.scoped("interrupting the consumer mid-stream releases the lease, counted neither way", () =>
    Effect.gen(function*() {
      const { statsOf, stream } = yield* setup({
        endpoints: [endpoint("a", { maxConcurrency: 1 })],
        mock: { default: { timeToFirstToken: 200, tokensPerSecond: 2, answer: words(10) } }
      })
      const seen: Array<string> = []
      const fiber = yield* Effect.fork(
        Stream.runForEach(stream(request), (e) => Effect.sync(() => seen.push(e._tag)))
      )
      yield* TestClock.adjust("1500 millis")
      expect(seen).toEqual(["Started", "Delta", "Delta", "Delta"])
      expect((yield* statsOf("a")).active).toBe(1)
      yield* Fiber.interrupt(fiber)
      const a = yield* statsOf("a")
      expect([a.active, a.successes, a.failures]).toEqual([0, 0, 0])
      // the slot is free: the next stream (maxConcurrency 1) gets it
      const next = yield* Effect.fork(Stream.runCollect(stream(request)))
      yield* TestClock.adjust("1 minute")
      expect((yield* Fiber.join(next)).length).toBe(12)
      expect((yield* statsOf("a")).successes).toBe(1)
    }))

  it.scoped("a stall after the first token is not an attempt timeout: the consumer's timeout ends it, uncounted", () =>
    Effect.gen(function*() {
      const { statsOf, stream } = yield* setup({
        endpoints: [endpoint("a"), endpoint("b")],
        mock: { default: { timeToFirstToken: 100 }, endpoints: { a: { stall: { afterTokens: 1 } } } }
      })
      const fiber = yield* Effect.fork(
        Stream.runCollect(stream(request, { attemptTimeout: "1 second" })).pipe(
          Effect.timeout("10 seconds"),
          Effect.flip
        )
      )
      yield* TestClock.adjust("1 minute")
      expect((yield* Fiber.join(fiber))._tag).toBe("TimeoutException")
      const a = yield* statsOf("a")
      expect([a.active, a.successes, a.failures]).toEqual([0, 0, 0])
    }))

  it.scoped("with idleTimeout, a stall after the first token fails with Timeout and counts against the endpoint", () =>
    Effect.gen(function*() {
      const { statsOf, stream } = yield* setup({
        endpoints: [endpoint("a"), endpoint("b")],
        mock: { default: { timeToFirstToken: 100 }, endpoints: { a: { stall: { afterTokens: 1 } } } }
      })
      const fiber = yield* Effect.fork(
        Effect.flip(Stream.runCollect(stream(request, { attemptTimeout: "1 second", idleTimeout: "2 seconds" })))
      )
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("Timeout")
      expect(error.message).toContain("the stream stalled")
      const a = yield* statsOf("a")
      expect([a.active, a.successes, a.failures]).toEqual([0, 0, 1])
    }))

  it.scoped("the time to first token is recorded, not the whole stream's length", () =>
    Effect.gen(function*() {
      const { statsOf, stream } = yield* setup({
        endpoints: [endpoint("quick-start"), endpoint("slow-start")],
        mock: {
          default: { answer: words(20) },
          endpoints: {
            // first token at 100 ms, then 10 tokens a second: the whole answer takes 2 s
            "quick-start": { timeToFirstToken: 100, tokensPerSecond: 10 },
            // first token at 800 ms, then everything at once
            "slow-start": { timeToFirstToken: 800 }
          }
        }
      })
      const fiber = yield* Effect.fork(
        Effect.forEach(Array.from({ length: 4 }), () => Stream.runDrain(stream(request)))
      )
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(fiber)
      const quick = yield* statsOf("quick-start")
      expect([quick.avgTimeToFirstTokenMs, quick.avgLatencyMs, quick.latencyP50Ms]).toEqual([100, 2000, 100])
      const slow = yield* statsOf("slow-start")
      expect([slow.avgTimeToFirstTokenMs, slow.avgLatencyMs, slow.latencyP50Ms]).toEqual([800, 800, 800])
    }))

  for (
    const [name, strategy] of [
      ["latency", Strategy.latency({ minSamples: 3 })],
      ["powerOfTwo", Strategy.powerOfTwo]
    ] as const
  ) {
    it.scoped(`${name} routing prefers the faster first token even when its whole stream is longer`, () =>
      Effect.gen(function*() {
        const { mock, stream } = yield* setup({
          endpoints: [endpoint("quick-start"), endpoint("slow-start")],
          strategy,
          mock: {
            default: { answer: words(4) },
            endpoints: {
              // the whole answer takes about 1.6 s, twice the other's
              "quick-start": { timeToFirstToken: MockProvider.uniform(80, 120), tokensPerSecond: 2 },
              "slow-start": { timeToFirstToken: MockProvider.uniform(700, 900) }
            }
          }
        })
        const fiber = yield* Effect.fork(
          Effect.forEach(Array.from({ length: 60 }), () => Stream.runDrain(stream(request)))
        )
        yield* TestClock.adjust("1 hour")
        yield* Fiber.join(fiber)
        const sent = yield* mock.requests
        const quick = sent.filter((r) => r.endpoint === "quick-start").length
        expect(sent.length).toBe(60)
        expect(quick).toBeGreaterThanOrEqual(50)
      }).pipe(Effect.withRandom(Random.make(`ttft ${name}`))))
  }

  it.scoped("token usage reaches the stats and the tokens-per-minute window", () =>
    Effect.gen(function*() {
      const { statsOf, stream } = yield* setup({
        endpoints: [endpoint("a", { limits: { tpm: 10_000 } })],
        mock: { default: { timeToFirstToken: 100, tokensPerSecond: 10, answer: words(5) } }
      })
      const input = Chat.estimateInputTokens(Chat.request(request))
      const events: Array<Chat.StreamEvent> = []
      const fiber = yield* Effect.fork(Stream.runForEach(stream(request), (e) => Effect.sync(() => events.push(e))))
      yield* TestClock.adjust("150 millis")
      // in flight: the estimate is reserved (input + maxTokens)
      expect((yield* statsOf("a")).tokensLastMinute).toBe(input + 50)
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      const finish = events.at(-1)!
      expect(finish).toEqual(
        Chat.StreamEvent.Finish({ finishReason: "stop", usage: { inputTokens: input, outputTokens: 5 } })
      )
      const a = yield* statsOf("a")
      // the reported usage replaced the estimate
      expect([a.inputTokens, a.outputTokens, a.tokensLastMinute]).toEqual([input, 5, input + 5])
      // 5 tokens over the 400 ms after the first token
      expect(a.tokensPerSecond).toBe(12.5)
      const { complete } = yield* setup({
        endpoints: [endpoint("c", { limits: { tpm: 10_000 } })],
        mock: { default: { answer: words(7) } }
      })
      const answer = yield* complete(request)
      expect(answer.usage).toEqual({ inputTokens: input, outputTokens: 7 })
      yield* TestClock.adjust("61 seconds")
      expect((yield* statsOf("a")).tokensLastMinute).toBe(0)
    }))
})
