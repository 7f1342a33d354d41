/**
 * A routed stream that fails over only before its first token: each attempt opens the
 * endpoint's stream and reads it up to its first token; the first attempt to get there
 * wins, and its stream goes on to the consumer with its lease held until it ends, fails
 * or is interrupted. After the first token an error ends the stream with that error, and
 * a stream that ends without its finish is an error too (a cut connection is never a
 * clean end). Shared by `Llm.stream` and the `@effect/ai` bridge.
 */
import { Cause, Duration, Effect, Exit, Option, Ref, Scope, Stream } from "effect"
import type * as Chunk from "effect/Chunk"
import type { BalancerService, Lease } from "../Balancer.js"
import type { Endpoint } from "../Endpoint.js"
import type { Attempt, ProviderError, RoutingFailed } from "../Errors.js"
import { MalformedResponse, Timeout } from "../Errors.js"
import * as Outcome from "../Outcome.js"
import type { Policy, RouterService } from "../Router.js"

export interface Options<A, R> {
  readonly router: RouterService
  readonly balancer: BalancerService
  readonly policy: Policy
  /** The endpoint's stream, or why it cannot be opened. */
  readonly open: (endpoint: Endpoint, lease: Lease) => Effect.Effect<Stream.Stream<A, ProviderError, R>, ProviderError>
  /** Whether the part is (or carries) the first token. */
  readonly isToken: (part: A) => boolean
  /** Whether the part is the stream's proper end. */
  readonly isFinish: (part: A) => boolean
  /** Reports what a part says (usage, rate-limit hints) through the lease. */
  readonly observe: (part: A, lease: Lease) => Effect.Effect<void>
}

export interface Started<A, R> {
  readonly endpoint: Endpoint
  readonly attempts: ReadonlyArray<Attempt>
  readonly parts: Stream.Stream<A, ProviderError, R>
}

interface Opened<A> {
  readonly head: ReadonlyArray<A>
  readonly pull: Effect.Effect<Chunk.Chunk<A>, Option.Option<ProviderError>>
  readonly lease: Lease
}

const cut = (endpoint: Endpoint, detail: string): ProviderError =>
  new MalformedResponse({ endpoint: endpoint.name, detail })

/**
 * Routes the stream to its first token. The result's `parts` must be run in the same
 * scope: closing it releases the lease with how the stream ended (a consumer that
 * stops early cancels it).
 */
export const failoverStream = <A, R>(
  options: Options<A, R>
): Effect.Effect<Started<A, never>, RoutingFailed, R | Scope.Scope> =>
  Effect.gen(function*() {
    const { balancer, isFinish, isToken, observe, open, router } = options
    const context = yield* Effect.context<R>()
    // how the stream ended decides the outcome; a consumer that stops early cancels it
    const ending = yield* Ref.make<Outcome.Outcome>(Outcome.cancelled)
    const callerScope = yield* Effect.scope
    const routed = yield* router.execute(
      (endpoint, _attempt, lease) =>
        Effect.flatMap(Scope.make(), (scope) =>
          Effect.gen(function*() {
            const stream = yield* open(endpoint, lease)
            const pull = yield* Scope.extend(Stream.toPull(Stream.provideContext(stream, context)), scope)
            const head: Array<A> = []
            for (;;) {
              const chunk = yield* Effect.mapError(
                pull,
                (e) => Option.getOrElse(e, () => cut(endpoint, "the stream ended before its first token"))
              )
              let started = false
              for (const part of chunk) {
                head.push(part)
                yield* observe(part, lease)
                if (isToken(part) || isFinish(part)) started = true
              }
              if (started) break
            }
            yield* lease.firstToken
            // the stream goes on after this attempt, and its consumer's scope releases the lease:
            // registered before the lease is detached, so that no interruption can leak it
            yield* Scope.addFinalizer(
              callerScope,
              Effect.zipRight(
                Effect.flatMap(Ref.get(ending), (outcome) => balancer.release(lease, outcome)),
                Scope.close(scope, Exit.void)
              )
            )
            yield* lease.detach
            return { head, pull, lease } satisfies Opened<A>
          }).pipe(Effect.onExit((exit) => exit._tag === "Failure" ? Scope.close(scope, exit) : Effect.void))),
      // a hedge's loser could have its stream open already: streams are not hedged
      { ...options.policy, hedge: undefined }
    )
    const { head, lease, pull } = routed.value
    const endpoint = routed.endpoint
    let finished = head.some(isFinish)
    // an answer is complete at its finish, even if the consumer stops reading right there
    if (finished) yield* Ref.set(ending, Outcome.success())
    const end = Effect.suspend(() =>
      finished
        ? Ref.set(ending, Outcome.success())
        : Effect.fail(cut(endpoint, "the stream ended before its finish"))
    )
    const rest = Stream.repeatEffectChunkOption(pull).pipe(
      Stream.tap((part) => {
        if (!isFinish(part)) return observe(part, lease)
        finished = true
        return Effect.zipRight(observe(part, lease), Ref.set(ending, Outcome.success()))
      })
    )
    const idle = options.policy.idleTimeout
    const watched = idle === undefined ? rest : Stream.timeoutFail(
      rest,
      () =>
        new Timeout({
          endpoint: endpoint.name,
          detail: `the stream stalled: no part within ${Duration.format(Duration.decode(idle))} of the last`
        }),
      idle
    )
    const parts = Stream.concat(Stream.fromIterable(head), watched).pipe(
      Stream.concat(Stream.drain(Stream.fromEffect(end))),
      // a failure after the finish does not undo a complete answer; a defect counts too
      Stream.tapErrorCause((cause) =>
        finished || Cause.isInterruptedOnly(cause) ? Effect.void : Ref.set(ending, Outcome.failure(Cause.squash(cause)))
      )
    )
    return { endpoint, attempts: routed.attempts, parts }
  })
