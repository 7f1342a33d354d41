/**
 * Reading providers' rate-limit answers: how long a 429 asks us to wait.
 *
 * Providers say it in several ways, all handled by {@link retryAfter}, in this order:
 *
 * 1. `retry-after-ms`: milliseconds (OpenAI, Azure OpenAI).
 * 2. `retry-after`: seconds, or an HTTP date (RFC 9110).
 * 3. The reset of the limit that ran out: OpenAI's `x-ratelimit-reset-requests` /
 *    `x-ratelimit-reset-tokens` (durations such as `"1s"`, `"6m0s"`, `"20ms"`) and
 *    Anthropic's `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-reset`
 *    (RFC 3339 times). A limit whose `...-remaining` header says 0 is the one that ran
 *    out; when none says so, the latest reset is taken, to be safe.
 *
 * A provider implementation passes the result to `RateLimited({ retryAfter })`; the
 * balancer then rests the endpoint (and its quota group) that long, times 1 to 1.5.
 *
 * @since 0.1.0
 */
import { Duration } from "effect"

/**
 * Response headers, with any capitalisation.
 *
 * @since 0.1.0
 * @category models
 */
export type Headers = Readonly<Record<string, string | ReadonlyArray<string> | undefined>>

const lower = (headers: Headers): Map<string, string> => {
  const map = new Map<string, string>()
  for (const [key, value] of Object.entries(headers)) {
    if (value === undefined) continue
    map.set(key.toLowerCase(), typeof value === "string" ? value : value.join(","))
  }
  return map
}

const GO_DURATION = /^(?:(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns))+$/
const GO_PART = /(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g
const unitMs: Record<string, number> = {
  h: 3_600_000,
  m: 60_000,
  s: 1_000,
  ms: 1,
  us: 0.001,
  "µs": 0.001,
  ns: 0.000001
}

/**
 * A duration in Go's notation (`"1s"`, `"6m0s"`, `"1h2m3.5s"`, `"20ms"`), as OpenAI's
 * reset headers write it, in milliseconds.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseGoDuration = (text: string): number | undefined => {
  const value = text.trim()
  if (value === "" || !GO_DURATION.test(value)) return undefined
  let ms = 0
  for (const [, amount, unit] of value.matchAll(GO_PART)) ms += Number(amount) * unitMs[unit]
  return ms
}

/**
 * `Retry-After`: delay-seconds or an HTTP date, in milliseconds from `now` (never negative).
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseRetryAfter = (text: string, now: number): number | undefined => {
  const value = text.trim()
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000
  // an HTTP date has a day and month name; anything else (such as "-5") is not one
  if (!/[a-z]/i.test(value)) return undefined
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

/**
 * The longest wait a header is believed for: a day (the longest limit providers reset,
 * requests per day). A longer or endless one is a server's garbage, and would keep an
 * endpoint out for good.
 */
const maxWaitMs = 86_400_000

const believable = (ms: number | undefined): number | undefined =>
  ms !== undefined && Number.isFinite(ms) && ms >= 0 ? Math.min(ms, maxWaitMs) : undefined

/** A reset header: a Go duration (OpenAI), or seconds or a date (Anthropic's RFC 3339 times). */
const resetOf = (value: string, now: number): number | undefined =>
  believable(parseGoDuration(value) ?? parseRetryAfter(value, now))

const limits = [
  ["x-ratelimit-reset-requests", "x-ratelimit-remaining-requests"],
  ["x-ratelimit-reset-tokens", "x-ratelimit-remaining-tokens"],
  ["anthropic-ratelimit-requests-reset", "anthropic-ratelimit-requests-remaining"],
  ["anthropic-ratelimit-tokens-reset", "anthropic-ratelimit-tokens-remaining"],
  ["anthropic-ratelimit-input-tokens-reset", "anthropic-ratelimit-input-tokens-remaining"],
  ["anthropic-ratelimit-output-tokens-reset", "anthropic-ratelimit-output-tokens-remaining"]
] as const

/**
 * How long a rate-limited answer asks us to wait, from its headers, or `undefined` when
 * it does not say (or says something unreadable). `now` is epoch ms, for HTTP dates.
 *
 * @since 0.1.0
 * @category parsing
 */
export const retryAfter = (headers: Headers, now: number): Duration.Duration | undefined => {
  const h = lower(headers)
  const ms = h.get("retry-after-ms")
  // past a day, still a long wait (the balancer takes it for an outage), but finite
  const millis = ms !== undefined && /^\d+(\.\d+)?$/.test(ms.trim()) ? believable(Number(ms.trim())) : undefined
  if (millis !== undefined) return Duration.millis(millis)
  const after = h.get("retry-after")
  const parsed = after === undefined ? undefined : believable(parseRetryAfter(after, now))
  if (parsed !== undefined) return Duration.millis(parsed)
  let exhausted: number | undefined
  let any: number | undefined
  for (const [resetKey, remainingKey] of limits) {
    const reset = h.get(resetKey)
    if (reset === undefined) continue
    const wait = resetOf(reset, now)
    if (wait === undefined) continue
    any = any === undefined ? wait : Math.max(any, wait)
    if (h.get(remainingKey)?.trim() === "0") exhausted = exhausted === undefined ? wait : Math.max(exhausted, wait)
  }
  const wait = exhausted ?? any
  return wait === undefined ? undefined : Duration.millis(wait)
}

/**
 * What a provider says is left of one of its limits: `remaining` until `resetAt` (epoch
 * ms), out of `limit` when it says that too.
 *
 * @since 0.1.0
 * @category models
 */
export interface Allowance {
  readonly remaining: number
  readonly limit: number | undefined
  readonly resetAt: number
}

/**
 * What a provider's response says is left of its request and token limits. The balancer
 * takes it as a hint that can only tighten what its own sliding windows allow: an endpoint
 * whose provider says 0 requests are left takes no call before `resetAt`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Remaining {
  readonly requests: Allowance | undefined
  readonly tokens: Allowance | undefined
}

/** The headers of one limit: limit, remaining, reset. */
const allowanceHeaders = {
  requests: [
    ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"],
    [
      "anthropic-ratelimit-requests-limit",
      "anthropic-ratelimit-requests-remaining",
      "anthropic-ratelimit-requests-reset"
    ]
  ],
  tokens: [
    ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"],
    ["anthropic-ratelimit-tokens-limit", "anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset"],
    [
      "anthropic-ratelimit-input-tokens-limit",
      "anthropic-ratelimit-input-tokens-remaining",
      "anthropic-ratelimit-input-tokens-reset"
    ]
    // output tokens are left out: they are a small part of a request's estimate, and checking
    // the whole estimate against them would refuse requests the provider would take
  ]
} as const

const count = (value: string | undefined): number | undefined => {
  const text = value?.trim()
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined
}

/** The tightest of several limits: the one with the fewest left. */
const tightest = (
  h: Map<string, string>,
  now: number,
  sets: ReadonlyArray<readonly [string, string, string]>
): Allowance | undefined => {
  let best: Allowance | undefined
  for (const [limitKey, remainingKey, resetKey] of sets) {
    const remaining = count(h.get(remainingKey))
    if (remaining === undefined) continue
    const reset = h.get(resetKey)
    const wait = reset === undefined ? undefined : resetOf(reset, now)
    // a limit that does not say when it resets is taken to be per minute
    const allowance: Allowance = { remaining, limit: count(h.get(limitKey)), resetAt: now + (wait ?? 60_000) }
    if (best === undefined || allowance.remaining < best.remaining) best = allowance
  }
  return best
}

/**
 * What is left of the provider's limits, from a response's headers: OpenAI's
 * `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` and Anthropic's
 * `anthropic-ratelimit-{requests,tokens,input-tokens}-{limit,remaining,reset}` (of
 * Anthropic's token limits, the one with the fewest tokens left; its output-tokens limit
 * is not used, since the balancer checks a request's whole estimate against what is left). `undefined` when the
 * headers say nothing readable. Pass it as `rateLimit` to `Outcome.success` or
 * `Outcome.failure`.
 *
 * @since 0.1.0
 * @category parsing
 */
export const remaining = (headers: Headers, now: number): Remaining | undefined => {
  const h = lower(headers)
  const requests = tightest(h, now, allowanceHeaders.requests)
  const tokens = tightest(h, now, allowanceHeaders.tokens)
  return requests === undefined && tokens === undefined ? undefined : { requests, tokens }
}
