/**
 * A sliding-window counter for request and token limits (per minute, per day), in constant
 * memory: the window is cut into 60 buckets and one more, and the count is the sum of the
 * buckets that overlap the last window. That covers a little more than the window (up to
 * one bucket), never less, so no burst at any boundary lets more than the limit through;
 * the price is that a count leaves the window up to one bucket late.
 *
 * Values are immutable: every change copies the 61 buckets (about 100 ns), and only
 * endpoints with limits have windows.
 */
export const buckets = 60

export interface SlidingWindow {
  readonly limit: number
  readonly widthMs: number
  /** The ring of `buckets + 1` counts, by absolute bucket number modulo its length. */
  readonly counts: Float64Array
  /** The absolute bucket number (`floor(time / widthMs)`) of the newest bucket. */
  readonly head: number
  /** Sum of `counts`. */
  readonly total: number
}

const size = buckets + 1

export const make = (limit: number, windowMs: number): SlidingWindow => ({
  limit,
  widthMs: windowMs / buckets,
  counts: new Float64Array(size),
  head: 0,
  total: 0
})

/** What the buckets that leave the ring by `bucket` hold. */
const dropped = (window: SlidingWindow, bucket: number): number => {
  const steps = bucket - window.head
  if (steps <= 0) return 0
  if (steps >= size) return window.total
  let sum = 0
  for (let k = window.head - buckets; k < window.head - buckets + steps; k++) sum += window.counts[mod(k)]
  return sum
}

const mod = (k: number) => ((k % size) + size) % size

/** The count over the last window at `now`. */
export const used = (window: SlidingWindow, now: number): number =>
  Math.max(0, window.total - dropped(window, Math.floor(now / window.widthMs)))

/** A copy moved forward to `now`'s bucket (a time before the head stays in the head). */
const advanced = (window: SlidingWindow, now: number): { counts: Float64Array; head: number; total: number } => {
  const bucket = Math.floor(now / window.widthMs)
  const counts = window.counts.slice()
  if (bucket <= window.head) return { counts, head: window.head, total: window.total }
  let total = window.total
  if (bucket - window.head >= size) {
    counts.fill(0)
    total = 0
  } else {
    for (let k = window.head + 1; k <= bucket; k++) {
      total -= counts[mod(k)]
      counts[mod(k)] = 0
    }
  }
  return { counts, head: bucket, total: Math.max(0, total) }
}

/** Counts `amount` at `now`. */
export const add = (window: SlidingWindow, now: number, amount: number): SlidingWindow => {
  // a time before the head (a clock stepping back) counts in the head
  const { counts, head, total } = advanced(window, now)
  counts[mod(head)] += amount
  return { limit: window.limit, widthMs: window.widthMs, counts, head, total: total + amount }
}

/**
 * Corrects what was counted at `at` by `delta` (a token estimate replaced by the reported
 * usage). A count that has left the window is past correcting; no bucket goes below 0.
 * A bucket the window has not reached yet (nothing was counted since `at`) is counted now.
 */
export const adjust = (window: SlidingWindow, at: number, delta: number): SlidingWindow => {
  const bucket = Math.floor(at / window.widthMs)
  if (delta === 0 || bucket < window.head - buckets) return window
  if (bucket > window.head) return delta > 0 ? add(window, at, delta) : window
  const counts = window.counts.slice()
  const before = counts[mod(bucket)]
  const after = Math.max(0, before + delta)
  counts[mod(bucket)] = after
  return {
    limit: window.limit,
    widthMs: window.widthMs,
    counts,
    head: window.head,
    total: window.total + after - before
  }
}

/** Whether `amount` more fits in the window at `now`. */
export const fits = (window: SlidingWindow, now: number, amount: number): boolean =>
  used(window, now) + amount <= window.limit

/**
 * The earliest time at or after `now` at which `amount` more fits, or `Infinity` when it
 * never can (it is more than the whole limit).
 */
export const fitsAt = (window: SlidingWindow, now: number, amount: number): number => {
  if (amount > window.limit) return Infinity
  const bucket = Math.max(window.head, Math.floor(now / window.widthMs))
  let count = used(window, now)
  if (count + amount <= window.limit) return now
  // the buckets still in the window at `now`, oldest first, leave it one by one
  for (let k = bucket - buckets; k <= window.head; k++) {
    count -= window.counts[mod(k)]
    if (count + amount <= window.limit + 1e-9) return (k + size) * window.widthMs
  }
  return (window.head + size) * window.widthMs
}

/** The share of the limit still free at `now`, in [0, 1]. */
export const headroom = (window: SlidingWindow, now: number): number =>
  Math.max(0, 1 - used(window, now) / window.limit)
