/**
 * The @effect/ai bridge: an app written against `LanguageModel` gets balancing, failover
 * and health tracking by swapping one layer.
 *
 *   npx tsx --tsconfig tsconfig.examples.json examples/effect-ai.ts
 *
 * To run without a network or a key, the endpoints here are in-process `LanguageModel`s
 * (one of them overloaded); `openAiEndpoint` below shows the same with `@effect/ai-openai`,
 * which is what you would use for real. docs/effect-ai.md quotes this file.
 */
import { AiError, LanguageModel } from "@effect/ai"
import type { Response } from "@effect/ai"
import { OpenAiClient, OpenAiLanguageModel } from "@effect/ai-openai"
import { FetchHttpClient } from "@effect/platform"
import { Config, Console, Effect, Layer, Option, Stream } from "effect"
import { Balancer, Router } from "effect-llm-balancer"
import * as EffectAi from "effect-llm-balancer/llm/EffectAi"

// --- the app: plain @effect/ai, unaware of balancing -----------------------------------

const app = Effect.gen(function*() {
  for (let i = 1; i <= 3; i++) {
    const response = yield* LanguageModel.generateText({ prompt: `question ${i}` })
    yield* Console.log(`answer ${i}: ${response.text} (${response.usage.outputTokens} tokens)`)
  }
  const streamed = yield* LanguageModel.streamText({ prompt: "stream please" }).pipe(
    Stream.runFold("", (text, part) => part.type === "text-delta" ? text + part.delta : text)
  )
  yield* Console.log(`streamed: ${streamed}`)
})

// --- real endpoints: one @effect/ai-openai layer per key or deployment ------------------

/** An OpenAI endpoint: its key from the environment variable `keyVariable`. */
export const openAiEndpoint = (keyVariable: string, apiUrl?: string) =>
  OpenAiLanguageModel.layer({ model: "gpt-4o-mini" }).pipe(
    Layer.provide(OpenAiClient.layerConfig({
      apiKey: Config.redacted(keyVariable),
      apiUrl: Config.succeed(apiUrl)
    })),
    Layer.provide(FetchHttpClient.layer)
  )

// --- in-process endpoints for this example ----------------------------------------------

const answering = (name: string) =>
  Layer.effect(
    LanguageModel.LanguageModel,
    LanguageModel.make({
      generateText: () =>
        Effect.succeed([
          { type: "text", text: `hello from ${name}` },
          { type: "finish", reason: "stop", usage: { inputTokens: 5, outputTokens: 3, totalTokens: 8 } }
        ] as Array<Response.PartEncoded>),
      streamText: () =>
        Stream.make(
          { type: "text-start", id: "t" },
          { type: "text-delta", id: "t", delta: `streamed by ${name}` },
          { type: "text-end", id: "t" },
          { type: "finish", reason: "stop", usage: { inputTokens: 5, outputTokens: 3, totalTokens: 8 } }
        ) as Stream.Stream<Response.StreamPartEncoded>
    })
  )

const overloaded = (method: string) =>
  new AiError.HttpResponseError({
    module: "Example",
    method,
    reason: "StatusCode",
    request: { method: "POST", url: "https://api.example/v1", urlParams: [], hash: Option.none(), headers: {} },
    response: { status: 529, headers: {} },
    description: "Overloaded"
  })

const down = Layer.effect(
  LanguageModel.LanguageModel,
  LanguageModel.make({
    generateText: () => Effect.fail(overloaded("generateText")),
    streamText: () => Stream.fail(overloaded("streamText"))
  })
)

// --- the balanced LanguageModel -------------------------------------------------------

const BalancerLive = Balancer.layer({
  endpoints: [
    { name: "primary", provider: "effect-ai", model: "gpt-4o-mini" },
    { name: "secondary", provider: "effect-ai", model: "gpt-4o-mini" }
  ],
  // a fixed order, so the output is the same every run
  strategy: "round-robin",
  health: { maxFailures: 1 }
})

const LanguageModelLive = EffectAi.layer({
  models: { primary: down, secondary: answering("secondary") },
  policy: { maxAttempts: 2 }
}).pipe(
  Layer.provideMerge(Router.layer()),
  Layer.provideMerge(BalancerLive)
)

const main = Effect.gen(function*() {
  yield* app
  const stats = yield* Balancer.stats
  yield* Console.log(
    stats.map((s) => `${s.name}: ${s.status}, ${s.successes} ok, ${s.failures} failed`).join(" | ")
  )
})

Effect.runPromise(main.pipe(Effect.provide(LanguageModelLive)))
