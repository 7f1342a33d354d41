/**
 * The latencies of an endpoint's last measured calls, for percentiles (p50, p95, p99): a
 * fixed ring plus the same samples kept sorted, so memory stays constant however long it
 * runs, adding is one binary search and a short move, and a percentile is one read. The
 * percentile is exact (nearest rank) over the window.
 *
 * This is the one mutable part of an endpoint's state: a recorder the balancer appends to
 * inside its atomic update. Copying 2 x 256 numbers per call would cost more than the
 * whole rest of a call's bookkeeping.
 */
export const size = 256

export interface LatencyWindow {
  /** The samples in arrival order, as a ring. */
  readonly samples: Float64Array
  /** The same samples, sorted ascending, in `sorted[0 .. count)`. */
  readonly sorted: Float64Array
  count: number
  next: number
}

export const make = (): LatencyWindow => ({
  samples: new Float64Array(size),
  sorted: new Float64Array(size),
  count: 0,
  next: 0
})

/**
 * The first index in `sorted[0 .. count)` whose value is > `x`. Removing and inserting at
 * the end of a run of equal values moves the fewest samples (none when latencies repeat).
 */
const upperBound = (sorted: Float64Array, count: number, x: number): number => {
  let lo = 0
  let hi = count
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (sorted[mid] <= x) lo = mid + 1
    else hi = mid
  }
  return lo
}

export const add = (window: LatencyWindow, latencyMs: number): void => {
  const sorted = window.sorted
  let count = window.count
  if (count === size) {
    // the oldest sample leaves the sorted copy
    const old = window.samples[window.next]
    const at = upperBound(sorted, count, old) - 1
    if (at + 1 < count) sorted.copyWithin(at, at + 1, count)
    count--
  }
  const at = upperBound(sorted, count, latencyMs)
  if (at < count) sorted.copyWithin(at + 1, at, count)
  sorted[at] = latencyMs
  window.count = count + 1
  window.samples[window.next] = latencyMs
  window.next = (window.next + 1) % size
}

/** The `q`-quantile (0..1) of the window by the nearest-rank method, or `undefined` if empty. */
export const quantile = (window: LatencyWindow, q: number): number | undefined => {
  if (window.count === 0) return undefined
  const rank = Math.min(window.count, Math.max(1, Math.ceil(q * window.count)))
  return window.sorted[rank - 1]
}

/**
 * A distribution-free confidence interval for the `q`-quantile: the order statistics at
 * ranks `n q -/+ z sqrt(n q (1 - q))` (the normal approximation to the binomial), or
 * `undefined` if empty. With `z` 1.96 the true quantile lies inside about 95 % of the time.
 */
export const quantileBounds = (
  window: LatencyWindow,
  q: number,
  z: number
): { readonly lower: number; readonly upper: number } | undefined => {
  const n = window.count
  if (n === 0) return undefined
  const spread = z * Math.sqrt(n * q * (1 - q))
  const lower = Math.min(n, Math.max(1, Math.floor(n * q - spread)))
  const upper = Math.min(n, Math.max(1, Math.ceil(n * q + spread)))
  return { lower: window.sorted[lower - 1], upper: window.sorted[upper - 1] }
}
