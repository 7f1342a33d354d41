import type { Schedule } from "effect"
import { Duration, Effect, Either, Metric, MetricBoundaries, ScheduleDecision, ScheduleIntervals } from "effect"
import * as Schedules from "effect/Schedule"
import type { Hints } from "../Balancer.js"
import { Balancer } from "../Balancer.js"
import type { Endpoint } from "../Endpoint.js"
import type { Attempt, NoEndpointAvailable, ProviderError } from "../Errors.js"
import { RoutingFailed, Timeout } from "../Errors.js"
import type { Options, Policy, Routed, RouterService } from "../Router.js"
import * as RetryBudget from "./retryBudget.js"

/** Exponential from 250 ms, doubling, full jitter, each delay capped at 10 s. */
export const defaultBackoff: Schedule.Schedule<unknown, unknown> = Schedules.exponential("250 millis", 2).pipe(
  Schedules.jitteredWith({ min: 0, max: 1 }),
  Schedules.union(Schedules.spaced("10 seconds"))
)

const requests = Metric.counter("llm_balancer_requests_total", { description: "Calls routed" })
const retries = Metric.counter("llm_balancer_retries_total", { description: "Attempts after the first" })
const failedCalls = Metric.counter("llm_balancer_failed_requests_total", {
  description: "Calls that failed in the end"
})
const attemptsTotal = Metric.counter("llm_balancer_attempts_total", {
  description: "Attempts, by endpoint and outcome"
})
const attemptLatency = Metric.histogram(
  "llm_balancer_attempt_latency_ms",
  MetricBoundaries.exponential({ start: 10, factor: 2, count: 14 }),
  "Latency of attempts, by endpoint"
)

type Failure = ProviderError | NoEndpointAvailable

export const make = (options?: Options): Effect.Effect<RouterService, never, Balancer> =>
  Effect.gen(function*() {
    const balancer = yield* Balancer
    const clock = yield* Effect.clock
    const settings: RetryBudget.Settings = {
      percent: options?.retryBudget?.percent ?? 0.1,
      minPerSecond: options?.retryBudget?.minPerSecond ?? 1,
      ttlMs: Duration.toMillis(Duration.decode(options?.retryBudget?.ttl ?? "10 seconds"))
    }
    // changed only in synchronous steps, so concurrent calls never lose an update
    let budget = RetryBudget.empty
    const defaults: Policy = options?.defaults ?? {}

    const execute = <A, R>(
      call: (endpoint: Endpoint, attempt: number) => Effect.Effect<A, ProviderError, R>,
      policy?: Policy
    ): Effect.Effect<Routed<A>, RoutingFailed, R> =>
      Effect.gen(function*() {
        const p: Policy = { ...defaults, ...policy }
        const maxAttempts = p.maxAttempts ?? 3
        const backoff = (p.backoff ?? defaultBackoff) as Schedule.Schedule<unknown, Failure | undefined>
        const start = clock.unsafeCurrentTimeMillis()
        const deadline = p.timeout === undefined ? Infinity : start + Duration.toMillis(Duration.decode(p.timeout))
        const attemptTimeoutMs = p.attemptTimeout === undefined ?
          Infinity :
          Duration.toMillis(Duration.decode(p.attemptTimeout))
        const hints: Hints = p.hints ?? {}
        budget = RetryBudget.deposit(budget, start, settings)
        yield* Metric.increment(requests)

        const attempts: Array<Attempt> = []
        const tried: Array<string> = []
        let minContextWindow = hints.minContextWindow
        let scheduleState = backoff.initial
        let lastError: Failure | undefined
        let lastEndpoint: Endpoint | undefined
        const stop = (reason: RoutingFailed["reason"]) =>
          Effect.zipRight(
            Metric.increment(failedCalls),
            Effect.fail(new RoutingFailed({ reason, lastError, attempts: attempts.slice() }))
          )

        /** One attempt on an endpoint the balancer picks under `attemptHints`. */
        const attemptOn = (attemptHints: Hints, n: number) =>
          balancer.use((endpoint) =>
            Effect.suspend(() => {
              const startedAt = clock.unsafeCurrentTimeMillis()
              lastEndpoint = endpoint
              if (!tried.includes(endpoint.name)) tried.push(endpoint.name)
              const timeoutMs = Math.min(attemptTimeoutMs, deadline - startedAt)
              const timed = Number.isFinite(timeoutMs)
                ? Effect.timeoutFail(call(endpoint, n), {
                  duration: Duration.millis(timeoutMs),
                  onTimeout: () =>
                    new Timeout({ endpoint: endpoint.name, detail: `no answer within ${Math.round(timeoutMs)} ms` })
                })
                : call(endpoint, n)
              const record = (outcome: Attempt["outcome"]) =>
                Effect.suspend(() => {
                  const latencyMs = clock.unsafeCurrentTimeMillis() - startedAt
                  attempts.push({ endpoint: endpoint.name, number: n, startedAt, latencyMs, outcome })
                  return Effect.zipRight(
                    Metric.increment(
                      Metric.tagged(Metric.tagged(attemptsTotal, "endpoint", endpoint.name), "outcome", outcome)
                    ),
                    Effect.zipRight(
                      Metric.update(Metric.tagged(attemptLatency, "endpoint", endpoint.name), latencyMs),
                      Effect.annotateCurrentSpan("llm.outcome", outcome)
                    )
                  )
                })
              return timed.pipe(
                Effect.tapBoth({ onFailure: (e) => record(e._tag), onSuccess: () => record("Success") }),
                Effect.map((value) => [value, endpoint] as const),
                Effect.withSpan("effect-llm-balancer.attempt", {
                  attributes: { "llm.endpoint": endpoint.name, "llm.provider": endpoint.provider, "llm.attempt": n }
                })
              )
            }), attemptHints)

        for (let n = 1;; n++) {
          if (n > 1) {
            if (n > maxAttempts) return yield* stop("attempts-exhausted")
            const [allowed, next] = RetryBudget.withdraw(budget, clock.unsafeCurrentTimeMillis(), settings)
            budget = next
            if (!allowed) return yield* stop("retry-budget")
            yield* Metric.increment(retries)
          }
          const now = clock.unsafeCurrentTimeMillis()
          if (now >= deadline) return yield* stop("deadline")
          const untried: Hints = {
            ...hints,
            exclude: [...(hints.exclude ?? []), ...tried],
            minContextWindow,
            wait: n === 1 ? hints.wait : undefined
          }
          let outcome = yield* Effect.either(attemptOn(untried, n))
          if (Either.isLeft(outcome) && outcome.left._tag === "NoEndpointAvailable" && tried.length > 0) {
            // every routable endpoint was tried: back off, then any endpoint again
            const [state, , decision] = yield* backoff.step(now, lastError, scheduleState)
            if (ScheduleDecision.isDone(decision)) return yield* stop("attempts-exhausted")
            scheduleState = state
            const delay = Math.max(0, ScheduleIntervals.start(decision.intervals) - now)
            if (now + delay >= deadline) return yield* stop("deadline")
            if (delay > 0) yield* Effect.sleep(Duration.millis(delay))
            outcome = yield* Effect.either(attemptOn({ ...hints, minContextWindow, wait: undefined }, n))
          }
          if (Either.isRight(outcome)) {
            const [value, endpoint] = outcome.right
            return { value, endpoint, attempts: attempts.slice() }
          }
          const error = outcome.left
          lastError = error
          if (error._tag === "NoEndpointAvailable") return yield* stop("no-endpoint")
          if (error._tag === "ContextLengthExceeded") {
            // only a larger window can help
            minContextWindow = Math.max(minContextWindow ?? 0, (lastEndpoint?.contextWindow ?? 0) + 1)
            continue
          }
          if (!error.retryable) return yield* stop("not-retryable")
        }
      }).pipe(Effect.withSpan("effect-llm-balancer.execute"))

    return { execute }
  })
