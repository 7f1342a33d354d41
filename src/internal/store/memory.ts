/**
 * The shared state in this process's memory. It is also the reference for the Redis
 * store's scripts (`redisScripts.ts`), which do the same steps in the same order: the
 * contract tests run one suite against both.
 */
import type { Clock } from "effect"
import { Effect } from "effect"
import type * as Endpoint from "../../Endpoint.js"
import type { SharedReason } from "../../EndpointState.js"
import type { Admission, AdmitRequest, BudgetPeriod, Settle, StoreService } from "../../Store.js"
import * as SlidingWindow from "../slidingWindow.js"

/** One minute, one day: the windows of `rpm`/`tpm` and `rpd`. */
export const minuteMs = 60_000
export const dayMs = 86_400_000
/** While the cluster's probes are all out, a refused caller asks again this soon. */
export const probingRetryMs = 1_000
/** How long a probe's slot lasts if its process never reports back (it died). */
export const probeTimeoutMs = 60_000
const epsilon = 1e-9

interface Circuit {
  readonly until: number
  readonly openings: number
  /** Forgotten then (as the Redis key expires): `maxRecoveryTimeout` past the open period. */
  readonly forgetAt: number
}

interface EndpointShared {
  rpm: SlidingWindow.SlidingWindow | undefined
  tpm: SlidingWindow.SlidingWindow | undefined
  rpd: SlidingWindow.SlidingWindow | undefined
  cooldownUntil: number
  circuit: Circuit | undefined
  /** Probes of the half-open circuit in flight: call id to when its slot lapses. */
  readonly probes: Map<string, number>
}

export const make = (clock: Clock.Clock): StoreService => {
  const endpoints = new Map<string, EndpointShared>()
  const groupCooldowns = new Map<string, number>()
  // spend per budget period, by `${endpoint or ""}\u0000${period ms}\u0000${period start}`; ended periods go
  const spend = new Map<string, { amount: number; readonly end: number }>()

  const stateOf = (endpoint: Endpoint.Endpoint): EndpointShared => {
    let state = endpoints.get(endpoint.name)
    if (state === undefined) {
      state = {
        rpm: undefined,
        tpm: undefined,
        rpd: undefined,
        cooldownUntil: 0,
        circuit: undefined,
        probes: new Map()
      }
      endpoints.set(endpoint.name, state)
    }
    // a window follows the endpoint's current limit (an endpoint re-added with another)
    const limits = endpoint.limits
    state.rpm = windowFor(state.rpm, limits?.rpm, minuteMs)
    state.tpm = windowFor(state.tpm, limits?.tpm, minuteMs)
    state.rpd = windowFor(state.rpd, limits?.rpd, dayMs)
    return state
  }

  const spentIn = (key: string, period: BudgetPeriod, now: number): number => {
    for (const [k, entry] of spend) if (entry.end <= now) spend.delete(k)
    return spend.get(`${key}\u0000${period.periodMs}\u0000${period.start}`)?.amount ?? 0
  }

  const admit = (request: AdmitRequest): Admission => {
    const now = clock.unsafeCurrentTimeMillis()
    const endpoint = request.endpoint
    const state = stateOf(endpoint)
    const group = endpoint.quotaGroup
    const cooldown = Math.max(state.cooldownUntil, group === undefined ? 0 : groupCooldowns.get(group) ?? 0)
    if (now < cooldown) return refused("cooling-down", cooldown - now)
    let probe = false
    if (state.circuit !== undefined && now >= state.circuit.forgetAt) {
      state.circuit = undefined
      state.probes.clear()
    }
    const circuit = state.circuit
    if (circuit !== undefined) {
      if (now < circuit.until) return refused("unhealthy", circuit.until - now)
      for (const [id, lapse] of state.probes) if (lapse <= now) state.probes.delete(id)
      if (state.probes.size >= request.halfOpenProbes) return refused("probing", probingRetryMs)
      probe = true
    }
    const tokens = request.tokens
    if (state.tpm !== undefined && tokens > state.tpm.limit) return refused("too-large", undefined)
    // a call without an estimate still needs room for one token (as the local check says)
    for (const [window, amount] of [[state.rpm, 1], [state.tpm, Math.max(1, tokens)], [state.rpd, 1]] as const) {
      if (window === undefined || SlidingWindow.fits(window, now, amount)) continue
      return refused("no-headroom", Math.max(0, SlidingWindow.fitsAt(window, now, amount) - now))
    }
    for (const [key, period] of [["", request.budget], [endpoint.name, request.endpointBudget]] as const) {
      if (period !== undefined && spentIn(key, period, now) >= period.limit - epsilon) {
        return refused("over-budget", Math.max(0, period.start + period.periodMs - now))
      }
    }
    if (state.rpm !== undefined) state.rpm = SlidingWindow.add(state.rpm, now, 1)
    if (state.tpm !== undefined && tokens > 0) state.tpm = SlidingWindow.add(state.tpm, now, tokens)
    if (state.rpd !== undefined) state.rpd = SlidingWindow.add(state.rpd, now, 1)
    if (probe) state.probes.set(request.callId, now + probeTimeoutMs)
    return { _tag: "Admitted", at: now, probe }
  }

  const settle = (s: Settle): void => {
    const now = clock.unsafeCurrentTimeMillis()
    const endpoint = s.endpoint
    const state = stateOf(endpoint)
    if (s.tokensDelta !== 0 && state.tpm !== undefined) {
      state.tpm = SlidingWindow.adjust(state.tpm, s.admittedAt, s.tokensDelta)
    }
    if (s.spent > 0) {
      for (const [key, period] of [["", s.budget], [endpoint.name, s.endpointBudget]] as const) {
        if (period === undefined) continue
        const k = `${key}\u0000${period.periodMs}\u0000${period.start}`
        const entry = spend.get(k)
        if (entry === undefined) spend.set(k, { amount: s.spent, end: period.start + period.periodMs })
        else entry.amount += s.spent
      }
    }
    if (s.cooldownMs > 0) {
      state.cooldownUntil = Math.max(state.cooldownUntil, now + s.cooldownMs)
      const group = endpoint.quotaGroup
      if (group !== undefined) groupCooldowns.set(group, Math.max(groupCooldowns.get(group) ?? 0, now + s.cooldownMs))
    }
    if (s.closed || s.probe?.outcome === "success") {
      state.circuit = undefined
      state.probes.clear()
      return
    }
    if (s.probe !== undefined) {
      state.probes.delete(s.probe.callId)
      if (s.probe.outcome === "failure") {
        const openings = (state.circuit?.openings ?? 0) + 1
        const ms = Math.ceil(Math.min(s.maxRecoveryMs, s.recoveryMs * s.recoveryFactor ** (openings - 1)))
        const until = Math.max(state.circuit?.until ?? 0, now + ms)
        state.circuit = { until, openings, forgetAt: until + s.maxRecoveryMs }
      }
    }
    if (s.openMs > 0) {
      const until = Math.max(state.circuit?.until ?? 0, now + s.openMs)
      state.circuit = {
        until,
        openings: Math.max(state.circuit?.openings ?? 0, s.openings),
        forgetAt: until + s.maxRecoveryMs
      }
    }
  }

  return {
    name: "memory",
    admit: (request) => Effect.sync(() => admit(request)),
    settle: (s) => Effect.sync(() => settle(s)),
    ping: Effect.void
  }
}

const windowFor = (
  window: SlidingWindow.SlidingWindow | undefined,
  limit: number | undefined,
  widthMs: number
): SlidingWindow.SlidingWindow | undefined =>
  limit === undefined
    ? undefined
    : window !== undefined && window.limit === limit
    ? window
    : SlidingWindow.make(limit, widthMs)

const refused = (reason: SharedReason, retryAfterMs: number | undefined): Admission => ({
  _tag: "Refused",
  reason,
  retryAfterMs
})
