/**
 * The Anthropic provider over a real socket: the loopback server of
 * `support/anthropicServer.ts` speaks the Messages API (its format is checked against the
 * official SDK in `anthropicSdk.test.ts`) and injects faults; `FetchHttpClient` talks to it.
 */
import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Context, Duration, Effect, Either, Exit, Layer, Schedule, Stream } from "effect"
import type { Balancer, Endpoint as EndpointModel, Errors as ErrorsModel, Router } from "../src/index.js"
import { Anthropic, Chat, Endpoint, Llm, Provider } from "../src/index.js"
import { makeRouter } from "./helpers.js"
import type { AnthropicServer, Behavior } from "./support/anthropicServer.js"
import * as Server from "./support/anthropicServer.js"

const KEY = "sk-ant-api03-test-key-0123456789"

const input = (server: AnthropicServer | string, name = "claude", extra: Partial<EndpointModel.Input> = {}) => ({
  name,
  provider: "anthropic",
  model: "claude-test",
  baseUrl: typeof server === "string" ? server : server.url,
  apiKey: KEY,
  ...extra
})

const endpointAt = (server: AnthropicServer | string, extra: Partial<EndpointModel.Input> = {}) =>
  Effect.orDie(Endpoint.decode(input(server, "claude", extra)))

const provider = (options?: Anthropic.Options) => Effect.provide(Anthropic.make(options), FetchHttpClient.layer)

const hello = Chat.request({ messages: [{ role: "user", content: "Say hello" }] })

/** A balancer and router over the endpoints, with the Anthropic provider registered. */
const setup = (endpoints: ReadonlyArray<EndpointModel.Input>, routerOptions?: Router.Options) =>
  Effect.gen(function*() {
    const { balancer, context } = yield* makeRouter(
      { endpoints, strategy: "round-robin" },
      { retryBudget: { minPerSecond: 100 }, ...routerOptions }
    )
    const registry = yield* Layer.build(
      Provider.layer({ anthropic: Anthropic.make() }).pipe(Layer.provide(FetchHttpClient.layer))
    )
    return { balancer, context: Context.merge(context, registry) }
  })

const statsOf = (balancer: Balancer.BalancerService, name: string) =>
  Effect.map(balancer.stats, (all) => all.find((s) => s.name === name)!)

/** A count the server keeps, once it is above 0 (or after a second): its events come on their own time. */
const eventually = (count: () => number) =>
  Effect.suspend(() => count() > 0 ? Effect.succeed(count()) : Effect.fail("not yet")).pipe(
    Effect.retry({ schedule: Schedule.spaced("10 millis"), times: 100 }),
    Effect.orElseSucceed(() => 0)
  )

const noKey = (error: unknown) => {
  expect(String(error)).not.toContain(KEY)
  expect((error as Error).message).not.toContain(KEY)
  expect(JSON.stringify(error)).not.toContain(KEY)
}

describe("Anthropic provider: the request", () => {
  it.scopedLive("sends the key, version and body the Messages API expects", () =>
    Effect.gen(function*() {
      const server = yield* Server.make()
      const anthropic = yield* provider({ headers: { "anthropic-beta": "tools-2024-05-16" } })
      const endpoint = yield* endpointAt(server)
      const answer = yield* anthropic.complete(
        endpoint,
        Chat.request({
          system: "Be brief.",
          messages: [
            { role: "system", content: "Answer in English." },
            { role: "user", content: "What is the weather in Paris?" },
            { role: "assistant", content: "Let me look." },
            { role: "tool", content: "{\"temp\": 21}", toolCallId: "toolu_01" },
            { role: "user", content: "And tomorrow?" }
          ],
          temperature: 0.5,
          stop: ["\n\nHuman:"],
          tools: [{ name: "get_weather", input_schema: { type: "object" } }],
          toolChoice: { type: "auto" },
          extra: { top_k: 5, metadata: { user_id: "u-1" } }
        })
      )
      expect(answer.text).toBe("Hello from anthropic")
      const [sent] = server.requests
      expect(sent.method).toBe("POST")
      expect(sent.path).toBe("/v1/messages")
      expect(sent.headers["x-api-key"]).toBe(KEY)
      expect(sent.headers["anthropic-version"]).toBe("2023-06-01")
      expect(sent.headers["anthropic-beta"]).toBe("tools-2024-05-16")
      expect(sent.headers["content-type"]).toContain("application/json")
      expect(sent.body).toEqual({
        model: "claude-test",
        max_tokens: 1024,
        system: "Be brief.\n\nAnswer in English.",
        messages: [
          { role: "user", content: "What is the weather in Paris?" },
          { role: "assistant", content: "Let me look." },
          {
            role: "user",
            content: [
              { type: "tool_result", tool_use_id: "toolu_01", content: "{\"temp\": 21}" },
              { type: "text", text: "And tomorrow?" }
            ]
          }
        ],
        temperature: 0.5,
        stop_sequences: ["\n\nHuman:"],
        tools: [{ name: "get_weather", input_schema: { type: "object" } }],
        tool_choice: { type: "auto" },
        top_k: 5,
        metadata: { user_id: "u-1" }
      })
    }))

  it.scopedLive("maxTokens, defaultMaxTokens, version, and the endpoint's baseUrl over the options'", () =>
    Effect.gen(function*() {
      const server = yield* Server.make()
      const refused = yield* Server.refusedUrl
      const anthropic = yield* provider({ baseUrl: refused, version: "2024-01-01", defaultMaxTokens: 256 })
      const endpoint = yield* endpointAt(`${server.url}/`)
      yield* anthropic.complete(endpoint, hello)
      yield* anthropic.complete(endpoint, Chat.request({ ...hello, maxTokens: 50 }))
      expect(server.requests.map((r) => [r.path, r.headers["anthropic-version"], r.body.max_tokens])).toEqual([
        ["/v1/messages", "2024-01-01", 256],
        ["/v1/messages", "2024-01-01", 50]
      ])
      expect(server.requests[0].body.stream).toBeUndefined()
      const bad = yield* Effect.exit(provider({ defaultMaxTokens: 0 }))
      expect(Exit.isFailure(bad) && Cause.isDie(bad.cause)).toBe(true)
    }))

  it.scopedLive("a tool message without toolCallId is a BadRequest, and nothing is sent", () =>
    Effect.gen(function*() {
      const server = yield* Server.make()
      const anthropic = yield* provider()
      const endpoint = yield* endpointAt(server)
      const error = yield* Effect.flip(
        anthropic.complete(endpoint, Chat.request({ messages: [{ role: "tool", content: "42" }] }))
      )
      expect(error._tag).toBe("BadRequest")
      expect(error.message).toContain("toolCallId")
      expect(server.requests).toHaveLength(0)
    }))
})

describe("Anthropic provider: the answer", () => {
  it.scopedLive("text, finish reason, usage and the rate-limit headers", () =>
    Effect.gen(function*() {
      const server = yield* Server.make({
        rateLimit: {
          requestsLimit: 100,
          requestsRemaining: 10,
          tokensLimit: 40_000,
          tokensRemaining: 30_000,
          resetInMs: 30_000
        }
      })
      const anthropic = yield* provider()
      const endpoint = yield* endpointAt(server)
      const before = Date.now()
      const answer = yield* anthropic.complete(endpoint, hello)
      expect(answer).toMatchObject({
        text: "Hello from anthropic",
        finishReason: "stop",
        usage: { inputTokens: 25, outputTokens: 15 },
        toolCalls: undefined
      })
      expect(answer.rateLimit?.requests).toMatchObject({ remaining: 10, limit: 100 })
      expect(answer.rateLimit?.tokens).toMatchObject({ remaining: 30_000, limit: 40_000 })
      expect(answer.rateLimit!.requests!.resetAt).toBeGreaterThan(before + 25_000)
      expect(answer.rateLimit!.requests!.resetAt).toBeLessThan(Date.now() + 31_000)
    }))

  it.scopedLive("tool_use blocks are the tool calls; stop reasons map to finish reasons", () =>
    Effect.gen(function*() {
      const server = yield* Server.make()
      const anthropic = yield* provider()
      const tools = yield* anthropic.complete(yield* endpointAt(server, { model: "fault:tool-use" }), hello)
      expect(tools.finishReason).toBe("tool-calls")
      expect(tools.text).toBe("Hello from anthropic")
      expect(tools.toolCalls).toEqual([
        { type: "tool_use", id: "toolu_01", name: "get_weather", input: { city: "Paris" } }
      ])
      const long = yield* anthropic.complete(yield* endpointAt(server, { model: "fault:max-tokens" }), hello)
      expect(long.finishReason).toBe("length")
      expect(
        [
          "end_turn",
          "stop_sequence",
          "max_tokens",
          "model_context_window_exceeded",
          "tool_use",
          "refusal",
          "pause_turn"
        ]
          .map(Anthropic.finishReason)
      ).toEqual(["stop", "stop", "length", "length", "tool-calls", "content-filter", "other"])
      expect(Anthropic.finishReason(null)).toBe("other")
    }))
})

type Expected = {
  readonly tag: ErrorsModel.ProviderError["_tag"]
  readonly status?: number | undefined
  readonly check?: (error: ErrorsModel.ProviderError) => void
}

const mappings: ReadonlyArray<[Behavior, Expected]> = [
  ["rate-limit-retry-after", {
    tag: "RateLimited",
    status: 429,
    check: (e) => expect(Duration.toMillis((e as ErrorsModel.RateLimited).retryAfter!)).toBe(2_000)
  }],
  ["rate-limit-reset", {
    tag: "RateLimited",
    status: 429,
    check: (e) => {
      const ms = Duration.toMillis((e as ErrorsModel.RateLimited).retryAfter!)
      expect(ms).toBeGreaterThan(1_000)
      expect(ms).toBeLessThanOrEqual(1_500)
    }
  }],
  ["spend-limit", {
    tag: "Unauthorized",
    status: 429,
    check: (e) => expect(e.detail).toContain("enforced_spend_limit_reached")
  }],
  ["server-error", { tag: "Unavailable", status: 500 }],
  ["overloaded", { tag: "Unavailable", status: 529, check: (e) => expect(e.detail).toContain("overloaded_error") }],
  ["prompt-too-long", {
    tag: "ContextLengthExceeded",
    status: 400,
    check: (e) => expect(e.detail).toContain("prompt is too long")
  }],
  ["context-limit", { tag: "ContextLengthExceeded", status: 400 }],
  ["request-too-large", { tag: "ContextLengthExceeded", status: 413 }],
  ["unauthorized", {
    tag: "Unauthorized",
    status: 401,
    check: (e) => expect(e.detail).toContain("authentication_error")
  }],
  ["forbidden", { tag: "Unauthorized", status: 403 }],
  ["billing", { tag: "Unauthorized", status: 402 }],
  ["echo-key", { tag: "BadRequest", status: 400, check: (e) => expect(e.detail).toContain("<redacted>") }],
  ["reset", { tag: "Unavailable", status: undefined }],
  ["reset-mid-body", { tag: "MalformedResponse" }],
  ["stream-cut", {
    tag: "MalformedResponse",
    status: 200,
    check: (e) => expect(e.detail).toContain("could not be read")
  }],
  ["invalid-json", { tag: "MalformedResponse", status: 200 }],
  ["wrong-shape", { tag: "MalformedResponse", status: 200, check: (e) => expect(e.detail).toContain("content") }]
]

describe("Anthropic provider: errors", () => {
  it.scopedLive("every fault maps to its ProviderError, naming the endpoint, never the key", () =>
    Effect.gen(function*() {
      const server = yield* Server.make()
      const anthropic = yield* provider()
      for (const [behavior, expected] of mappings) {
        const endpoint = yield* endpointAt(server, { model: `fault:${behavior}` })
        const error = yield* Effect.flip(anthropic.complete(endpoint, hello))
        expect([behavior, error._tag]).toEqual([behavior, expected.tag])
        expect(error.endpoint).toBe("claude")
        if ("status" in expected) expect([behavior, error.status]).toEqual([behavior, expected.status])
        expected.check?.(error)
        noKey(error)
      }
    }))

  it.scopedLive("a refused connection is Unavailable; a missing key is Unauthorized", () =>
    Effect.gen(function*() {
      const server = yield* Server.make()
      const anthropic = yield* provider()
      const refused = yield* Effect.flip(anthropic.complete(yield* endpointAt(yield* Server.refusedUrl), hello))
      expect(refused._tag).toBe("Unavailable")
      expect(refused.detail).toContain("connection failed")
      const keyless = yield* Effect.orDie(
        Endpoint.decode({ name: "keyless", provider: "anthropic", model: "claude-test", baseUrl: server.url })
      )
      const missing = yield* Effect.flip(anthropic.complete(keyless, hello))
      expect([missing._tag, missing.status]).toEqual(["Unauthorized", 401])
      expect(server.requests[0].headers["x-api-key"]).toBeUndefined()
    }))

  it.scopedLive("interrupting a call aborts its HTTP request", () =>
    Effect.gen(function*() {
      const server = yield* Server.make({ behavior: "stall" })
      const anthropic = yield* provider()
      const endpoint = yield* endpointAt(server)
      const result = yield* Effect.timeout(anthropic.complete(endpoint, hello), "100 millis").pipe(Effect.either)
      expect(Either.isLeft(result) && result.left._tag).toBe("TimeoutException")
      expect(yield* eventually(() => server.aborted())).toBe(1)
    }))
})

describe("Anthropic provider: streams", () => {
  const collect = (stream: Stream.Stream<Chat.StreamPart, ErrorsModel.ProviderError>) => {
    const parts: Array<Chat.StreamPart> = []
    return Effect.map(
      Effect.either(Stream.runForEach(stream, (part) => Effect.sync(() => parts.push(part)))),
      (result) => ({ parts, error: Either.isLeft(result) ? result.left : undefined })
    )
  }
  const shape = (parts: ReadonlyArray<Chat.StreamPart>) => parts.map((p) => p._tag === "Delta" ? p.text : p._tag)

  it.scopedLive("Start with the limits, a Delta per text_delta, Finish with usage at message_stop", () =>
    Effect.gen(function*() {
      const server = yield* Server.make()
      const anthropic = yield* provider()
      const { error, parts } = yield* collect(anthropic.stream(yield* endpointAt(server), hello))
      expect(error).toBeUndefined()
      expect(shape(parts)).toEqual(["Start", "Hello", " from", " anthropic", "Finish"])
      const start = parts[0] as Extract<Chat.StreamPart, { _tag: "Start" }>
      expect(start.rateLimit?.requests).toMatchObject({ remaining: 49, limit: 50 })
      expect(parts[4]).toEqual(
        Chat.StreamPart.Finish({ finishReason: "stop", usage: { inputTokens: 25, outputTokens: 15 } })
      )
      const [sent] = server.requests
      expect(sent.stream).toBe(true)
      expect(sent.headers.accept).toBe("text/event-stream")
      expect(sent.body.max_tokens).toBe(1024)
    }))

  it.scopedLive("tool_use blocks are read past; the finish says tool-calls", () =>
    Effect.gen(function*() {
      const server = yield* Server.make()
      const anthropic = yield* provider()
      const { error, parts } = yield* collect(
        anthropic.stream(yield* endpointAt(server, { model: "fault:tool-use" }), hello)
      )
      expect(error).toBeUndefined()
      expect(shape(parts)).toEqual(["Start", "Hello", " from", " anthropic", "Finish"])
      expect((parts[4] as Extract<Chat.StreamPart, { _tag: "Finish" }>).finishReason).toBe("tool-calls")
    }))

  it.scopedLive("a cut stream, a reset, bad data and an error event fail after the first token; HTTP errors before", () =>
    Effect.gen(function*() {
      const server = yield* Server.make()
      const anthropic = yield* provider()
      const run = (behavior: Behavior) =>
        Effect.flatMap(endpointAt(server, { model: `fault:${behavior}` }), (e) => collect(anthropic.stream(e, hello)))

      const cut = yield* run("stream-cut")
      expect(shape(cut.parts)).toEqual(["Start", "Hello"])
      expect(cut.error?._tag).toBe("MalformedResponse")
      expect(cut.error?.detail).toContain("message_stop")

      const reset = yield* run("reset-mid-body")
      expect(shape(reset.parts)).toEqual(["Start", "Hello"])
      expect(reset.error?._tag).toBe("MalformedResponse")

      const garbage = yield* run("stream-garbage")
      expect(shape(garbage.parts)).toEqual(["Start", "Hello"])
      expect(garbage.error?._tag).toBe("MalformedResponse")
      expect(garbage.error?.detail).toContain("content_block_delta")

      const event = yield* run("stream-error")
      expect(shape(event.parts)).toEqual(["Start", "Hello"])
      expect([event.error?._tag, event.error?.status]).toEqual(["Unavailable", 529])
      expect(event.error?.detail).toContain("overloaded_error")

      for (
        const [behavior, tag] of [
          ["prompt-too-long", "ContextLengthExceeded"],
          ["rate-limit-retry-after", "RateLimited"],
          ["overloaded", "Unavailable"],
          ["unauthorized", "Unauthorized"],
          ["reset", "Unavailable"]
        ] as const
      ) {
        const failed = yield* run(behavior)
        expect([behavior, shape(failed.parts), failed.error?._tag]).toEqual([behavior, [], tag])
        noKey(failed.error)
      }
    }))
})

describe("Anthropic through Llm, Router and Balancer", () => {
  it.scopedLive("usage and the rate-limit headers reach the balancer's stats; the system prompt is `system`", () =>
    Effect.gen(function*() {
      const server = yield* Server.make({
        rateLimit: {
          requestsLimit: 100,
          requestsRemaining: 10,
          tokensLimit: 1_000,
          tokensRemaining: 800,
          resetInMs: 30_000
        }
      })
      const { balancer, context } = yield* setup([input(server)])
      const answer = yield* Effect.provide(
        Llm.complete({ system: "You are terse.", messages: [{ role: "user", content: "Hi" }], maxTokens: 64 }),
        context
      )
      expect(answer.text).toBe("Hello from anthropic")
      expect(answer.endpoint.name).toBe("claude")
      const stats = yield* statsOf(balancer, "claude")
      expect([stats.inputTokens, stats.outputTokens]).toEqual([25, 15])
      // the provider said 10 of 100 requests are left: the tightest share
      expect(stats.headroom).toBe(0.1)
      const [sent] = server.requests
      expect(sent.body.system).toBe("You are terse.")
      expect(sent.body.messages).toEqual([{ role: "user", content: "Hi" }])
      expect(sent.body.max_tokens).toBe(64)
      expect(sent.headers["x-api-key"]).toBe(KEY)
    }))

  it.scopedLive("an endpoint whose provider says no requests are left is passed over until its reset", () =>
    Effect.gen(function*() {
      const empty = yield* Server.make({
        name: "empty",
        rateLimit: {
          requestsLimit: 50,
          requestsRemaining: 0,
          tokensLimit: 1_000,
          tokensRemaining: 800,
          resetInMs: 30_000
        }
      })
      const other = yield* Server.make({ name: "other" })
      const { context } = yield* setup([input(empty, "empty"), input(other, "other")])
      const names = yield* Effect.forEach(
        [1, 2, 3],
        () => Effect.map(Effect.provide(Llm.complete(hello), context), (a) => a.endpoint.name)
      )
      expect(names).toEqual(["empty", "other", "other"])
    }))

  it.scopedLive("a 529 fails over to the good server and counts against the overloaded one", () =>
    Effect.gen(function*() {
      const overloaded = yield* Server.make({ name: "overloaded", behavior: "overloaded" })
      const good = yield* Server.make({ name: "good" })
      const { balancer, context } = yield* setup([input(overloaded, "overloaded"), input(good, "good")])
      const answer = yield* Effect.provide(Llm.complete(hello), context)
      expect(answer.text).toBe("Hello from good")
      expect(answer.attempts.map((a) => [a.endpoint, a.outcome])).toEqual([
        ["overloaded", "Unavailable"],
        ["good", "Success"]
      ])
      const bad = yield* statsOf(balancer, "overloaded")
      expect([bad.failures, bad.successes]).toEqual([1, 0])
      expect(overloaded.requests).toHaveLength(1)
    }))

  it.scopedLive("a 429 cools the endpoint down for its retry-after and the call fails over", () =>
    Effect.gen(function*() {
      const limited = yield* Server.make({ name: "limited", behavior: "rate-limit-retry-after", retryAfterSeconds: 5 })
      const good = yield* Server.make({ name: "good" })
      const { balancer, context } = yield* setup([input(limited, "limited"), input(good, "good")])
      const before = Date.now()
      const answer = yield* Effect.provide(Llm.complete(hello), context)
      expect(answer.attempts.map((a) => a.outcome)).toEqual(["RateLimited", "Success"])
      const stats = yield* statsOf(balancer, "limited")
      expect(stats.rateLimited).toBe(1)
      // 5 s, times 1 to 1.5
      expect(stats.cooldownUntil).toBeGreaterThanOrEqual(before + 5_000)
      expect(stats.cooldownUntil).toBeLessThanOrEqual(Date.now() + 7_500)
    }))

  it.scopedLive("a prompt too long moves to an endpoint with a larger context window", () =>
    Effect.gen(function*() {
      const small = yield* Server.make({ name: "small", behavior: "prompt-too-long" })
      const large = yield* Server.make({ name: "large" })
      const { context } = yield* setup([
        input(small, "small", { contextWindow: 8_000 }),
        input(large, "large", { contextWindow: 200_000 })
      ])
      const answer = yield* Effect.provide(Llm.complete(hello), context)
      expect(answer.text).toBe("Hello from large")
      expect(answer.attempts.map((a) => [a.endpoint, a.outcome])).toEqual([
        ["small", "ContextLengthExceeded"],
        ["large", "Success"]
      ])
    }))

  it.scopedLive("a refused key holds the endpoint out and never shows up in the error", () =>
    Effect.gen(function*() {
      const refusing = yield* Server.make({ name: "refusing", apiKey: "sk-ant-another-key" })
      const { balancer, context } = yield* setup([input(refusing, "refusing")])
      const error = yield* Effect.flip(Effect.provide(Llm.complete(hello), context))
      expect(error._tag).toBe("RoutingFailed")
      if (error._tag !== "RoutingFailed") return
      expect(error.lastError?._tag).toBe("Unauthorized")
      expect(error.message).toContain("invalid x-api-key")
      noKey(error)
      const again = yield* Effect.flip(Effect.provide(Llm.complete(hello), context))
      expect(again._tag === "RoutingFailed" && again.reason).toBe("no-endpoint")
      expect(refusing.requests).toHaveLength(1)
      const stats = yield* statsOf(balancer, "refusing")
      expect(stats.status).toBe("unhealthy")
    }))

  it.scopedLive("streams through Llm.stream: Started, deltas, Finish; usage and limits reach the stats", () =>
    Effect.gen(function*() {
      const server = yield* Server.make({
        rateLimit: {
          requestsLimit: 100,
          requestsRemaining: 20,
          tokensLimit: 10_000,
          tokensRemaining: 9_000,
          resetInMs: 30_000
        }
      })
      const { balancer, context } = yield* setup([input(server)])
      const events = Chunk.toReadonlyArray(
        yield* Stream.runCollect(Stream.provideContext(Llm.stream(hello), context))
      )
      expect(events.map((e) => e._tag === "Delta" ? e.text : e._tag)).toEqual([
        "Started",
        "Hello",
        " from",
        " anthropic",
        "Finish"
      ])
      expect(events[4]).toEqual(
        Chat.StreamEvent.Finish({ finishReason: "stop", usage: { inputTokens: 25, outputTokens: 15 } })
      )
      const stats = yield* statsOf(balancer, "claude")
      expect([stats.successes, stats.outputTokens, stats.headroom]).toEqual([1, 15, 0.2])
      expect(stats.avgTimeToFirstTokenMs).toBeGreaterThan(0)
    }))

  it.scopedLive("a stream cut after its first token ends with MalformedResponse and counts against the endpoint", () =>
    Effect.gen(function*() {
      const cut = yield* Server.make({ name: "cut", behavior: "stream-cut" })
      const good = yield* Server.make({ name: "good" })
      const { balancer, context } = yield* setup([input(cut, "cut"), input(good, "good")])
      const seen: Array<string> = []
      const error = yield* Effect.flip(
        Stream.runForEach(
          Stream.provideContext(Llm.stream(hello), context),
          (e) => Effect.sync(() => seen.push(e._tag === "Delta" ? e.text : e._tag))
        )
      )
      expect(seen).toEqual(["Started", "Hello"])
      expect(error._tag).toBe("MalformedResponse")
      expect(good.requests).toHaveLength(0)
      const stats = yield* statsOf(balancer, "cut")
      expect([stats.active, stats.failures, stats.successes]).toEqual([0, 1, 0])
    }))

  it.scopedLive("a stall before the first byte is cut by attemptTimeout and fails over", () =>
    Effect.gen(function*() {
      const stalled = yield* Server.make({ name: "stalled", behavior: "stall" })
      const good = yield* Server.make({ name: "good" })
      const { balancer, context } = yield* setup([input(stalled, "stalled"), input(good, "good")])
      const policy = { attemptTimeout: "200 millis" as const }
      const started = Date.now()
      const events = Chunk.toReadonlyArray(
        yield* Stream.runCollect(Stream.provideContext(Llm.stream(hello, policy), context))
      )
      const elapsed = Date.now() - started
      const first = events[0] as Extract<Chat.StreamEvent, { _tag: "Started" }>
      expect(first.endpoint.name).toBe("good")
      expect(first.attempts.map((a) => [a.endpoint, a.outcome])).toEqual([["stalled", "Timeout"], ["good", "Success"]])
      expect(events.at(-1)?._tag).toBe("Finish")
      expect(elapsed).toBeGreaterThanOrEqual(190)
      expect(elapsed).toBeLessThan(2_000)
      // the stalled request was abandoned: its connection closed
      expect(yield* eventually(() => stalled.aborted())).toBe(1)
      const stats = yield* statsOf(balancer, "stalled")
      expect([stats.failures, stats.active]).toEqual([1, 0])

      // and the same for a whole answer
      stalled.script("stall")
      const answer = yield* Effect.provide(Llm.complete(hello, policy), context)
      expect(answer.attempts.map((a) => a.outcome)).toEqual(["Timeout", "Success"])
    }))
})
