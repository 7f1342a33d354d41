/**
 * The `@effect/ai` bridge: endpoints whose calls are `LanguageModel` services
 * (`@effect/ai-openai`, `@effect/ai-anthropic`, any other), balanced behind one
 * `LanguageModel`. An app that calls `LanguageModel.generateText`, `generateObject` or
 * `streamText` gets balancing, failover and health tracking without changing a line.
 *
 * ```ts
 * import { LanguageModel } from "@effect/ai"
 * import { OpenAiClient, OpenAiLanguageModel } from "@effect/ai-openai"
 * import { FetchHttpClient } from "@effect/platform"
 * import { Config, Effect, Layer } from "effect"
 * import { Balancer, Router } from "effect-llm-balancer"
 * import * as EffectAi from "effect-llm-balancer/llm/EffectAi"
 *
 * const openAi = (apiKey: string) =>
 *   OpenAiLanguageModel.layer({ model: "gpt-4o-mini" }).pipe(
 *     Layer.provide(OpenAiClient.layerConfig({ apiKey: Config.redacted(apiKey) })),
 *     Layer.provide(FetchHttpClient.layer)
 *   )
 *
 * const Balanced = EffectAi.layer({
 *   models: { "key-1": openAi("OPENAI_KEY_1"), "key-2": openAi("OPENAI_KEY_2") }
 * }).pipe(
 *   Layer.provide(Router.layer()),
 *   Layer.provideMerge(Balancer.layer({
 *     endpoints: [
 *       { name: "key-1", provider: "effect-ai", model: "gpt-4o-mini" },
 *       { name: "key-2", provider: "effect-ai", model: "gpt-4o-mini" }
 *     ]
 *   }))
 * )
 *
 * const program = LanguageModel.generateText({ prompt: "Say hello" })
 * Effect.runPromise(program.pipe(Effect.provide(Balanced)))
 * ```
 *
 * Each endpoint's layer is built once, when the balanced layer is. The balanced
 * `LanguageModel` fails only with `AiError`s: when routing gives up, an
 * `AiError.UnknownError` whose `description` says why and whose `cause` is the
 * `RoutingFailed` (with every attempt); an error of the application's own (a tool
 * handler's) passes through untouched and is not retried.
 *
 * This module is the only one that imports `@effect/ai`, an optional peer dependency:
 * import it as `effect-llm-balancer/llm/EffectAi`.
 *
 * @since 0.1.0
 */
import { AiError, LanguageModel } from "@effect/ai"
import type { Response } from "@effect/ai"
import type { Scope } from "effect"
import { Context, Effect, Layer, Option, Stream } from "effect"
import { Balancer } from "../Balancer.js"
import type { Endpoint } from "../Endpoint.js"
import type { ProviderError } from "../Errors.js"
import * as Errors from "../Errors.js"
import { failoverStream } from "../internal/failoverStream.js"
import * as httpErrors from "../internal/httpErrors.js"
import type { Usage } from "../Outcome.js"
import type { Policy } from "../Router.js"
import { Router } from "../Router.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<E, R> {
  /** Each endpoint's `LanguageModel`, by endpoint name. */
  readonly models: Readonly<Record<string, Layer.Layer<LanguageModel.LanguageModel, E, R>>>
  /** The router policy of every call (timeout, retries, hints). */
  readonly policy?: Policy | undefined
}

const headersOf = (headers: Readonly<Record<string, string>>): Record<string, string> => headers

/**
 * What an `AiError` means for routing: an HTTP answer by its status (429 with its
 * `Retry-After`), a failed request as `Unavailable`, a bad answer as `MalformedResponse`,
 * bad input as `BadRequest`.
 *
 * @since 0.1.0
 * @category errors
 */
export const toProviderError = (endpoint: string, error: AiError.AiError, now: number): ProviderError => {
  switch (error._tag) {
    case "HttpResponseError":
      return error.reason === "StatusCode"
        ? httpErrors.fromStatus(
          endpoint,
          error.response.status,
          headersOf(error.response.headers),
          error.description ?? error.body ?? "",
          now
        )
        : new Errors.MalformedResponse({ endpoint, status: error.response.status, detail: error.message })
    case "HttpRequestError":
      // a request that cannot be encoded fails the same way everywhere
      return error.reason === "Encode"
        ? new Errors.BadRequest({ endpoint, detail: error.message })
        : new Errors.Unavailable({ endpoint, detail: error.message })
    case "MalformedOutput":
      return new Errors.MalformedResponse({ endpoint, detail: error.message })
    case "MalformedInput":
      return new Errors.BadRequest({ endpoint, detail: error.message })
    case "UnknownError":
      return new Errors.UnknownProviderError({ endpoint, detail: error.message, cause: error })
  }
}

const usageOf = (usage: Response.Usage | undefined): Usage | undefined =>
  usage === undefined || (usage.inputTokens === undefined && usage.outputTokens === undefined)
    ? undefined
    : { inputTokens: usage.inputTokens ?? 0, outputTokens: usage.outputTokens ?? 0 }

/** Marks an error of the application's own, carried through the router without a retry. */
class Passthrough extends Errors.BadRequest {}

/**
 * The balanced `LanguageModel`, over the `Router` and `Balancer` in context. Fails with
 * `InvalidConfig` when a model is given for a name no endpoint has (a typo would
 * otherwise leave that model unused).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <E, R>(
  options: Options<E, R>
): Effect.Effect<LanguageModel.Service, E | Errors.InvalidConfig, R | Router | Balancer | Scope.Scope> =>
  Effect.gen(function*() {
    const router = yield* Router
    const balancer = yield* Balancer
    const clock = yield* Effect.clock
    const known = (yield* balancer.endpoints).map((e) => e.name)
    const unknown = Object.keys(options.models).filter((name) => !known.includes(name))
    if (unknown.length > 0) {
      return yield* Effect.fail(
        new Errors.InvalidConfig({
          issues: unknown.map((name) => ({
            path: `models.${name}`,
            message: `no endpoint is named "${name}" (endpoints: ${known.join(", ")})`
          }))
        })
      )
    }
    const models = new Map<string, LanguageModel.Service>()
    for (const [name, layer] of Object.entries(options.models)) {
      const context = yield* Layer.build(layer)
      models.set(name, Context.get(context, LanguageModel.LanguageModel))
    }
    const policy = options.policy ?? {}

    const modelFor = (endpoint: Endpoint): Effect.Effect<LanguageModel.Service, ProviderError> => {
      const model = models.get(endpoint.name)
      return model !== undefined
        ? Effect.succeed(model)
        : Effect.fail(
          new Errors.UnknownProviderError({
            endpoint: endpoint.name,
            detail: `no LanguageModel is given for endpoint "${endpoint.name}"`
          })
        )
    }

    /** What a failed call means: an `AiError` is routed on; the app's own error is held apart. */
    const classify = (endpoint: Endpoint, held: { error: Option.Option<unknown> }) => (error: unknown) => {
      if (AiError.isAiError(error)) {
        return Effect.fail(toProviderError(endpoint.name, error, clock.unsafeCurrentTimeMillis()))
      }
      held.error = Option.some(error)
      return Effect.fail(new Passthrough({ endpoint: endpoint.name, detail: "the application's own error" }))
    }

    const surface = (method: string, held: { error: Option.Option<unknown> }) => (failed: Errors.RoutingFailed) =>
      Option.isSome(held.error) && failed.lastError instanceof Passthrough
        ? Effect.fail(held.error.value)
        : Effect.fail(
          new AiError.UnknownError({
            module: "effect-llm-balancer",
            method,
            description: failed.message,
            cause: failed
          })
        )

    const route = <A extends { readonly usage: Response.Usage }>(
      method: string,
      run: (model: LanguageModel.Service) => Effect.Effect<A, unknown, unknown>
    ): Effect.Effect<A, unknown, unknown> =>
      Effect.suspend(() => {
        const held = { error: Option.none<unknown>() }
        return router.execute(
          (endpoint, _attempt, lease) =>
            Effect.flatMap(modelFor(endpoint), (model) =>
              run(model).pipe(
                Effect.tap((response) => lease.report({ usage: usageOf(response.usage) })),
                Effect.catchAll(classify(endpoint, held))
              )),
          policy
        ).pipe(
          Effect.map((routed) => routed.value),
          Effect.catchAll(surface(method, held))
        )
      })

    const streamText = (options: unknown): Stream.Stream<unknown, unknown, unknown> =>
      Stream.unwrapScoped(Effect.suspend(() => {
        const held = { error: Option.none<unknown>() }
        return failoverStream({
          router,
          balancer,
          policy,
          open: (endpoint) =>
            Effect.map(modelFor(endpoint), (model) =>
              Stream.catchAll(
                model.streamText(options as never) as Stream.Stream<Response.StreamPart<any>, unknown, unknown>,
                (error) => Stream.fromEffect(classify(endpoint, held)(error))
              )),
          isToken: (part) => part.type === "text-delta" || part.type === "tool-call",
          isFinish: (part) => part.type === "finish",
          observe: (part, lease) => part.type === "finish" ? lease.report({ usage: usageOf(part.usage) }) : Effect.void
        }).pipe(
          Effect.map((started) =>
            // after the first token too, the app sees only AiErrors (or its own errors)
            Stream.catchAll(started.parts as Stream.Stream<unknown, unknown>, (error) =>
              Stream.fail(
                Option.isSome(held.error) && error instanceof Passthrough
                  ? held.error.value
                  : new AiError.UnknownError({
                    module: "effect-llm-balancer",
                    method: "streamText",
                    description: error instanceof Error ? error.message : String(error),
                    cause: error
                  })
              ))
          ),
          Effect.catchAll(surface("streamText", held))
        )
      }))

    const service = {
      generateText: (options: unknown) =>
        route("generateText", (model) => model.generateText(options as never) as Effect.Effect<any, unknown, unknown>),
      generateObject: (options: unknown) =>
        route(
          "generateObject",
          (model) => model.generateObject(options as never) as Effect.Effect<any, unknown, unknown>
        ),
      streamText
    }
    return service as unknown as LanguageModel.Service
  })

/**
 * The balanced `LanguageModel` as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <E, R>(
  options: Options<E, R>
): Layer.Layer<LanguageModel.LanguageModel, E | Errors.InvalidConfig, R | Router | Balancer> =>
  Layer.scoped(LanguageModel.LanguageModel, make(options))
