/**
 * OpenAiCompatible over a real socket: the loopback server (test/support/openAiServer.ts)
 * answers, fails and stalls the way OpenAI-style servers do; every answer and every
 * failure is read into a `Chat` value or a `ProviderError`, and through `Llm.complete` /
 * `Llm.stream` reaches the balancer (usage, rate-limit headroom, failures) and the router
 * (failover, attempt timeouts). Real time, real sockets: waits are kept to a few hundred ms.
 */
import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Context, Duration, Effect, Exit, Layer, Option, Stream } from "effect"
import type { Balancer, Chat as ChatModel, Errors } from "../src/index.js"
import { Chat, Endpoint, Llm, OpenAiCompatible, Provider } from "../src/index.js"
import { endpoint as endpointInput, makeRouter } from "./helpers.js"
import * as OpenAiServer from "./support/openAiServer.js"

const KEY = "sk-test-secret-4242"

const endpointAt = (server: { readonly url: string } | string, extra: Partial<Endpoint.Input> = {}) =>
  Effect.orDie(Endpoint.decode({
    name: "openai-1",
    provider: "openai",
    model: "gpt-4o-mini",
    baseUrl: typeof server === "string" ? server : server.url,
    apiKey: KEY,
    ...extra
  }))

const request = Chat.request({
  system: "You are terse.",
  messages: [{ role: "user", content: "Say hello" }],
  maxTokens: 20
})

const provider = (options?: OpenAiCompatible.Options) =>
  OpenAiCompatible.make(options).pipe(Effect.provide(FetchHttpClient.layer))

/** The provider's answer (or error) for one call to a server that behaves as told. */
const completeWith = (behaviour: OpenAiServer.Behaviour) =>
  Effect.gen(function*() {
    const server = yield* OpenAiServer.make()
    server.enqueue(behaviour)
    const p = yield* provider()
    return yield* p.complete(yield* endpointAt(server), request)
  })

const streamWith = (behaviour: OpenAiServer.Behaviour) =>
  Effect.gen(function*() {
    const server = yield* OpenAiServer.make()
    server.enqueue(behaviour)
    const p = yield* provider()
    const parts: Array<ChatModel.StreamPart> = []
    const exit = yield* Effect.exit(
      Stream.runForEach(p.stream(yield* endpointAt(server), request), (part) => Effect.sync(() => parts.push(part)))
    )
    return { parts, exit, server }
  })

const ms = (d: Duration.Duration | undefined) => d === undefined ? undefined : Duration.toMillis(d)

/** A balancer and router over endpoints served by OpenAiCompatible, with the providers in context. */
const setup = (endpoints: ReadonlyArray<Endpoint.Input>) =>
  Effect.gen(function*() {
    const { balancer, context } = yield* makeRouter({ endpoints, strategy: "round-robin" })
    const providers = yield* Layer.build(
      Provider.layer({ openai: OpenAiCompatible.make() }).pipe(Layer.provide(FetchHttpClient.layer))
    )
    return { balancer, context: Context.merge(context, providers) }
  })

const statsOf = (balancer: Balancer.BalancerService, name: string) =>
  Effect.map(balancer.stats, (all) => all.find((s) => s.name === name)!)

describe("OpenAiCompatible: requests", () => {
  it.scopedLive("sends the key, the model, the system prompt first, the options and extra; reads the answer", () =>
    Effect.gen(function*() {
      const server = yield* OpenAiServer.make()
      server.enqueue(OpenAiServer.reply({
        text: "Hello!",
        usage: { prompt_tokens: 12, completion_tokens: 3 },
        headers: OpenAiServer.rateLimitHeaders
      }))
      const p = yield* provider()
      const tools = [{ type: "function", function: { name: "weather", parameters: { type: "object" } } }]
      const answer = yield* p.complete(
        yield* endpointAt(server),
        Chat.request({
          system: "You are terse.",
          messages: [
            { role: "system", content: "Answer in English." },
            { role: "user", content: "Say hello", name: "ann" },
            { role: "tool", content: "{\"t\":20}", toolCallId: "call_1" }
          ],
          maxTokens: 20,
          temperature: 0.5,
          stop: ["END"],
          tools,
          toolChoice: "auto",
          extra: { seed: 7, top_p: 0.9, model: "not-this-one", stream: true }
        })
      )
      expect(answer.text).toBe("Hello!")
      expect(answer.finishReason).toBe("stop")
      expect(answer.usage).toEqual({ inputTokens: 12, outputTokens: 3 })
      expect(answer.toolCalls).toBeUndefined()
      expect(answer.rateLimit?.requests).toMatchObject({ remaining: 40, limit: 100 })
      expect(answer.rateLimit?.tokens).toMatchObject({ remaining: 9000, limit: 10000 })

      const [sent] = server.requests
      expect(sent.method).toBe("POST")
      expect(sent.path).toBe("/v1/chat/completions")
      expect(sent.headers.authorization).toBe(`Bearer ${KEY}`)
      expect(sent.headers["content-type"]).toContain("application/json")
      expect(sent.body).toEqual({
        model: "gpt-4o-mini",
        messages: [
          { role: "system", content: "You are terse.\n\nAnswer in English." },
          { role: "user", content: "Say hello", name: "ann" },
          { role: "tool", content: "{\"t\":20}", tool_call_id: "call_1" }
        ],
        max_tokens: 20,
        temperature: 0.5,
        stop: ["END"],
        tools,
        tool_choice: "auto",
        seed: 7,
        top_p: 0.9
      })
    }))

  it.scopedLive("the endpoint's baseUrl wins; options set the default URL, path, headers, auth and max tokens field", () =>
    Effect.gen(function*() {
      const server = yield* OpenAiServer.make()
      const other = yield* OpenAiServer.make()
      const azure = yield* provider({
        baseUrl: `${other.url}/nowhere`,
        path: "/chat/completions?api-version=2024-10-21",
        headers: { "x-gateway": "on" },
        auth: "api-key",
        maxTokensField: "max_completion_tokens"
      })
      yield* azure.complete(yield* endpointAt(server), request)
      expect(other.requests).toHaveLength(0)
      const [sent] = server.requests
      expect(sent.path).toBe("/v1/chat/completions?api-version=2024-10-21")
      expect(sent.headers["api-key"]).toBe(KEY)
      expect(sent.headers.authorization).toBeUndefined()
      expect(sent.headers["x-gateway"]).toBe("on")
      expect(sent.body.max_completion_tokens).toBe(20)
      expect(sent.body.max_tokens).toBeUndefined()

      // no baseUrl on the endpoint: the option's; no key: no auth header (a local vLLM, Ollama)
      const local = yield* provider({ baseUrl: other.url })
      const keyless = yield* Effect.orDie(Endpoint.decode({ name: "local", provider: "openai", model: "llama3" }))
      yield* local.complete(keyless, request)
      expect(other.requests).toHaveLength(1)
      expect(other.requests[0].headers.authorization).toBeUndefined()
      expect(other.requests[0].body.model).toBe("llama3")
    }))

  it.scopedLive("finish reasons and tool calls", () =>
    Effect.gen(function*() {
      const call = { id: "call_1", type: "function", function: { name: "weather", arguments: "{}" } }
      const tool = yield* completeWith(OpenAiServer.reply({ toolCalls: [call] }))
      expect([tool.text, tool.finishReason, tool.toolCalls]).toEqual(["", "tool-calls", [call]])
      const cut = yield* completeWith(OpenAiServer.reply({ text: "Once upon", finishReason: "length" }))
      expect(cut.finishReason).toBe("length")
      const partly = yield* completeWith(OpenAiServer.reply({ text: "Some of it", finishReason: "content_filter" }))
      expect([partly.text, partly.finishReason]).toEqual(["Some of it", "content-filter"])
      const filtered = yield* Effect.flip(
        completeWith(OpenAiServer.reply({ text: "", finishReason: "content_filter" }))
      )
      expect(filtered._tag).toBe("ContentFiltered")
    }))
})

interface Case {
  readonly name: string
  readonly behaviour: () => OpenAiServer.Behaviour
  readonly tag: Errors.ProviderError["_tag"]
  readonly status?: number | undefined
  readonly retryAfterMs?: readonly [number, number]
  readonly detail?: string
}

const cases: ReadonlyArray<Case> = [
  {
    name: "429 retry-after seconds",
    behaviour: () => OpenAiServer.rateLimited({ "retry-after": "2" }),
    tag: "RateLimited",
    status: 429,
    retryAfterMs: [2000, 2000]
  },
  {
    name: "429 retry-after HTTP date",
    behaviour: () => OpenAiServer.rateLimited({ "retry-after": new Date(Date.now() + 3_000).toUTCString() }),
    tag: "RateLimited",
    status: 429,
    retryAfterMs: [1000, 3000]
  },
  {
    name: "429 retry-after-ms",
    behaviour: () => OpenAiServer.rateLimited({ "retry-after-ms": "1500", "retry-after": "9" }),
    tag: "RateLimited",
    status: 429,
    retryAfterMs: [1500, 1500]
  },
  {
    name: "429 x-ratelimit-reset-requests",
    behaviour: () =>
      OpenAiServer.rateLimited({
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-tokens": "500",
        "x-ratelimit-reset-tokens": "6m0s"
      }),
    tag: "RateLimited",
    status: 429,
    retryAfterMs: [1000, 1000]
  },
  {
    name: "429 insufficient_quota (a key out of credit: held, another key may serve)",
    behaviour: () =>
      OpenAiServer.error(429, {
        body: OpenAiServer.errorBody({
          message: "You exceeded your current quota, please check your plan and billing details.",
          type: "insufficient_quota",
          code: "insufficient_quota"
        })
      }),
    tag: "Unauthorized",
    status: 429
  },
  { name: "500", behaviour: () => OpenAiServer.error(500), tag: "Unavailable", status: 500 },
  {
    name: "502 with an HTML page",
    behaviour: () => OpenAiServer.error(502, { raw: "<html><body>502 Bad Gateway</body></html>" }),
    tag: "Unavailable",
    status: 502,
    detail: "502 Bad Gateway"
  },
  { name: "503", behaviour: () => OpenAiServer.error(503), tag: "Unavailable", status: 503, detail: "overloaded" },
  { name: "408", behaviour: () => OpenAiServer.error(408), tag: "Timeout", status: 408 },
  { name: "connection reset before the answer", behaviour: OpenAiServer.resetBeforeHeaders, tag: "Unavailable" },
  { name: "connection reset mid-body", behaviour: OpenAiServer.resetMidBody, tag: "MalformedResponse", status: 200 },
  {
    name: "invalid JSON",
    behaviour: OpenAiServer.invalidJson,
    tag: "MalformedResponse",
    status: 200,
    detail: "not JSON"
  },
  {
    name: "JSON of the wrong shape",
    behaviour: OpenAiServer.wrongShape,
    tag: "MalformedResponse",
    status: 200,
    detail: "choices"
  },
  {
    name: "400 context_length_exceeded",
    behaviour: OpenAiServer.contextLengthExceeded,
    tag: "ContextLengthExceeded",
    status: 400,
    detail: "context_length_exceeded: This model's maximum context length"
  },
  {
    name: "400 from vLLM: the context length in the message, the status as the code",
    behaviour: () =>
      OpenAiServer.error(400, {
        body: {
          error: {
            message:
              "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (1000 in the messages, 4000 in the completion).",
            type: "BadRequestError",
            param: null,
            code: 400
          }
        }
      }),
    tag: "ContextLengthExceeded",
    status: 400
  },
  { name: "400 content_filter (Azure)", behaviour: OpenAiServer.contentFiltered, tag: "ContentFiltered", status: 400 },
  { name: "400 otherwise", behaviour: () => OpenAiServer.error(400), tag: "BadRequest", status: 400 },
  { name: "401", behaviour: () => OpenAiServer.unauthorized(), tag: "Unauthorized", status: 401 },
  { name: "403", behaviour: () => OpenAiServer.error(403), tag: "Unauthorized", status: 403 }
]

const expectCase = (error: Errors.ProviderError, c: Case) => {
  expect(error._tag).toBe(c.tag)
  expect(error.endpoint).toBe("openai-1")
  expect(error.status).toBe(c.status)
  if (c.retryAfterMs !== undefined) {
    const wait = ms((error as Errors.RateLimited).retryAfter)!
    expect(wait).toBeGreaterThanOrEqual(c.retryAfterMs[0])
    expect(wait).toBeLessThanOrEqual(c.retryAfterMs[1])
  }
  if (c.detail !== undefined) expect(error.detail).toContain(c.detail)
  expect(error.message).not.toContain(KEY)
}

describe("OpenAiCompatible: errors of a complete call", () => {
  for (const c of cases) {
    it.scopedLive(`${c.name} -> ${c.tag}`, () =>
      Effect.gen(function*() {
        expectCase(yield* Effect.flip(completeWith(c.behaviour())), c)
      }))
  }

  it.scopedLive("a refused connection -> Unavailable", () =>
    Effect.gen(function*() {
      // a port that was just free: nothing listens on it
      const server = yield* Effect.scoped(OpenAiServer.make())
      const p = yield* provider()
      const error = yield* Effect.flip(p.complete(yield* endpointAt(server), request))
      expect(error._tag).toBe("Unavailable")
      expect(error.detail).toContain("connection failed")
    }))

  it.scopedLive("the key is never in an error, even when the server echoes it", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        completeWith(OpenAiServer.unauthorized(`Incorrect API key provided: ${KEY}. Check it.`))
      )
      expect(error._tag).toBe("Unauthorized")
      expect(error.detail).toContain("Incorrect API key provided: <redacted>")
      expect(error.message).not.toContain(KEY)
      expect(JSON.stringify(error)).not.toContain(KEY)
      expect(String(error)).not.toContain(KEY)
    }))

  it.scopedLive("an error body with a 200 is read as an error", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(completeWith(OpenAiServer.custom("200 error", (_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify({ error: { message: "overloaded", type: "server_error", code: null } }))
      })))
      expect(error._tag).toBe("Unavailable")
    }))
})

/** The error a stream failed with (it must have failed with one). */
const failureOf = (exit: Exit.Exit<void, Errors.ProviderError>): Errors.ProviderError =>
  Exit.isFailure(exit) ? Option.getOrThrow(Cause.failureOption(exit.cause)) : expect.unreachable("it succeeded")

describe("OpenAiCompatible: streams", () => {
  it.scopedLive("Start with the rate limits, a Delta per content chunk, one Finish with the usage at [DONE]", () =>
    Effect.gen(function*() {
      const { exit, parts, server } = yield* streamWith(OpenAiServer.reply({
        chunks: ["Hel", "lo", " there"],
        usage: { prompt_tokens: 9, completion_tokens: 3 },
        headers: OpenAiServer.rateLimitHeaders
      }))
      expect(exit._tag).toBe("Success")
      expect(parts.map((p) => p._tag)).toEqual(["Start", "Delta", "Delta", "Delta", "Finish"])
      const start = parts[0] as Extract<ChatModel.StreamPart, { _tag: "Start" }>
      expect(start.rateLimit?.requests).toMatchObject({ remaining: 40, limit: 100 })
      expect(parts.slice(1, 4).map((p) => (p as { text: string }).text).join("")).toBe("Hello there")
      expect(parts[4]).toEqual(
        Chat.StreamPart.Finish({ finishReason: "stop", usage: { inputTokens: 9, outputTokens: 3 } })
      )
      const [sent] = server.requests
      expect(sent.headers.accept).toBe("text/event-stream")
      expect(sent.body).toMatchObject({ stream: true, stream_options: { include_usage: true }, max_tokens: 20 })
    }))

  it.scopedLive("a stream cut before [DONE] fails with MalformedResponse: ended cleanly, or reset", () =>
    Effect.gen(function*() {
      for (const reset of [false, true]) {
        const { exit, parts } = yield* streamWith(OpenAiServer.cutStream({ after: 2, reset }))
        expect(parts.map((p) => p._tag)).toEqual(["Start", "Delta", "Delta"])
        const error = failureOf(exit)
        expect(error._tag).toBe("MalformedResponse")
        expect(error.detail).toContain("[DONE]")
      }
    }))

  it.scopedLive("an error object inside the stream maps like the HTTP error", () =>
    Effect.gen(function*() {
      const table: ReadonlyArray<[Record<string, unknown>, Errors.ProviderError["_tag"]]> = [
        [{ message: "The server had an error", type: "server_error", code: null }, "Unavailable"],
        [
          { message: "too long", type: "invalid_request_error", code: "context_length_exceeded" },
          "ContextLengthExceeded"
        ],
        [{ message: "Rate limit reached", type: "requests", code: "rate_limit_exceeded" }, "RateLimited"],
        [{ message: "filtered", type: null, code: "content_filter", status: 400 }, "ContentFiltered"],
        [{ message: "upstream failed", type: "InternalServerError", code: 503 }, "Unavailable"],
        [{ message: "who knows" }, "UnknownProviderError"]
      ]
      for (const [errorObject, tag] of table) {
        const { exit, parts } = yield* streamWith(OpenAiServer.streamError(errorObject, { after: 1 }))
        expect(parts.map((p) => p._tag)).toEqual(["Start", "Delta"])
        expect(failureOf(exit)._tag).toBe(tag)
      }
    }))

  it.scopedLive("errors before the stream, invalid events and a filtered answer", () =>
    Effect.gen(function*() {
      const limited = yield* streamWith(OpenAiServer.rateLimited({ "retry-after-ms": "700" }))
      expect(limited.parts).toEqual([])
      const error = failureOf(limited.exit) as Errors.RateLimited
      expect([error._tag, ms(error.retryAfter)]).toEqual(["RateLimited", 700])
      expect(failureOf((yield* streamWith(OpenAiServer.contextLengthExceeded())).exit)._tag).toBe(
        "ContextLengthExceeded"
      )
      expect(failureOf((yield* streamWith(OpenAiServer.invalidJson())).exit)._tag).toBe("MalformedResponse")
      expect(failureOf((yield* streamWith(OpenAiServer.resetBeforeHeaders())).exit)._tag).toBe("Unavailable")
      const eventError = yield* streamWith(OpenAiServer.custom("event: error", (_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream" })
        res.end("event: error\ndata: upstream exploded\n\n")
      }))
      expect(failureOf(eventError.exit)).toMatchObject({ _tag: "UnknownProviderError", detail: "upstream exploded" })
      const filtered = yield* streamWith(OpenAiServer.reply({ chunks: [], finishReason: "content_filter" }))
      expect(failureOf(filtered.exit)._tag).toBe("ContentFiltered")
      const partly = yield* streamWith(OpenAiServer.reply({ chunks: ["some"], finishReason: "content_filter" }))
      expect(partly.parts.at(-1)).toMatchObject({ _tag: "Finish", finishReason: "content-filter" })
    }))
})

describe("OpenAiCompatible through Llm, Router and Balancer", () => {
  const ask = { messages: [{ role: "user" as const, content: "hello there" }], maxTokens: 20 }

  it.scopedLive("complete: usage and rate-limit headers reach the balancer's stats", () =>
    Effect.gen(function*() {
      const server = yield* OpenAiServer.make({
        fallback: OpenAiServer.reply({
          text: "hi",
          usage: { prompt_tokens: 12, completion_tokens: 3 },
          headers: OpenAiServer.rateLimitHeaders
        })
      })
      const { balancer, context } = yield* setup([
        endpointInput("a", { provider: "openai", model: "gpt-4o-mini", baseUrl: server.url, apiKey: KEY })
      ])
      const answer = yield* Effect.provide(Llm.complete(ask), context)
      expect([answer.text, answer.endpoint.name, answer.usage]).toEqual(["hi", "a", {
        inputTokens: 12,
        outputTokens: 3
      }])
      const a = yield* statsOf(balancer, "a")
      expect([a.successes, a.inputTokens, a.outputTokens]).toEqual([1, 12, 3])
      // the provider said 40 of 100 requests are left: the tightest of its limits
      expect(a.headroom).toBe(0.4)
      expect(server.requests[0].headers.authorization).toBe(`Bearer ${KEY}`)
    }))

  it.scopedLive("stream: Started, Deltas, Finish; the Start's headers and the usage reach the stats", () =>
    Effect.gen(function*() {
      const server = yield* OpenAiServer.make({
        fallback: OpenAiServer.reply({
          chunks: ["Hi", " you"],
          usage: { prompt_tokens: 8, completion_tokens: 2 },
          headers: { ...OpenAiServer.rateLimitHeaders, "x-ratelimit-remaining-requests": "25" }
        })
      })
      const { balancer, context } = yield* setup([
        endpointInput("a", { provider: "openai", model: "gpt-4o-mini", baseUrl: server.url, apiKey: KEY })
      ])
      const events = Chunk.toReadonlyArray(yield* Stream.runCollect(Stream.provideContext(Llm.stream(ask), context)))
      expect(events.map((e) => e._tag)).toEqual(["Started", "Delta", "Delta", "Finish"])
      expect(events[3]).toEqual(
        Chat.StreamEvent.Finish({ finishReason: "stop", usage: { inputTokens: 8, outputTokens: 2 } })
      )
      const a = yield* statsOf(balancer, "a")
      expect([a.successes, a.failures, a.active, a.inputTokens, a.outputTokens]).toEqual([1, 0, 0, 8, 2])
      expect(a.headroom).toBe(0.25)
      expect(a.avgTimeToFirstTokenMs).not.toBeNull()
    }))

  it.scopedLive("failover: a 503 from one server, the answer from the other", () =>
    Effect.gen(function*() {
      const down = yield* OpenAiServer.make({ fallback: OpenAiServer.error(503) })
      const up = yield* OpenAiServer.make({ fallback: OpenAiServer.reply({ text: "from up" }) })
      const { balancer, context } = yield* setup([
        endpointInput("down", { provider: "openai", model: "gpt-4o-mini", baseUrl: down.url, apiKey: KEY }),
        endpointInput("up", { provider: "openai", model: "gpt-4o-mini", baseUrl: up.url, apiKey: "sk-other" })
      ])
      const answer = yield* Effect.provide(Llm.complete(ask), context)
      expect(answer.text).toBe("from up")
      expect(answer.attempts.map((a) => [a.endpoint, a.outcome])).toEqual([["down", "Unavailable"], ["up", "Success"]])
      expect(down.requests).toHaveLength(1)
      expect(up.requests[0].headers.authorization).toBe("Bearer sk-other")
      const stats = yield* balancer.stats
      expect(stats.map((s) => [s.name, s.failures, s.successes])).toEqual([["down", 1, 0], ["up", 0, 1]])
    }))

  it.scopedLive("a stream cut after its first token fails with MalformedResponse and counts against the endpoint", () =>
    Effect.gen(function*() {
      const server = yield* OpenAiServer.make({ fallback: OpenAiServer.cutStream({ after: 1, reset: true }) })
      const spare = yield* OpenAiServer.make()
      const { balancer, context } = yield* setup([
        endpointInput("cut", { provider: "openai", model: "gpt-4o-mini", baseUrl: server.url, apiKey: KEY }),
        endpointInput("spare", { provider: "openai", model: "gpt-4o-mini", baseUrl: spare.url, apiKey: KEY })
      ])
      const seen: Array<string> = []
      const error = yield* Effect.flip(Stream.runForEach(
        Stream.provideContext(Llm.stream(ask), context),
        (e) => Effect.sync(() => seen.push(e._tag === "Delta" ? e.text : e._tag))
      ))
      expect(seen).toEqual(["Started", "one "])
      expect(error._tag).toBe("MalformedResponse")
      expect(error.message).not.toContain(KEY)
      const stats = yield* balancer.stats
      expect(stats.map((s) => [s.name, s.failures, s.successes, s.active])).toEqual([["cut", 1, 0, 0], [
        "spare",
        0,
        0,
        0
      ]])
      // after the first token there is no failover
      expect(spare.requests).toHaveLength(0)
    }))

  it.scopedLive("a stall before the first byte is cut by attemptTimeout and fails over (complete and stream)", () =>
    Effect.gen(function*() {
      const slow = yield* OpenAiServer.make({ fallback: OpenAiServer.stall() })
      const fast = yield* OpenAiServer.make({ fallback: OpenAiServer.reply({ text: "fast" }) })
      const { balancer, context } = yield* setup([
        endpointInput("slow", { provider: "openai", model: "gpt-4o-mini", baseUrl: slow.url, apiKey: KEY }),
        endpointInput("fast", { provider: "openai", model: "gpt-4o-mini", baseUrl: fast.url, apiKey: KEY })
      ])
      const policy = { attemptTimeout: "200 millis" } as const
      const started = Date.now()
      const answer = yield* Effect.provide(Llm.complete(ask, policy), context)
      expect(answer.text).toBe("fast")
      expect(answer.attempts.map((a) => [a.endpoint, a.outcome])).toEqual([["slow", "Timeout"], ["fast", "Success"]])

      const events = Chunk.toReadonlyArray(
        yield* Stream.runCollect(Stream.provideContext(Llm.stream(ask, policy), context))
      )
      const first = events[0] as Extract<ChatModel.StreamEvent, { _tag: "Started" }>
      expect(first.attempts.map((a) => [a.endpoint, a.outcome])).toEqual([["slow", "Timeout"], ["fast", "Success"]])
      expect(events.at(-1)?._tag).toBe("Finish")
      expect(Date.now() - started).toBeLessThan(2_000)
      expect(slow.requests).toHaveLength(2)
      const s = yield* statsOf(balancer, "slow")
      expect([s.failures, s.active]).toEqual([2, 0])
    }))

  it.scopedLive("a stream whose headers come but whose first token does not is cut too", () =>
    Effect.gen(function*() {
      const slow = yield* OpenAiServer.make({ fallback: OpenAiServer.reply({ chunkDelayMs: 5_000 }) })
      const fast = yield* OpenAiServer.make()
      const { context } = yield* setup([
        endpointInput("slow", { provider: "openai", model: "gpt-4o-mini", baseUrl: slow.url }),
        endpointInput("fast", { provider: "openai", model: "gpt-4o-mini", baseUrl: fast.url })
      ])
      const events = Chunk.toReadonlyArray(
        yield* Stream.runCollect(Stream.provideContext(Llm.stream(ask, { attemptTimeout: "200 millis" }), context))
      )
      const first = events[0] as Extract<ChatModel.StreamEvent, { _tag: "Started" }>
      expect(first.attempts.map((a) => a.outcome)).toEqual(["Timeout", "Success"])
    }))
})
