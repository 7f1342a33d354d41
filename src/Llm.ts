/**
 * Chat calls, routed: a request goes through the `Router` (retries, failover, deadline)
 * and the `Balancer` (which endpoint) to the provider registered for the chosen
 * endpoint's `provider` (see `Provider.Providers`).
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Llm } from "effect-llm-balancer"
 *
 * const answer = Llm.complete({
 *   messages: [{ role: "user", content: "Say hello" }],
 *   maxTokens: 50
 * }, { timeout: "30 seconds" })
 * // Effect<Chat.Response, RoutingFailed | InvalidRequest, Router | Providers>
 * ```
 *
 * The request routes itself: its `group` and `tags` narrow the endpoints, its estimated
 * input tokens and `maxTokens` are reserved against tokens-per-minute limits and price it
 * for the cost strategy, and the usage the provider reports replaces the estimate.
 *
 * **Streams** fail over only before their first token: until a provider sends one, a
 * failed or slow (`attemptTimeout`) stream is retried elsewhere like any call; after it,
 * an error ends the stream with that error (never a silent truncation) and counts against
 * the endpoint. The lease is held until the stream ends, fails or is interrupted, and the
 * time to first token is what latency routing sees.
 *
 * @since 0.1.0
 */
import { Effect, Exit, Option, Ref, Scope, Stream } from "effect"
import type * as Chunk from "effect/Chunk"
import type { Hints, Lease } from "./Balancer.js"
import { Balancer } from "./Balancer.js"
import type { Endpoint } from "./Endpoint.js"
import type { InvalidRequest, ProviderError, RoutingFailed } from "./Errors.js"
import { MalformedResponse, UnknownProviderError } from "./Errors.js"
import * as Chat from "./llm/Chat.js"
import type { Provider } from "./llm/Provider.js"
import { Providers } from "./llm/Provider.js"
import * as Outcome from "./Outcome.js"
import type { Policy } from "./Router.js"
import { Router } from "./Router.js"

const providerFor = (
  providers: ReadonlyMap<string, Provider>,
  endpoint: Endpoint
): Effect.Effect<Provider, ProviderError> => {
  const provider = providers.get(endpoint.provider)
  return provider !== undefined
    ? Effect.succeed(provider)
    : Effect.fail(
      new UnknownProviderError({
        endpoint: endpoint.name,
        detail: `no provider is registered for "${endpoint.provider}" (registered: ${
          providers.size === 0 ? "none" : Array.from(providers.keys()).join(", ")
        })`
      })
    )
}

/**
 * The call's hints: the policy's, with the request's group, tags and token estimates.
 *
 * @since 0.1.0
 * @category getters
 */
export const hintsFor = (request: Chat.Request, policy: Policy | undefined): Hints => {
  const hints = policy?.hints ?? {}
  return {
    ...hints,
    group: hints.group ?? request.group,
    tags: request.tags === undefined ? hints.tags : [...(hints.tags ?? []), ...request.tags],
    inputTokens: hints.inputTokens ?? Chat.estimateInputTokens(request),
    outputTokens: hints.outputTokens ?? request.maxTokens
  }
}

const withHints = (request: Chat.Request, policy: Policy | undefined): Policy => ({
  ...policy,
  hints: hintsFor(request, policy)
})

/**
 * One whole answer, from the first endpoint that gives one.
 *
 * @since 0.1.0
 * @category calls
 */
export const complete = (
  input: Chat.Request | Chat.RequestInput,
  policy?: Policy
): Effect.Effect<Chat.Response, RoutingFailed | InvalidRequest, Router | Providers> =>
  Effect.gen(function*() {
    const request = yield* Chat.decodeRequest(input)
    const router = yield* Router
    const providers = yield* Providers
    const routed = yield* router.execute(
      (endpoint, _attempt, lease) =>
        Effect.flatMap(providerFor(providers, endpoint), (provider) =>
          Effect.tap(
            provider.complete(endpoint, request),
            (completion) => lease.report({ usage: completion.usage, rateLimit: completion.rateLimit })
          )),
      withHints(request, policy)
    )
    return { ...routed.value, endpoint: routed.endpoint, attempts: routed.attempts }
  }).pipe(Effect.withSpan("effect-llm-balancer.complete"))

/** A provider stream opened on an endpoint, read up to its first token. */
interface Opened {
  readonly head: ReadonlyArray<Chat.StreamPart>
  readonly pull: Effect.Effect<Chunk.Chunk<Chat.StreamPart>, Option.Option<ProviderError>>
  readonly scope: Scope.CloseableScope
  readonly lease: Lease
}

/** Reads a provider stream until its first text (or its finish), reporting what it learns. */
const open = (
  provider: Provider,
  endpoint: Endpoint,
  request: Chat.Request,
  lease: Lease
): Effect.Effect<Opened, ProviderError> =>
  Effect.flatMap(Scope.make(), (scope) =>
    Effect.gen(function*() {
      const pull = yield* Scope.extend(Stream.toPull(provider.stream(endpoint, request)), scope)
      const head: Array<Chat.StreamPart> = []
      for (;;) {
        const chunk = yield* Effect.mapError(
          pull,
          (e) => Option.getOrElse(e, () => truncated(endpoint, "the stream ended before its first token"))
        )
        let started = false
        for (const part of chunk) {
          head.push(part)
          if (part._tag === "Start" && part.rateLimit !== undefined) yield* lease.report({ rateLimit: part.rateLimit })
          if (part._tag === "Delta" || part._tag === "Finish") started = true
          if (part._tag === "Finish") yield* lease.report({ usage: part.usage })
        }
        if (started) break
      }
      yield* lease.firstToken
      // the stream goes on after this attempt: its consumer releases the lease
      yield* lease.detach
      return { head, pull, scope, lease }
    }).pipe(Effect.onExit((exit) => exit._tag === "Failure" ? Scope.close(scope, exit) : Effect.void)))

const truncated = (endpoint: Endpoint, detail: string): ProviderError =>
  new MalformedResponse({ endpoint: endpoint.name, detail })

const toEvent = (part: Chat.StreamPart): Chat.StreamEvent | undefined => {
  switch (part._tag) {
    case "Start":
      return undefined
    case "Delta":
      return Chat.StreamEvent.Delta({ text: part.text })
    case "Finish":
      return Chat.StreamEvent.Finish({ finishReason: part.finishReason, usage: part.usage })
  }
}

/**
 * A streamed answer: `Started` (naming the endpoint and the attempts it took), text
 * `Delta`s and a `Finish` with the usage. Hedging does not apply to streams (the policy's
 * `hedge` is ignored).
 *
 * @since 0.1.0
 * @category calls
 */
export const stream = (
  input: Chat.Request | Chat.RequestInput,
  policy?: Policy
): Stream.Stream<Chat.StreamEvent, RoutingFailed | InvalidRequest | ProviderError, Router | Balancer | Providers> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const request = yield* Chat.decodeRequest(input)
    const router = yield* Router
    const balancer = yield* Balancer
    const providers = yield* Providers
    const routed = yield* router.execute(
      (endpoint, _attempt, lease) =>
        Effect.flatMap(providerFor(providers, endpoint), (provider) => open(provider, endpoint, request, lease)),
      { ...withHints(request, policy), hedge: undefined }
    )
    const { head, lease, pull, scope } = routed.value
    // how the stream ended decides the outcome; a consumer that stops early cancels it
    const ending = yield* Ref.make<Outcome.Outcome>(Outcome.cancelled)
    yield* Effect.addFinalizer(() =>
      Effect.zipRight(
        Effect.flatMap(Ref.get(ending), (outcome) => balancer.release(lease, outcome)),
        Scope.close(scope, Exit.void)
      )
    )
    const endpoint = routed.endpoint
    let finished = head.some((part) => part._tag === "Finish")
    // a provider that ends without its Finish was cut short: that is an error, not an end
    const end = Effect.suspend(() =>
      finished
        ? Ref.set(ending, Outcome.success())
        : Effect.fail(truncated(endpoint, "the stream ended before its finish"))
    )
    const rest = Stream.repeatEffectChunkOption(pull).pipe(
      Stream.tap((part) => {
        if (part._tag !== "Finish") return Effect.void
        finished = true
        return lease.report({ usage: part.usage })
      }),
      Stream.concat(Stream.drain(Stream.fromEffect(end))),
      Stream.tapError((error) => Ref.set(ending, Outcome.failure(error)))
    )
    const started = Chat.StreamEvent.Started({ endpoint, attempts: routed.attempts })
    const parts = Stream.concat(Stream.fromIterable(head), rest).pipe(
      Stream.filterMap((part) => Option.fromNullable(toEvent(part)))
    )
    return Stream.concat(Stream.make(started), parts)
  }))
