/**
 * The loopback server of `support/anthropicServer.ts` speaks the real Messages API: the
 * official `@anthropic-ai/sdk` client parses its answers, its errors and its streams.
 */
import Anthropic from "@anthropic-ai/sdk"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { AnthropicServer } from "./support/anthropicServer.js"
import * as Server from "./support/anthropicServer.js"

const KEY = "sk-ant-api03-sdk-test-key"

const clientFor = (server: AnthropicServer) => new Anthropic({ baseURL: server.url, apiKey: KEY, maxRetries: 0 })

const params = {
  model: "claude-test",
  max_tokens: 100,
  system: "Be brief.",
  messages: [{ role: "user" as const, content: "Say hello" }]
}

/** The SDK's rejection, as the value it threw. */
const rejection = (promise: () => Promise<unknown>) =>
  Effect.promise(() => promise().then(() => undefined, (error: unknown) => error))

describe("the loopback server, read by the official SDK", () => {
  it.scopedLive("messages.create: content, stop reason, usage; the SDK sends what the provider sends", () =>
    Effect.gen(function*() {
      const server = yield* Server.make()
      const message = yield* Effect.promise(() => clientFor(server).messages.create(params))
      expect(message.type).toBe("message")
      expect(message.role).toBe("assistant")
      expect(message.content).toEqual([{ type: "text", text: "Hello from anthropic", citations: null }])
      expect(message.stop_reason).toBe("end_turn")
      expect(message.usage.input_tokens).toBe(25)
      expect(message.usage.output_tokens).toBe(15)
      const [sent] = server.requests
      expect(sent.path).toBe("/v1/messages")
      // SDK 1.x sends an API key as a bearer token and API version 2026-10-21; the provider
      // sends x-api-key and 2023-06-01 by default, which the API documents and still serves
      expect(sent.headers.authorization).toBe(`Bearer ${KEY}`)
      expect(sent.headers["anthropic-version"]).toBe("2026-10-21")
      expect(sent.headers["content-type"]).toBe("application/json")
      expect(sent.body).toMatchObject({ model: "claude-test", max_tokens: 100, system: "Be brief." })
    }))

  it.scopedLive("tool_use answers", () =>
    Effect.gen(function*() {
      const server = yield* Server.make({ behavior: "tool-use" })
      const message = yield* Effect.promise(() => clientFor(server).messages.create(params))
      expect(message.stop_reason).toBe("tool_use")
      expect(message.content[1]).toEqual({
        type: "tool_use",
        id: "toolu_01",
        name: "get_weather",
        input: { city: "Paris" }
      })
    }))

  it.scopedLive("errors: status, error.type, message and the rate-limit headers", () =>
    Effect.gen(function*() {
      const server = yield* Server.make()
      const client = clientFor(server)
      const cases = [
        ["rate-limit-retry-after", Anthropic.RateLimitError, 429, "rate_limit_error"],
        ["rate-limit-reset", Anthropic.RateLimitError, 429, "rate_limit_error"],
        ["spend-limit", Anthropic.RateLimitError, 429, "rate_limit_error"],
        ["server-error", Anthropic.InternalServerError, 500, "api_error"],
        ["overloaded", Anthropic.InternalServerError, 529, "overloaded_error"],
        ["prompt-too-long", Anthropic.BadRequestError, 400, "invalid_request_error"],
        ["context-limit", Anthropic.BadRequestError, 400, "invalid_request_error"],
        ["unauthorized", Anthropic.AuthenticationError, 401, "authentication_error"],
        ["forbidden", Anthropic.PermissionDeniedError, 403, "permission_error"],
        ["billing", Anthropic.APIError, 402, "billing_error"],
        ["request-too-large", Anthropic.APIError, 413, "request_too_large"]
      ] as const
      for (const [behavior, errorClass, status, type] of cases) {
        server.script(behavior)
        const error = yield* rejection(() => client.messages.create(params))
        expect([behavior, error instanceof errorClass]).toEqual([behavior, true])
        const apiError = error as InstanceType<typeof Anthropic.APIError>
        expect([behavior, apiError.status, apiError.type]).toEqual([behavior, status, type])
        expect(apiError.requestID).toMatch(/^req_/)
      }

      server.script("prompt-too-long")
      const tooLong = (yield* rejection(() => client.messages.create(params))) as InstanceType<
        typeof Anthropic.APIError
      >
      expect(tooLong.apiMessage).toMatch(/^prompt is too long: \d+ tokens > \d+ maximum$/)

      server.script("rate-limit-retry-after")
      const limited = (yield* rejection(() => client.messages.create(params))) as InstanceType<
        typeof Anthropic.APIError
      >
      expect(limited.headers?.get("retry-after")).toBe("2")
      expect(limited.headers?.get("anthropic-ratelimit-requests-remaining")).toBe("0")

      server.script("spend-limit")
      const spent = (yield* rejection(() => client.messages.create(params))) as InstanceType<typeof Anthropic.APIError>
      expect(spent.errorCode).toBe("enforced_spend_limit_reached")
      expect(spent.headers?.get("retry-after")).toBeNull()

      // with maxRetries: 0, one request per call
      expect(server.requests).toHaveLength(cases.length + 3)
    }))

  it.scopedLive("the SDK's own headers and a missing key: the server checks what it is sent", () =>
    Effect.gen(function*() {
      const server = yield* Server.make({ apiKey: KEY })
      const wrong = new Anthropic({ baseURL: server.url, apiKey: "sk-ant-wrong", maxRetries: 0 })
      const error = (yield* rejection(() => wrong.messages.create(params))) as InstanceType<typeof Anthropic.APIError>
      expect(error).toBeInstanceOf(Anthropic.AuthenticationError)
      expect(error.apiMessage).toBe("invalid x-api-key")
    }))

  it.scopedLive("messages.stream: text events, the final message and its usage", () =>
    Effect.gen(function*() {
      const server = yield* Server.make()
      const texts: Array<string> = []
      const final = yield* Effect.promise(() => {
        const stream = clientFor(server).messages.stream(params)
        stream.on("text", (delta) => texts.push(delta))
        return stream.finalMessage()
      })
      expect(texts).toEqual(["Hello", " from", " anthropic"])
      expect(final.content).toEqual([{ type: "text", text: "Hello from anthropic", citations: null }])
      expect(final.stop_reason).toBe("end_turn")
      expect([final.usage.input_tokens, final.usage.output_tokens]).toEqual([25, 15])
      expect(server.requests[0].stream).toBe(true)
    }))

  it.scopedLive("messages.stream with a tool_use block: the input is assembled from its JSON deltas", () =>
    Effect.gen(function*() {
      const server = yield* Server.make({ behavior: "tool-use" })
      const final = yield* Effect.promise(() => clientFor(server).messages.stream(params).finalMessage())
      expect(final.stop_reason).toBe("tool_use")
      expect(final.content[1]).toMatchObject({ type: "tool_use", id: "toolu_01", input: { city: "Paris" } })
    }))

  it.scopedLive("create({ stream: true }): the raw events, in order", () =>
    Effect.gen(function*() {
      const server = yield* Server.make()
      const types = yield* Effect.promise(async () => {
        const stream = await clientFor(server).messages.create({ ...params, stream: true })
        const seen: Array<string> = []
        for await (const event of stream) {
          seen.push(
            event.type === "content_block_delta" && event.delta.type === "text_delta"
              ? `delta:${event.delta.text}`
              : event.type
          )
          if (event.type === "message_start") expect(event.message.usage.input_tokens).toBe(25)
          if (event.type === "message_delta") {
            expect(event.delta.stop_reason).toBe("end_turn")
            expect(event.usage.output_tokens).toBe(15)
          }
        }
        return seen
      })
      // the SDK drops ping events
      expect(types).toEqual([
        "message_start",
        "content_block_start",
        "delta:Hello",
        "delta: from",
        "delta: anthropic",
        "content_block_stop",
        "message_delta",
        "message_stop"
      ])
    }))

  it.scopedLive("an error event mid-stream is an APIError of its type", () =>
    Effect.gen(function*() {
      const server = yield* Server.make({ behavior: "stream-error" })
      const texts: Array<string> = []
      const error = yield* rejection(() => {
        const stream = clientFor(server).messages.stream(params)
        stream.on("text", (delta) => texts.push(delta))
        return stream.finalMessage()
      })
      expect(texts).toEqual(["Hello"])
      expect(error).toBeInstanceOf(Anthropic.APIError)
      expect((error as InstanceType<typeof Anthropic.APIError>).type).toBe("overloaded_error")
    }))

  it.scopedLive("a stream cut before message_stop never gives the SDK a final message", () =>
    Effect.gen(function*() {
      const server = yield* Server.make({ behavior: "stream-cut" })
      const error = yield* rejection(() => clientFor(server).messages.stream(params).finalMessage())
      expect(error).toBeInstanceOf(Anthropic.AnthropicError)
      expect((error as Error).message).toContain("without producing a Message")
    }))
})
