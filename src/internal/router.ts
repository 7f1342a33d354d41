import type { Schedule } from "effect"
import type { Fiber } from "effect"
import {
  Cause,
  Duration,
  Effect,
  Either,
  Exit,
  FiberRef,
  Metric,
  MetricBoundaries,
  MetricKey,
  MetricLabel,
  Option,
  ScheduleDecision,
  ScheduleIntervals
} from "effect"
import * as Schedules from "effect/Schedule"
import type { Hints, Lease } from "../Balancer.js"
import { Balancer } from "../Balancer.js"
import type { Endpoint } from "../Endpoint.js"
import type { Attempt, NoEndpointAvailable, ProviderError } from "../Errors.js"
import type { ConfigIssue } from "../Errors.js"
import { InvalidConfig, RoutingFailed, Timeout } from "../Errors.js"
import { Event } from "../Event.js"
import type { Options, Policy, Routed, RouterService } from "../Router.js"
import * as RetryBudget from "./retryBudget.js"
import * as schemas from "./schemas.js"
import * as spans from "./spans.js"
import * as timer from "./timer.js"

/** Exponential from 250 ms, doubling, full jitter, each delay capped at 10 s. */
export const defaultBackoff: Schedule.Schedule<unknown, unknown> = Schedules.exponential("250 millis", 2).pipe(
  Schedules.jitteredWith({ min: 0, max: 1 }),
  Schedules.union(Schedules.spaced("10 seconds"))
)

export const requests = Metric.counter("llm_balancer_requests_total", { description: "Calls routed" })
export const retries = Metric.counter("llm_balancer_retries_total", { description: "Attempts after the first" })
export const hedges = Metric.counter("llm_balancer_hedges_total", { description: "Hedged attempts started" })
export const failedCalls = Metric.counter("llm_balancer_failed_requests_total", {
  description: "Calls that failed in the end"
})
// each made once: `Metric.increment` builds a new effect per call
const countRequest = Metric.increment(requests)
const countRetry = Metric.increment(retries)
const countHedge = Metric.increment(hedges)
const countFailed = Metric.increment(failedCalls)
const attemptsKey = MetricKey.counter("llm_balancer_attempts_total", {
  description: "Attempts, by endpoint and outcome"
})
export const attemptsTotal = Metric.fromMetricKey(attemptsKey)
const attemptLatencyKey = MetricKey.histogram(
  "llm_balancer_attempt_latency_ms",
  MetricBoundaries.exponential({ start: 10, factor: 2, count: 14 }),
  "Latency of attempts, by endpoint"
)
export const attemptLatency = Metric.fromMetricKey(attemptLatencyKey)

/**
 * Tagged metrics, made once per tag set: `Metric.tagged` builds a new key (and hashes it
 * into the registry) on every update, which cost more than the rest of an attempt.
 */
const tagged = <M>(cache: Map<string, M>, id: string, make: () => M): M => {
  let metric = cache.get(id)
  if (metric === undefined) {
    // endpoints come and go: a bounded cache (a metric made again is the same metric)
    if (cache.size >= maxTagged) cache.clear()
    metric = make()
    cache.set(id, metric)
  }
  return metric
}
const maxTagged = 4096
const attemptCounters = new Map<string, Metric.Metric.Counter<number>>()
const latencyHistograms = new Map<string, Metric.Metric.Histogram<number>>()
const attemptCounter = (endpoint: string, outcome: string) =>
  tagged(
    attemptCounters,
    `${endpoint}\u0000${outcome}`,
    () =>
      Metric.fromMetricKey(
        MetricKey.taggedWithLabels(attemptsKey, [
          MetricLabel.make("endpoint", endpoint),
          MetricLabel.make("outcome", outcome)
        ])
      )
  )
const latencyHistogram = (endpoint: string) =>
  tagged(
    latencyHistograms,
    endpoint,
    () => Metric.fromMetricKey(MetricKey.taggedWithLabels(attemptLatencyKey, [MetricLabel.make("endpoint", endpoint)]))
  )

type Failure = ProviderError | NoEndpointAvailable

const toMillis = (d: Duration.DurationInput | undefined, otherwise: number) =>
  d === undefined ? otherwise : Duration.toMillis(Duration.decode(d))

/** A duration the caller gave, if it is one (not negative), or a description of what is wrong. */
const durationProblem = (name: string, d: unknown): string | undefined => {
  if (d === undefined) return undefined
  const decoded = Duration.decodeUnknown(d)
  if (
    decoded._tag === "None" || Duration.toMillis(decoded.value) < 0 || Number.isNaN(Duration.toMillis(decoded.value))
  ) {
    return `${name} must be a duration such as "5 seconds" or a number of milliseconds, got ${schemas.show(d)}`
  }
  return undefined
}

const countProblem = (name: string, n: unknown, min: number): string | undefined =>
  n === undefined || (typeof n === "number" && Number.isInteger(n) && n >= min)
    ? undefined
    : `${name} must be a whole number of at least ${min}, got ${schemas.show(n)}`

/** What is wrong with a call's policy, if anything: every bad field, in one message. */
export const policyProblems = (p: Policy): ReadonlyArray<string> => {
  // policies come typed, but not always (JSON, JavaScript)
  if (typeof p !== "object" || p === null) return [`must be an object, got ${schemas.show(p)}`]
  if (p.tiers !== undefined && (typeof p.tiers !== "object" || p.tiers === null)) {
    return [`tiers must be an object from priority to limits, got ${schemas.show(p.tiers)}`]
  }
  if (p.hedge !== undefined && (typeof p.hedge !== "object" || p.hedge === null)) {
    return [`hedge must be an object, got ${schemas.show(p.hedge)}`]
  }
  if (p.hints !== undefined && (typeof p.hints !== "object" || p.hints === null)) {
    return [`hints must be an object, got ${schemas.show(p.hints)}`]
  }
  const problems = [
    countProblem("maxAttempts", p.maxAttempts, 1),
    durationProblem("timeout", p.timeout),
    durationProblem("attemptTimeout", p.attemptTimeout),
    durationProblem("idleTimeout", p.idleTimeout),
    p.hedge?.delay === "p95" ? undefined : durationProblem("hedge.delay", p.hedge?.delay),
    p.hedge?.delay === "p95" ? durationProblem("hedge.minDelay", p.hedge.minDelay) : undefined,
    p.hedge?.delay === "p95" ? countProblem("hedge.minSamples", p.hedge.minSamples, 1) : undefined,
    durationProblem("hints.wait", p.hints?.wait)
  ]
  for (const [tier, limits] of Object.entries(p.tiers ?? {})) {
    if (typeof limits !== "object" || limits === null) {
      problems.push(`tiers[${tier}] must be an object of limits, got ${schemas.show(limits)}`)
      continue
    }
    problems.push(
      countProblem(`tiers[${tier}].maxAttempts`, limits.maxAttempts, 0),
      durationProblem(`tiers[${tier}].attemptTimeout`, limits.attemptTimeout)
    )
  }
  return problems.filter((x): x is string => x !== undefined)
}

const budgets = new WeakMap<object, { budget: RetryBudget.RetryBudget }>()

const noProblems: ReadonlyArray<string> = []

/** The twin of a hedged round found no other endpoint to run on. */
class NoTwin {
  readonly _tag = "NoTwin"
}
const noTwin = new NoTwin()
const isNoTwin = (cause: Cause.Cause<unknown>) => Option.exists(Cause.failureOption(cause), (e) => e === noTwin)

const noop = () => {}

/** A hedged round's winner: the loser, if still running, is interrupted and waited for. */
const won = <A>(
  winner: Fiber.RuntimeFiber<A, unknown>,
  value: A,
  loser: Fiber.RuntimeFiber<A, unknown> | undefined
): Effect.Effect<A> =>
  Effect.zipRight(
    loser === undefined || loser.unsafePoll() !== null ? Effect.void : timer.interruptAndAwait(loser),
    Effect.as(winner.inheritAll, value)
  )

/**
 * Waits until one of `fibers` ends or `register`'s wake-up is called; at once if one has
 * already ended. Leaves no observer behind.
 */
const untilChange = (
  fibers: ReadonlyArray<Fiber.RuntimeFiber<unknown, unknown>>,
  register: (wake: (() => void) | undefined) => void
): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    let done = false
    const cleanup = () => {
      register(undefined)
      for (const fiber of fibers) fiber.removeObserver(wakeUp)
    }
    const wakeUp = () => {
      if (done) return
      done = true
      cleanup()
      resume(Effect.void)
    }
    register(wakeUp)
    for (const fiber of fibers) {
      if (done) break
      fiber.addObserver(wakeUp)
    }
    return Effect.sync(() => {
      done = true
      cleanup()
    })
  })

const budgetIssues = (options: Options | undefined): ReadonlyArray<ConfigIssue> => {
  const b = options?.retryBudget
  const issues: Array<ConfigIssue> = []
  const ratio = (name: string, v: unknown) => {
    if (v !== undefined && !(typeof v === "number" && Number.isFinite(v) && v >= 0)) {
      issues.push({
        path: `retryBudget.${name}`,
        message: `must be a finite number of at least 0, got ${schemas.show(v)}`
      })
    }
  }
  ratio("percent", b?.percent)
  ratio("minPerSecond", b?.minPerSecond)
  const ttl = durationProblem("ttl", b?.ttl)
  if (ttl !== undefined) issues.push({ path: "retryBudget.ttl", message: ttl.slice("ttl ".length) })
  else if (b?.ttl !== undefined && toMillis(b.ttl, 0) <= 0) {
    issues.push({ path: "retryBudget.ttl", message: "must be longer than 0" })
  }
  for (const problem of options?.defaults === undefined ? [] : policyProblems(options.defaults)) {
    issues.push({ path: "defaults", message: problem })
  }
  return issues
}

export const make = (options?: Options): Effect.Effect<RouterService, InvalidConfig, Balancer> =>
  Effect.gen(function*() {
    const issues = budgetIssues(options)
    if (issues.length > 0) return yield* Effect.fail(new InvalidConfig({ issues }))
    const balancer = yield* Balancer
    const clock = yield* Effect.clock
    const settings: RetryBudget.Settings = {
      percent: options?.retryBudget?.percent ?? 0.1,
      minPerSecond: options?.retryBudget?.minPerSecond ?? 1,
      ttlMs: toMillis(options?.retryBudget?.ttl, 10_000)
    }
    // One budget per balancer, shared by every router over it. It changes only in
    // synchronous steps, so concurrent calls never lose an update.
    let shared = budgets.get(balancer)
    if (shared === undefined) {
      shared = { budget: RetryBudget.empty }
      budgets.set(balancer, shared)
    }
    const cell = shared
    const defaults: Policy = options?.defaults ?? {}
    const withdraw = () => {
      const [allowed, next] = RetryBudget.withdraw(cell.budget, clock.unsafeCurrentTimeMillis(), settings)
      cell.budget = next
      return allowed
    }
    const refund = () => {
      cell.budget = RetryBudget.refund(cell.budget)
    }

    const execute = <A, R>(
      call: (endpoint: Endpoint, attempt: number, lease: Lease) => Effect.Effect<A, ProviderError, R>,
      policy?: Policy
    ): Effect.Effect<Routed<A>, RoutingFailed, R> =>
      Effect.gen(function*() {
        const p: Policy = policy === undefined
          ? defaults
          : options?.defaults === undefined
          ? policy
          : { ...defaults, ...policy, hints: mergeHints(defaults.hints, policy.hints) }
        // the defaults were checked when the router was made
        const problems = policy === undefined ? noProblems : policyProblems(p)
        if (problems.length > 0) {
          return yield* Effect.fail(
            new RoutingFailed({
              reason: "invalid-policy",
              lastError: undefined,
              attempts: [],
              detail: problems.join("; ")
            })
          )
        }
        const maxAttempts = p.maxAttempts ?? 3
        const backoff = (p.backoff ?? defaultBackoff) as Schedule.Schedule<unknown, Failure | undefined>
        const start = clock.unsafeCurrentTimeMillis()
        const deadline = start + toMillis(p.timeout, Infinity)
        const attemptTimeoutMs = toMillis(p.attemptTimeout, Infinity)
        const hedge = p.hedge
        /** How long the twin waits for an attempt on `endpoint`; `undefined`: no hedge for it. */
        const hedgeDelayFor = (endpoint: Endpoint): Effect.Effect<Duration.Duration | undefined> => {
          if (hedge === undefined) return Effect.succeed(undefined)
          if (hedge.delay !== "p95") return Effect.succeed(Duration.decode(hedge.delay))
          const { minDelay, minSamples } = hedge
          return Effect.map(balancer.latencyQuantile(endpoint.name, 0.95), (p95) =>
            p95 === undefined || p95.samples < (minSamples ?? 20)
              ? undefined
              : Duration.millis(Math.max(p95.upper ?? p95.ms, toMillis(minDelay, 0))))
        }
        const hints: Hints = p.hints ?? {}
        cell.budget = RetryBudget.deposit(cell.budget, start, settings)
        yield* countRequest

        const attempts: Array<Attempt> = []
        const tried: Array<string> = []
        // attempts per tier, and the endpoints of tiers whose attempts are spent
        // only a policy with tiers counts per tier
        const perTier = p.tiers === undefined ? undefined : new Map<number, number>()
        const spentTiers: Array<string> = []
        let minContextWindow = hints.minContextWindow
        let scheduleState = backoff.initial
        let lastError: Failure | undefined
        let retryAt: number | undefined
        // the attempt that failed last (in time), with its endpoint: with a hedge in flight
        // the two attempts of a round can fail in either order
        let lastFailure: { readonly error: ProviderError; readonly endpoint: Endpoint } | undefined
        const stop = (reason: RoutingFailed["reason"]) =>
          Effect.zipRight(
            Effect.zipRight(
              countFailed,
              spans.annotate(() => ({ "llm.attempts": attempts.length, "llm.outcome": reason }))
            ),
            Effect.fail(new RoutingFailed({ reason, lastError, attempts: attempts.slice(), retryAt }))
          )

        /** One attempt on an endpoint the balancer picks under `attemptHints`. */
        const attemptOn = (
          attemptHints: Hints,
          n: number,
          hedge: boolean,
          /** Runs as the attempt starts, before the call (the hedge arms its timer). */
          onStart?: (endpoint: Endpoint) => Effect.Effect<void>
        ) =>
          balancer.use((endpoint, lease) =>
            Effect.suspend(() => {
              const startedAt = clock.unsafeCurrentTimeMillis()
              if (!tried.includes(endpoint.name)) {
                tried.push(endpoint.name)
              }
              const tier = p.tiers?.[endpoint.priority]
              perTier?.set(endpoint.priority, (perTier.get(endpoint.priority) ?? 0) + 1)
              const ownLimit = toMillis(tier?.attemptTimeout, attemptTimeoutMs)
              const left = deadline - startedAt
              const timeoutMs = Math.min(ownLimit, left)
              // the call's deadline, not the endpoint, is what cut this attempt short
              const cutByDeadline = left < ownLimit
              const timedOut = () =>
                new Timeout({
                  endpoint: endpoint.name,
                  detail: `no answer within ${Math.round(Math.max(0, timeoutMs))} ms`,
                  cutByDeadline
                })
              const timed = !Number.isFinite(timeoutMs)
                ? call(endpoint, n, lease)
                : timeoutMs <= 0
                ? Effect.fail(timedOut())
                : timer.timeoutFail(call(endpoint, n, lease), timeoutMs, timedOut)
              // one synchronous step for the record, the metrics and the span: this runs on
              // every attempt, and each effect operation costs more than all of it
              const record = (outcome: Attempt["outcome"]) =>
                Effect.withFiberRuntime<void>((fiber) => {
                  const at = clock.unsafeCurrentTimeMillis()
                  const latencyMs = at - startedAt
                  attempts.push({ endpoint: endpoint.name, number: n, startedAt, latencyMs, hedge, outcome })
                  const labels = fiber.getFiberRef(FiberRef.currentMetricLabels)
                  attemptCounter(endpoint.name, outcome).unsafeUpdate(1, labels)
                  latencyHistogram(endpoint.name).unsafeUpdate(latencyMs, labels)
                  spans.annotateIn(fiber, "llm.outcome", outcome)
                  return balancer.reportAttempt(
                    Event.AttemptEnded({ name: endpoint.name, at, attempt: n, hedge, outcome, latencyMs })
                  )
                })
              const attempt = spans.withSpan(
                (hedge ? Effect.zipRight(countHedge, timed) : timed).pipe(
                  Effect.onExit((exit) => {
                    if (Exit.isSuccess(exit)) {
                      return record("Success")
                    }
                    const failure = Cause.failureOption(exit.cause)
                    if (failure._tag === "Some") {
                      lastFailure = { error: failure.value, endpoint }
                      return record(failure.value._tag)
                    }
                    // interrupted (a lost hedge race, the caller gave up); a defect is no attempt's outcome
                    return Cause.isInterruptedOnly(exit.cause) ? record("Cancelled") : Effect.void
                  }),
                  Effect.map((value) =>
                    [value, endpoint] as const
                  )
                ),
                "effect-llm-balancer.attempt",
                () => ({
                  attributes: {
                    "llm.endpoint": endpoint.name,
                    "llm.provider": endpoint.provider,
                    "llm.attempt": n,
                    hedge
                  }
                })
              )
              return onStart === undefined ? attempt : Effect.zipRight(onStart(endpoint), attempt)
            }), attemptHints)

        /**
         * An attempt, hedged when the policy asks: if it has not answered after the delay,
         * a twin starts on an endpoint not tried yet; the first success wins and the other
         * is interrupted. A primary that fails before the delay fails the round at once;
         * when both fail, the one that failed last is reported.
         *
         * Written as a small state machine over the two fibers and a timer rather than with
         * `Effect.race`: a round then forks one fiber (two with a twin) and interrupts only a
         * loser that is still running, which matters when thousands of rounds run a second
         * (the simulation).
         */
        type Answer = Effect.Effect.Success<ReturnType<typeof attemptOn>>
        type Needs = Effect.Effect.Context<ReturnType<typeof attemptOn>>
        const round = (attemptHints: Hints, n: number): Effect.Effect<Answer, Failure, Needs> => {
          if (hedge === undefined) return attemptOn(attemptHints, n, false)
          return Effect.flatMap(timer.scheduleTask, (schedule) =>
            Effect.uninterruptibleMask((restore) => {
              let fired = false
              let cancelTimer = noop
              /** Wakes the round when something it waits for has happened. */
              let wake: (() => void) | undefined
              // the delay depends on the endpoint the primary got (its p95), known once it starts
              const armTimer = (endpoint: Endpoint) =>
                Effect.map(hedgeDelayFor(endpoint), (delay) => {
                  if (delay === undefined) return
                  cancelTimer = schedule(() => {
                    fired = true
                    wake?.()
                  }, Duration.toMillis(delay))
                })
              const untried = () =>
                hintsWith(attemptHints, concat(attemptHints.exclude, tried), attemptHints.minContextWindow, undefined)
              return Effect.gen(function*() {
                const primary = yield* Effect.fork(restore(attemptOn(attemptHints, n, false, armTimer)))
                let twin: Fiber.RuntimeFiber<Answer, Failure | NoTwin> | undefined
                let twinAsked = false
                return yield* Effect.gen(function*() {
                  for (;;) {
                    const p = primary.unsafePoll()
                    const t = twin?.unsafePoll() ?? null
                    if (p !== null && Exit.isSuccess(p)) {
                      cancelTimer()
                      return yield* won(primary, p.value, twin)
                    }
                    if (t !== null && Exit.isSuccess(t)) return yield* won(twin!, t.value, primary)
                    if (t !== null && Exit.isFailure(t) && isNoTwin(t.cause)) {
                      // no other endpoint: the retry was not spent, and the primary goes on alone
                      twin = undefined
                      continue
                    }
                    if (p !== null && (twin === undefined || t !== null)) {
                      cancelTimer()
                      // both failed: report the one that failed last (recorded by `attemptOn`)
                      if (t !== null && Exit.isFailure(t) && lastFailure !== undefined) {
                        const last = lastFailure.error
                        const twinLast = Option.exists(Cause.failureOption(t.cause), (e) => e === last)
                        return yield* (twinLast ? t as Exit.Exit<never, Failure> : p)
                      }
                      return yield* p
                    }
                    if (fired && !twinAsked && p === null) {
                      twinAsked = true
                      if (withdraw()) {
                        twin = yield* Effect.fork(restore(
                          Effect.catchTag(attemptOn(untried(), n, true), "NoEndpointAvailable", () => {
                            refund()
                            return Effect.fail(noTwin)
                          })
                        ))
                      }
                      continue
                    }
                    yield* restore(untilChange(
                      [primary, twin].filter((f): f is Fiber.RuntimeFiber<Answer, any> =>
                        f !== undefined && f.unsafePoll() === null
                      ),
                      (w) => {
                        wake = w
                        // the timer may have fired between the checks above and now (the
                        // fiber can yield in between): a wake-up due is not dropped
                        if (w !== undefined && fired && !twinAsked) w()
                      }
                    ))
                  }
                }).pipe(Effect.onInterrupt(() =>
                  Effect.flatMap(Effect.fiberId, (id) => {
                    // both stopped at once (as a race would), then awaited; the timer last, in
                    // case the primary armed it meanwhile
                    const running = twin === undefined ? [primary] : [primary, twin]
                    for (const fiber of running) fiber.unsafeInterruptAsFork(id)
                    return Effect.ensuring(
                      Effect.forEach(running, (fiber) => fiber.await, { discard: true }),
                      Effect.sync(() => cancelTimer())
                    )
                  })
                ))
              })
            }))
        }

        for (let n = 1;; n++) {
          const now = clock.unsafeCurrentTimeMillis()
          if (n > 1 && n > maxAttempts) return yield* stop("attempts-exhausted")
          if (now >= deadline) return yield* stop("deadline")
          if (n > 1) {
            if (!withdraw()) return yield* stop("retry-budget")
            yield* countRetry
          }
          if (p.tiers !== undefined) {
            for (const [key, limits] of Object.entries(p.tiers)) {
              const tier = Number(key)
              if (limits.maxAttempts !== undefined && (perTier?.get(tier) ?? 0) >= limits.maxAttempts) {
                const names = (yield* balancer.endpoints).filter((e) => e.priority === tier).map((e) => e.name)
                for (const name of names) if (!spentTiers.includes(name)) spentTiers.push(name)
              }
            }
          }
          const exclude = concat(hints.exclude, spentTiers)
          const untried = hintsWith(
            hints,
            concat(exclude, tried),
            minContextWindow,
            // waiting for capacity is part of the call's time
            n === 1 && hints.wait !== undefined
              ? Duration.millis(Math.min(Duration.toMillis(Duration.decode(hints.wait)), deadline - now))
              : undefined
          )
          let outcome = yield* Effect.either(round(untried, n))
          if (Either.isLeft(outcome) && outcome.left._tag === "NoEndpointAvailable" && tried.length > 0) {
            // every routable endpoint was tried: back off, then any endpoint again
            const [state, , decision] = yield* backoff.step(now, lastError, scheduleState)
            // a stop here makes no attempt: the retry taken for it is given back
            if (ScheduleDecision.isDone(decision)) {
              if (n > 1) refund()
              return yield* stop("attempts-exhausted")
            }
            scheduleState = state
            const delay = Math.max(0, ScheduleIntervals.start(decision.intervals) - now)
            if (now + delay >= deadline) {
              if (n > 1) refund()
              return yield* stop("deadline")
            }
            if (delay > 0) yield* Effect.sleep(Duration.millis(delay))
            outcome = yield* Effect.either(round(hintsWith(hints, exclude, minContextWindow, undefined), n))
          }
          if (Either.isRight(outcome)) {
            const [value, endpoint] = outcome.right
            yield* spans.annotate(() => ({
              "llm.endpoint": endpoint.name,
              "llm.attempts": attempts.length,
              "llm.outcome": "Success"
            }))
            return { value, endpoint, attempts: attempts.slice() }
          }
          const error = outcome.left
          if (error._tag === "NoEndpointAvailable") {
            // the last real error stays the provider's; when an endpoint frees up is kept apart
            retryAt = error.retryAt
            if (lastError === undefined) lastError = error
            return yield* stop("no-endpoint")
          }
          lastError = error
          if (error._tag === "ContextLengthExceeded") {
            // only a larger window can help
            minContextWindow = Math.max(minContextWindow ?? 0, (lastFailure?.endpoint.contextWindow ?? 0) + 1)
            continue
          }
          if (!error.retryable) return yield* stop("not-retryable")
        }
      }).pipe((effect) => spans.withSpan(effect, "effect-llm-balancer.execute"))

    return { execute }
  })

/**
 * A call's hints over the defaults', key by key: a key the call leaves out (or
 * `undefined`) keeps the default, so `Llm.complete`, which always passes its token
 * estimates, keeps a router's default `wait`, `tags` or `exclude`.
 */
const mergeHints = (defaults: Hints | undefined, call: Hints | undefined): Hints | undefined => {
  if (call === undefined) return defaults
  if (defaults === undefined) return call
  const merged: EveryHint = {
    exclude: call.exclude ?? defaults.exclude,
    tags: call.tags ?? defaults.tags,
    minContextWindow: call.minContextWindow ?? defaults.minContextWindow,
    group: call.group ?? defaults.group,
    inputTokens: call.inputTokens ?? defaults.inputTokens,
    outputTokens: call.outputTokens ?? defaults.outputTokens,
    wait: call.wait ?? defaults.wait
  }
  return merged
}

/**
 * `Hints` with every field written out (possibly `undefined`): the hints built field by
 * field are typed with it, so a field added to `Hints` and forgotten there does not compile.
 */
export type EveryHint = { readonly [K in keyof Hints]-?: Hints[K] }

/**
 * `base` with the attempt's own exclusions, context window and wait. Every field is
 * written out: an object of one fixed shape is built far faster than a spread, and this
 * runs on every attempt.
 */
const hintsWith = (
  base: Hints,
  exclude: ReadonlyArray<string>,
  minContextWindow: number | undefined,
  wait: Duration.DurationInput | undefined
): EveryHint => ({
  exclude,
  tags: base.tags,
  minContextWindow,
  group: base.group,
  inputTokens: base.inputTokens,
  outputTokens: base.outputTokens,
  wait
})

const none: ReadonlyArray<string> = []

/** `a` then `b`, without copying when either is empty. */
const concat = (a: ReadonlyArray<string> | undefined, b: ReadonlyArray<string>): ReadonlyArray<string> =>
  a === undefined || a.length === 0 ? (b.length === 0 ? none : b) : b.length === 0 ? a : [...a, ...b]
