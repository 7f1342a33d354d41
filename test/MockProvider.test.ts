/**
 * MockProvider on TestClock: latency and its distributions, failure rates, outages,
 * rate limits, malformed bodies, stalled and cut streams, the scripted queue, recording,
 * changing behaviour mid-test, bad options, and the layer.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  Chunk,
  Clock,
  Context,
  Duration,
  Effect,
  Either,
  Fiber,
  Layer,
  Option,
  Random,
  Stream,
  TestClock
} from "effect"
import { Balancer, Chat, Endpoint, Errors, Llm, MockProvider, Provider, Router } from "../src/index.js"
import { endpoint, makeRouter } from "./helpers.js"

const a = new Endpoint.Endpoint({ name: "a", provider: "mock", model: "m" })
const b = new Endpoint.Endpoint({ name: "b", provider: "mock", model: "m" })
const request = Chat.request({ messages: [{ role: "user", content: "hello there" }] })
const estimate = Chat.estimateInputTokens(request)

const makeMock = (options?: MockProvider.Options) => Effect.orDie(MockProvider.make(options))

/** Runs `effect` to its end on TestClock: its result and how long it took (ms). */
const timed = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(Effect.gen(function*() {
      const start = yield* Clock.currentTimeMillis
      const result = yield* Effect.either(effect)
      return { result, ms: (yield* Clock.currentTimeMillis) - start }
    }))
    yield* TestClock.adjust("1 hour")
    return yield* Fiber.join(fiber)
  })

type Seen = ReadonlyArray<readonly [string, number]>

/** Runs a stream on TestClock for `window`: each part's tag (or text) and when it came, and how it ended. */
const watch = (
  stream: Stream.Stream<Chat.StreamPart, Errors.ProviderError>,
  window: Duration.DurationInput = "1 hour"
) =>
  Effect.gen(function*() {
    const seen: Array<readonly [string, number]> = []
    const fiber = yield* Effect.fork(Stream.runForEach(stream, (part) =>
      Effect.map(Clock.currentTimeMillis, (t) => {
        seen.push([part._tag === "Delta" ? part.text : part._tag, t])
      })))
    yield* TestClock.adjust(window)
    const exit = yield* Fiber.poll(fiber)
    yield* Fiber.interrupt(fiber)
    return {
      seen: seen as Seen,
      /** `undefined` while still running (a stall). */
      error: Option.isNone(exit)
        ? undefined
        : exit.value._tag === "Success"
        ? null
        : Option.getOrUndefined(Chunk.head(Chunk.fromIterable(
          exit.value.cause._tag === "Fail" ? [exit.value.cause.error] : []
        )))
    }
  })

const latencies = (mock: MockProvider.MockProviderService, n: number) =>
  Effect.forEach(Array.from({ length: n }), () => Effect.map(timed(mock.provider.complete(a, request)), (r) => r.ms))

describe("MockProvider", () => {
  it.scoped("answers after its latency; a stream starts at once, its first token after the TTFT, then paced", () =>
    Effect.gen(function*() {
      const mock = yield* makeMock({
        default: { latency: 300, timeToFirstToken: 100, tokensPerSecond: 10, answer: "one two three" }
      })
      const { ms, result } = yield* timed(mock.provider.complete(a, request))
      expect(ms).toBe(300)
      const completion = Either.getOrThrow(result)
      expect(completion.text).toBe("one two three")
      expect(completion.finishReason).toBe("stop")
      expect(completion.usage).toEqual({ inputTokens: estimate, outputTokens: 3 })

      const streamed = yield* watch(mock.provider.stream(a, request))
      // (timed left the clock an hour on)
      expect(streamed.seen).toEqual([
        ["Start", 3_600_000],
        ["one ", 3_600_100],
        ["two ", 3_600_200],
        ["three", 3_600_300],
        ["Finish", 3_600_300]
      ])
      expect(streamed.error).toBe(null)
    }))

  it.scoped("sends at most maxTokens tokens, then finishes with \"length\"", () =>
    Effect.gen(function*() {
      const mock = yield* makeMock({ default: { answer: "one two three four" } })
      const short = Chat.request({ messages: [{ role: "user", content: "hi" }], maxTokens: 2 })
      const completion = yield* mock.provider.complete(a, short)
      expect([completion.text, completion.finishReason, completion.usage?.outputTokens]).toEqual([
        "one two ",
        "length",
        2
      ])
      const parts = Chunk.toReadonlyArray(yield* Stream.runCollect(mock.provider.stream(a, short)))
      expect(parts.at(-1)).toEqual(
        Chat.StreamPart.Finish({
          finishReason: "length",
          usage: { inputTokens: Chat.estimateInputTokens(short), outputTokens: 2 }
        })
      )
    }))

  it.scoped("distributions draw from Random: the same seed gives the same latencies, within bounds", () =>
    Effect.gen(function*() {
      const run = (seed: string) =>
        Effect.flatMap(
          makeMock({ default: { latency: MockProvider.uniform("100 millis", "200 millis") } }),
          (mock) => latencies(mock, 20)
        ).pipe(Effect.withRandom(Random.make(seed)))
      const first = yield* run("one")
      expect(yield* run("one")).toEqual(first)
      expect(yield* run("two")).not.toEqual(first)
      expect(first.every((ms) => ms >= 100 && ms <= 200 && Number.isInteger(ms))).toBe(true)
      // the mock waits exactly what `sample` draws
      const sampled = yield* Effect.forEach(
        Array.from({ length: 20 }),
        () => Effect.map(MockProvider.sample(MockProvider.uniform(100, 200)), Duration.toMillis)
      ).pipe(Effect.withRandom(Random.make("one")))
      expect(sampled).toEqual(first)
    }))

  it.effect("LogNormal has the median and p99 it was given", () =>
    Effect.gen(function*() {
      const draws = yield* Effect.forEach(
        Array.from({ length: 4_000 }),
        () =>
          Effect.map(MockProvider.sample(MockProvider.logNormal({ median: 500, p99: "2 seconds" })), Duration.toMillis)
      )
      const sorted = draws.slice().sort((x, y) => x - y)
      expect(sorted[2_000]).toBeGreaterThan(470)
      expect(sorted[2_000]).toBeLessThan(530)
      expect(sorted[3_960]).toBeGreaterThan(1_700)
      expect(sorted[3_960]).toBeLessThan(2_300)
      expect(sorted[0]).toBeGreaterThan(0)
    }).pipe(Effect.withRandom(Random.make("lognormal"))))

  it.effect("failureRate fails about that share of 2,000 calls, with failWith (Unavailable by default)", () =>
    Effect.gen(function*() {
      const mock = yield* makeMock({ default: { failureRate: 0.1 } })
      const results = yield* Effect.forEach(
        Array.from({ length: 2_000 }),
        () => Effect.either(mock.provider.complete(a, request))
      )
      const failures = results.filter(Either.isLeft).map((r) => r.left)
      expect(failures.length).toBeGreaterThan(160)
      expect(failures.length).toBeLessThan(240)
      expect(failures.every((e) => e._tag === "Unavailable" && e.status === 503 && e.endpoint === "a")).toBe(true)
    }).pipe(Effect.withRandom(Random.make("failure rate"))))

  it.scoped("malformed bodies: failWith MalformedResponse, after the latency; a stream fails before its Start", () =>
    Effect.gen(function*() {
      const mock = yield* makeMock({
        default: { latency: 250, timeToFirstToken: 40, failureRate: 1, failWith: "MalformedResponse" }
      })
      const { ms, result } = yield* timed(mock.provider.complete(a, request))
      expect(ms).toBe(250)
      const error = Either.flip(result).pipe(Either.getOrThrow)
      expect([error._tag, error.status, error.endpoint]).toEqual(["MalformedResponse", 200, "a"])
      const streamed = yield* watch(mock.provider.stream(a, request))
      expect(streamed.seen).toEqual([])
      expect(streamed.error?._tag).toBe("MalformedResponse")
    }))

  it.scoped("outages: every call between from and to fails at once with the outage's error", () =>
    Effect.gen(function*() {
      const mock = yield* makeMock({
        endpoints: {
          a: {
            outages: [{ from: "1 minute", to: "2 minutes" }, {
              from: "5 minutes",
              to: "6 minutes",
              error: new Errors.Unauthorized({ endpoint: "a", status: 403 })
            }]
          }
        }
      })
      const at = (offset: Duration.DurationInput) =>
        Effect.gen(function*() {
          yield* TestClock.setTime(Duration.toMillis(Duration.decode(offset)))
          return yield* Effect.forEach([a, b], (e) =>
            Effect.either(mock.provider.complete(e, request)).pipe(
              Effect.map(Either.match({ onLeft: (error) => error._tag, onRight: () => "ok" }))
            ))
        })
      expect(yield* at(0)).toEqual(["ok", "ok"])
      expect(yield* at("1 minute")).toEqual(["Unavailable", "ok"])
      expect(yield* at(119_999)).toEqual(["Unavailable", "ok"])
      expect(yield* at("2 minutes")).toEqual(["ok", "ok"])
      expect(yield* at("5 minutes")).toEqual(["Unauthorized", "ok"])
      expect(yield* at("6 minutes")).toEqual(["ok", "ok"])
      // measured from when the mock was built, and failing without waiting for the latency
      const later = yield* makeMock({ default: { latency: 100, outages: [{ from: 0, to: "1 second" }] } })
      const { ms, result } = yield* timed(later.provider.complete(a, request))
      expect([ms, Either.isLeft(result) && result.left.detail]).toEqual([0, "outage"])
    }))

  it.scoped("a rate limit of N calls per minute: the next ones get a 429 with Retry-After until there is room", () =>
    Effect.gen(function*() {
      const mock = yield* makeMock({ endpoints: { a: { rateLimit: { requests: 2, per: "1 minute" } } } })
      const call = (at: number) =>
        Effect.zipRight(TestClock.setTime(at), Effect.either(mock.provider.complete(a, request))).pipe(
          Effect.map(Either.match({
            onLeft: (e) => e._tag === "RateLimited" ? `429 ${Duration.toMillis(e.retryAfter!)}` : e._tag,
            onRight: () => "ok"
          }))
        )
      expect(yield* call(0)).toBe("ok")
      expect(yield* call(10_000)).toBe("ok")
      expect(yield* call(20_000)).toBe("429 40000")
      expect(yield* call(59_999)).toBe("429 1")
      expect(yield* call(60_000)).toBe("ok") // the first left the window
      expect(yield* call(61_000)).toBe("429 9000")
      expect(yield* call(70_000)).toBe("ok")
      // b has no limit
      expect(Either.isRight(yield* Effect.either(mock.provider.complete(b, request)))).toBe(true)
      const error = yield* Effect.flip(mock.provider.complete(a, request))
      expect(error).toBeInstanceOf(Errors.RateLimited)
      expect(error.status).toBe(429)
    }))

  it.scoped("a 429 from the mock cools the endpoint down in the balancer until its Retry-After", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* makeRouter({
        endpoints: [endpoint("a"), endpoint("b")],
        strategy: "round-robin"
      })
      const mockContext = yield* Layer.build(
        MockProvider.layer({ endpoints: { a: { rateLimit: { requests: 1, per: "1 minute" } } } })
      )
      const mock = Context.get(mockContext, MockProvider.MockProvider)
      const complete = Effect.provide(Llm.complete(request), Context.merge(context, mockContext))
      expect((yield* complete).endpoint.name).toBe("a")
      expect((yield* complete).endpoint.name).toBe("b")
      const third = yield* complete
      expect(third.attempts.map((x) => [x.endpoint, x.outcome])).toEqual([["a", "RateLimited"], ["b", "Success"]])
      const stats = (yield* balancer.stats).find((s) => s.name === "a")!
      expect([stats.rateLimited, stats.circuit, stats.consecutiveFailures]).toEqual([1, "closed", 0])
      // the balancer rests it for the Retry-After (60 s), times 1 to 1.5
      const until = stats.cooldownUntil!
      expect(until).toBeGreaterThanOrEqual(60_000)
      expect(until).toBeLessThanOrEqual(90_000)
      for (let i = 0; i < 4; i++) expect((yield* complete).endpoint.name).toBe("b")
      const sentToA = (yield* mock.requests).filter((r) => r.endpoint === "a").length
      expect(sentToA).toBe(2)
      yield* TestClock.setTime(until)
      const served = yield* Effect.replicateEffect(complete, 2)
      expect(served.map((r) => r.endpoint.name).sort()).toEqual(["a", "b"])
    }))

  it.scoped("stalls: a stream that never sends its first token, one that stops mid-way, a complete that hangs", () =>
    Effect.gen(function*() {
      const mock = yield* makeMock({
        default: { timeToFirstToken: 100, tokensPerSecond: 10, answer: "one two three" },
        endpoints: { a: { stall: {} }, b: { stall: { afterTokens: 2 } } }
      })
      const never = yield* watch(mock.provider.stream(a, request))
      expect(never).toEqual({ seen: [["Start", 0]], error: undefined })
      const midway = yield* watch(mock.provider.stream(b, request))
      expect(midway).toEqual({
        seen: [["Start", 3_600_000], ["one ", 3_600_100], ["two ", 3_600_200]],
        error: undefined
      })
      const hung = yield* Effect.fork(mock.provider.complete(a, request))
      yield* TestClock.adjust("1 hour")
      expect(Option.isNone(yield* Fiber.poll(hung))).toBe(true)
      yield* Fiber.interrupt(hung)
    }))

  it.effect("stall and cut rates apply to about that share of calls", () =>
    Effect.gen(function*() {
      const mock = yield* makeMock({
        endpoints: { a: { stall: { rate: 0.25 } }, b: { cut: { afterTokens: 0, rate: 0.5 } } }
      })
      const fibers = yield* Effect.forEach(Array.from({ length: 400 }), () =>
        Effect.fork(mock.provider.complete(a, request)))
      yield* Effect.yieldNow()
      const hanging = (yield* Effect.forEach(fibers, Fiber.poll)).filter(Option.isNone).length
      expect(hanging).toBeGreaterThan(70)
      expect(hanging).toBeLessThan(130)
      yield* Fiber.interruptAll(fibers)
      const cuts = (yield* Effect.forEach(Array.from({ length: 400 }), () =>
        Effect.either(mock.provider.complete(b, request)))).filter(Either.isLeft).length
      expect(cuts).toBeGreaterThan(140)
      expect(cuts).toBeLessThan(200)
    }).pipe(Effect.withRandom(Random.make("rates"))))

  it.scoped("a cut stream fails with MalformedResponse after k tokens, when the next one was due", () =>
    Effect.gen(function*() {
      const mock = yield* makeMock({
        default: { latency: 500, timeToFirstToken: 100, tokensPerSecond: 10, answer: "one two three four" },
        endpoints: { a: { cut: { afterTokens: 2 } } }
      })
      const cutShort = yield* watch(mock.provider.stream(a, request))
      expect(cutShort.seen).toEqual([["Start", 0], ["one ", 100], ["two ", 200]])
      expect(cutShort.error).toBeInstanceOf(Errors.MalformedResponse)
      expect(cutShort.error?.message).toContain("cut after 2 token(s)")
      const { ms, result } = yield* timed(mock.provider.complete(a, request))
      expect(ms).toBe(500)
      expect(Either.isLeft(result) && result.left._tag).toBe("MalformedResponse")
    }))

  it.scoped("scripted outcomes are played in order, before anything else, then the behaviour applies again", () =>
    Effect.gen(function*() {
      const mock = yield* makeMock({
        default: { latency: 10, answer: "usual" },
        endpoints: { a: { outages: [{ from: 0, to: "1 day" }] } },
        script: {
          a: [
            MockProvider.fail("RateLimited"),
            MockProvider.answer("scripted", { latency: 50 }),
            MockProvider.fail(new Errors.BadRequest({ endpoint: "a", detail: "no" }), { after: 30 })
          ]
        }
      })
      yield* mock.script("a", MockProvider.stall(), MockProvider.cut(1))
      const first = yield* timed(mock.provider.complete(a, request))
      expect([first.ms, Either.isLeft(first.result) && first.result.left.status]).toEqual([0, 429])
      const second = yield* timed(mock.provider.complete(a, request))
      expect([second.ms, Either.getOrThrow(second.result).text]).toEqual([50, "scripted"])
      const third = yield* timed(mock.provider.complete(a, request))
      expect([third.ms, Either.isLeft(third.result) && third.result.left.detail]).toEqual([30, "no"])
      const stalled = yield* watch(mock.provider.stream(a, request))
      expect(stalled.seen.map(([part]) => part)).toEqual(["Start"])
      expect(stalled.error).toBe(undefined)
      const cutShort = yield* watch(mock.provider.stream(a, request))
      expect(cutShort.seen.map(([part]) => part)).toEqual(["Start", "usual"])
      expect(cutShort.error?._tag).toBe("MalformedResponse")
      // the queue is empty: a's own behaviour (an outage) applies again
      expect((yield* Effect.flip(mock.provider.complete(a, request)))._tag).toBe("Unavailable")
      expect((yield* timed(mock.provider.complete(b, request))).ms).toBe(10)
    }))

  it.scoped("records every request: endpoint, kind, the request and when", () =>
    Effect.gen(function*() {
      const mock = yield* makeMock({ default: { latency: 100 } })
      const other = Chat.request({ messages: [{ role: "user", content: "second" }], group: "g" })
      yield* timed(mock.provider.complete(a, request))
      yield* Stream.runDrain(mock.provider.stream(b, other)).pipe(timed)
      // a stream is recorded when it runs, not when it is made
      expect(Stream.StreamTypeId in mock.provider.stream(a, request)).toBe(true)
      const sent = yield* mock.requests
      expect(sent.map((r) => [r.endpoint, r.kind, r.at])).toEqual([["a", "complete", 0], ["b", "stream", 3_600_000]])
      expect(sent[0].request).toBe(request)
      expect(sent[1].request.messages[0].content).toBe("second")
      expect(sent[1].request.group).toBe("g")
    }))

  it.scoped("setBehaviour and setDefault change what the next calls do", () =>
    Effect.gen(function*() {
      const mock = yield* makeMock({ default: { latency: 100 } })
      expect((yield* timed(mock.provider.complete(a, request))).ms).toBe(100)
      yield* mock.setBehaviour("a", { failureRate: 1, failWith: "Timeout" })
      const failed = yield* timed(mock.provider.complete(a, request))
      // a's own behaviour is over the default: still 100 ms
      expect([failed.ms, Either.isLeft(failed.result) && failed.result.left._tag]).toEqual([100, "Timeout"])
      yield* mock.setDefault({ latency: 20 })
      expect((yield* timed(mock.provider.complete(b, request))).ms).toBe(20)
      yield* mock.setBehaviour("a", {})
      expect((yield* timed(mock.provider.complete(a, request))).ms).toBe(20)
    }))

  it.effect("bad options fail with InvalidConfig naming every bad field", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(MockProvider.make({
        default: { failureRate: 1.5, latency: MockProvider.uniform(300, 100) },
        endpoints: {
          a: {
            rateLimit: { requests: 0 },
            outages: [{ from: "2 minutes", to: "1 minute", error: "Nope" as never }],
            laytency: 5
          } as MockProvider.Behaviour,
          b: { cut: { afterTokens: -1 }, tokensPerSecond: 0, timeToFirstToken: "soon" as never }
        },
        script: { a: [MockProvider.stall(1.5)] }
      }))
      expect(error._tag).toBe("InvalidConfig")
      expect(error.issues.map((i) => i.path)).toEqual([
        "default.latency",
        "default.failureRate",
        "endpoints.a.laytency",
        "endpoints.a.outages[0].error",
        "endpoints.a.outages[0]",
        "endpoints.a.rateLimit.requests",
        "endpoints.b.timeToFirstToken",
        "endpoints.b.tokensPerSecond",
        "endpoints.b.cut.afterTokens",
        "script.a[0].afterTokens"
      ])
      const mock = yield* makeMock()
      const bad = yield* Effect.flip(mock.setBehaviour("a", { failureRate: -1 }))
      expect(bad.issues).toEqual([{ path: "endpoints.a.failureRate", message: "must be a number from 0 to 1, got -1" }])
    }))

  it.scoped("the layer registers the mock under its names and gives the tag", () =>
    Effect.gen(function*() {
      const built = yield* Layer.build(MockProvider.layer({ name: ["openai", "anthropic"], default: { answer: "hi" } }))
      const registry = Context.get(built, Provider.Providers)
      expect(Array.from(registry.keys())).toEqual(["openai", "anthropic"])
      const mock = Context.get(built, MockProvider.MockProvider)
      expect(registry.get("openai")).toBe(mock.provider)
      const { context } = yield* makeRouter({
        endpoints: [endpoint("gpt", { provider: "openai" }), endpoint("claude", { provider: "anthropic" })],
        strategy: "round-robin"
      })
      const answers = yield* Effect.replicateEffect(Llm.complete(request), 2).pipe(
        Effect.provide(Context.merge(context, built))
      )
      expect(answers.map((r) => `${r.endpoint.name}: ${r.text}`)).toEqual(["gpt: hi", "claude: hi"])
      const sent = yield* MockProvider.requests.pipe(Effect.provide(built))
      expect(sent.map((r) => r.endpoint)).toEqual(["gpt", "claude"])
      const plain = yield* Layer.build(MockProvider.layer())
      expect(Array.from(Context.get(plain, Provider.Providers).keys())).toEqual(["mock"])
    }))
})

// --- docs/testing.md: the test of an app, as the guide shows it ------------------------------

const summarize = (text: string) =>
  Llm.complete(
    { system: "Summarize in one line.", messages: [{ role: "user", content: text }], maxTokens: 60 },
    { timeout: "20 seconds", attemptTimeout: "5 seconds" }
  )

const RoutingLive = Router.layer().pipe(
  Layer.provideMerge(Balancer.layer({
    endpoints: [
      { name: "openai", provider: "openai", model: "gpt-4o-mini" },
      { name: "anthropic", provider: "anthropic", model: "claude-3-5-haiku-latest" }
    ]
  }))
)

const ProvidersTest = MockProvider.layer({
  name: ["openai", "anthropic"],
  default: { latency: MockProvider.uniform("200 millis", "600 millis") },
  endpoints: { openai: { outages: [{ from: "1 minute", to: "3 minutes" }] } }
})

describe("summarize (the testing guide's example)", () => {
  it.scoped("is answered by anthropic while openai is down, and openai gets no more than probes", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("90 seconds") // openai is down from 1 to 3 minutes
      const fibers = yield* Effect.forEach(
        ["one", "two", "three", "four"],
        (text) => Effect.fork(summarize(text))
      )
      yield* TestClock.adjust("1 minute")
      const answers = yield* Fiber.joinAll(fibers)
      expect(answers.map((a) => a.endpoint.name)).toEqual(["anthropic", "anthropic", "anthropic", "anthropic"])

      const sent = yield* MockProvider.requests
      expect(sent.every((r) => r.at >= 90_000 && r.request.system === "Summarize in one line.")).toBe(true)
      expect(sent.filter((r) => r.endpoint === "anthropic")).toHaveLength(4)
      // openai's failures open its circuit: at most 3 calls reach it before it is passed over
      expect(sent.filter((r) => r.endpoint === "openai").length).toBeLessThanOrEqual(3)
    }).pipe(
      Effect.provide(Layer.merge(RoutingLive, ProvidersTest)), // built on the test's TestClock
      Effect.withRandom(Random.make("summarize"))
    ))
})
