/**
 * A retry budget shared by every call through one router, as in Finagle and tower: each
 * call deposits `percent` of a retry, each retry or hedge withdraws one, and a floor of
 * `minPerSecond` keeps a quiet client able to retry at all. Deposits and withdrawals
 * decay exponentially with time constant `ttlMs`, so the budget follows recent traffic
 * and needs constant memory and no timers.
 */
export interface RetryBudget {
  readonly at: number
  readonly calls: number
  readonly retries: number
}

export interface Settings {
  readonly percent: number
  readonly minPerSecond: number
  readonly ttlMs: number
}

export const empty: RetryBudget = { at: 0, calls: 0, retries: 0 }

const decay = (budget: RetryBudget, now: number, ttlMs: number): RetryBudget => {
  if (now <= budget.at) return budget
  const f = Math.exp((budget.at - now) / ttlMs)
  return { at: now, calls: budget.calls * f, retries: budget.retries * f }
}

/** A call started: it deposits `percent` of a retry. */
export const deposit = (budget: RetryBudget, now: number, settings: Settings): RetryBudget => {
  const b = decay(budget, now, settings.ttlMs)
  return { at: b.at, calls: b.calls + 1, retries: b.retries }
}

/** Takes one retry if the budget allows it. */
export const withdraw = (
  budget: RetryBudget,
  now: number,
  settings: Settings
): readonly [boolean, RetryBudget] => {
  const b = decay(budget, now, settings.ttlMs)
  const allowance = settings.percent * b.calls + settings.minPerSecond * (settings.ttlMs / 1000)
  return b.retries + 1 <= allowance ? [true, { at: b.at, calls: b.calls, retries: b.retries + 1 }] : [false, b]
}

/** Gives back a retry that was taken but not used (a hedge that found no endpoint, say). */
export const refund = (budget: RetryBudget): RetryBudget => ({
  at: budget.at,
  calls: budget.calls,
  retries: Math.max(0, budget.retries - 1)
})
