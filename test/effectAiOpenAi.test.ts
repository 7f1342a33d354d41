/**
 * The bridge end to end: plain `LanguageModel.generateText` against two `@effect/ai-openai`
 * layers pointed at loopback servers, one of them failing. The app sees only good answers.
 */
import { LanguageModel } from "@effect/ai"
import { OpenAiClient, OpenAiLanguageModel } from "@effect/ai-openai"
import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { Balancer, Router } from "../src/index.js"
import * as EffectAi from "../src/llm/EffectAi.js"
import { endpoint } from "./helpers.js"
import * as OpenAiServer from "./support/openAiServer.js"

/** A Responses API answer (what `@effect/ai-openai` calls), with `text`. */
const responsesAnswer = (text: string) =>
  OpenAiServer.custom("responses", (request, res) => {
    const body = {
      id: "resp_1",
      object: "response",
      status: "completed",
      created_at: 1_700_000_000,
      error: null,
      incomplete_details: null,
      instructions: null,
      model: request.body?.model ?? "gpt-4o-mini",
      output: [{
        type: "message",
        id: "msg_1",
        status: "completed",
        role: "assistant",
        content: [{ type: "output_text", text, annotations: [] }]
      }],
      usage: {
        input_tokens: 11,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: 4,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: 15
      },
      parallel_tool_calls: true,
      tools: [],
      tool_choice: "auto",
      metadata: {},
      temperature: 1,
      top_p: 1
    }
    res.writeHead(200, { "content-type": "application/json" })
    res.end(JSON.stringify(body))
  })

const overloaded = OpenAiServer.custom("overloaded", (_, res) => {
  res.writeHead(503, { "content-type": "application/json" })
  res.end(JSON.stringify({ error: { message: "overloaded", type: "server_error", code: null, param: null } }))
})

const openAi = (url: string) =>
  OpenAiLanguageModel.layer({ model: "gpt-4o-mini" }).pipe(
    Layer.provide(OpenAiClient.layer({ apiKey: Redacted.make("sk-test"), apiUrl: url })),
    Layer.provide(FetchHttpClient.layer)
  )

describe("the bridge over @effect/ai-openai and real sockets", () => {
  it.scopedLive("generateText: the app sees only good answers while one endpoint answers 503", () =>
    Effect.gen(function*() {
      const down = yield* OpenAiServer.make({ fallback: overloaded })
      const up = yield* OpenAiServer.make({ fallback: responsesAnswer("hello from up") })
      const layer = EffectAi.layer({ models: { down: openAi(down.url), up: openAi(up.url) } }).pipe(
        Layer.provideMerge(Router.layer()),
        Layer.provideMerge(Balancer.layer({
          endpoints: [endpoint("down", { provider: "effect-ai" }), endpoint("up", { provider: "effect-ai" })],
          strategy: "round-robin"
        }))
      )
      const [texts, stats] = yield* Effect.all([
        Effect.forEach([1, 2, 3, 4], () => Effect.map(LanguageModel.generateText({ prompt: "hi" }), (r) => r.text)),
        Balancer.stats
      ]).pipe(Effect.provide(layer))
      expect(texts).toEqual(["hello from up", "hello from up", "hello from up", "hello from up"])
      const [downStats, upStats] = stats
      expect(downStats.failures).toBe(down.requests.length)
      expect(downStats.successes).toBe(0)
      expect([upStats.successes, upStats.inputTokens, upStats.outputTokens]).toEqual([4, 44, 16])
      expect(down.requests.length).toBeGreaterThanOrEqual(1)
      expect(down.requests[0].path).toBe("/v1/responses")
      expect(up.requests.length).toBe(4)
    }))
})
