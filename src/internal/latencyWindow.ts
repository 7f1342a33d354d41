/**
 * The latencies of an endpoint's last successful attempts, for percentiles (the router's
 * hedge delay at p95). A fixed ring, so memory stays constant however long it runs; the
 * percentile is exact over the window.
 */
export const size = 128

export interface LatencyWindow {
  readonly samples: Float64Array
  count: number
  next: number
}

export const make = (): LatencyWindow => ({ samples: new Float64Array(size), count: 0, next: 0 })

export const add = (window: LatencyWindow, latencyMs: number): void => {
  window.samples[window.next] = latencyMs
  window.next = (window.next + 1) % size
  if (window.count < size) window.count++
}

/** The `q`-quantile (0..1) of the window by the nearest-rank method, or `undefined` if empty. */
export const quantile = (window: LatencyWindow, q: number): number | undefined => {
  if (window.count === 0) return undefined
  const sorted = window.samples.slice(0, window.count).sort()
  const rank = Math.min(window.count, Math.max(1, Math.ceil(q * window.count)))
  return sorted[rank - 1]
}
