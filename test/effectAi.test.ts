/**
 * The @effect/ai bridge over in-process LanguageModel services: an app that calls
 * LanguageModel.generateText / streamText sees only good answers while one endpoint fails.
 */
import { AiError, LanguageModel } from "@effect/ai"
import type { Response } from "@effect/ai"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Layer, Option, Stream } from "effect"
import { Balancer, Router } from "../src/index.js"
import * as EffectAi from "../src/llm/EffectAi.js"
import { endpoint } from "./helpers.js"

const usage = { inputTokens: 7, outputTokens: 2, totalTokens: 9 }

const good = (text: string) =>
  Layer.effect(
    LanguageModel.LanguageModel,
    LanguageModel.make({
      generateText: () =>
        Effect.succeed([
          { type: "text", text },
          { type: "finish", reason: "stop", usage }
        ] as Array<Response.PartEncoded>),
      streamText: () =>
        Stream.make(
          { type: "text-start", id: "1" },
          { type: "text-delta", id: "1", delta: text },
          { type: "text-end", id: "1" },
          { type: "finish", reason: "stop", usage }
        ) as Stream.Stream<Response.StreamPartEncoded>
    })
  )

const overloaded = new AiError.HttpResponseError({
  module: "Test",
  method: "generateText",
  reason: "StatusCode",
  request: { method: "POST", url: "http://127.0.0.1/v1", urlParams: [], hash: Option.none(), headers: {} },
  response: { status: 503, headers: {} }
})

const failing = Layer.effect(
  LanguageModel.LanguageModel,
  LanguageModel.make({
    generateText: () => Effect.fail(overloaded),
    streamText: () => Stream.fail(overloaded)
  })
)

/** Streams one token, then fails with a 503. */
const cutOff = Layer.effect(
  LanguageModel.LanguageModel,
  LanguageModel.make({
    generateText: () => Effect.fail(overloaded),
    streamText: () =>
      Stream.concat(
        Stream.make(
          { type: "text-start", id: "1" },
          { type: "text-delta", id: "1", delta: "par" }
        ) as Stream.Stream<Response.StreamPartEncoded>,
        Stream.fail(overloaded)
      )
  })
)

const balanced = (models: Record<string, Layer.Layer<LanguageModel.LanguageModel>>, policy?: Router.Policy) => {
  const BalancerLive = Balancer.layer({
    endpoints: Object.keys(models).map((name) => endpoint(name, { provider: "effect-ai" })),
    strategy: "round-robin"
  })
  return EffectAi.layer({ models, policy }).pipe(
    Layer.provideMerge(Router.layer()),
    Layer.provideMerge(BalancerLive)
  )
}

describe("EffectAi bridge", () => {
  it.scoped("generateText: the app sees only good answers; usage and failures reach the balancer", () =>
    Effect.gen(function*() {
      const texts: Array<string> = []
      for (let i = 0; i < 4; i++) {
        const response = yield* LanguageModel.generateText({ prompt: "hello" })
        texts.push(response.text)
      }
      expect(texts).toEqual(["from b", "from b", "from b", "from b"])
      const stats = yield* Balancer.stats
      const a = stats.find((s) => s.name === "a")!
      const b = stats.find((s) => s.name === "b")!
      expect(a.failures).toBeGreaterThanOrEqual(1)
      expect(a.successes).toBe(0)
      expect([b.successes, b.inputTokens, b.outputTokens]).toEqual([4, 28, 8])
    }).pipe(Effect.provide(balanced({ a: failing, b: good("from b") }))))

  it.scoped("streamText fails over before the first token", () =>
    Effect.gen(function*() {
      const parts = yield* Stream.runCollect(LanguageModel.streamText({ prompt: "hello" }))
      const text = Chunk.toReadonlyArray(parts).flatMap((p) => p.type === "text-delta" ? [p.delta] : []).join("")
      expect(text).toBe("from b")
      const b = (yield* Balancer.stats).find((s) => s.name === "b")!
      expect([b.active, b.successes, b.outputTokens]).toEqual([0, 1, 2])
    }).pipe(Effect.provide(balanced({ a: failing, b: good("from b") }))))

  it.scoped("when every endpoint fails, the app gets an AiError that says why and carries the attempts", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(LanguageModel.generateText({ prompt: "hello" }))
      expect(error._tag).toBe("UnknownError")
      expect(error.message).toContain("Routing failed")
      const cause = (error as AiError.UnknownError).cause as { readonly attempts: ReadonlyArray<unknown> }
      expect(cause.attempts.length).toBe(2)
    }).pipe(Effect.provide(balanced({ a: failing, b: failing }, { maxAttempts: 2 }))))

  it.effect("a model for a name no endpoint has is an InvalidConfig", () =>
    Effect.gen(function*() {
      const layer = EffectAi.layer({ models: { a: good("a"), typo: good("x") } }).pipe(
        Layer.provide(Router.layer()),
        Layer.provide(Balancer.layer({ endpoints: [endpoint("a")] }))
      )
      const error = yield* Effect.flip(Effect.scoped(Layer.build(layer)))
      expect(error._tag).toBe("InvalidConfig")
      expect(error.message).toContain("models.typo")
    }))

  it.scoped("after the first token a failing stream ends with an AiError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Stream.runDrain(LanguageModel.streamText({ prompt: "hello" })))
      expect(AiError.isAiError(error)).toBe(true)
      expect(error._tag).toBe("UnknownError")
      const a = (yield* Balancer.stats).find((s) => s.name === "a")!
      expect([a.active, a.failures]).toEqual([0, 1])
    }).pipe(Effect.provide(balanced({ a: cutOff }))))
})
