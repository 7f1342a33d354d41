/**
 * The loopback server speaks OpenAI's real wire format: the official `openai` client reads
 * its answers, its errors and its streams (the usage chunk included) as it reads OpenAI's.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import OpenAI from "openai"
import * as OpenAiServer from "./support/openAiServer.js"

const client = (server: OpenAiServer.OpenAiServer, timeout = 5_000) =>
  new OpenAI({ apiKey: "sk-test-sdk", baseURL: server.url, maxRetries: 0, timeout })

const messages = [{ role: "user" as const, content: "hello" }]

/** The SDK's error for a call, as a value. */
const failure = (run: () => Promise<unknown>) => Effect.promise(() => run().then(() => undefined, (e: unknown) => e))

describe("the loopback server, read by the official openai client", () => {
  it.scopedLive("answers a chat completion with usage and headers", () =>
    Effect.gen(function*() {
      const server = yield* OpenAiServer.make()
      server.enqueue(OpenAiServer.reply({
        text: "Hello there",
        usage: { prompt_tokens: 7, completion_tokens: 2 },
        headers: { "x-ratelimit-remaining-requests": "99" }
      }))
      const { data, response } = yield* Effect.promise(() =>
        client(server).chat.completions.create({ model: "gpt-4o-mini", messages, max_tokens: 20 }).withResponse()
      )
      expect(data.object).toBe("chat.completion")
      expect(data.model).toBe("gpt-4o-mini")
      expect(data.choices[0].message.content).toBe("Hello there")
      expect(data.choices[0].finish_reason).toBe("stop")
      expect(data.usage).toEqual({ prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 })
      expect(response.headers.get("x-ratelimit-remaining-requests")).toBe("99")
      const [recorded] = server.requests
      expect(recorded.method).toBe("POST")
      expect(recorded.path).toBe("/v1/chat/completions")
      expect(recorded.headers.authorization).toBe("Bearer sk-test-sdk")
      expect(recorded.body).toMatchObject({ model: "gpt-4o-mini", messages, max_tokens: 20 })
    }))

  it.scopedLive("answers tool calls", () =>
    Effect.gen(function*() {
      const server = yield* OpenAiServer.make()
      const call = { id: "call_1", type: "function", function: { name: "weather", arguments: "{\"city\":\"Oslo\"}" } }
      server.enqueue(OpenAiServer.reply({ toolCalls: [call] }))
      const answer = yield* Effect.promise(() =>
        client(server).chat.completions.create({ model: "gpt-4o-mini", messages })
      )
      expect(answer.choices[0].finish_reason).toBe("tool_calls")
      expect(answer.choices[0].message.content).toBeNull()
      expect(answer.choices[0].message.tool_calls).toEqual([call])
    }))

  it.scopedLive("streams chunks, the usage chunk with empty choices, then [DONE]", () =>
    Effect.gen(function*() {
      const server = yield* OpenAiServer.make()
      server.enqueue(
        OpenAiServer.reply({ chunks: ["Hel", "lo", "!"], usage: { prompt_tokens: 5, completion_tokens: 3 } })
      )
      const chunks = yield* Effect.promise(async () => {
        const stream = await client(server).chat.completions.create({
          model: "gpt-4o-mini",
          messages,
          stream: true,
          stream_options: { include_usage: true }
        })
        const out: Array<OpenAI.Chat.Completions.ChatCompletionChunk> = []
        for await (const chunk of stream) out.push(chunk)
        return out
      })
      expect(chunks.every((c) => c.object === "chat.completion.chunk")).toBe(true)
      expect(chunks.map((c) => c.choices[0]?.delta.content ?? "").join("")).toBe("Hello!")
      expect(chunks.at(-2)!.choices[0].finish_reason).toBe("stop")
      const last = chunks.at(-1)!
      expect(last.choices).toEqual([])
      expect(last.usage).toEqual({ prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 })
      // every other chunk carries `usage: null`
      expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true)
    }))

  it.scopedLive("streams without the usage chunk when include_usage is not set", () =>
    Effect.gen(function*() {
      const server = yield* OpenAiServer.make()
      const chunks = yield* Effect.promise(async () => {
        const stream = await client(server).chat.completions.create({ model: "m", messages, stream: true })
        const out: Array<OpenAI.Chat.Completions.ChatCompletionChunk> = []
        for await (const chunk of stream) out.push(chunk)
        return out
      })
      expect(chunks.at(-1)!.choices[0].finish_reason).toBe("stop")
      expect(chunks.every((c) => !("usage" in c))).toBe(true)
    }))

  it.scopedLive("errors carry the status, the type, the code and the headers", () =>
    Effect.gen(function*() {
      const server = yield* OpenAiServer.make()
      const call = () => client(server).chat.completions.create({ model: "gpt-4o-mini", messages })

      server.enqueue(OpenAiServer.contextLengthExceeded())
      const tooLong = yield* failure(call)
      expect(tooLong).toBeInstanceOf(OpenAI.BadRequestError)
      expect(tooLong).toMatchObject({ status: 400, code: "context_length_exceeded", type: "invalid_request_error" })

      server.enqueue(OpenAiServer.rateLimited({ "retry-after-ms": "1500", "x-ratelimit-reset-requests": "1s" }))
      const limited = (yield* failure(call)) as InstanceType<typeof OpenAI.APIError>
      expect(limited).toBeInstanceOf(OpenAI.RateLimitError)
      expect(limited).toMatchObject({ status: 429, code: "rate_limit_exceeded" })
      expect(limited.headers?.get("retry-after-ms")).toBe("1500")

      server.enqueue(OpenAiServer.unauthorized())
      expect(yield* failure(call)).toMatchObject({ status: 401, code: "invalid_api_key" })
      // with the queue empty, the fallback answers
      expect((yield* Effect.promise(call)).object).toBe("chat.completion")

      server.enqueue(OpenAiServer.error(503))
      const down = yield* failure(call)
      expect(down).toBeInstanceOf(OpenAI.InternalServerError)
      expect(down).toMatchObject({ status: 503, type: "server_error" })

      server.enqueue(OpenAiServer.contentFiltered())
      expect(yield* failure(call)).toMatchObject({ status: 400, code: "content_filter" })
    }))

  it.scopedLive("faults: a reset, a stall, an error inside a stream", () =>
    Effect.gen(function*() {
      const server = yield* OpenAiServer.make()
      server.enqueue(OpenAiServer.resetBeforeHeaders())
      expect(yield* failure(() => client(server).chat.completions.create({ model: "m", messages })))
        .toBeInstanceOf(OpenAI.APIConnectionError)

      server.enqueue(OpenAiServer.stall())
      expect(yield* failure(() => client(server, 150).chat.completions.create({ model: "m", messages })))
        .toBeInstanceOf(OpenAI.APIConnectionTimeoutError)

      server.enqueue(
        OpenAiServer.streamError({ message: "overloaded", type: "server_error", code: null }, { after: 1 })
      )
      const seen: Array<string> = []
      const streamed = yield* failure(async () => {
        const stream = await client(server).chat.completions.create({ model: "m", messages, stream: true })
        for await (const chunk of stream) seen.push(chunk.choices[0]?.delta.content ?? "")
      })
      expect(seen.join("")).toBe("part")
      expect(streamed).toBeInstanceOf(OpenAI.APIError)
      expect(streamed).toMatchObject({ type: "server_error", message: expect.stringContaining("overloaded") })
    }))
})
