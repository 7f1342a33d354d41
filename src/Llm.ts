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
import { Context, Effect, Either, Exit, Option, Stream } from "effect"
import type { Hints, Lease, Report } from "./Balancer.js"
import { Balancer } from "./Balancer.js"
import type { Endpoint } from "./Endpoint.js"
import type { InvalidRequest, ProviderError, RoutingFailed } from "./Errors.js"
import { UnknownProviderError } from "./Errors.js"
import { failoverStream } from "./internal/failoverStream.js"
import { executeIn, reportedNow, reportsNow } from "./internal/hotPath.js"
import type { EveryHint } from "./internal/router.js"
import * as spans from "./internal/spans.js"
import * as Chat from "./llm/Chat.js"
import type { Provider } from "./llm/Provider.js"
import { Providers } from "./llm/Provider.js"
import type { Policy, Routed } from "./Router.js"
import { Router } from "./Router.js"

/** An endpoint whose `provider` names no registered provider: its calls fail over. */
const noProvider = (providers: ReadonlyMap<string, Provider>, endpoint: Endpoint): ProviderError =>
  new UnknownProviderError({
    endpoint: endpoint.name,
    detail: `no provider is registered for "${endpoint.provider}" (registered: ${
      providers.size === 0 ? "none" : Array.from(providers.keys()).join(", ")
    })`
  })

/**
 * The call's hints: the policy's, with the request's group, tags and token estimates.
 *
 * @since 0.1.0
 * @category getters
 */
export const hintsFor = (request: Chat.Request, policy: Policy | undefined): Hints => {
  const hints = policy?.hints ?? noHints
  // every field written out: a fixed shape is built far faster than a spread (every call)
  const every: EveryHint = {
    exclude: hints.exclude,
    tags: request.tags === undefined ? hints.tags : [...(hints.tags ?? []), ...request.tags],
    minContextWindow: hints.minContextWindow,
    group: hints.group ?? request.group,
    inputTokens: hints.inputTokens ?? Chat.estimateInputTokens(request),
    outputTokens: hints.outputTokens ?? request.maxTokens,
    wait: hints.wait
  }
  return every
}

const noHints: Hints = {}

/** The usage, reported on this library's own lease of the attempt that got it (others' in `call`). */
const reportUsage = (completion: Chat.Completion, lease: Lease): void => {
  const report = usageOf(completion)
  if (report !== undefined) reportedNow(lease, report)
}

/** What a completion tells its lease: its usage and rate-limit hints, if any. */
const usageOf = (completion: Chat.Completion): Report | undefined =>
  completion.usage === undefined && completion.rateLimit === undefined
    ? undefined
    : { usage: completion.usage, rateLimit: completion.rateLimit }

/** The response: every field written out, one fixed shape, built far faster than a spread. */
const toResponse = (routed: Routed<Chat.Completion>): Chat.Response => {
  const completion = routed.value
  return {
    text: completion.text,
    finishReason: completion.finishReason,
    usage: completion.usage,
    toolCalls: completion.toolCalls,
    rateLimit: completion.rateLimit,
    endpoint: routed.endpoint,
    attempts: routed.attempts
  }
}

const withHints = (request: Chat.Request, policy: Policy | undefined): Policy =>
  policy === undefined ? { hints: hintsFor(request, policy) } : ({
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
  // one step to start: plain functions rather than a generator, the context and the tracer
  // read from the fiber (this runs on every call: each operation saved counts, see
  // docs/design.md, "What a routed call costs")
  Effect.withFiberRuntime((fiber): Effect.Effect<Chat.Response, RoutingFailed | InvalidRequest, Router | Providers> => {
    const decoded = Chat.decodeRequestEither(input)
    if (Either.isLeft(decoded)) {
      return spans.withSpanIn(fiber, Effect.fail(decoded.left), "effect-llm-balancer.complete")
    }
    const request = decoded.right
    const context = fiber.currentContext as Context.Context<Router | Providers>
    const providers = Context.get(context, Providers)
    const call = (
      endpoint: Endpoint,
      _attempt: number,
      lease: Lease
    ): Effect.Effect<Chat.Completion, ProviderError> => {
      const provider = providers.get(endpoint.provider)
      if (provider === undefined) return Effect.fail(noProvider(providers, endpoint))
      const completion = provider.complete(endpoint, request)
      // this library's leases take the usage as the attempt ends (`reportUsage`); another
      // lease's own `report` runs here, inside the attempt (its timeout, interruptible)
      return reportsNow(lease) ? completion : Effect.flatMap(completion, (answer) => {
        const report = usageOf(answer)
        return report === undefined ? Exit.succeed(answer) : Effect.as(lease.report(report), answer)
      })
    }
    // the usage is reported and the response built inside the router's own steps (see
    // `executeIn`): around `execute`, each would take operations of its own
    const routed = executeIn(Context.get(context, Router))(
      fiber,
      call,
      withHints(request, policy),
      reportUsage,
      toResponse
    )
    return spans.withSpanIn(fiber, routed, "effect-llm-balancer.complete")
  })

/** A provider's `Delta` and `Finish` are the routed stream's as they are; `Start` is consumed. */
const toEvent = (part: Chat.StreamPart): Chat.StreamEvent | undefined => part._tag === "Start" ? undefined : part

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
    const providers = yield* Providers
    const started = yield* failoverStream({
      router: yield* Router,
      balancer: yield* Balancer,
      policy: withHints(request, policy),
      open: (endpoint) =>
        Effect.suspend(() => {
          const provider = providers.get(endpoint.provider)
          return provider === undefined
            ? Effect.fail(noProvider(providers, endpoint))
            : Effect.succeed(provider.stream(endpoint, request))
        }),
      isToken: (part: Chat.StreamPart) => part._tag === "Delta",
      isFinish: (part) => part._tag === "Finish",
      observe: (part, lease) =>
        part._tag === "Start"
          ? (part.rateLimit === undefined ? Effect.void : lease.report({ rateLimit: part.rateLimit }))
          : part._tag === "Finish"
          ? lease.report({ usage: part.usage })
          : Effect.void
    })
    return Stream.concat(
      Stream.make(Chat.StreamEvent.Started({ endpoint: started.endpoint, attempts: started.attempts })),
      Stream.filterMap(started.parts, (part) => Option.fromNullable(toEvent(part)))
    )
  }))
