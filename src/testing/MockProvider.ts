/**
 * Scripted providers for tests: a `Provider` whose endpoints answer after a latency you
 * choose, fail at a rate, go down between two times, answer 429 past a rate limit, stall
 * or cut their streams, or play a queue of one-off outcomes, and that records every
 * request it saw. Every wait is a `Clock` sleep and every chance a `Random` draw, so under
 * `TestClock` and a seeded `Random` a test of minutes of traffic runs in milliseconds and
 * the same way every run.
 *
 * ```ts
 * import { Effect, Fiber, Layer, Random, TestClock, TestContext } from "effect"
 * import { Balancer, Llm, MockProvider, Router } from "effect-llm-balancer"
 *
 * const Mock = MockProvider.layer({
 *   default: { latency: MockProvider.uniform("200 millis", "400 millis") },
 *   endpoints: {
 *     primary: { outages: [{ from: "1 minute", to: "3 minutes" }] },
 *     backup: { rateLimit: { requests: 60, per: "1 minute" } }
 *   }
 * })
 *
 * const Live = Router.layer().pipe(
 *   Layer.provideMerge(Balancer.layer({
 *     endpoints: [
 *       { name: "primary", provider: "mock", model: "m" },
 *       { name: "backup", provider: "mock", model: "m" }
 *     ]
 *   })),
 *   Layer.merge(Mock)
 * )
 *
 * const test = Effect.gen(function*() {
 *   yield* TestClock.adjust("2 minutes") // primary is down now
 *   const fiber = yield* Effect.fork(Llm.complete({ messages: [{ role: "user", content: "hi" }] }))
 *   yield* TestClock.adjust("1 second")
 *   const answer = yield* Fiber.join(fiber) // answer.endpoint.name: "backup"
 *   const sent = yield* MockProvider.requests // what each endpoint received, and when
 * }).pipe(
 *   Effect.provide(Live), // built inside the test: on its TestClock and seeded Random
 *   Effect.provide(TestContext.TestContext),
 *   Effect.withRandom(Random.make("seed"))
 * )
 * ```
 *
 * The mock takes the `Clock` and `Random` of the context it is built in (like the
 * balancer): build it inside the test, under `TestClock` and the seeded `Random`.
 *
 * What one call does, in this order:
 *
 * 1. It is recorded (`requests`).
 * 2. A scripted outcome queued for its endpoint (`script`) decides it, if there is one:
 *    nothing below applies.
 * 3. During an outage it fails at once with the outage's error.
 * 4. Past the rate limit it fails at once with `RateLimited` and the `retryAfter` until the
 *    oldest call leaves the window (calls that fail at steps 3 and 4 do not count).
 * 5. With `failureRate` it fails with `failWith`, after its latency (streams: after the
 *    time to first token, before any token).
 * 6. With `stall` it never answers (streams: stop after `afterTokens` tokens).
 * 7. With `cut` it fails with `MalformedResponse` (streams: after `afterTokens` tokens, when
 *    the next token was due; whole answers: after the latency).
 * 8. Otherwise it answers: `complete` after its `latency`; `stream` sends `Start` at once,
 *    the first `Delta` after `timeToFirstToken`, the next ones `tokensPerSecond` apart, and
 *    `Finish` with the last one. A token is a word with its whitespace; at most
 *    `maxTokens` of them are sent (then the finish reason is `"length"`). The usage is the
 *    request's `Chat.estimateInputTokens` and the tokens sent.
 *
 * @since 0.1.0
 */
import type { Clock } from "effect"
import { Context, Duration, Effect, Layer, Random, Stream } from "effect"
import type { Endpoint } from "../Endpoint.js"
import * as Errors from "../Errors.js"
import { show } from "../internal/schemas.js"
import * as Chat from "../llm/Chat.js"
import type { Provider } from "../llm/Provider.js"
import { Providers } from "../llm/Provider.js"

/**
 * A latency drawn from a distribution:
 *
 * - `Uniform`: any value from `min` to `max`, equally likely.
 * - `LogNormal`: the long-tailed shape of real LLM latencies, given by its median and its
 *   99th percentile (half the calls are faster than `median`, 1 in 100 slower than `p99`).
 *
 * Draws are rounded to whole milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export type Distribution =
  | {
    readonly _tag: "Uniform"
    readonly min: Duration.DurationInput
    readonly max: Duration.DurationInput
  }
  | {
    readonly _tag: "LogNormal"
    readonly median: Duration.DurationInput
    readonly p99: Duration.DurationInput
  }

/**
 * A fixed duration (`"300 millis"`, `300`, `Duration.seconds(1)`) or a {@link Distribution}.
 *
 * @since 0.1.0
 * @category models
 */
export type Latency = Duration.DurationInput | Distribution

/**
 * @since 0.1.0
 * @category constructors
 */
export const uniform = (min: Duration.DurationInput, max: Duration.DurationInput): Distribution => ({
  _tag: "Uniform",
  min,
  max
})

/**
 * @since 0.1.0
 * @category constructors
 */
export const logNormal = (
  options: { readonly median: Duration.DurationInput; readonly p99: Duration.DurationInput }
): Distribution => ({ _tag: "LogNormal", median: options.median, p99: options.p99 })

/**
 * An error a mock fails with: a `ProviderError` as it is, or the tag of one, which makes
 * one naming the endpoint with the usual HTTP status (`RateLimited` 429, `Timeout` 408,
 * `Unavailable` 503, `BadRequest` 400, `Unauthorized` 401, `ContextLengthExceeded` 400,
 * `ContentFiltered` 400, `MalformedResponse` 200, `UnknownProviderError` none).
 *
 * @since 0.1.0
 * @category models
 */
export type ErrorInput = Errors.ProviderError["_tag"] | Errors.ProviderError

/**
 * A time during which every call fails at once with `error` (default `"Unavailable"`):
 * from `from` (included) to `to` (excluded), both measured from when the mock was built.
 *
 * @since 0.1.0
 * @category models
 */
export interface Outage {
  readonly from: Duration.DurationInput
  readonly to: Duration.DurationInput
  readonly error?: ErrorInput | undefined
}

/**
 * How one endpoint answers. Every field is optional; an endpoint's behaviour overrides the
 * mock's `default` field by field.
 *
 * @since 0.1.0
 * @category models
 */
export interface Behaviour {
  /** How long `complete` takes (also how long a failure takes to come). Default 0. */
  readonly latency?: Latency | undefined
  /** How long a stream takes to its first token. Default: `latency`. */
  readonly timeToFirstToken?: Latency | undefined
  /** The pace of a stream's tokens after its first. Default: all of them at once. */
  readonly tokensPerSecond?: number | undefined
  /** The answer's text, or how to make it from the request. Default `"answer from <endpoint>"`. */
  readonly answer?: string | ((request: Chat.Request, endpoint: Endpoint) => string) | undefined
  /** The share of calls, 0 to 1, that fail with `failWith`. Default 0. */
  readonly failureRate?: number | undefined
  /** What those failures are. Default `"Unavailable"` (a 503). */
  readonly failWith?: ErrorInput | undefined
  /** Times during which every call fails. */
  readonly outages?: ReadonlyArray<Outage> | undefined
  /**
   * At most `requests` calls per `per` (default 1 minute), over a sliding window: the
   * calls past it fail with `RateLimited` (429) and a `retryAfter` until there is room.
   */
  readonly rateLimit?: {
    readonly requests: number
    readonly per?: Duration.DurationInput | undefined
  } | undefined
  /**
   * Calls that never finish: streams stop after `afterTokens` tokens (default 0: they
   * never send the first one) and hang; `complete` hangs. `rate` is the share of calls
   * that stall (default 1: all of them).
   */
  readonly stall?: {
    readonly afterTokens?: number | undefined
    readonly rate?: number | undefined
  } | undefined
  /**
   * Streams cut short: after `afterTokens` tokens they fail with `MalformedResponse`
   * (never a quiet end); `complete` fails with it after its latency. `rate` is the share
   * of calls that are cut (default 1).
   */
  readonly cut?: {
    readonly afterTokens: number
    readonly rate?: number | undefined
  } | undefined
}

/**
 * One call's outcome, played instead of the endpoint's behaviour (see {@link script}):
 * an answer, a failure, a stall or a cut stream. Fields left out come from the
 * endpoint's behaviour.
 *
 * @since 0.1.0
 * @category models
 */
export type Scripted =
  | {
    readonly _tag: "Answer"
    readonly text?: string | undefined
    readonly latency?: Latency | undefined
    readonly timeToFirstToken?: Latency | undefined
    readonly tokensPerSecond?: number | undefined
  }
  | { readonly _tag: "Fail"; readonly error: ErrorInput; readonly after?: Duration.DurationInput | undefined }
  | { readonly _tag: "Stall"; readonly afterTokens: number }
  | { readonly _tag: "Cut"; readonly afterTokens: number }

/**
 * A scripted answer; `options` override the endpoint's timing for this call.
 *
 * @since 0.1.0
 * @category constructors
 */
export const answer = (
  text?: string,
  options?: {
    readonly latency?: Latency | undefined
    readonly timeToFirstToken?: Latency | undefined
    readonly tokensPerSecond?: number | undefined
  }
): Scripted => ({ _tag: "Answer", text, ...options })

/**
 * A scripted failure, `after` a while (default: at once).
 *
 * @since 0.1.0
 * @category constructors
 */
export const fail = (
  error: ErrorInput,
  options?: { readonly after?: Duration.DurationInput | undefined }
): Scripted => ({
  _tag: "Fail",
  error,
  after: options?.after
})

/**
 * A scripted stall: a stream that stops after `afterTokens` tokens (default 0), or a
 * `complete` that never answers.
 *
 * @since 0.1.0
 * @category constructors
 */
export const stall = (afterTokens = 0): Scripted => ({ _tag: "Stall", afterTokens })

/**
 * A scripted cut: a stream that fails with `MalformedResponse` after `afterTokens` tokens.
 *
 * @since 0.1.0
 * @category constructors
 */
export const cut = (afterTokens: number): Scripted => ({ _tag: "Cut", afterTokens })

/**
 * One request the mock received.
 *
 * @since 0.1.0
 * @category models
 */
export interface Recorded {
  /** The endpoint's name. */
  readonly endpoint: string
  readonly kind: "complete" | "stream"
  readonly request: Chat.Request
  /** Epoch milliseconds from `Clock` when the call reached the mock. */
  readonly at: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** How every endpoint behaves unless `endpoints` says otherwise. Default: answers at once. */
  readonly default?: Behaviour | undefined
  /** Per endpoint name: fields that override `default`. */
  readonly endpoints?: Readonly<Record<string, Behaviour>> | undefined
  /** Per endpoint name: outcomes its first calls get, in order (see {@link script}). */
  readonly script?: Readonly<Record<string, ReadonlyArray<Scripted>>> | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface MockProviderService {
  /** The provider, to register under any name (`Provider.layer({ openai: mock.provider })`). */
  readonly provider: Provider
  /** Every request received so far, in the order they arrived. */
  readonly requests: Effect.Effect<ReadonlyArray<Recorded>>
  /** Replaces the endpoint's own behaviour (still over `default`) from the next call on. */
  readonly setBehaviour: (endpoint: string, behaviour: Behaviour) => Effect.Effect<void, Errors.InvalidConfig>
  /** Replaces the behaviour of every endpoint without one of its own. */
  readonly setDefault: (behaviour: Behaviour) => Effect.Effect<void, Errors.InvalidConfig>
  /**
   * Queues outcomes for the endpoint's next calls, one per call in order, after any queued
   * already; once the queue is empty its behaviour applies again.
   */
  readonly script: (endpoint: string, ...outcomes: ReadonlyArray<Scripted>) => Effect.Effect<void, Errors.InvalidConfig>
  /** Epoch milliseconds at which the mock was built: outages are measured from here. */
  readonly startedAt: number
}

/**
 * @since 0.1.0
 * @category tags
 */
export class MockProvider extends Context.Tag("effect-llm-balancer/MockProvider")<
  MockProvider,
  MockProviderService
>() {}

// --- validation ----------------------------------------------------------------------------

const behaviourKeys = [
  "latency",
  "timeToFirstToken",
  "tokensPerSecond",
  "answer",
  "failureRate",
  "failWith",
  "outages",
  "rateLimit",
  "stall",
  "cut"
]

const errorTags: ReadonlyArray<string> = Errors.providerErrorTags

const isDistribution = (u: unknown): u is Distribution =>
  typeof u === "object" && u !== null && !Array.isArray(u) && !Duration.isDuration(u) && "_tag" in u

const durationMs = (d: unknown): number | undefined => {
  const decoded = Duration.decodeUnknown(d)
  if (decoded._tag === "None") return undefined
  const ms = Duration.toMillis(decoded.value)
  return Number.isNaN(ms) || ms < 0 ? undefined : ms
}

type Issues = Array<Errors.ConfigIssue>

const checkDuration = (issues: Issues, path: string, d: unknown) => {
  if (durationMs(d) === undefined) {
    issues.push({
      path,
      message: `must be a duration such as "300 millis" or a number of milliseconds, got ${show(d)}`
    })
  }
}

const checkLatency = (issues: Issues, path: string, latency: unknown) => {
  if (latency === undefined) return
  if (!isDistribution(latency)) return checkDuration(issues, path, latency)
  const l = latency as Distribution
  switch (l._tag) {
    case "Uniform": {
      checkDuration(issues, `${path}.min`, l.min)
      checkDuration(issues, `${path}.max`, l.max)
      const min = durationMs(l.min), max = durationMs(l.max)
      if (min !== undefined && max !== undefined && min > max) {
        issues.push({ path, message: `min (${min} ms) must not be more than max (${max} ms)` })
      }
      return
    }
    case "LogNormal": {
      checkDuration(issues, `${path}.median`, l.median)
      checkDuration(issues, `${path}.p99`, l.p99)
      const median = durationMs(l.median), p99 = durationMs(l.p99)
      if (median !== undefined && p99 !== undefined && !(median > 0 && p99 >= median && Number.isFinite(p99))) {
        issues.push({ path, message: `must have 0 < median <= p99 < Infinity, got ${median} ms and ${p99} ms` })
      }
      return
    }
    default:
      issues.push({ path, message: `must be a duration, Uniform or LogNormal, got _tag ${show(l["_tag"])}` })
  }
}

const checkRate = (issues: Issues, path: string, rate: unknown) => {
  if (rate !== undefined && !(typeof rate === "number" && rate >= 0 && rate <= 1)) {
    issues.push({ path, message: `must be a number from 0 to 1, got ${show(rate)}` })
  }
}

const checkCount = (issues: Issues, path: string, n: unknown, min: number) => {
  if (!(typeof n === "number" && Number.isInteger(n) && n >= min)) {
    issues.push({ path, message: `must be a whole number of at least ${min}, got ${show(n)}` })
  }
}

const checkError = (issues: Issues, path: string, error: unknown) => {
  if (error === undefined || Errors.isProviderError(error)) return
  if (typeof error === "string" && errorTags.includes(error)) return
  issues.push({ path, message: `must be a ProviderError or one of ${errorTags.join(", ")}, got ${show(error)}` })
}

const checkObject = (issues: Issues, path: string, u: unknown, keys: ReadonlyArray<string>): boolean => {
  if (typeof u !== "object" || u === null || Array.isArray(u)) {
    issues.push({ path, message: `must be an object, got ${show(u)}` })
    return false
  }
  for (const key of Object.keys(u)) {
    if (!keys.includes(key)) {
      issues.push({
        path: path === "" ? key : `${path}.${key}`,
        message: `is unexpected, expected one of ${keys.join(", ")}`
      })
    }
  }
  return true
}

const behaviourIssues = (issues: Issues, path: string, b: Behaviour) => {
  if (!checkObject(issues, path, b, behaviourKeys)) return
  checkLatency(issues, `${path}.latency`, b.latency)
  checkLatency(issues, `${path}.timeToFirstToken`, b.timeToFirstToken)
  if (b.tokensPerSecond !== undefined && !(typeof b.tokensPerSecond === "number" && b.tokensPerSecond > 0)) {
    issues.push({ path: `${path}.tokensPerSecond`, message: `must be more than 0, got ${show(b.tokensPerSecond)}` })
  }
  if (b.answer !== undefined && typeof b.answer !== "string" && typeof b.answer !== "function") {
    issues.push({ path: `${path}.answer`, message: `must be a string or a function, got ${show(b.answer)}` })
  }
  checkRate(issues, `${path}.failureRate`, b.failureRate)
  checkError(issues, `${path}.failWith`, b.failWith)
  if (b.outages !== undefined) {
    if (!Array.isArray(b.outages)) {
      issues.push({ path: `${path}.outages`, message: `must be an array, got ${show(b.outages)}` })
    } else {
      b.outages.forEach((o: Outage, i) => {
        const at = `${path}.outages[${i}]`
        if (!checkObject(issues, at, o, ["from", "to", "error"])) return
        checkDuration(issues, `${at}.from`, o.from)
        checkDuration(issues, `${at}.to`, o.to)
        checkError(issues, `${at}.error`, o.error)
        const from = durationMs(o.from), to = durationMs(o.to)
        if (from !== undefined && to !== undefined && from > to) {
          issues.push({ path: at, message: `from (${from} ms) must not be after to (${to} ms)` })
        }
      })
    }
  }
  if (b.rateLimit !== undefined && checkObject(issues, `${path}.rateLimit`, b.rateLimit, ["requests", "per"])) {
    checkCount(issues, `${path}.rateLimit.requests`, b.rateLimit.requests, 1)
    if (b.rateLimit.per !== undefined) {
      checkDuration(issues, `${path}.rateLimit.per`, b.rateLimit.per)
      if (durationMs(b.rateLimit.per) === 0) {
        issues.push({ path: `${path}.rateLimit.per`, message: "must be longer than 0" })
      }
    }
  }
  if (b.stall !== undefined && checkObject(issues, `${path}.stall`, b.stall, ["afterTokens", "rate"])) {
    if (b.stall.afterTokens !== undefined) checkCount(issues, `${path}.stall.afterTokens`, b.stall.afterTokens, 0)
    checkRate(issues, `${path}.stall.rate`, b.stall.rate)
  }
  if (b.cut !== undefined && checkObject(issues, `${path}.cut`, b.cut, ["afterTokens", "rate"])) {
    checkCount(issues, `${path}.cut.afterTokens`, b.cut.afterTokens, 0)
    checkRate(issues, `${path}.cut.rate`, b.cut.rate)
  }
}

const scriptedIssues = (issues: Issues, path: string, s: Scripted) => {
  if (typeof s !== "object" || s === null) {
    issues.push({ path, message: `must be a scripted outcome (MockProvider.answer, fail, stall, cut), got ${show(s)}` })
    return
  }
  switch (s._tag) {
    case "Answer":
      checkLatency(issues, `${path}.latency`, s.latency)
      checkLatency(issues, `${path}.timeToFirstToken`, s.timeToFirstToken)
      if (s.tokensPerSecond !== undefined && !(s.tokensPerSecond > 0)) {
        issues.push({ path: `${path}.tokensPerSecond`, message: `must be more than 0, got ${show(s.tokensPerSecond)}` })
      }
      return
    case "Fail":
      if (s.error === undefined) issues.push({ path: `${path}.error`, message: "is missing" })
      checkError(issues, `${path}.error`, s.error)
      if (s.after !== undefined) checkDuration(issues, `${path}.after`, s.after)
      return
    case "Stall":
    case "Cut":
      checkCount(issues, `${path}.afterTokens`, s.afterTokens, 0)
      return
    default:
      issues.push({
        path,
        message: `must be a scripted outcome (MockProvider.answer, fail, stall, cut), got _tag ${
          show((s as { _tag: unknown })._tag)
        }`
      })
  }
}

const failIfAny = (issues: Issues): Effect.Effect<void, Errors.InvalidConfig> =>
  issues.length === 0 ? Effect.void : Effect.fail(new Errors.InvalidConfig({ issues }))

// --- drawing -------------------------------------------------------------------------------

/** The 99th percentile of the standard normal distribution. */
const Z99 = 2.3263478740408408

const drawMs = (latency: Latency | undefined, next: Effect.Effect<number>): Effect.Effect<number> => {
  if (latency === undefined) return Effect.succeed(0)
  if (!isDistribution(latency)) return Effect.succeed(Math.round(durationMs(latency) ?? 0))
  switch (latency._tag) {
    case "Uniform": {
      const min = durationMs(latency.min)!, max = durationMs(latency.max)!
      return Effect.map(next, (u) => Math.round(min + u * (max - min)))
    }
    case "LogNormal": {
      const median = durationMs(latency.median)!, p99 = durationMs(latency.p99)!
      const sigma = Math.log(p99 / median) / Z99
      // Box-Muller: two uniform draws make one standard normal one
      return Effect.zipWith(next, next, (u1, u2) => {
        const z = Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2)
        return Math.round(median * Math.exp(sigma * z))
      })
    }
  }
}

/**
 * Draws one latency from `Random` (a fixed one is itself), in whole milliseconds: what a
 * mock endpoint with this latency waits on one call.
 *
 * @since 0.1.0
 * @category utils
 */
export const sample = (latency: Latency): Effect.Effect<Duration.Duration> =>
  Effect.map(drawMs(latency, Random.next), Duration.millis)

const defaultStatus: Record<Errors.ProviderError["_tag"], number | undefined> = {
  RateLimited: 429,
  Timeout: 408,
  Unavailable: 503,
  BadRequest: 400,
  Unauthorized: 401,
  ContextLengthExceeded: 400,
  ContentFiltered: 400,
  MalformedResponse: 200,
  UnknownProviderError: undefined
}

const errorConstructors: Record<
  Errors.ProviderError["_tag"],
  new(fields: { endpoint: string; status?: number; detail: string }) => Errors.ProviderError
> = {
  RateLimited: Errors.RateLimited,
  Timeout: Errors.Timeout,
  Unavailable: Errors.Unavailable,
  BadRequest: Errors.BadRequest,
  Unauthorized: Errors.Unauthorized,
  ContextLengthExceeded: Errors.ContextLengthExceeded,
  ContentFiltered: Errors.ContentFiltered,
  MalformedResponse: Errors.MalformedResponse,
  UnknownProviderError: Errors.UnknownProviderError
}

const errorOf = (input: ErrorInput, endpoint: string, detail: string): Errors.ProviderError => {
  if (typeof input !== "string") return input
  const status = defaultStatus[input]
  const Make = errorConstructors[input]
  return status === undefined ? new Make({ endpoint, detail }) : new Make({ endpoint, status, detail })
}

const tokensOf = (text: string, request: Chat.Request) => {
  const all = text.match(/\s*\S+\s*/g) ?? []
  const max = request.maxTokens
  return max !== undefined && all.length > max
    ? { tokens: all.slice(0, max), finishReason: "length" as const }
    : { tokens: all, finishReason: "stop" as const }
}

/** What one call does, decided when it arrives. */
type Plan =
  | { readonly _tag: "Fail"; readonly error: Errors.ProviderError; readonly afterMs: number }
  | {
    readonly _tag: "Answer"
    readonly text: string
    /** `complete`: the latency; `stream`: the time to first token. */
    readonly ms: number
    readonly tokensPerSecond: number | undefined
    readonly ending: "finish" | "stall" | "cut"
    readonly afterTokens: number
  }

// --- the mock ------------------------------------------------------------------------------

const optionKeys = ["default", "endpoints", "script"]

/**
 * Builds a mock on the `Clock` and `Random` of the current context. Bad options fail with
 * an `InvalidConfig` naming each of them (`endpoints.a.failureRate`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<MockProviderService, Errors.InvalidConfig> =>
  Effect.gen(function*() {
    const issues: Issues = []
    if (checkObject(issues, "", options, optionKeys)) {
      if (options.default !== undefined) behaviourIssues(issues, "default", options.default)
      for (const [name, b] of Object.entries(options.endpoints ?? {})) behaviourIssues(issues, `endpoints.${name}`, b)
      for (const [name, outcomes] of Object.entries(options.script ?? {})) {
        outcomes.forEach((s, i) => scriptedIssues(issues, `script.${name}[${i}]`, s))
      }
    }
    yield* failIfAny(issues)

    const clock: Clock.Clock = yield* Effect.clock
    const random: Random.Random = yield* Effect.random
    const startedAt = clock.unsafeCurrentTimeMillis()
    let defaults: Behaviour = options.default ?? {}
    const own = new Map<string, Behaviour>(Object.entries(options.endpoints ?? {}))
    const queues = new Map<string, Array<Scripted>>(
      Object.entries(options.script ?? {}).map(([name, outcomes]) => [name, outcomes.slice()])
    )
    /** Per endpoint, when the calls its rate limit counts were admitted. */
    const windows = new Map<string, Array<number>>()
    const recorded: Array<Recorded> = []

    const sleepMs = (ms: number): Effect.Effect<void> => ms > 0 ? clock.sleep(Duration.millis(ms)) : Effect.void
    const chance = (rate: number | undefined): Effect.Effect<boolean> =>
      rate === undefined || rate <= 0
        ? Effect.succeed(false)
        : rate >= 1
        ? Effect.succeed(true)
        : Effect.map(random.next, (u) => u < rate)

    const decide = (endpoint: Endpoint, request: Chat.Request, kind: Recorded["kind"]): Effect.Effect<Plan> =>
      Effect.gen(function*() {
        const name = endpoint.name
        const now = clock.unsafeCurrentTimeMillis()
        recorded.push({ endpoint: name, kind, request, at: now })
        const b: Behaviour = { ...defaults, ...own.get(name) }
        const timing = (latency: Latency | undefined, ttft: Latency | undefined) =>
          drawMs(kind === "complete" ? latency : ttft ?? latency, random.next)
        const text = () =>
          b.answer === undefined
            ? `answer from ${name}`
            : typeof b.answer === "string"
            ? b.answer
            : b.answer(request, endpoint)
        const answerPlan = (
          ms: number,
          ending: "finish" | "stall" | "cut",
          afterTokens: number,
          scripted?: { readonly text?: string | undefined; readonly tokensPerSecond?: number | undefined }
        ): Plan => ({
          _tag: "Answer",
          text: scripted?.text ?? text(),
          ms,
          tokensPerSecond: scripted?.tokensPerSecond ?? b.tokensPerSecond,
          ending,
          afterTokens
        })

        const scripted = queues.get(name)?.shift()
        if (scripted !== undefined) {
          switch (scripted._tag) {
            case "Fail":
              return {
                _tag: "Fail",
                error: errorOf(scripted.error, name, "scripted failure"),
                afterMs: durationMs(scripted.after ?? 0) ?? 0
              }
            case "Answer": {
              const ms = yield* timing(
                scripted.latency ?? b.latency,
                scripted.timeToFirstToken ?? scripted.latency ?? b.timeToFirstToken
              )
              return answerPlan(ms, "finish", 0, scripted)
            }
            case "Stall":
              return answerPlan(yield* timing(b.latency, b.timeToFirstToken), "stall", scripted.afterTokens)
            case "Cut":
              return answerPlan(yield* timing(b.latency, b.timeToFirstToken), "cut", scripted.afterTokens)
          }
        }

        const since = now - startedAt
        for (const outage of b.outages ?? []) {
          if (since >= durationMs(outage.from)! && since < durationMs(outage.to)!) {
            return { _tag: "Fail", error: errorOf(outage.error ?? "Unavailable", name, "outage"), afterMs: 0 }
          }
        }

        if (b.rateLimit !== undefined) {
          const per = durationMs(b.rateLimit.per ?? "1 minute")!
          const admitted = (windows.get(name) ?? []).filter((t) => t > now - per)
          windows.set(name, admitted)
          if (admitted.length >= b.rateLimit.requests) {
            const retryAfter = Duration.millis(admitted[0] + per - now)
            return {
              _tag: "Fail",
              error: new Errors.RateLimited({
                endpoint: name,
                status: 429,
                retryAfter,
                detail: `more than ${b.rateLimit.requests} requests per ${Duration.format(Duration.millis(per))}`
              }),
              afterMs: 0
            }
          }
          admitted.push(now)
        }

        if (yield* chance(b.failureRate)) {
          return {
            _tag: "Fail",
            error: errorOf(b.failWith ?? "Unavailable", name, "failure rate"),
            afterMs: yield* timing(b.latency, b.timeToFirstToken)
          }
        }
        const ms = yield* timing(b.latency, b.timeToFirstToken)
        if (b.stall !== undefined && (yield* chance(b.stall.rate ?? 1))) {
          return answerPlan(ms, "stall", b.stall.afterTokens ?? 0)
        }
        if (b.cut !== undefined && (yield* chance(b.cut.rate ?? 1))) {
          return answerPlan(ms, "cut", b.cut.afterTokens)
        }
        return answerPlan(ms, "finish", 0)
      })

    const complete = (
      endpoint: Endpoint,
      request: Chat.Request
    ): Effect.Effect<Chat.Completion, Errors.ProviderError> =>
      Effect.flatMap(decide(endpoint, request, "complete"), (plan) => {
        if (plan._tag === "Fail") return Effect.zipRight(sleepMs(plan.afterMs), Effect.fail(plan.error))
        switch (plan.ending) {
          case "stall":
            return Effect.never
          case "cut":
            return Effect.zipRight(
              sleepMs(plan.ms),
              Effect.fail(
                new Errors.MalformedResponse({ endpoint: endpoint.name, status: 200, detail: "body cut short" })
              )
            )
          case "finish": {
            const { finishReason, tokens } = tokensOf(plan.text, request)
            return Effect.as(sleepMs(plan.ms), {
              text: tokens.join(""),
              finishReason,
              usage: { inputTokens: Chat.estimateInputTokens(request), outputTokens: tokens.length },
              toolCalls: undefined,
              rateLimit: undefined
            })
          }
        }
      })

    const streamOf = (endpoint: Endpoint, request: Chat.Request, plan: Plan): Stream.Stream<
      Chat.StreamPart,
      Errors.ProviderError
    > => {
      if (plan._tag === "Fail") {
        return Stream.fromEffect(Effect.zipRight(sleepMs(plan.afterMs), Effect.fail(plan.error)))
      }
      const { finishReason, tokens } = tokensOf(plan.text, request)
      const tps = plan.tokensPerSecond
      /** When token `i` is due, from the start of the call. */
      const due = (i: number) => plan.ms + (tps === undefined ? 0 : Math.round(i * 1000 / tps))
      const gap = (i: number) => i === 0 ? due(0) : due(i) - due(i - 1)
      const sent = plan.ending === "finish" ? tokens.length : Math.min(plan.afterTokens, tokens.length)
      const deltas = Stream.fromIterable(tokens.slice(0, sent)).pipe(
        Stream.zipWithIndex,
        Stream.mapEffect(([text, i]) => Effect.as(sleepMs(gap(i)), Chat.StreamPart.Delta({ text })))
      )
      const ending: Stream.Stream<Chat.StreamPart, Errors.ProviderError> = plan.ending === "stall"
        ? Stream.never
        : plan.ending === "cut"
        ? Stream.fromEffect(Effect.zipRight(
          sleepMs(gap(sent)),
          Effect.fail(
            new Errors.MalformedResponse({
              endpoint: endpoint.name,
              status: 200,
              detail: `the stream was cut after ${sent} token(s)`
            })
          )
        ))
        : Stream.fromEffect(Effect.as(
          sleepMs(tokens.length === 0 ? plan.ms : 0),
          Chat.StreamPart.Finish({
            finishReason,
            usage: { inputTokens: Chat.estimateInputTokens(request), outputTokens: tokens.length }
          })
        ))
      return Stream.make(Chat.StreamPart.Start({ rateLimit: undefined })).pipe(
        Stream.concat(deltas),
        Stream.concat(ending)
      )
    }

    const provider: Provider = {
      complete: (endpoint, request) => Effect.suspend(() => complete(endpoint, request)),
      stream: (endpoint, request) =>
        Stream.unwrap(Effect.map(decide(endpoint, request, "stream"), (plan) => streamOf(endpoint, request, plan)))
    }

    const service: MockProviderService = {
      provider,
      requests: Effect.sync(() => recorded.slice()),
      setBehaviour: (endpoint, behaviour) =>
        Effect.suspend(() => {
          const found: Issues = []
          behaviourIssues(found, `endpoints.${endpoint}`, behaviour)
          return Effect.zipRight(failIfAny(found), Effect.sync(() => void own.set(endpoint, behaviour)))
        }),
      setDefault: (behaviour) =>
        Effect.suspend(() => {
          const found: Issues = []
          behaviourIssues(found, "default", behaviour)
          return Effect.zipRight(
            failIfAny(found),
            Effect.sync(() => {
              defaults = behaviour
            })
          )
        }),
      script: (endpoint, ...outcomes) =>
        Effect.suspend(() => {
          const found: Issues = []
          outcomes.forEach((s, i) => scriptedIssues(found, `script.${endpoint}[${i}]`, s))
          return Effect.zipRight(
            failIfAny(found),
            Effect.sync(() => {
              const queue = queues.get(endpoint) ?? []
              for (const s of outcomes) queue.push(s)
              queues.set(endpoint, queue)
            })
          )
        }),
      startedAt
    }
    return service
  })

/**
 * The mock as a layer: `Providers` with the mock under `name` (default `"mock"`; give
 * several names to stand in for several providers, `["openai", "anthropic"]`), and the
 * `MockProvider` tag to reach it from the test.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options & { readonly name?: string | ReadonlyArray<string> | undefined } = {}
): Layer.Layer<MockProvider | Providers, Errors.InvalidConfig> => {
  const { name, ...rest } = options
  const names = name === undefined ? ["mock"] : typeof name === "string" ? [name] : name
  return Layer.effectContext(
    Effect.map(make(rest), (mock) =>
      Context.make(MockProvider, mock).pipe(
        Context.add(Providers, new Map(names.map((n) => [n, mock.provider] as const)))
      ))
  )
}

/**
 * @since 0.1.0
 * @category accessors
 */
export const requests: Effect.Effect<ReadonlyArray<Recorded>, never, MockProvider> = Effect.flatMap(
  MockProvider,
  (mock) => mock.requests
)

/**
 * @since 0.1.0
 * @category accessors
 */
export const setBehaviour = (
  endpoint: string,
  behaviour: Behaviour
): Effect.Effect<void, Errors.InvalidConfig, MockProvider> =>
  Effect.flatMap(MockProvider, (mock) => mock.setBehaviour(endpoint, behaviour))

/**
 * @since 0.1.0
 * @category accessors
 */
export const setDefault = (behaviour: Behaviour): Effect.Effect<void, Errors.InvalidConfig, MockProvider> =>
  Effect.flatMap(MockProvider, (mock) => mock.setDefault(behaviour))

/**
 * Queues outcomes for the endpoint's next calls; see {@link MockProviderService.script}.
 *
 * @since 0.1.0
 * @category accessors
 */
export const script = (
  endpoint: string,
  ...outcomes: ReadonlyArray<Scripted>
): Effect.Effect<void, Errors.InvalidConfig, MockProvider> =>
  Effect.flatMap(MockProvider, (mock) => mock.script(endpoint, ...outcomes))
