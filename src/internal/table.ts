/**
 * The balancer's state as one immutable table and the pure operations on it. The
 * balancer applies each of them in one synchronous step, which in a
 * single-threaded runtime is a transaction: no other fiber can observe or change the
 * table in between.
 */
import { Duration } from "effect"
import type { Endpoint } from "../Endpoint.js"
import * as EndpointModule from "../Endpoint.js"
import * as EndpointState from "../EndpointState.js"
import * as Errors from "../Errors.js"
import type { PassedOver } from "../Errors.js"
import { Event } from "../Event.js"
import type * as Health from "../Health.js"
import type * as RateLimit from "../RateLimit.js"
import type { Strategy } from "../Strategy.js"

/** The balancer's own budget, resolved. */
export interface Budget {
  readonly limit: number
  readonly periodMs: number
  readonly softLimit: number
}

/** The balancer's spend in the budget period that started at `start`. */
export interface Spend {
  readonly start: number
  readonly amount: number
}

export interface Table {
  /** In the order the endpoints were added (ascending `id`). */
  readonly entries: ReadonlyArray<EndpointState.EndpointState>
  readonly strategyState: unknown
  readonly nextId: number
  readonly budget: Budget | undefined
  readonly spend: Spend
}

export const make = (strategy: Strategy, budget?: Budget): Table => ({
  entries: [],
  strategyState: strategy.initial,
  nextId: 0,
  budget,
  spend: { start: 0, amount: 0 }
})

const withEntries = (table: Table, entries: ReadonlyArray<EndpointState.EndpointState>): Table => ({
  entries,
  strategyState: table.strategyState,
  nextId: table.nextId,
  budget: table.budget,
  spend: table.spend
})

export interface Request {
  readonly exclude: ReadonlyArray<string> | undefined
  readonly tags: ReadonlyArray<string> | undefined
  readonly minContextWindow: number | undefined
  readonly group: string | undefined
  /** Estimated tokens (0 when the caller gave no estimate). */
  readonly inputTokens: number
  readonly outputTokens: number
}

/** What the balancer has spent in the current period of its budget (0 in a new period). */
export const spentInPeriod = (table: Table, now: number): number =>
  table.budget !== undefined && EndpointState.budgetPeriod(table.budget.periodMs, now) === table.spend.start
    ? table.spend.amount
    : 0

/** Whether the balancer's budget is spent: then endpoints with a price take no calls. */
const capped = (table: Table, now: number): boolean =>
  table.budget !== undefined && spentInPeriod(table, now) >= table.budget.limit - EndpointState.budgetEpsilon

const costly = (entry: EndpointState.EndpointState): boolean =>
  entry.endpoint.cost !== undefined &&
  (entry.endpoint.cost.inputPerMillion > 0 || entry.endpoint.cost.outputPerMillion > 0)

export type AcquireResult =
  | {
    readonly _tag: "Acquired"
    readonly entry: EndpointState.EndpointState
    readonly probe: EndpointState.Probe
    readonly events: ReadonlyArray<Event>
    /** The experiment arm that chose it, when the strategy runs one. */
    readonly arm: string | undefined
  }
  | {
    readonly _tag: "Rejected"
    readonly passedOver: ReadonlyArray<PassedOver>
    readonly retryAt: number | undefined
  }

const noEvents: ReadonlyArray<Event> = []

const filteredOut = (
  entry: EndpointState.EndpointState,
  request: Request
): "excluded" | "missing-tags" | "context-too-small" | "other-group" | undefined => {
  if (request.exclude !== undefined && request.exclude.includes(entry.endpoint.name)) return "excluded"
  if (request.group !== undefined && EndpointModule.groupOf(entry.endpoint) !== request.group) return "other-group"
  if (request.minContextWindow !== undefined && (entry.endpoint.contextWindow ?? 0) < request.minContextWindow) {
    return "context-too-small"
  }
  if (request.tags !== undefined) {
    for (const tag of request.tags) {
      if (!entry.endpoint.tags.includes(tag)) return "missing-tags"
    }
  }
  return undefined
}

/**
 * Chooses an endpoint and reserves a slot on it, or says why none could serve.
 *
 * Eligibility comes before ranking: filtered-out and unadmittable endpoints drop out;
 * only the lowest `priority` tier with an admittable endpoint serves; in it, an endpoint
 * due for a half-open probe takes the request (so recovery is never starved), otherwise
 * the strategy ranks the healthy endpoints, or the degraded ones when none is healthy.
 * An endpoint in slow start takes part in a pick only with probability equal to its
 * traffic share (10 % rising to 100 %), and serves anyway when nothing else can.
 *
 * With `panic` on, when nothing can serve, the open-circuit endpoint that reopens first
 * takes the call instead of it failing (Envoy's panic routing).
 */
export const acquire = (
  table: Table,
  strategy: Strategy,
  request: Request,
  now: number,
  random: () => number,
  panic = false
): readonly [AcquireResult, Table] => {
  const entries = table.entries
  const tokens = request.inputTokens + request.outputTokens
  const overBalancerBudget = table.budget !== undefined && capped(table, now)
  let budgets = table.budget !== undefined
  let tier = Infinity
  let probeAt = -1
  let healthy: Array<number> = []
  let degraded: Array<number> = []
  let rampingUp: Array<number> = []
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]
    if (filteredOut(entry, request) !== undefined) continue
    const admission = EndpointState.admission(entry, now, tokens)
    if (admission !== "admit" && admission !== "probe") continue
    if (overBalancerBudget && costly(entry)) continue
    if (entry.endpoint.budget !== undefined) budgets = true
    const priority = entry.endpoint.priority
    if (priority > tier) continue
    if (priority < tier) {
      tier = priority
      probeAt = -1
      healthy = []
      degraded = []
      rampingUp = []
    }
    if (admission === "probe") {
      if (probeAt === -1) probeAt = i
    } else if (EndpointState.status(entry, now) !== "healthy") {
      degraded.push(i)
    } else {
      const share = EndpointState.trafficShare(entry, now)
      if (share < 1 && random() >= share) rampingUp.push(i)
      else healthy.push(i)
    }
  }

  let chosen: number
  let strategyState = table.strategyState
  let arm: string | undefined
  if (probeAt !== -1) {
    chosen = probeAt
  } else {
    let pool = healthy.length > 0 ? healthy : rampingUp.length > 0 ? rampingUp : degraded
    if (budgets && pool.length > 1) pool = thrifty(table, pool, request, now)
    if (pool.length === 0) {
      const fallback = panic ? leastBad(table, request, now) : -1
      if (fallback === -1) return [reject(table, request, now), table]
      chosen = fallback
    } else {
      // the common case, every endpoint a healthy candidate, needs no copy of the list
      const candidates = pool.length === entries.length ? entries : pool.map((i) => entries[i])
      const context = {
        now,
        random,
        inputTokens: request.inputTokens,
        outputTokens: request.outputTokens
      }
      const [index, next, label] = strategy.select(candidates, strategyState, context)
      if (!(Number.isInteger(index) && index >= 0 && index < pool.length)) {
        // a bug in a user-written strategy: a defect, reported with what went wrong
        throw new RangeError(`Strategy "${strategy.name}" chose index ${index} among ${pool.length} candidates`)
      }
      chosen = pool[index]
      strategyState = next
      arm = label
    }
  }

  const before = entries[chosen]
  const isProbe = probeAt === chosen
  const after = EndpointState.onAcquire(before, isProbe, now, tokens)
  const probe = isProbe ? EndpointState.probeOf(after) : undefined
  const nextEntries = entries.slice()
  nextEntries[chosen] = after
  const events = isProbe && before.circuit._tag === "Open"
    ? [Event.EndpointProbing({ name: before.endpoint.name, at: now })]
    : noEvents
  return [
    { _tag: "Acquired", entry: after, probe, events, arm },
    { entries: nextEntries, strategyState, nextId: table.nextId, budget: table.budget, spend: table.spend }
  ]
}

/**
 * Saving money. An endpoint past its own budget's soft limit steps aside for any
 * candidate within its soft limit that costs no more for this request; once the balancer
 * is past its soft limit only the cheapest candidates (within 5 % of the cheapest price)
 * take part in the pick. An endpoint without prices is not preferred (its spend is
 * unknown).
 */
const thrifty = (table: Table, pool: Array<number>, request: Request, now: number): Array<number> => {
  const entries = table.entries
  const priceOf = (i: number) =>
    EndpointModule.priceOf(entries[i].endpoint, request.inputTokens, request.outputTokens) ?? Infinity
  const within = pool.filter((i) => !EndpointState.pastSoftLimit(entries[i], now))
  let result = within.length === pool.length || within.length === 0
    ? pool
    : pool.filter((i) => {
      if (within.includes(i)) return true
      const price = priceOf(i)
      return !within.some((j) => priceOf(j) <= price)
    })
  const budget = table.budget
  if (
    budget !== undefined && spentInPeriod(table, now) >= budget.limit * budget.softLimit - EndpointState.budgetEpsilon
  ) {
    const prices = result.map(priceOf)
    const cheapest = Math.min(...prices)
    if (Number.isFinite(cheapest)) result = result.filter((_, k) => prices[k] <= cheapest * 1.05)
  }
  return result
}

/** Panic routing: the open-circuit endpoint (not held, full or cooling down) that reopens first. */
const leastBad = (table: Table, request: Request, now: number): number => {
  let best = -1
  let bestUntil = Infinity
  for (let i = 0; i < table.entries.length; i++) {
    const entry = table.entries[i]
    if (
      filteredOut(entry, request) !== undefined ||
      EndpointState.admission(entry, now, request.inputTokens + request.outputTokens) !== "unhealthy"
    ) continue
    const until = EndpointState.availableAt(entry, now) ?? Infinity
    if (until < bestUntil) {
      best = i
      bestUntil = until
    }
  }
  return best
}

const reject = (table: Table, request: Request, now: number): AcquireResult => {
  const passedOver: Array<PassedOver> = []
  const tokens = request.inputTokens + request.outputTokens
  const overBalancerBudget = capped(table, now)
  let retryAt: number | undefined
  for (const entry of table.entries) {
    const name = entry.endpoint.name
    const filtered = filteredOut(entry, request)
    if (filtered !== undefined) {
      passedOver.push({ endpoint: name, reason: filtered })
      continue
    }
    let admission = EndpointState.admission(entry, now, tokens)
    let until = EndpointState.availableAt(entry, now, tokens)
    if ((admission === "admit" || admission === "probe") && overBalancerBudget && costly(entry)) {
      admission = "over-budget"
      until = EndpointState.budgetPeriod(table.budget!.periodMs, now) + table.budget!.periodMs
    }
    if (until !== undefined && (retryAt === undefined || until < retryAt)) retryAt = until
    passedOver.push(
      until !== undefined
        ? { endpoint: name, reason: admission as PassedOver["reason"], until }
        : { endpoint: name, reason: admission as PassedOver["reason"] }
    )
  }
  return { _tag: "Rejected", passedOver, retryAt }
}

export type Ending =
  | {
    readonly _tag: "Success"
    readonly latencyMs: number | undefined
    /** Time to first token, usage, provider hints and the reserved estimate, when there are any. */
    readonly measured: EndpointState.Measured | undefined
    /** When the call started (epoch ms). */
    readonly startedAt?: number | undefined
  }
  | {
    readonly _tag: "Failure"
    readonly error: unknown
    readonly latencyMs: number | undefined
    readonly rateLimit: RateLimit.Remaining | undefined
    /** Set by the caller to override what the error says about the endpoint's health. */
    readonly countsAgainstHealth: boolean | undefined
    /** Draws a number in [0, 1) to jitter an open period or a rate-limit cooldown with. */
    readonly jitter: () => number
    /** When the call started (epoch ms). */
    readonly startedAt?: number | undefined
  }
  | { readonly _tag: "Cancelled" }

/**
 * What a failure does to the endpoint (see `ProviderError.healthEffect`), and until when a
 * rate-limited endpoint rests: the provider's `Retry-After` (or the policy's default)
 * times 1 to 1.5, so that the balancers and processes it turned away at the same moment
 * do not all come back at the same moment. A `Retry-After` longer than `maxCooldown` is
 * treated as an outage: a health failure.
 */
export const classify = (
  ending: Ending & { readonly _tag: "Failure" },
  policy: Health.Resolved,
  now: number
): { readonly effect: Errors.HealthEffect; readonly until: number } => {
  if (ending.countsAgainstHealth !== undefined) {
    return { effect: ending.countsAgainstHealth ? "counts" : "ignore", until: 0 }
  }
  const error = ending.error
  if (!Errors.isProviderError(error)) return { effect: "counts", until: 0 }
  if (error._tag !== "RateLimited") return { effect: error.healthEffect, until: 0 }
  const waitMs = error.retryAfter === undefined ? policy.rateLimitCooldownMs : Duration.toMillis(error.retryAfter)
  if (waitMs > policy.maxCooldownMs) return { effect: "counts", until: 0 }
  return { effect: "cooldown", until: Math.ceil(now + waitMs * (1 + 0.5 * ending.jitter())) }
}

const onFailure = (
  before: EndpointState.EndpointState,
  ending: Ending & { readonly _tag: "Failure" },
  probe: EndpointState.Probe,
  now: number
): EndpointState.EndpointState => {
  const { effect, until } = classify(ending, before.policy, now)
  switch (effect) {
    case "counts":
      return EndpointState.onFailure(before, now, ending.latencyMs, probe, true, ending.jitter(), ending.startedAt)
    case "ignore":
      return EndpointState.onFailure(before, now, ending.latencyMs, probe, false)
    case "cooldown":
      return EndpointState.onRateLimited(before, until, probe)
    case "hold":
      return EndpointState.onUnauthorized(before, probe)
  }
}

const indexOf = (table: Table, id: number): number => {
  const entries = table.entries
  for (let i = 0; i < entries.length; i++) {
    if (entries[i].id === id) return i
  }
  return -1
}

const replace = (table: Table, index: number, entry: EndpointState.EndpointState | undefined): Table => {
  const entries = table.entries.slice()
  if (entry === undefined) entries.splice(index, 1)
  else entries[index] = entry
  return withEntries(table, entries)
}

/**
 * Ends a call: gives its slot back and records its outcome. A removed endpoint's entry
 * goes away with its last call.
 */
export const release = (
  table: Table,
  id: number,
  probe: EndpointState.Probe,
  ending: Ending,
  now: number,
  /** The call had answered before it ended (a stream past its first token). */
  answered = false
): readonly [ReadonlyArray<Event>, Table] => {
  const index = indexOf(table, id)
  if (index === -1) return [noEvents, table]
  const before = table.entries[index]
  let after = ending._tag === "Success"
    ? EndpointState.onSuccess(before, now, ending.latencyMs, probe, ending.measured, ending.startedAt)
    : ending._tag === "Failure"
    ? onFailure(before, ending, probe, now)
    : EndpointState.onCancel(before, probe)
  if (ending._tag === "Failure" && ending.rateLimit !== undefined) {
    after = EndpointState.onProviderHint(after, ending.rateLimit)
  }
  if (answered) after = EndpointState.onAnsweredEnd(after)
  const events = transitions(before, after, now)
  let next = replace(table, index, after.removed && after.active === 0 ? undefined : after)
  if (table.budget !== undefined && after.meter.spent > before.meter.spent) {
    next = addSpend(next, after.meter.spent - before.meter.spent, now)
  }
  const group = after.endpoint.quotaGroup
  if (group === undefined) return [events, next]
  // what the provider said of its limits is the account's, so the whole group's
  const hint = ending._tag === "Success"
    ? ending.measured?.rateLimit
    : ending._tag === "Failure"
    ? ending.rateLimit
    : undefined
  if (hint !== undefined) next = hintGroup(next, group, after.id, hint)
  return after.cooldownUntil > before.cooldownUntil
    ? coolGroup(next, group, after, now, events)
    : [events, next]
}

/**
 * The shared store turned away a call this table had admitted: it is taken back and the
 * endpoint waits (see `EndpointState.onSharedRefusal`).
 */
export const sharedRefusal = (
  table: Table,
  id: number,
  probe: EndpointState.Probe,
  reservedAt: number,
  tokens: number,
  reason: EndpointState.SharedReason,
  until: number
): Table => {
  const index = indexOf(table, id)
  if (index === -1) return table
  const after = EndpointState.onSharedRefusal(table.entries[index], probe, reservedAt, tokens, reason, until)
  return replace(table, index, after.removed && after.active === 0 ? undefined : after)
}

/** The entry with this id, or `undefined` when it is gone. */
export const byId = (table: Table, id: number): EndpointState.EndpointState | undefined => {
  const index = indexOf(table, id)
  return index === -1 ? undefined : table.entries[index]
}

/** Gives the other endpoints of a quota group what one of them heard of the account's limits. */
const hintGroup = (table: Table, group: string, from: number, hint: RateLimit.Remaining): Table =>
  withEntries(
    table,
    table.entries.map((entry) =>
      entry.id === from || entry.endpoint.quotaGroup !== group ? entry : EndpointState.onProviderHint(entry, hint)
    )
  )

const addSpend = (table: Table, amount: number, now: number): Table => {
  const start = EndpointState.budgetPeriod(table.budget!.periodMs, now)
  return {
    entries: table.entries,
    strategyState: table.strategyState,
    nextId: table.nextId,
    budget: table.budget,
    spend: { start, amount: (start === table.spend.start ? table.spend.amount : 0) + amount }
  }
}

/** A 429 on one endpoint of a quota group rests every endpoint of the group as long. */
const coolGroup = (
  table: Table,
  group: string,
  limited: EndpointState.EndpointState,
  now: number,
  events: ReadonlyArray<Event>
): readonly [ReadonlyArray<Event>, Table] => {
  const all = events.slice()
  const entries = table.entries.map((entry) => {
    if (
      entry.id === limited.id || entry.endpoint.quotaGroup !== group || entry.cooldownUntil >= limited.cooldownUntil
    ) {
      return entry
    }
    all.push(Event.EndpointRateLimited({ name: entry.endpoint.name, at: now, until: limited.cooldownUntil }))
    return EndpointState.coolDown(entry, limited.cooldownUntil)
  })
  return [all, withEntries(table, entries)]
}

const transitions = (
  before: EndpointState.EndpointState,
  after: EndpointState.EndpointState,
  now: number
): ReadonlyArray<Event> => {
  if (after.removed) return noEvents
  const name = after.endpoint.name
  if (after.held && !before.held) {
    return [Event.EndpointUnhealthy({ name, at: now, reason: "unauthorized", until: undefined })]
  }
  if (after.cooldownUntil > before.cooldownUntil) {
    return [Event.EndpointRateLimited({ name, at: now, until: after.cooldownUntil })]
  }
  if (before.circuit._tag === after.circuit._tag) return noEvents
  if (after.circuit._tag === "Open") {
    return [Event.EndpointUnhealthy({
      name,
      at: now,
      reason: before.circuit._tag === "HalfOpen" ? "probe-failed" : "failures",
      until: after.circuit.until
    })]
  }
  if (after.circuit._tag === "Closed" && !after.held) {
    return [Event.EndpointRecovered({ name, at: now, reason: "probe-succeeded" })]
  }
  return noEvents
}

export const add = (table: Table, endpoint: Endpoint, policy: Health.Resolved, now: number): Table => ({
  strategyState: table.strategyState,
  entries: [...table.entries, EndpointState.make(table.nextId, endpoint, policy, now)],
  nextId: table.nextId + 1,
  budget: table.budget,
  spend: table.spend
})

/** The index of the live (not removed) entry with this name, or -1. */
export const find = (table: Table, name: string): number => {
  const entries = table.entries
  for (let i = 0; i < entries.length; i++) {
    if (!entries[i].removed && entries[i].endpoint.name === name) return i
  }
  return -1
}

export const names = (table: Table): ReadonlyArray<string> =>
  table.entries.filter((e) => !e.removed).map((e) => e.endpoint.name)

export const remove = (table: Table, index: number): Table => {
  const entry = table.entries[index]
  return replace(table, index, entry.active === 0 ? undefined : EndpointState.markRemoved(entry))
}

/** A stream's first token arrived on the endpoint of lease `id`. */
export const firstToken = (table: Table, id: number, now: number): Table => {
  const index = indexOf(table, id)
  return index === -1 ? table : replace(table, index, EndpointState.onFirstToken(table.entries[index], now))
}

export const update = (
  table: Table,
  index: number,
  f: (entry: EndpointState.EndpointState) => EndpointState.EndpointState
): Table => replace(table, index, f(table.entries[index]))

export const live = (table: Table): ReadonlyArray<EndpointState.EndpointState> =>
  table.entries.filter((e) => !e.removed)
