import type { Clock, Scope } from "effect"
import { Cause, Duration, Effect, Either, Exit, Metric, Option, PubSub, Random, Schedule, Stream } from "effect"
import type { BalancerService, EndpointStats, Hints, Lease, Options, Report, Summary } from "../Balancer.js"
import * as Endpoint from "../Endpoint.js"
import * as EndpointState from "../EndpointState.js"
import type { ConfigIssue } from "../Errors.js"
import { InvalidConfig, NoEndpointAvailable, UnknownEndpoint } from "../Errors.js"
import { Event } from "../Event.js"
import * as Health from "../Health.js"
import type * as Outcome from "../Outcome.js"
import type * as RateLimit from "../RateLimit.js"
import * as Store from "../Store.js"
import * as Strategy from "../Strategy.js"
import * as config from "./config.js"
import type { Observable, Observer } from "./hotPath.js"
import { ReportNow, settleAfter, UseObserved } from "./hotPath.js"
import * as random from "./random.js"
import * as schemas from "./schemas.js"
import * as SlidingWindow from "./slidingWindow.js"
import * as Table from "./table.js"
import * as Tokens from "./usage.js"
import { Waiters } from "./waiters.js"

class LeaseImpl implements Lease {
  /** Set by the first release; a second release of the same lease does nothing. */
  settled = false
  /** Set by `detach`: `use` leaves a successful call's lease held. */
  detached = false
  /** What the call reported through `report` and `firstToken`. */
  usage: Outcome.Usage | undefined = undefined
  rateLimit: RateLimit.Remaining | undefined = undefined
  ttftMs: number | undefined = undefined
  /** Set by `firstToken`: the call answered before it ended. */
  answered = false
  /** The shared store's admission time, when the store admitted the call. */
  sharedAt: number | undefined = undefined
  /** The call is the cluster's probe of a half-open circuit. */
  sharedProbe = false
  /** Names the call in the shared store (its probe's slot), unique across processes. */
  callId = ""
  constructor(
    readonly owner: {
      readonly clock: Clock.Clock
      readonly firstToken: (lease: LeaseImpl, now: number) => Effect.Effect<void>
    },
    readonly endpoint: Endpoint.Endpoint,
    readonly id: number,
    /** When the balancer reserved the slot (and counted it against the endpoint's windows). */
    readonly reservedAt: number,
    readonly probeOf: EndpointState.Probe,
    /** Tokens counted against the endpoint's tokens-per-minute window when it was admitted. */
    readonly reservedTokens: number,
    readonly arm: string | undefined
  ) {
    this.startedAt = reservedAt
    this.self = this
  }
  /**
   * The lease itself, also for a wrapper made with `Object.create(lease)` (as callers write
   * them): what a wrapper reports, detaches or releases is the lease's, not the wrapper's.
   */
  readonly self: LeaseImpl
  /** When the call started: after the shared store's admission, when there is a store. */
  startedAt: number
  get probe(): boolean {
    return this.probeOf !== undefined
  }
  report(report: Report): Effect.Effect<void> {
    return Effect.sync(() => this.self.record(report))
  }
  [ReportNow](report: Report | undefined): boolean {
    // a lease whose `report` was replaced (a wrapper's) must have it called
    if (this.report !== LeaseImpl.prototype.report) return false
    if (report !== undefined) this.self.record(report)
    return true
  }
  private record(report: Report): void {
    if (report.usage !== undefined) this.usage = report.usage
    if (report.rateLimit !== undefined) this.rateLimit = report.rateLimit
    if (report.timeToFirstToken !== undefined) {
      this.ttftMs = Duration.toMillis(Duration.decode(report.timeToFirstToken))
    }
  }
  get firstToken(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const self = this.self
      if (self.answered || self.settled) return Effect.void
      const now = self.owner.clock.unsafeCurrentTimeMillis()
      if (self.ttftMs === undefined) self.ttftMs = now - self.startedAt
      return self.owner.firstToken(self, now)
    })
  }
  get detach(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.self.detached = true
    })
  }
  /** What the call measured besides its latency, or `undefined` when nothing. */
  measured(
    usage: Outcome.Usage | undefined,
    rateLimit: RateLimit.Remaining | undefined,
    ttftMs: number | undefined
  ): EndpointState.Measured | undefined {
    // a usage that is not believable (negative, infinite, absurd) is no usage
    const u = Tokens.believable(usage ?? this.usage)
    const r = rateLimit ?? this.rateLimit
    const t = ttftMs ?? this.ttftMs
    return u === undefined && r === undefined && t === undefined
      ? undefined
      : { ttftMs: t, usage: u, rateLimit: r, reservedAt: this.reservedAt, reservedTokens: this.reservedTokens }
  }
}

export interface Resolved {
  readonly endpoints: ReadonlyArray<Endpoint.Endpoint>
  readonly strategy: Strategy.Strategy
  readonly policy: Health.Policy
  readonly panic: boolean
  readonly budget: Table.Budget | undefined
  readonly healthCheck: ResolvedHealthCheck | undefined
}

export interface ResolvedHealthCheck {
  readonly check: (endpoint: Endpoint.Endpoint) => Effect.Effect<unknown, unknown>
  readonly intervalMs: number
  readonly timeoutMs: number
}

const optionKeys = ["endpoints", "strategy", "health", "panic", "budget", "healthCheck"]

const prefixed = (prefix: string, path: string) => path === "" ? prefix : `${prefix}.${path}`

/**
 * Decodes options given in code or read from `Config`, naming every bad field at once;
 * `prefix` is where they came from (`"balancer"` for `BalancerLive`).
 */
export const resolveOptions = (options: Options, prefix = ""): Either.Either<Resolved, InvalidConfig> => {
  const issues: Array<ConfigIssue> = []
  const at = (path: string) => prefix === "" ? path : prefixed(prefix, path)
  if (typeof options !== "object" || options === null) {
    return Either.left(new InvalidConfig({ issues: [{ path: prefix, message: "must be an object of options" }] }))
  }
  // options usually come typed, but not always (JSON, JavaScript): a misspelt key is a mistake
  for (const key of Object.keys(options)) {
    if (!optionKeys.includes(key)) {
      issues.push({ path: at(key), message: `is unexpected, expected one of ${optionKeys.join(", ")}` })
    }
  }
  const endpoints: Array<Endpoint.Endpoint> = []
  const given: unknown = options.endpoints
  // an array only: a string, a number or { length: 2 ** 32 } is not a list of endpoints
  if (given !== undefined && !Array.isArray(given)) {
    issues.push({ path: at("endpoints"), message: "must be an array of endpoints" })
  }
  const inputs: ReadonlyArray<Endpoint.Input> = Array.isArray(given) ? given : []
  inputs.forEach((input, i) => {
    const decoded = Endpoint.decodeEither(input)
    if (Either.isLeft(decoded)) {
      for (const issue of decoded.left.issues) {
        issues.push({
          path: at(issue.path === "" ? `endpoints[${i}]` : `endpoints[${i}].${issue.path}`),
          message: issue.message
        })
      }
    } else endpoints.push(decoded.right)
  })
  const seen = new Map<string, number>()
  inputs.forEach((input, i) => {
    const name = typeof input === "object" && input !== null ? (input as { name?: unknown }).name : undefined
    if (typeof name !== "string") return
    const first = seen.get(name)
    if (first !== undefined) {
      issues.push({
        path: at(`endpoints[${i}].name`),
        message: `duplicate endpoint name "${name}" (also endpoints[${first}])`
      })
    } else seen.set(name, i)
  })
  let strategy: Strategy.Strategy = Strategy.powerOfTwo
  if (typeof options.strategy === "string") {
    if (Object.hasOwn(Strategy.builtIn, options.strategy)) {
      strategy = Strategy.builtIn[options.strategy as Strategy.BuiltInName]
    } else {
      issues.push({
        path: at("strategy"),
        message: `unknown strategy "${options.strategy}" (expected one of ${Object.keys(Strategy.builtIn).join(", ")})`
      })
    }
  } else if (options.strategy !== undefined) {
    const s = options.strategy as unknown
    if (typeof s === "object" && s !== null && typeof (s as Strategy.Strategy).select === "function") {
      strategy = options.strategy
    } else issues.push({ path: at("strategy"), message: "must be a Strategy or the name of a built-in strategy" })
  }
  const policy = Health.decodePolicy(options.health, [])
  if (Either.isLeft(policy)) {
    for (const issue of policy.left.issues) {
      issues.push({ path: at(prefixed("health", issue.path)), message: issue.message })
    }
  }
  let budget: Table.Budget | undefined
  if (options.budget !== undefined) {
    const decoded = config.decodeAll(Endpoint.Budget, options.budget)
    if (Either.isLeft(decoded)) {
      for (const issue of decoded.left.issues) {
        issues.push({ path: at(prefixed("budget", issue.path)), message: issue.message })
      }
    } else {
      budget = {
        limit: decoded.right.limit,
        periodMs: Duration.toMillis(decoded.right.period),
        softLimit: decoded.right.softLimit
      }
    }
  }
  const healthCheck = resolveHealthCheck(options.healthCheck, at("healthCheck"), issues)
  return issues.length > 0 || Either.isLeft(policy)
    ? Either.left(new InvalidConfig({ issues }))
    : Either.right({ endpoints, strategy, policy: policy.right, panic: options.panic === true, budget, healthCheck })
}

const resolveHealthCheck = (
  input: Options["healthCheck"],
  path: string,
  issues: Array<ConfigIssue>
): ResolvedHealthCheck | undefined => {
  if (input === undefined) return undefined
  if (typeof input !== "object" || input === null) {
    issues.push({ path, message: "must be an object with a check function (and interval, timeout)" })
    return undefined
  }
  if (typeof input.check !== "function") {
    issues.push({
      path: prefixed(path, "check"),
      message: input.check === undefined
        ? "is missing: a function from an endpoint to an effect"
        : "must be a function from an endpoint to an effect"
    })
    return undefined
  }
  const duration = (name: "interval" | "timeout", fallback: number) => {
    const value = input[name]
    if (value === undefined) return fallback
    const decoded = config.decodeAll(schemas.DurationInput, value)
    if (Either.isLeft(decoded) || Duration.toMillis(decoded.right) <= 0) {
      issues.push({
        path: prefixed(path, name),
        message: Either.isLeft(decoded)
          ? decoded.left.issues.map((i) => i.message).join("; ")
          : "must be longer than 0"
      })
      return fallback
    }
    return Duration.toMillis(decoded.right)
  }
  return { check: input.check, intervalMs: duration("interval", 5_000), timeoutMs: duration("timeout", 2_000) }
}

const endingOf = (
  outcome: Outcome.Outcome,
  lease: LeaseImpl,
  latencyMs: number,
  jitter: () => number
): Table.Ending => {
  switch (outcome._tag) {
    case "Success":
      return {
        _tag: "Success",
        latencyMs: outcome.latency === undefined ? latencyMs : Duration.toMillis(outcome.latency),
        measured: lease.measured(
          outcome.usage,
          outcome.rateLimit,
          outcome.timeToFirstToken === undefined ? undefined : Duration.toMillis(outcome.timeToFirstToken)
        ),
        startedAt: lease.startedAt
      }
    case "Failure":
      return {
        _tag: "Failure",
        error: outcome.error,
        latencyMs: outcome.latency === undefined ? latencyMs : Duration.toMillis(outcome.latency),
        rateLimit: outcome.rateLimit ?? lease.rateLimit,
        countsAgainstHealth: outcome.countsAgainstHealth,
        jitter,
        startedAt: lease.startedAt
      }
    case "Cancelled":
      return outcome
  }
}

const cancelled: Table.Ending = { _tag: "Cancelled" }

/** A reservation's lease, or the effect that ends in it (see `attemptNow`). */
type Acquired = LeaseImpl | Effect.Effect<Lease, NoEndpointAvailable>

const leaseOf = (acquired: Acquired): Effect.Effect<Lease, NoEndpointAvailable> =>
  acquired instanceof LeaseImpl ? Effect.succeed(acquired) : acquired

/** What an acquisition does when nothing can serve: fail at once, or wait and try again. */
type OnRefused = (
  result: Table.AcquireResult & { _tag: "Rejected" },
  now: number
) => Effect.Effect<Lease, NoEndpointAvailable>

/** A change to the shared state: what `changes` says, nothing else. */
const settleOf = (
  endpoint: Endpoint.Endpoint,
  policy: Health.Resolved,
  changes: Partial<Omit<Store.Settle, "endpoint" | "recoveryMs" | "recoveryFactor" | "maxRecoveryMs">>
): Store.Settle => ({
  admittedAt: 0,
  tokensDelta: 0,
  spent: 0,
  budget: undefined,
  endpointBudget: undefined,
  cooldownMs: 0,
  openMs: 0,
  openings: 0,
  closed: false,
  probe: undefined,
  ...changes,
  endpoint,
  recoveryMs: policy.recoveryTimeoutMs,
  recoveryFactor: policy.recoveryFactor,
  maxRecoveryMs: policy.maxRecoveryTimeoutMs
})

/** How long an endpoint the shared store refused waits when the store does not say. */
const defaultSharedWaitMs = 1_000
/** How often a balancer whose store is down asks whether it is back. */
const storeRetryMs = 250

/**
 * The upper end of the quantile's confidence interval, but no further out than the
 * quantile halfway to 1 (p97.5 for p95); with fewer than 100 samples the interval
 * reaches the largest one, which may be a stall, so it is the quantile itself.
 */
const upperOf = (entry: EndpointState.EndpointState, q: number): number | undefined => {
  if (EndpointState.latencySamples(entry) < 100) return EndpointState.latencyQuantile(entry, q)
  const bounds = EndpointState.latencyQuantileBounds(entry, q)
  const further = EndpointState.latencyQuantile(entry, (1 + q) / 2)
  return bounds === undefined || further === undefined ? undefined : Math.min(bounds.upper, further)
}

const endingOfExit = (
  exit: Exit.Exit<unknown, unknown>,
  lease: LeaseImpl,
  latencyMs: number,
  jitter: () => number
): Table.Ending => {
  if (Exit.isSuccess(exit)) {
    return {
      _tag: "Success",
      latencyMs,
      measured: lease.measured(undefined, undefined, undefined),
      startedAt: lease.startedAt
    }
  }
  if (Cause.isInterruptedOnly(exit.cause)) return cancelled
  const failure = Cause.failureOption(exit.cause)
  return {
    _tag: "Failure",
    error: failure._tag === "Some" ? failure.value : Cause.squash(exit.cause),
    latencyMs,
    rateLimit: lease.rateLimit,
    countsAgainstHealth: undefined,
    jitter,
    startedAt: lease.startedAt
  }
}

const transitions = Metric.counter("llm_balancer_endpoint_events_total", {
  description: "Endpoint health changes (unhealthy, probing, recovered, rate limited, added, removed)"
})

const noHints: Table.Request = {
  exclude: undefined,
  tags: undefined,
  minContextWindow: undefined,
  group: undefined,
  inputTokens: 0,
  outputTokens: 0
}

/** A count given in hints: a whole number of at least 0, or a defect naming the hint. */
const tokensHint = (name: string, value: number | undefined): number => {
  if (value === undefined) return 0
  if (!(Number.isFinite(value) && value >= 0)) {
    throw new RangeError(`Hints.${name} must be a finite number of at least 0, got ${value}`)
  }
  return Math.ceil(value)
}

export const make = (options: Options): Effect.Effect<BalancerService, InvalidConfig, Scope.Scope> =>
  Effect.flatMap(Effect.suspend(() => resolveOptions(options)), fromResolved)

/**
 * The balancer. Its state is one immutable `Table`, replaced only inside single
 * synchronous steps: each operation reads it, applies a pure transition plus the
 * bookkeeping of this closure (the freed-capacity counter and the waiters), and writes
 * the result in one step, with nothing in between that could yield, so each operation is
 * atomic. That is all a `Ref.modify` is in Effect's runtime (a mutable cell and one `sync`
 * operation); doing the step inside the operation that needs it saves one or two
 * operations on every call (see docs/design.md, "Why not STM, nor a Ref"). The `Clock`
 * and `Random` of the balancer's own context are captured once: a call costs no service
 * lookups, and a balancer built under `TestClock` or a seeded `Random` runs on them.
 */
export const fromResolved = (resolved: Resolved): Effect.Effect<BalancerService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { panic, policy, strategy } = resolved
    const clock = yield* Effect.clock
    const store = Option.getOrUndefined(yield* Effect.serviceOption(Store.Store))
    const scope = yield* Effect.scope
    // one draw from `Random` seeds the balancer's own generator (strategies, jitter)
    const draw = random.fromSeed(yield* Random.nextInt)
    // names this balancer's calls in the shared store (a probe's slot), apart from other processes'
    const instance = `${Math.floor(draw() * 2 ** 48).toString(36)}${Math.floor(draw() * 2 ** 48).toString(36)}`
    let calls = 0
    const start = clock.unsafeCurrentTimeMillis()
    // an endpoint's policy: the balancer's, its own overrides, and its planned open periods
    const policyOf = (endpoint: Endpoint.Endpoint) =>
      policy.recoverySchedule === undefined
        ? Effect.succeed(Health.resolve(policy, endpoint))
        : Health.resolveWithSchedule(policy, endpoint, Math.floor(draw() * 2 ** 32))
    const policies = yield* Effect.forEach(resolved.endpoints, policyOf)
    // the table: read and replaced only by `modify`, `update` and `read`, and by the two
    // steps on every call, `attemptNow` and `settleNow`, which write theirs out
    let current = resolved.endpoints.reduce(
      (table, endpoint, i) => Table.add(table, endpoint, policies[i], start),
      Table.make(strategy, resolved.budget)
    )
    /** Applies `f` in this synchronous step: the table it leaves replaces the table; its answer is returned. */
    const modify = <B>(f: (table: Table.Table) => readonly [B, Table.Table]): B => {
      const [answer, next] = f(current)
      current = next
      return answer
    }
    const update = (f: (table: Table.Table) => Table.Table): Effect.Effect<void> =>
      Effect.sync(() => {
        current = f(current)
      })
    const read: Effect.Effect<Table.Table> = Effect.sync(() => current)
    // per experiment arm: what its picks did (see Strategy.experiment)
    const arms = new Map<string, ArmCounters>()
    // spend over the balancer's lifetime, removed endpoints included
    let totalSpent = 0
    const pubsub = yield* Effect.acquireRelease(PubSub.sliding<Event>(1024), PubSub.shutdown)
    const owner = {
      clock,
      // in the same atomic step as a release, so the two always agree on whether it answered
      firstToken: (lease: LeaseImpl, now: number) =>
        update((table) => {
          if (lease.settled || lease.answered) return table
          lease.answered = true
          return Table.firstToken(table, lease.id, now)
        })
    }

    // Counts the changes that freed capacity. A waiter notes it when its attempt fails and
    // registers only if it has not moved since (one synchronous step), so no wake-up is
    // lost; acquisitions do not count, so waiters do not spin on busy traffic. Waking
    // inside the table's step is safe: a woken fiber only runs after this one yields.
    let freed = 0
    const waiters = new Waiters()

    // health transitions are counted as metrics too; they are rare, so this costs nothing per call
    const publish = (events: ReadonlyArray<Event>): Effect.Effect<void> =>
      events.length === 0 ? Effect.void : Effect.zipRight(
        Effect.forEach(events, (event) =>
          Metric.increment(
            Metric.tagged(Metric.tagged(transitions, "endpoint", event.name), "event", event._tag)
          ), { discard: true }),
        PubSub.publishAll(pubsub, events)
      )

    /** The lease for a reservation `Table.acquire` made. */
    const leaseFor = (
      result: Table.AcquireResult & { _tag: "Acquired" },
      request: Table.Request,
      now: number
    ): LeaseImpl => {
      const lease = new LeaseImpl(
        owner,
        result.entry.endpoint,
        result.entry.id,
        now,
        result.probe,
        request.inputTokens + request.outputTokens,
        result.arm
      )
      if (result.arm !== undefined) armOf(result.arm).picks++
      return lease
    }

    const refused = (result: Table.AcquireResult & { _tag: "Rejected" }) =>
      Effect.fail(new NoEndpointAvailable({ passedOver: result.passedOver, retryAt: result.retryAt }))

    /**
     * One attempt to choose and reserve, in one step; what to do when nothing can serve is
     * `onRefused`'s call (fail at once, or wait). The step gives the lease itself when
     * nothing else is to be done (no events to publish, no store to ask: the common case,
     * and an operation less on every call), or else the effect that ends in it.
     */
    const attemptNow = (request: Table.Request, onRefused: OnRefused): Acquired => {
      // the table's step, written out (no closure, no pair: this runs on every call)
      const now = clock.unsafeCurrentTimeMillis()
      const [result, next] = Table.acquire(current, strategy, request, now, draw, panic)
      current = next
      if (result._tag !== "Acquired") return onRefused(result, now)
      const lease = leaseFor(result, request, now)
      const shared = store !== undefined && storeUp
      if (result.events.length === 0 && !shared) return lease
      const published = result.events.length === 0 ? Effect.succeed(lease) : Effect.as(publish(result.events), lease)
      return shared ? Effect.flatMap(published, (lease) => admitShared(lease, request, onRefused)) : published
    }

    const attempt = (request: Table.Request, onRefused: OnRefused): Effect.Effect<Lease, NoEndpointAvailable> =>
      Effect.suspend(() => leaseOf(attemptNow(request, onRefused)))

    /**
     * Asks the shared store to admit a call this balancer admitted. Refused, the call is
     * taken back and the endpoint waits as long as the store says, and another is tried;
     * unanswered, the local admission stands. Uninterruptible: the store answers within
     * its timeout, and a lease is never half taken.
     */
    const admitShared = (
      lease: LeaseImpl,
      request: Table.Request,
      onRefused: OnRefused
    ): Effect.Effect<Lease, NoEndpointAvailable> =>
      Effect.flatMap(
        Effect.exit(Effect.uninterruptible(Effect.suspend(() =>
          store!.admit({
            endpoint: lease.endpoint,
            tokens: lease.reservedTokens,
            callId: (lease.callId = `${instance}.${++calls}`),
            halfOpenProbes: policy.halfOpenProbes,
            budget: budgetPeriodOf(lease.endpoint, lease.reservedAt),
            endpointBudget: endpointBudgetOf(lease.endpoint, lease.reservedAt)
          })
        ))),
        (answer): Effect.Effect<Lease, NoEndpointAvailable> => {
          if (Exit.isFailure(answer)) {
            const failure = Cause.failureOption(answer.cause)
            if (failure._tag === "Some") return Effect.as(storeFailed(failure.value), lease)
            // a store that dies (a bug in it): the reservation is taken back, and the
            // defect is the caller's
            return Effect.zipRight(
              Effect.suspend(() => settleNow(lease, () => cancelled, Effect.void)),
              Effect.failCause(answer.cause as Cause.Cause<never>)
            )
          }
          const admission = answer.value
          if (admission._tag === "Admitted") {
            lease.sharedAt = admission.at
            lease.sharedProbe = admission.probe
            // the round trip to the store is not the endpoint's latency
            lease.startedAt = clock.unsafeCurrentTimeMillis()
            return Effect.succeed(lease)
          }
          return Effect.zipRight(
            update((table) => {
              lease.settled = true
              if (lease.arm !== undefined) armOf(lease.arm).picks--
              const now = clock.unsafeCurrentTimeMillis()
              // at least a moment, so that the next try passes this endpoint over
              const wait = Math.max(1, admission.retryAfterMs ?? defaultSharedWaitMs)
              return Table.sharedRefusal(
                table,
                lease.id,
                lease.probeOf,
                lease.reservedAt,
                lease.reservedTokens,
                admission.reason,
                now + wait
              )
            }),
            attempt(request, onRefused)
          )
        }
      )

    const budgetPeriodOf = (endpoint: Endpoint.Endpoint, now: number): Store.BudgetPeriod | undefined => {
      const budget = resolved.budget
      if (budget === undefined || endpoint.cost === undefined) return undefined
      return { limit: budget.limit, periodMs: budget.periodMs, start: EndpointState.budgetPeriod(budget.periodMs, now) }
    }
    const endpointBudgetOf = (endpoint: Endpoint.Endpoint, now: number): Store.BudgetPeriod | undefined => {
      const budget = endpoint.budget
      if (budget === undefined) return undefined
      const periodMs = Duration.toMillis(budget.period)
      return { limit: budget.limit, periodMs, start: EndpointState.budgetPeriod(periodMs, now) }
    }

    /**
     * What a call's end changes in the shared state, or `undefined` when nothing: the
     * tokens it reported, its spend, a 429, the circuit it opened or closed, and the end
     * of the cluster's probe.
     */
    const sharedChange = (
      lease: LeaseImpl,
      end: Table.Ending,
      before: EndpointState.EndpointState | undefined,
      after: EndpointState.EndpointState | undefined,
      events: ReadonlyArray<Event>,
      spent: number,
      now: number
    ): Store.Settle | undefined => {
      if (lease.sharedAt === undefined) return undefined
      const endpoint = lease.endpoint
      const usage = end._tag === "Success" ? end.measured?.usage : undefined
      const tokensDelta = usage !== undefined && endpoint.limits?.tpm !== undefined
        ? usage.inputTokens + usage.outputTokens - lease.reservedTokens
        : 0
      const budget = spent > 0 ? budgetPeriodOf(endpoint, lease.reservedAt) : undefined
      const endpointBudget = spent > 0 ? endpointBudgetOf(endpoint, lease.reservedAt) : undefined
      const cooldownMs = before !== undefined && after !== undefined && after.cooldownUntil > before.cooldownUntil
        ? after.cooldownUntil - now
        : 0
      let openMs = 0
      let closed = false
      for (const event of events) {
        if (event._tag === "EndpointUnhealthy" && event.until !== undefined) openMs = event.until - now
        else if (event._tag === "EndpointRecovered") closed = true
      }
      // a probe's failure reopens the cluster's circuit only when it says the endpoint is
      // broken: a 400, a 401 or a 429 on the probe says nothing of that (as locally)
      const probe = lease.sharedProbe
        ? {
          callId: lease.callId,
          outcome: end._tag === "Success"
            ? "success" as const
            : end._tag === "Failure" &&
                Table.classify(end, sharedPolicyOf(before, after, endpoint), now).effect === "counts"
            ? "failure" as const
            : "cancelled" as const
        }
        : undefined
      if (
        tokensDelta === 0 && budget === undefined && endpointBudget === undefined && cooldownMs <= 0 && openMs <= 0 &&
        !closed && probe === undefined
      ) return undefined
      return settleOf(endpoint, sharedPolicyOf(before, after, endpoint), {
        admittedAt: lease.sharedAt,
        tokensDelta,
        spent,
        budget,
        endpointBudget,
        cooldownMs: Math.max(0, cooldownMs),
        openMs: Math.max(0, openMs),
        openings: after?.openings ?? 0,
        closed,
        probe
      })
    }

    const sharedPolicyOf = (
      before: EndpointState.EndpointState | undefined,
      after: EndpointState.EndpointState | undefined,
      endpoint: Endpoint.Endpoint
    ): Health.Resolved => after?.policy ?? before?.policy ?? Health.resolve(resolved.policy, endpoint)

    /** Sends a change to the shared store; a store that does not answer is fallen back from. */
    const shareChange = (change: Store.Settle): Effect.Effect<void> =>
      store === undefined || !storeUp
        ? Effect.void
        : Effect.catchAll(Effect.uninterruptible(store.settle(change)), storeFailed)

    // The shared store's health, seen from here. Down, every call is served from local state
    // and nothing waits on the store; a background fiber pings it until it answers.
    let storeUp = true
    let storeDownSince = 0
    const storeFailed = (error: Store.StoreUnavailable): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (!storeUp || store === undefined) return Effect.void
        storeUp = false
        storeDownSince = clock.unsafeCurrentTimeMillis()
        const recovered = Effect.suspend(() => {
          const now = clock.unsafeCurrentTimeMillis()
          storeUp = true
          return publish([Event.StoreResumed({ name: store.name, at: now, afterMs: now - storeDownSince })])
        })
        return Effect.zipRight(
          publish([Event.StoreFellBack({ name: store.name, at: storeDownSince, reason: error.reason })]),
          // interruptible even when forked from an uninterruptible acquisition: the scope's
          // close must be able to stop it
          Effect.asVoid(Effect.forkIn(
            Effect.interruptible(
              Effect.zipRight(Effect.retry(store.ping, Schedule.spaced(Duration.millis(storeRetryMs))), recovered)
            ),
            scope
          ))
        )
      })

    /**
     * Tries, and while nothing can serve waits (interruptibly, through `restore`) until
     * capacity is freed, the earliest open circuit admits a probe, or the wait is over.
     * Each reservation runs in the caller's region, so a slot is never reserved without
     * the caller getting its lease.
     */
    const acquireWaiting = (
      request: Table.Request,
      wait: Duration.DurationInput,
      restore: <X, E, R>(effect: Effect.Effect<X, E, R>) => Effect.Effect<X, E, R>
    ): Effect.Effect<Lease, NoEndpointAvailable> =>
      Effect.suspend(() => {
        const deadline = clock.unsafeCurrentTimeMillis() + Duration.toMillis(Duration.decode(wait))
        const key = `${request.tags?.join("\u0000") ?? ""}\u0001${request.exclude?.join("\u0000") ?? ""}\u0001${
          request.minContextWindow ?? ""
        }\u0001${request.group ?? ""}\u0001${request.inputTokens + request.outputTokens}`
        const loop: Effect.Effect<Lease, NoEndpointAvailable> = attempt(request, (result, now) => {
          if (now >= deadline) return refused(result)
          // registered in this same synchronous step, so no release can slip in between; the
          // wait is rounded up to a whole ms, so that on a clock at a fraction of a ms it never
          // ends a hair before `wakeAt` and spins on zero-length sleeps
          const seen = freed
          const wakeAt = result.retryAt !== undefined && result.retryAt < deadline ? result.retryAt : deadline
          const waiting = waiters.wait(key, () => freed !== seen, Duration.millis(Math.ceil(Math.max(0, wakeAt - now))))
          return Effect.zipRight(restore(waiting), Effect.suspend(() => loop))
        })
        return loop
      })

    /**
     * A reservation under `hints`, made in this step: its lease (see `attemptNow`), or the
     * effect that ends in it (waiting included).
     */
    const acquireNow = (
      hints: Hints | undefined,
      restore: <X, E, R>(effect: Effect.Effect<X, E, R>) => Effect.Effect<X, E, R>
    ): Acquired => {
      if (hints === undefined) return attemptNow(noHints, refused)
      let request: Table.Request
      try {
        request = {
          exclude: hints.exclude,
          tags: hints.tags,
          minContextWindow: hints.minContextWindow,
          group: hints.group,
          inputTokens: tokensHint("inputTokens", hints.inputTokens),
          outputTokens: tokensHint("outputTokens", hints.outputTokens)
        }
      } catch (error) {
        return Effect.die(error)
      }
      return hints.wait === undefined
        ? attemptNow(request, refused)
        : acquireWaiting(request, hints.wait, restore)
    }

    const acquireWith = (
      hints: Hints | undefined,
      restore: <X, E, R>(effect: Effect.Effect<X, E, R>) => Effect.Effect<X, E, R>
    ): Effect.Effect<Lease, NoEndpointAvailable> => Effect.suspend(() => leaseOf(acquireNow(hints, restore)))

    /**
     * Ends a lease's call in this step: its slot freed, its outcome recorded, waiters woken;
     * what is left to do is the effect returned, which ends in `then` (the caller's call).
     */
    const settleNow = <X, E>(
      given: Lease,
      ending: (lease: LeaseImpl, latencyMs: number, jitter: () => number) => Table.Ending,
      then: Effect.Effect<X, E>
    ): Effect.Effect<X, E> => {
      // the table's step, written out (no closure, no pair: this runs on every call)
      if (!(given instanceof LeaseImpl) || given.owner !== owner) {
        return Effect.dieMessage(`release was given a lease that this balancer did not hand out`)
      }
      // a wrapper's release is its lease's
      const lease = given.self
      if (lease.settled) return then
      const now = clock.unsafeCurrentTimeMillis()
      const end = ending(lease, now - lease.startedAt, draw)
      const before = current
      const [events, next] = Table.release(before, lease.id, lease.probeOf, end, now, lease.answered)
      // settled once its end is recorded: an ending that throws leaves the lease to release again
      lease.settled = true
      current = next
      // priced from the lease's endpoint: the entry may be gone (removed with its last call)
      const spent = end._tag === "Success" && end.measured?.usage !== undefined
        ? EndpointState.costOf(lease.endpoint, end.measured.usage)
        : 0
      totalSpent += spent
      if (lease.arm !== undefined) countArm(armOf(lease.arm), end, spent)
      freed++
      // a change of health (a circuit closed, say) may let in many waiters, a plain end one
      if (events.length > 0) waiters.wakeAll()
      else waiters.wakeOne()
      const change = lease.sharedAt === undefined
        ? undefined
        : sharedChange(lease, end, Table.byId(before, lease.id), Table.byId(next, lease.id), events, spent, now)
      if (change !== undefined) {
        return Effect.zipRight(Effect.zipRight(publish(events), shareChange(change)), then)
      }
      return events.length === 0 ? then : Effect.zipRight(publish(events), then)
    }

    const release = (lease: Lease, outcome: Outcome.Outcome) =>
      Effect.suspend(() =>
        settleNow(lease, (lease, latencyMs, jitter) => endingOf(outcome, lease, latencyMs, jitter), Effect.void)
      )

    /**
     * `use`, with `observe` run as the call ends, in the step that settles its lease and
     * before it does: the router records each attempt there, which would otherwise cost it
     * a region of its own.
     *
     * The reservation is made in the step that makes the call uninterruptible (the mask's
     * own), and the lease is settled in the step that sees the call's end (the handler's):
     * each is one synchronous step, and each would otherwise be an operation or two more
     * on every call.
     */
    const useObserved = <A, E, R>(
      f: (endpoint: Endpoint.Endpoint, lease: Lease) => Effect.Effect<A, E, R>,
      hints: Hints | undefined,
      observe: Observer | undefined
    ): Effect.Effect<A, E | NoEndpointAvailable, R> =>
      Effect.uninterruptibleMask((restore) => {
        const run = (lease: Lease, call: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
          Effect.matchCauseEffect(restore(call), {
            onSuccess: (value) => ended(lease as LeaseImpl, Exit.succeed(value), observe),
            onFailure: (cause) => ended(lease as LeaseImpl, Exit.failCause(cause), observe)
          })
        const acquired = acquireNow(hints, restore)
        if (acquired instanceof LeaseImpl) {
          // reserved in this step: nothing can have come in between, so `f` is called now (an
          // interruption that arrives before its effect's first step, in a yield of the run
          // loop, ends the call there, as one arriving at that first step would)
          let call: Effect.Effect<A, E, R>
          try {
            call = f(acquired.endpoint, acquired)
          } catch (error) {
            // an `f` that throws is a defect of the call, whose lease is given back like any other's
            call = Effect.die(error)
          }
          return run(acquired, call)
        }
        // reserved after a wait or the shared store's admission: a caller interrupted
        // meanwhile has its lease given back without `f` ever being called
        return Effect.flatMap(acquired, (lease) => run(lease, Effect.suspend(() => f(lease.endpoint, lease))))
      })

    /** A call's end, in the step that sees it: observed, then its lease settled; its exit last. */
    const ended = <A, E>(
      lease: LeaseImpl,
      exit: Exit.Exit<A, E>,
      observe: Observer | undefined
    ): Effect.Effect<A, E> => {
      let first: Effect.Effect<void> | undefined
      if (observe !== undefined) {
        try {
          first = observe(exit, lease)
        } catch (error) {
          // an observer that throws still lets the lease go
          return Effect.zipRight(Effect.exit(Effect.suspend(() => settled(lease, exit))), Effect.die(error))
        }
      }
      return first === undefined ? settled(lease, exit) : settleAfter(first, Effect.suspend(() => settled(lease, exit)))
    }

    /** Settles the lease of a call that ended with `exit` (a detached success keeps it), in this step. */
    const settled = <A, E>(lease: LeaseImpl, exit: Exit.Exit<A, E>): Effect.Effect<A, E> =>
      Exit.isSuccess(exit) && lease.detached
        ? exit
        : settleNow(lease, (lease, latencyMs, jitter) => endingOfExit(exit, lease, latencyMs, jitter), exit)

    const use = <A, E, R>(
      f: (endpoint: Endpoint.Endpoint, lease: Lease) => Effect.Effect<A, E, R>,
      hints?: Hints
    ): Effect.Effect<A, E | NoEndpointAvailable, R> => useObserved(f, hints, undefined)

    /** Applies a change to the named endpoint; `frees` says whether waiters may now get in. */
    const byName = <A>(
      name: string,
      f: (table: Table.Table, index: number, now: number) => readonly [Effect.Effect<A>, Table.Table],
      frees: boolean
    ): Effect.Effect<A, UnknownEndpoint> =>
      Effect.suspend(() =>
        modify((table): readonly [Effect.Effect<A, UnknownEndpoint>, Table.Table] => {
          const index = Table.find(table, name)
          if (index === -1) return [Effect.fail(new UnknownEndpoint({ name, known: Table.names(table) })), table]
          const result = f(table, index, clock.unsafeCurrentTimeMillis())
          if (frees) {
            freed++
            waiters.wakeAll()
          }
          return result
        })
      )

    const addEndpoint = (input: Endpoint.Input | Endpoint.Endpoint) =>
      Effect.flatMap(
        Effect.flatMap(Endpoint.decode(input), (endpoint) =>
          Effect.map(policyOf(endpoint), (p) => [endpoint, p] as const)),
        ([endpoint, endpointPolicy]) =>
          Effect.suspend(() =>
            modify((table): readonly [Effect.Effect<void, InvalidConfig>, Table.Table] => {
              if (Table.find(table, endpoint.name) !== -1) {
                const issue = { path: "name", message: `duplicate endpoint name "${endpoint.name}"` }
                return [Effect.fail(new InvalidConfig({ issues: [issue] })), table]
              }
              const now = clock.unsafeCurrentTimeMillis()
              freed++
              waiters.wakeAll()
              return [
                publish([Event.EndpointAdded({ name: endpoint.name, at: now })]),
                Table.add(table, endpoint, endpointPolicy, now)
              ]
            })
          )
      )

    const removeEndpoint = (name: string) =>
      byName(name, (table, index, now) => [
        publish([Event.EndpointRemoved({ name, at: now })]),
        Table.remove(table, index)
      ], false)

    const forceHealthy = (name: string) =>
      byName(name, (table, index, now) => {
        const before = table.entries[index]
        const wasOut = before.held || before.circuit._tag !== "Closed"
        // recovered by hand here, recovered for the cluster
        const shared = store === undefined
          ? Effect.void
          : shareChange(settleOf(before.endpoint, before.policy, { closed: true }))
        return [
          Effect.zipRight(
            wasOut ? publish([Event.EndpointRecovered({ name, at: now, reason: "forced" })]) : Effect.void,
            shared
          ),
          Table.update(table, index, EndpointState.forceHealthy)
        ]
      }, true)

    const forceUnhealthy = (name: string) =>
      byName(name, (table, index, now) => [
        table.entries[index].held
          ? Effect.void
          : publish([Event.EndpointUnhealthy({ name, at: now, reason: "forced", until: undefined })]),
        Table.update(table, index, EndpointState.forceUnhealthy)
      ], false)

    // Active health checks on open circuits. A passing check ends the open period at once
    // (its `until` becomes now, so the opening is not due again), and the next call is the
    // probe; once per opening, since a failed probe opens the circuit again for longer, so a
    // check that passes while calls fail costs one probe per opening. A failing check stretches the open period to `maxRecoveryTimeout`: while
    // checks fail, calls probe only that often (a broken check delays recovery no longer).
    const healthChecks = (hc: ResolvedHealthCheck) => {
      // an endpoint whose check has not answered yet is not checked again; the others are
      // checked on time whatever one slow check does
      const checking = new Set<string>()
      const onResult = (name: string, since: number, passed: boolean) =>
        Effect.suspend(() =>
          modify((table): readonly [Effect.Effect<void>, Table.Table] => {
            const index = Table.find(table, name)
            if (index === -1) return [Effect.void, table]
            const entry = table.entries[index]
            const circuit = entry.circuit
            const now = clock.unsafeCurrentTimeMillis()
            if (circuit._tag !== "Open" || circuit.since !== since || circuit.until <= now) return [Effect.void, table]
            if (!passed) {
              const until = Math.max(circuit.until, since + entry.policy.maxRecoveryTimeoutMs)
              return until === circuit.until ? [Effect.void, table] : [
                publish([Event.EndpointChecked({ name, at: now, passed, until })]),
                Table.update(table, index, (e) => ({ ...e, circuit: { ...circuit, until } }))
              ]
            }
            freed++
            waiters.wakeAll()
            return [
              publish([Event.EndpointChecked({ name, at: now, passed, until: now })]),
              Table.update(table, index, (e) => ({ ...e, circuit: { ...circuit, until: now } }))
            ]
          })
        )
      const checkOne = (name: string, endpoint: Endpoint.Endpoint, since: number) =>
        // a check that throws instead of failing must not end the checking for good
        Effect.suspend(() => hc.check(endpoint)).pipe(
          Effect.timeout(Duration.millis(hc.timeoutMs)),
          Effect.exit,
          Effect.flatMap((exit) => onResult(name, since, Exit.isSuccess(exit))),
          Effect.ensuring(Effect.sync(() => checking.delete(name)))
        )
      const round = Effect.flatMap(read, (table) => {
        const now = clock.unsafeCurrentTimeMillis()
        const due: Array<Effect.Effect<void>> = []
        for (const entry of Table.live(table)) {
          const circuit = entry.circuit
          const name = entry.endpoint.name
          if (
            !entry.held && circuit._tag === "Open" && circuit.until > now && !checking.has(name)
          ) {
            checking.add(name)
            due.push(checkOne(name, entry.endpoint, circuit.since))
          }
        }
        // forked: children of the checking fiber, interrupted with it when the scope closes
        return Effect.forEach(due, (check) => Effect.fork(check), { discard: true })
      })
      return Effect.forever(Effect.zipRight(Effect.sleep(Duration.millis(hc.intervalMs)), round))
    }

    const withLive = <A>(f: (entries: ReadonlyArray<EndpointState.EndpointState>, now: number) => A) =>
      Effect.map(read, (table) => f(Table.live(table), clock.unsafeCurrentTimeMillis()))

    const armOf = (name: string): ArmCounters => {
      let counters = arms.get(name)
      if (counters === undefined) {
        counters = { picks: 0, successes: 0, failures: 0, cancelled: 0, latencyTotalMs: 0, latencyCount: 0, spent: 0 }
        arms.set(name, counters)
      }
      return counters
    }

    // subscriptions open now, so that attempts are published only when someone listens
    let listeners = 0
    const subscribe = Effect.zipRight(
      Effect.acquireRelease(
        Effect.sync(() => {
          listeners++
        }),
        () =>
          Effect.sync(() => {
            listeners--
          })
      ),
      PubSub.subscribe(pubsub)
    )

    if (resolved.healthCheck !== undefined) {
      yield* Effect.forkScoped(healthChecks(resolved.healthCheck))
    }

    // the router reports every attempt: with nobody listening that is work for nothing
    const reportAttempt = (event: Event & { readonly _tag: "AttemptEnded" }): Effect.Effect<void> =>
      listeners === 0 ? Effect.void : PubSub.publish(pubsub, event).pipe(Effect.asVoid)

    const service: BalancerService & Observable = {
      [UseObserved]: { use, useObserved, reportAttempt, unheard: () => listeners === 0 },
      strategy: strategy.name,
      // with a store, the reservation and the store's answer are apart in time: the lease
      // must reach the caller even if it is interrupted in between
      acquire: (hints) =>
        hints?.wait === undefined && store === undefined
          ? Effect.suspend(() => {
            const acquired = acquireNow(hints, Effect.interruptible)
            // what is left to do (publishing a probe's event) must not lose the lease
            return acquired instanceof LeaseImpl ? Effect.succeed(acquired) : Effect.uninterruptible(acquired)
          })
          : Effect.uninterruptibleMask((restore) => acquireWith(hints, restore)),
      release,
      use,
      addEndpoint,
      removeEndpoint,
      forceHealthy,
      forceUnhealthy,
      endpoints: withLive((entries) => entries.map((e) => e.endpoint)),
      healthyEndpoints: withLive((entries, now) =>
        entries.filter((e) => EndpointState.status(e, now) !== "unhealthy").map((e) => e.endpoint)
      ),
      stats: withLive((entries, now) => entries.map((e) => statsOf(e, now))),
      latencyQuantile: (name, q) =>
        Effect.map(read, (table) => {
          const index = Table.find(table, name)
          if (index === -1) return undefined
          const entry = table.entries[index]
          const ms = EndpointState.latencyQuantile(entry, q)
          return ms === undefined ? undefined : {
            ms,
            samples: EndpointState.latencySamples(entry),
            upper: upperOf(entry, q)
          }
        }),
      summary: Effect.map(
        read,
        (table) => summaryOf(table, strategy.name, arms, totalSpent, clock.unsafeCurrentTimeMillis())
      ),
      events: Stream.unwrapScoped(Effect.map(subscribe, (queue) => Stream.fromQueue(queue))),
      subscribe,
      reportAttempt
    }
    return service
  })

interface ArmCounters {
  picks: number
  successes: number
  failures: number
  cancelled: number
  latencyTotalMs: number
  latencyCount: number
  spent: number
}

/** Counts a finished call against the experiment arm that chose its endpoint. */
const countArm = (counters: ArmCounters, ending: Table.Ending, spent: number) => {
  switch (ending._tag) {
    case "Success": {
      counters.successes++
      if (ending.latencyMs !== undefined) {
        counters.latencyTotalMs += ending.measured?.ttftMs ?? ending.latencyMs
        counters.latencyCount++
      }
      counters.spent += spent
      break
    }
    case "Failure":
      counters.failures++
      break
    case "Cancelled":
      counters.cancelled++
  }
}

const summaryOf = (
  table: Table.Table,
  strategy: string,
  arms: ReadonlyMap<string, ArmCounters>,
  spent: number,
  now: number
): Summary => {
  const budget = table.budget
  return {
    strategy,
    spent: round(spent, 6),
    budget: budget === undefined ? null : {
      limit: budget.limit,
      spent: round(Table.spentInPeriod(table, now), 6),
      periodStart: EndpointState.budgetPeriod(budget.periodMs, now),
      periodEnd: EndpointState.budgetPeriod(budget.periodMs, now) + budget.periodMs,
      softLimit: budget.softLimit
    },
    arms: Array.from(arms, ([arm, c]) => ({
      arm,
      picks: c.picks,
      successes: c.successes,
      failures: c.failures,
      cancelled: c.cancelled,
      avgLatencyMs: c.latencyCount === 0 ? null : round(c.latencyTotalMs / c.latencyCount, 1),
      spent: round(c.spent, 6)
    }))
  }
}

const round = (n: number, digits: number) => {
  const f = 10 ** digits
  return Math.round(n * f) / f
}

const nullable = (n: number | undefined): number | null => n === undefined ? null : round(n, 1)

const windowCount = (window: SlidingWindow.SlidingWindow | undefined, now: number): number | null =>
  window === undefined ? null : Math.round(SlidingWindow.used(window, now))

export const statsOf = (e: EndpointState.EndpointState, now: number): EndpointStats => {
  const average = EndpointState.averageLatencyMs(e)
  const recentLatency = Health.recentLatencyMs(e.recent)
  return {
    name: e.endpoint.name,
    provider: e.endpoint.provider,
    model: e.endpoint.model,
    status: EndpointState.status(e, now),
    circuit: e.circuit._tag === "Closed" ? "closed" : e.circuit._tag === "Open" ? "open" : "half-open",
    held: e.held,
    active: e.active,
    successes: e.successes,
    failures: e.failures,
    consecutiveFailures: e.consecutiveFailures,
    errorRate: round(EndpointState.errorRate(e), 4),
    recentErrorRate: round(Health.recentErrorRate(e.recent), 4),
    avgLatencyMs: average === undefined ? null : round(average, 1),
    recentLatencyMs: recentLatency === undefined ? null : round(recentLatency, 1),
    unhealthyUntil: e.circuit._tag === "Open" && now < e.circuit.until ? e.circuit.until : null,
    cooldownUntil: now < e.cooldownUntil ? e.cooldownUntil : null,
    shared: now < e.sharedUntil ? { reason: e.sharedReason, until: e.sharedUntil } : null,
    rateLimited: e.rateLimited,
    trafficShare: round(EndpointState.trafficShare(e, now), 3),
    weight: e.endpoint.weight,
    priority: e.endpoint.priority,
    group: Endpoint.groupOf(e.endpoint),
    latencyP50Ms: nullable(EndpointState.latencyQuantile(e, 0.5)),
    latencyP95Ms: nullable(EndpointState.latencyQuantile(e, 0.95)),
    latencyP99Ms: nullable(EndpointState.latencyQuantile(e, 0.99)),
    latencyEstimateMs: nullable(EndpointState.latencyEstimateMs(e, now)),
    avgTimeToFirstTokenMs: nullable(EndpointState.averageTtftMs(e)),
    tokensPerSecond: nullable(e.meter.tokensPerSecond),
    inputTokens: e.meter.inputTokens,
    outputTokens: e.meter.outputTokens,
    headroom: round(EndpointState.headroom(e, now), 3),
    requestsLastMinute: windowCount(e.quota?.requestWindow, now),
    tokensLastMinute: windowCount(e.quota?.tokenWindow, now),
    requestsLastDay: windowCount(e.quota?.dayWindow, now),
    spent: round(e.meter.spent, 6),
    budget: e.endpoint.budget === undefined ? null : {
      limit: e.endpoint.budget.limit,
      spent: round(EndpointState.spentInPeriod(e, now), 6),
      periodEnd: EndpointState.budgetPeriod(Duration.toMillis(e.endpoint.budget.period), now) +
        Duration.toMillis(e.endpoint.budget.period)
    }
  }
}
