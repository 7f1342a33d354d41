import type { Clock, Schedule } from "effect"
import {
  Cause,
  Duration,
  Effect,
  Exit,
  Fiber,
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
import type { BalancerService, Hints, Lease } from "../Balancer.js"
import { Balancer } from "../Balancer.js"
import type { Endpoint } from "../Endpoint.js"
import type { Attempt, NoEndpointAvailable, ProviderError } from "../Errors.js"
import type { ConfigIssue } from "../Errors.js"
import { InvalidConfig, RoutingFailed, Timeout } from "../Errors.js"
import { Event } from "../Event.js"
import type { Options, Policy, Routed, RouterService } from "../Router.js"
import type { Executable, StartFn, UseObservedFn } from "./hotPath.js"
import { ExecuteIn, unheard, useObserved } from "./hotPath.js"
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
 * An endpoint's tagged metrics, made once: `Metric.tagged` builds a new key (and hashes it
 * into the registry) on every update, which cost more than the rest of an attempt.
 */
interface EndpointMetrics {
  readonly latency: Metric.Metric.Histogram<number>
  /** By outcome. */
  readonly attempts: Map<string, Metric.Metric.Counter<number>>
}
const endpointMetrics = new Map<string, EndpointMetrics>()
// endpoints come and go: a bounded cache (a metric made again is the same metric)
const maxTagged = 4096
const metricsOf = (endpoint: string): EndpointMetrics => {
  let metrics = endpointMetrics.get(endpoint)
  if (metrics === undefined) {
    if (endpointMetrics.size >= maxTagged) endpointMetrics.clear()
    metrics = {
      latency: Metric.fromMetricKey(
        MetricKey.taggedWithLabels(attemptLatencyKey, [MetricLabel.make("endpoint", endpoint)])
      ),
      attempts: new Map()
    }
    endpointMetrics.set(endpoint, metrics)
  }
  return metrics
}
const attemptCounter = (metrics: EndpointMetrics, endpoint: string, outcome: string) => {
  let counter = metrics.attempts.get(outcome)
  if (counter === undefined) {
    counter = Metric.fromMetricKey(
      MetricKey.taggedWithLabels(attemptsKey, [
        MetricLabel.make("endpoint", endpoint),
        MetricLabel.make("outcome", outcome)
      ])
    )
    metrics.attempts.set(outcome, counter)
  }
  return counter
}

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

const noProblems: ReadonlyArray<string> = []

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
  // checked on every call that passes a policy: nothing is allocated for a good one
  let problems: Array<string> | undefined
  const note = (problem: string | undefined) => {
    if (problem !== undefined) (problems ??= []).push(problem)
  }
  note(countProblem("maxAttempts", p.maxAttempts, 1))
  note(durationProblem("timeout", p.timeout))
  note(durationProblem("attemptTimeout", p.attemptTimeout))
  note(durationProblem("idleTimeout", p.idleTimeout))
  if (p.hedge !== undefined) {
    if (p.hedge.delay === "p95") {
      note(durationProblem("hedge.minDelay", p.hedge.minDelay))
      note(countProblem("hedge.minSamples", p.hedge.minSamples, 1))
    } else {
      note(durationProblem("hedge.delay", p.hedge.delay))
    }
  }
  note(durationProblem("hints.wait", p.hints?.wait))
  if (p.tiers !== undefined) {
    for (const [tier, limits] of Object.entries(p.tiers)) {
      if (typeof limits !== "object" || limits === null) {
        note(`tiers[${tier}] must be an object of limits, got ${schemas.show(limits)}`)
        continue
      }
      note(countProblem(`tiers[${tier}].maxAttempts`, limits.maxAttempts, 0))
      note(durationProblem(`tiers[${tier}].attemptTimeout`, limits.attemptTimeout))
    }
  }
  return problems ?? noProblems
}

const budgets = new WeakMap<object, { budget: RetryBudget.RetryBudget }>()

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

/** What every call of one router shares. */
interface Routing {
  readonly balancer: BalancerService
  readonly use: UseObservedFn
  /** Nobody would hear an attempt's report. */
  readonly unheard: () => boolean
  readonly clock: Clock.Clock
  /** Takes a retry from the budget, if it allows one. */
  readonly withdraw: () => boolean
  /** Gives back a retry that made no attempt. */
  readonly refund: () => void
}

/**
 * One routed call: its state, and its steps as plain methods that return the next effect
 * (a generator cost every call more than all the rest of the router; see docs/design.md).
 * The call goes `from` attempt n: a round (one attempt, or two when hedged), then either
 * success, a back-off when every routable endpoint was tried, or the next attempt.
 */
class Call<A, B, R> {
  readonly attempts: Array<Attempt> = []
  readonly tried: Array<string> = []
  /** Attempts per tier: only a policy with tiers counts them. */
  readonly perTier: Map<number, number> | undefined
  /** The endpoints of tiers whose attempts are spent. */
  readonly spentTiers: Array<string> = []
  readonly hints: Hints
  readonly maxAttempts: number
  readonly backoff: Schedule.Schedule<unknown, Failure | undefined>
  readonly deadline: number
  readonly attemptTimeoutMs: number
  minContextWindow: number | undefined
  scheduleState: unknown
  lastError: Failure | undefined = undefined
  retryAt: number | undefined = undefined
  /**
   * The attempt that failed last (in time), with its endpoint: with a hedge in flight the
   * two attempts of a round can fail in either order.
   */
  lastFailure: { readonly error: ProviderError; readonly endpoint: Endpoint } | undefined = undefined
  /** Where the round's primary attempt, and its twin, started. */
  primaryOn: Endpoint | undefined = undefined
  twinOn: Endpoint | undefined = undefined
  /** Where a hedged round's answer came from. */
  answeredBy: Endpoint | undefined = undefined

  constructor(
    readonly routing: Routing,
    readonly call: (endpoint: Endpoint, attempt: number, lease: Lease) => Effect.Effect<A, ProviderError, R>,
    readonly p: Policy,
    start: number,
    /** Runs as an attempt answers, before its lease is settled (see `ExecuteIn`). */
    readonly answered: ((value: A, lease: Lease) => void) | undefined,
    /** The call's result from the routed answer. */
    readonly finish: (routed: Routed<A>) => B,
    /** Spans are collected: the call has a span of its own. */
    readonly traced: boolean
  ) {
    this.hints = p.hints ?? noHints
    this.maxAttempts = p.maxAttempts ?? 3
    this.backoff = (p.backoff ?? defaultBackoff) as Schedule.Schedule<unknown, Failure | undefined>
    this.scheduleState = this.backoff.initial
    this.deadline = start + toMillis(p.timeout, Infinity)
    this.attemptTimeoutMs = toMillis(p.attemptTimeout, Infinity)
    this.perTier = p.tiers === undefined ? undefined : new Map()
    this.minContextWindow = this.hints.minContextWindow
  }

  /** The call from attempt `n` on. */
  from(n: number): Effect.Effect<B, RoutingFailed, R> {
    const now = this.routing.clock.unsafeCurrentTimeMillis()
    if (n > 1 && n > this.maxAttempts) return this.stop("attempts-exhausted")
    if (now >= this.deadline) return this.stop("deadline")
    if (n > 1 && !this.routing.withdraw()) return this.stop("retry-budget")
    const next = this.p.tiers === undefined ? this.roundAt(n, now) : this.spendTiers(this.p.tiers, n, now)
    return n > 1 ? Effect.zipRight(countRetry, next) : next
  }

  /** Takes the endpoints of the tiers whose attempts are spent out of the running. */
  spendTiers(
    tiers: NonNullable<Policy["tiers"]>,
    n: number,
    now: number
  ): Effect.Effect<B, RoutingFailed, R> {
    const spent: Array<number> = []
    for (const [key, limits] of Object.entries(tiers)) {
      const tier = Number(key)
      if (limits.maxAttempts !== undefined && (this.perTier?.get(tier) ?? 0) >= limits.maxAttempts) spent.push(tier)
    }
    if (spent.length === 0) return this.roundAt(n, now)
    return Effect.flatMap(this.routing.balancer.endpoints, (endpoints) => {
      for (const e of endpoints) {
        if (spent.includes(e.priority) && !this.spentTiers.includes(e.name)) this.spentTiers.push(e.name)
      }
      return this.roundAt(n, now)
    })
  }

  roundAt(n: number, now: number): Effect.Effect<B, RoutingFailed, R> {
    const hints = this.hints
    const exclude = concat(hints.exclude, this.spentTiers)
    const untried = hintsWith(
      hints,
      concat(exclude, this.tried),
      this.minContextWindow,
      // waiting for capacity is part of the call's time
      n === 1 && hints.wait !== undefined
        ? Duration.millis(Math.min(Duration.toMillis(Duration.decode(hints.wait)), this.deadline - now))
        : undefined
    )
    return this.afterRound(
      this.round(untried, n),
      (error) =>
        error._tag === "NoEndpointAvailable" && this.tried.length > 0
          // every routable endpoint was tried: back off, then any endpoint again
          ? this.backOff(n, now, exclude)
          : this.failed(n, error)
    )
  }

  /** A round's answer ends the call; its failure goes to `onFailure`. */
  afterRound(
    round: Effect.Effect<A, Failure, R>,
    onFailure: (error: Failure) => Effect.Effect<B, RoutingFailed, R>
  ): Effect.Effect<B, RoutingFailed, R> {
    return Effect.matchEffect(round, { onSuccess: (value) => this.succeed(value), onFailure })
  }

  backOff(n: number, now: number, exclude: ReadonlyArray<string>): Effect.Effect<B, RoutingFailed, R> {
    return Effect.flatMap(this.backoff.step(now, this.lastError, this.scheduleState), ([state, , decision]) => {
      // a stop here makes no attempt: the retry taken for it is given back
      if (ScheduleDecision.isDone(decision)) {
        if (n > 1) this.routing.refund()
        return this.stop("attempts-exhausted")
      }
      this.scheduleState = state
      const delay = Math.max(0, ScheduleIntervals.start(decision.intervals) - now)
      if (now + delay >= this.deadline) {
        if (n > 1) this.routing.refund()
        return this.stop("deadline")
      }
      const again = this.afterRound(
        this.round(hintsWith(this.hints, exclude, this.minContextWindow, undefined), n),
        (error) => this.failed(n, error)
      )
      return delay > 0 ? Effect.zipRight(Effect.sleep(Duration.millis(delay)), again) : again
    })
  }

  succeed(value: A): Effect.Effect<B> {
    const endpoint = (this.p.hedge === undefined ? this.primaryOn : this.answeredBy)!
    // a copy: an attempt recorded late (a foreign balancer that lets a hedge's loser end
    // after the call) must not change the caller's answer
    const routed: Routed<A> = { value, endpoint, attempts: this.attempts.slice() }
    const result = Exit.succeed(this.finish(routed))
    // only the call's own span is annotated, and there is none unless spans are collected
    return this.traced
      ? spans.annotateThen(() => ({
        "llm.endpoint": endpoint.name,
        "llm.attempts": this.attempts.length,
        "llm.outcome": "Success"
      }), result)
      : result
  }

  failed(n: number, error: Failure): Effect.Effect<B, RoutingFailed, R> {
    if (error._tag === "NoEndpointAvailable") {
      // the last real error stays the provider's; when an endpoint frees up is kept apart
      this.retryAt = error.retryAt
      if (this.lastError === undefined) this.lastError = error
      return this.stop("no-endpoint")
    }
    this.lastError = error
    if (error._tag === "ContextLengthExceeded") {
      // only a larger window can help
      this.minContextWindow = Math.max(this.minContextWindow ?? 0, (this.lastFailure?.endpoint.contextWindow ?? 0) + 1)
      return this.from(n + 1)
    }
    return error.retryable ? this.from(n + 1) : this.stop("not-retryable")
  }

  stop(reason: RoutingFailed["reason"]): Effect.Effect<never, RoutingFailed> {
    const error = new RoutingFailed({
      reason,
      lastError: this.lastError,
      attempts: this.attempts.slice(),
      retryAt: this.retryAt
    })
    const result = Exit.fail(error)
    // only the call's own span is annotated, and there is none unless spans are collected
    return Effect.zipRight(
      countFailed,
      this.traced
        ? spans.annotateThen(() => ({ "llm.attempts": this.attempts.length, "llm.outcome": reason }), result)
        : result
    )
  }

  /** One attempt on an endpoint the balancer picks under `attemptHints`. */
  attemptOn(
    attemptHints: Hints,
    n: number,
    hedge: boolean,
    /** Runs as the attempt starts, before the call (the hedge arms its timer). */
    onStart?: (endpoint: Endpoint) => Effect.Effect<void>
  ): Effect.Effect<A, Failure, R> {
    let startedAt = 0
    // set as the call starts: an attempt interrupted before (while the lease was being
    // admitted, or the hedge's timer armed) made no call, and is no attempt
    let startedOn: Endpoint | undefined
    return this.routing.use(
      // called by the balancer as the attempt starts, in the step that reserved its slot
      // (after the shared store's admission, when there is a store): once the call function
      // is called the attempt counts, even if it is interrupted before its first step
      (endpoint, lease) => {
        startedAt = this.routing.clock.unsafeCurrentTimeMillis()
        if (hedge) this.twinOn = endpoint
        else this.primaryOn = endpoint
        if (!this.tried.includes(endpoint.name)) this.tried.push(endpoint.name)
        const tier = this.p.tiers?.[endpoint.priority]
        this.perTier?.set(endpoint.priority, (this.perTier.get(endpoint.priority) ?? 0) + 1)
        const ownLimit = toMillis(tier?.attemptTimeout, this.attemptTimeoutMs)
        const left = this.deadline - startedAt
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
          ? this.call(endpoint, n, lease)
          : timeoutMs <= 0
          ? Effect.fail(timedOut())
          : timer.timeoutFail(this.call(endpoint, n, lease), timeoutMs, timedOut)
        const counted = hedge ? Effect.zipRight(countHedge, timed) : timed
        // the attempt's span, and its outcome on it, only where spans are collected
        const attempt = this.traced
          ? Effect.withSpan(
            Effect.onExit(counted, (exit) => {
              const outcome = outcomeOf(exit)
              return outcome === undefined ? Effect.void : spans.annotate(() => ({ "llm.outcome": outcome }))
            }),
            "effect-llm-balancer.attempt",
            {
              captureStackTrace: false,
              attributes: {
                "llm.endpoint": endpoint.name,
                "llm.provider": endpoint.provider,
                "llm.attempt": n,
                hedge
              }
            }
          )
          : counted
        if (onStart === undefined) {
          startedOn = endpoint
          return attempt
        }
        return Effect.zipRight(
          onStart(endpoint),
          Effect.suspend(() => {
            startedOn = endpoint
            return attempt
          })
        )
      },
      attemptHints,
      // recorded in the balancer's own region as the attempt ends, in the step that settles
      // its lease: this runs on every attempt, and each effect operation costs more than all
      // of it (what it returns, the attempt's event, runs before the settle, which happens
      // whatever that event does)
      (exit, lease) => {
        // what the answer reported (`Llm`'s usage) first, so that the settle has it
        if (Exit.isSuccess(exit) && this.answered !== undefined) this.answered(exit.value as A, lease)
        const outcome = outcomeOf(exit)
        const endpoint = startedOn
        // a defect is no attempt's outcome
        if (outcome === undefined || endpoint === undefined) return undefined
        return this.record(exit, outcome, endpoint, n, hedge, startedAt)
      }
    )
  }

  /** One attempt's record and metrics, now; its event, when someone listens, is the effect returned. */
  record(
    exit: Exit.Exit<unknown, unknown>,
    outcome: Attempt["outcome"],
    endpoint: Endpoint,
    n: number,
    hedge: boolean,
    startedAt: number
  ): Effect.Effect<void> | undefined {
    const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
    if (failure._tag === "Some") this.lastFailure = { error: failure.value as ProviderError, endpoint }
    const at = this.routing.clock.unsafeCurrentTimeMillis()
    const latencyMs = at - startedAt
    this.attempts.push({ endpoint: endpoint.name, number: n, startedAt, latencyMs, hedge, outcome })
    // the labels around the attempt as it ends: a wrapped balancer may add its own
    const fiber = Fiber.getCurrentFiber()
    const labels = fiber._tag === "Some" ? fiber.value.getFiberRef(FiberRef.currentMetricLabels) : noLabels
    const metrics = metricsOf(endpoint.name)
    attemptCounter(metrics, endpoint.name, outcome).unsafeUpdate(1, labels)
    metrics.latency.unsafeUpdate(latencyMs, labels)
    // nobody listening is the common case: no event, no operation, for nothing
    if (this.routing.unheard()) return undefined
    return this.routing.balancer.reportAttempt(
      Event.AttemptEnded({ name: endpoint.name, at, attempt: n, hedge, outcome, latencyMs })
    )
  }

  /**
   * An attempt, hedged when the policy asks: if it has not answered after the delay, a
   * twin starts on an endpoint not tried yet; the first success wins and the other is
   * interrupted. A primary that fails before the delay fails the round at once; when both
   * fail, the one that failed last is reported.
   *
   * Written as a small state machine over the two fibers and a timer rather than with
   * `Effect.race`: a round then forks one fiber (two with a twin) and interrupts only a
   * loser that is still running, which matters when thousands of rounds run a second
   * (the simulation).
   */
  round(attemptHints: Hints, n: number): Effect.Effect<A, Failure, R> {
    const hedge = this.p.hedge
    if (hedge === undefined) return this.attemptOn(attemptHints, n, false)
    return Effect.flatMap(timer.scheduleTask, (schedule) =>
      Effect.uninterruptibleMask((restore) => {
        let fired = false
        let cancelTimer = noop
        /** Wakes the round when something it waits for has happened. */
        let wake: (() => void) | undefined
        // the delay depends on the endpoint the primary got (its p95), known once it starts
        const armTimer = (endpoint: Endpoint) =>
          Effect.map(this.hedgeDelayFor(hedge, endpoint), (delay) => {
            if (delay === undefined) return
            cancelTimer = schedule(() => {
              fired = true
              wake?.()
            }, Duration.toMillis(delay))
          })
        const untried = () =>
          hintsWith(attemptHints, concat(attemptHints.exclude, this.tried), attemptHints.minContextWindow, undefined)
        return Effect.gen(this, function*() {
          const primary = yield* Effect.fork(restore(this.attemptOn(attemptHints, n, false, armTimer)))
          let twin: Fiber.RuntimeFiber<A, Failure | NoTwin> | undefined
          let twinAsked = false
          return yield* Effect.gen(this, function*() {
            for (;;) {
              const p = primary.unsafePoll()
              const t = twin?.unsafePoll() ?? null
              if (p !== null && Exit.isSuccess(p)) {
                cancelTimer()
                this.answeredBy = this.primaryOn
                return yield* won(primary, p.value, twin)
              }
              if (t !== null && Exit.isSuccess(t)) {
                this.answeredBy = this.twinOn
                return yield* won(twin!, t.value, primary)
              }
              if (t !== null && Exit.isFailure(t) && isNoTwin(t.cause)) {
                // no other endpoint: the retry was not spent, and the primary goes on alone
                twin = undefined
                continue
              }
              if (p !== null && (twin === undefined || t !== null)) {
                cancelTimer()
                // both failed: report the one that failed last (recorded by `attemptOn`)
                if (t !== null && Exit.isFailure(t) && this.lastFailure !== undefined) {
                  const last = this.lastFailure.error
                  const twinLast = Option.exists(Cause.failureOption(t.cause), (e) => e === last)
                  return yield* (twinLast ? t as Exit.Exit<never, Failure> : p)
                }
                return yield* p
              }
              if (fired && !twinAsked && p === null) {
                twinAsked = true
                if (this.routing.withdraw()) {
                  twin = yield* Effect.fork(restore(
                    Effect.catchTag(this.attemptOn(untried(), n, true), "NoEndpointAvailable", () => {
                      this.routing.refund()
                      return Effect.fail(noTwin)
                    })
                  ))
                }
                continue
              }
              yield* restore(untilChange(
                [primary, twin].filter((f): f is Fiber.RuntimeFiber<A, any> =>
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

  /** How long the twin waits for an attempt on `endpoint`; `undefined`: no hedge for it. */
  hedgeDelayFor(hedge: NonNullable<Policy["hedge"]>, endpoint: Endpoint): Effect.Effect<Duration.Duration | undefined> {
    if (hedge.delay !== "p95") return Effect.succeed(Duration.decode(hedge.delay))
    const { minDelay, minSamples } = hedge
    return Effect.map(
      this.routing.balancer.latencyQuantile(endpoint.name, 0.95),
      (p95) =>
        p95 === undefined || p95.samples < (minSamples ?? 20)
          ? undefined
          : Duration.millis(Math.max(p95.upper ?? p95.ms, toMillis(minDelay, 0)))
    )
  }
}

/** An attempt's outcome from how it ended; `undefined` for a defect, which is none. */
const outcomeOf = (exit: Exit.Exit<unknown, unknown>): Attempt["outcome"] | undefined => {
  if (Exit.isSuccess(exit)) return "Success"
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "Some") return (failure.value as ProviderError)._tag
  // interrupted (a lost hedge race, the caller gave up)
  return Cause.isInterruptedOnly(exit.cause) ? "Cancelled" : undefined
}

const noHints: Hints = {}
const noLabels: ReadonlyArray<MetricLabel.MetricLabel> = []

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

    // the shortcuts are looked up on every use, so a balancer patched later (a spy) is seen
    const routing: Routing = {
      balancer,
      use: (f, hints, observe) => useObserved(balancer)(f, hints, observe),
      unheard: () => unheard(balancer)(),
      clock,
      withdraw,
      refund
    }

    // the call's first step, in a step of the fiber's that has it at hand: its checks, its
    // count and its span (plain functions rather than a generator: this runs on every call,
    // see docs/design.md)
    const start: StartFn = <A, B, R>(
      fiber: Fiber.RuntimeFiber<unknown, unknown>,
      call: (endpoint: Endpoint, attempt: number, lease: Lease) => Effect.Effect<A, ProviderError, R>,
      policy: Policy | undefined,
      answered: ((value: A, lease: Lease) => void) | undefined,
      finish: (routed: Routed<A>) => B
    ): Effect.Effect<B, RoutingFailed, R> => {
      const p: Policy = policy === undefined
        ? defaults
        : options?.defaults === undefined
        ? policy
        : { ...defaults, ...policy, hints: mergeHints(defaults.hints, policy.hints) }
      // the defaults were checked when the router was made
      const problems = policy === undefined ? noProblems : policyProblems(p)
      let routed: Effect.Effect<B, RoutingFailed, R>
      if (problems.length > 0) {
        routed = Effect.fail(
          new RoutingFailed({
            reason: "invalid-policy",
            lastError: undefined,
            attempts: [],
            detail: problems.join("; ")
          })
        )
      } else {
        const now = clock.unsafeCurrentTimeMillis()
        cell.budget = RetryBudget.deposit(cell.budget, now, settings)
        requests.unsafeUpdate(1, fiber.getFiberRef(FiberRef.currentMetricLabels))
        routed = new Call(routing, call, p, now, answered, finish, spans.traced(fiber)).from(1)
      }
      return spans.withSpanIn(fiber, routed, "effect-llm-balancer.execute")
    }

    const execute = <A, R>(
      call: (endpoint: Endpoint, attempt: number, lease: Lease) => Effect.Effect<A, ProviderError, R>,
      policy?: Policy
    ): Effect.Effect<Routed<A>, RoutingFailed, R> =>
      Effect.withFiberRuntime((fiber) => start(fiber, call, policy, undefined, asRouted))

    const service: RouterService & Executable = { execute, [ExecuteIn]: { execute, start } }
    return service
  })

const asRouted = <A>(routed: Routed<A>): Routed<A> => routed

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
