import { describe, expect, it } from "@effect/vitest"
import { Duration } from "effect"
import { RateLimit } from "../src/index.js"

const now = Date.parse("2026-11-22T10:00:00Z")
const ms = (d: Duration.Duration | undefined) => d === undefined ? undefined : Duration.toMillis(d)

describe("RateLimit.retryAfter", () => {
  it("reads retry-after-ms first, then retry-after in seconds or as an HTTP date", () => {
    expect(ms(RateLimit.retryAfter({ "retry-after-ms": "1500", "retry-after": "9" }, now))).toBe(1500)
    expect(ms(RateLimit.retryAfter({ "Retry-After": "20" }, now))).toBe(20_000)
    expect(ms(RateLimit.retryAfter({ "retry-after": "Sun, 22 Nov 2026 10:00:30 GMT" }, now))).toBe(30_000)
    // a date in the past means now
    expect(ms(RateLimit.retryAfter({ "retry-after": "Sun, 22 Nov 2026 09:00:00 GMT" }, now))).toBe(0)
  })

  it("falls back to the reset of the limit that ran out (OpenAI durations, Anthropic times)", () => {
    expect(ms(RateLimit.retryAfter({
      "x-ratelimit-remaining-requests": "0",
      "x-ratelimit-reset-requests": "1s",
      "x-ratelimit-remaining-tokens": "149984",
      "x-ratelimit-reset-tokens": "6m0s"
    }, now))).toBe(1_000)
    expect(ms(RateLimit.retryAfter({
      "x-ratelimit-reset-requests": "20ms",
      "x-ratelimit-reset-tokens": "1h2m3.5s"
    }, now))).toBe(3_723_500)
    expect(ms(RateLimit.retryAfter({
      "anthropic-ratelimit-requests-remaining": "0",
      "anthropic-ratelimit-requests-reset": "2026-11-22T10:00:12Z",
      "anthropic-ratelimit-tokens-remaining": "0",
      "anthropic-ratelimit-tokens-reset": "2026-11-22T10:00:45Z"
    }, now))).toBe(45_000)
  })

  it("says nothing when the headers say nothing readable", () => {
    expect(RateLimit.retryAfter({}, now)).toBeUndefined()
    expect(RateLimit.retryAfter({ "retry-after": "soon", "x-ratelimit-reset-requests": "later" }, now)).toBeUndefined()
    expect(RateLimit.retryAfter({ "retry-after-ms": "-5" }, now)).toBeUndefined()
    expect(RateLimit.retryAfter({ "retry-after": "-5" }, now)).toBeUndefined()
  })

  it("parses Go durations exactly", () => {
    expect(RateLimit.parseGoDuration("6m0s")).toBe(360_000)
    expect(RateLimit.parseGoDuration("1.5s")).toBe(1_500)
    expect(RateLimit.parseGoDuration("250ms")).toBe(250)
    expect(RateLimit.parseGoDuration("5")).toBeUndefined()
    expect(RateLimit.parseGoDuration("")).toBeUndefined()
  })
})
