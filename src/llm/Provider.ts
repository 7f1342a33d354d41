/**
 * A provider speaks one API (OpenAI's Chat Completions, Anthropic's Messages, a mock):
 * given an endpoint and a chat request it completes or streams, failing only with a
 * `ProviderError`. `Providers` maps the names endpoints give in their `provider` field to
 * implementations; users add their own.
 *
 * ```ts
 * import { Layer } from "effect"
 * import { FetchHttpClient } from "@effect/platform"
 * import { Anthropic, OpenAiCompatible, Provider } from "effect-llm-balancer"
 *
 * const ProvidersLive = Provider.layer({
 *   openai: OpenAiCompatible.make(),
 *   groq: OpenAiCompatible.make({ baseUrl: "https://api.groq.com/openai/v1" }),
 *   anthropic: Anthropic.make()
 * }).pipe(Layer.provide(FetchHttpClient.layer))
 * ```
 *
 * @since 0.1.0
 */
import type { Stream } from "effect"
import { Context, Effect, Layer } from "effect"
import type { Endpoint } from "../Endpoint.js"
import type { ProviderError } from "../Errors.js"
import type { Completion, Request, StreamPart } from "./Chat.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Provider {
  /** One whole answer. */
  readonly complete: (endpoint: Endpoint, request: Request) => Effect.Effect<Completion, ProviderError>
  /**
   * A streamed answer: `Start`, `Delta`s, and `Finish` with the usage. A stream cut before
   * its end fails with `MalformedResponse`, never ends quietly.
   */
  readonly stream: (endpoint: Endpoint, request: Request) => Stream.Stream<StreamPart, ProviderError>
}

/**
 * The providers by the names endpoints use in their `provider` field.
 *
 * @since 0.1.0
 * @category tags
 */
export class Providers extends Context.Tag("effect-llm-balancer/Providers")<
  Providers,
  ReadonlyMap<string, Provider>
>() {}

/**
 * A provider, or an effect that builds one (most need an `HttpClient`).
 *
 * @since 0.1.0
 * @category models
 */
export type ProviderInput<E = never, R = never> = Provider | Effect.Effect<Provider, E, R>

const isProvider = (u: unknown): u is Provider =>
  typeof u === "object" && u !== null && "complete" in u && "stream" in u && !Effect.isEffect(u)

/**
 * Builds the registry from a record of providers by name.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <const P extends Record<string, ProviderInput<any, any>>>(
  providers: P
): Effect.Effect<
  ReadonlyMap<string, Provider>,
  { [K in keyof P]: P[K] extends Effect.Effect<any, infer E, any> ? E : never }[keyof P],
  { [K in keyof P]: P[K] extends Effect.Effect<any, any, infer R> ? R : never }[keyof P]
> =>
  Effect.map(
    Effect.forEach(Object.entries(providers), ([name, input]) =>
      isProvider(input)
        ? Effect.succeed([name, input] as const)
        : Effect.map(input as Effect.Effect<Provider, any, any>, (provider) => [name, provider] as const)),
    (entries) => new Map(entries)
  )

/**
 * The registry as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <const P extends Record<string, ProviderInput<any, any>>>(
  providers: P
): Layer.Layer<
  Providers,
  { [K in keyof P]: P[K] extends Effect.Effect<any, infer E, any> ? E : never }[keyof P],
  { [K in keyof P]: P[K] extends Effect.Effect<any, any, infer R> ? R : never }[keyof P]
> => Layer.effect(Providers, make(providers))

/**
 * Adds providers to the registry below it (or replaces ones of the same name): how a
 * user adds an in-house provider to the ones the app already has.
 *
 * @since 0.1.0
 * @category layers
 */
export const add = <const P extends Record<string, ProviderInput<any, any>>>(
  providers: P
): Layer.Layer<
  Providers,
  { [K in keyof P]: P[K] extends Effect.Effect<any, infer E, any> ? E : never }[keyof P],
  Providers | { [K in keyof P]: P[K] extends Effect.Effect<any, any, infer R> ? R : never }[keyof P]
> =>
  Layer.effect(
    Providers,
    Effect.zipWith(Providers, make(providers), (below, added) => new Map([...below, ...added]))
  )
