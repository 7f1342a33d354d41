/**
 * Hardening: the real providers fuzzed through a loopback server.
 *
 * For each provider (OpenAI-compatible, Anthropic) and each mode (`Llm.complete` over JSON,
 * `Llm.stream` over SSE), `FUZZ_RUNS` (default 1,000) generated answers
 * (`support/fuzzArbitraries.ts`: random and truncated JSON, wrong types, huge, negative and
 * infinite numbers, odd unicode, provider error bodies, SSE with garbage lines, events out
 * of order, duplicated or missing `[DONE]` / `message_stop`, cut sockets, nonsense
 * rate-limit headers) are served one after another by ONE loopback server per test, to a
 * balancer with ONE endpoint behind a router that makes one attempt (`maxAttempts: 1`)
 * with a 2 s `attemptTimeout`. Each case must:
 *
 * - end, well within the attempt timeout (a guard of 5 s catches a hang, and a router
 *   `Timeout` is reported as one: the server never stalls);
 * - end as a valid answer (text, finish reason, usage that is finite and not negative) or
 *   as a `ProviderError`, never a defect: `Llm.complete` fails with `RoutingFailed`
 *   (`attempts-exhausted` or `not-retryable`, one attempt, a `ProviderError` as
 *   `lastError`); `Llm.stream` with that before its first token and with the
 *   `ProviderError` itself after it;
 * - end as the oracle (written from docs/providers.md) says the bytes must: the answer's
 *   text and finish reason, or the error's tag;
 * - leave the endpoint's lease released (`active === 0`) and its health as the error says
 *   (`successes` / `failures` / `rateLimited` move by one, `counts` adds a consecutive
 *   failure, `hold` holds it out, `ignore` changes nothing else); `forceHealthy` then
 *   clears holds, cooldowns and circuits for the next case;
 * - never carry 16 characters of the key in an error.
 *
 * Violations are collected per kind rather than thrown at the first, so that a run reports
 * all of them (with one case to reproduce each) and the tallies; the seed is in the
 * failure message (`FUZZ_SEED` replays a run, `FUZZ_RUNS` changes its length).
 */
import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Context, Duration, Effect, Exit, FastCheck, Layer, Option, Stream } from "effect"
import type { Balancer, Chat, Endpoint } from "../src/index.js"
import { Anthropic, Errors, Llm, OpenAiCompatible, Provider } from "../src/index.js"
import { makeRouter } from "./helpers.js"
import * as Fuzz from "./support/fuzzArbitraries.js"
import * as OpenAiServer from "./support/openAiServer.js"

const SEED = Number(process.env.FUZZ_SEED ?? 1_234_567)
const RUNS = Number(process.env.FUZZ_RUNS ?? 1_000)
const NAME = "fuzz"
const ATTEMPT_TIMEOUT_MS = 2_000
/** The attempt timeout and a margin: a case that takes longer hangs. */
const GUARD = Duration.millis(ATTEMPT_TIMEOUT_MS + 3_000)
const policy = { maxAttempts: 1, attemptTimeout: Duration.millis(ATTEMPT_TIMEOUT_MS) } as const
const ask = { messages: [{ role: "user" as const, content: "fuzz" }], maxTokens: 16 }
const finishReasons: ReadonlyArray<string> = ["stop", "length", "tool-calls", "content-filter", "other"]
/** `httpErrors.clip`: 500 characters and "...". */
const MAX_DETAIL = 503

/**
 * One balancer endpoint on the loopback server, both providers registered. The health
 * policy never opens the circuit (every case is one attempt on this one endpoint).
 *
 * The Anthropic loopback server (`support/anthropicServer.ts`) has no raw handler, so both
 * providers are served by `OpenAiServer.custom`, which writes any status, headers and bytes
 * on any path (`/v1/messages` included).
 */
const setup = (
  provider: Fuzz.Provider,
  server: OpenAiServer.OpenAiServer,
  extra: Partial<Endpoint.Input> = {}
) =>
  Effect.gen(function*() {
    const { balancer, context } = yield* makeRouter({
      endpoints: [{
        name: NAME,
        provider,
        model: provider === "openai" ? "gpt-fuzz" : "claude-fuzz",
        baseUrl: provider === "openai" ? server.url : server.url.replace(/\/v1$/, ""),
        apiKey: Fuzz.KEY,
        ...extra
      }],
      strategy: "round-robin",
      health: { maxFailures: 1_000_000, failureRateThreshold: 1, failureRateMinRequests: 1_000_000 }
    }, { defaults: policy })
    const providers = yield* Layer.build(
      Provider.layer({ openai: OpenAiCompatible.make(), anthropic: Anthropic.make() }).pipe(
        Layer.provide(FetchHttpClient.layer)
      )
    )
    return { balancer, context: Context.merge(context, providers) }
  })

const statsOf = (balancer: Balancer.BalancerService) =>
  Effect.map(balancer.stats, (all) => all.find((s) => s.name === NAME)!)

/** Writes the wire as it is: status, headers, the pieces one write at a time, then the end or a cut. */
const serve = (wire: Fuzz.Wire, problems: Array<string>): OpenAiServer.Handler => (_request, res) => {
  try {
    res.writeHead(wire.status, wire.headers)
  } catch (e) {
    problems.push(`the test server could not write the head: ${String(e)}`)
    res.socket?.destroy()
    return
  }
  let i = 0
  const next = (error?: Error | null) => {
    if (error != null || res.destroyed) return
    if (i < wire.pieces.length) return void res.write(wire.pieces[i++], next)
    if (wire.ending === "destroy") res.socket?.destroy()
    else res.end()
  }
  next()
}

/** Substrings of the key long enough to matter. */
const keyPieces = Array.from({ length: Fuzz.KEY.length - 15 }, (_, i) => Fuzz.KEY.slice(i, i + 16))
const leaksKey = (u: unknown) => {
  let json = ""
  try {
    json = JSON.stringify(u) ?? ""
  } catch {
    // a cycle: the other renderings still count
  }
  const texts = [String(u), (u as { message?: unknown }).message, json].map((t) => typeof t === "string" ? t : "")
  return keyPieces.find((piece) => texts.some((t) => t.includes(piece)))
}

/** JSON with Infinity and NaN spelled out. */
const show = (u: unknown) => JSON.stringify(u, (_k, v) => typeof v === "number" && !Number.isFinite(v) ? String(v) : v)

const saneUsage = (usage: Chat.Finished["usage"]) =>
  usage === undefined ||
  [usage.inputTokens, usage.outputTokens].every((n) => typeof n === "number" && Number.isFinite(n) && n >= 0)

/** What an error does to the endpoint (`table.classify`): a 429 asking for more than `maxCooldown` (5 min) counts. */
const healthEffectOf = (error: Errors.ProviderError): Errors.HealthEffect => {
  if (error._tag !== "RateLimited") return error.healthEffect
  const wait = error.retryAfter === undefined ? 5_000 : Duration.toMillis(error.retryAfter)
  return wait > 300_000 ? "counts" : "cooldown"
}

/** What the oracle allows, in a few words. */
const wanted = (e: Fuzz.Expectation): string =>
  [
    ...(e.success === undefined ? [] : ["Success"]),
    ...(e.failure === undefined ? [] : e.failure === "any" ? ["any ProviderError"] : e.failure)
  ].join("|")

type Ended =
  | { readonly _tag: "Success"; readonly text: string; readonly finishReason: string }
  | { readonly _tag: "Failure"; readonly error: Errors.ProviderError }
  | { readonly _tag: "Broken" }

interface Report {
  readonly cases: number
  readonly ms: number
  readonly slowestMs: number
  readonly outcomes: Record<string, number>
  readonly labels: Record<string, number>
  readonly stats: Balancer.EndpointStats
  readonly violations: ReadonlyArray<string>
}

const runFuzz = (provider: Fuzz.Provider, mode: Fuzz.Mode) =>
  Effect.gen(function*() {
    const server = yield* OpenAiServer.make()
    const { balancer, context } = yield* setup(provider, server)
    const samples = FastCheck.sample(Fuzz.cases(provider, mode), { seed: SEED, numRuns: RUNS })

    const violations = new Map<string, { count: number; example: string }>()
    const outcomes: Record<string, number> = {}
    const labels: Record<string, number> = {}
    const serverProblems: Array<string> = []
    const expected = { successes: 0, failures: 0, rateLimited: 0, inputTokens: 0, outputTokens: 0 }
    let slowestMs = 0
    const startedAll = Date.now()

    for (const [index, fuzzCase] of samples.entries()) {
      const violate = (kind: string, detail = "") => {
        const entry = violations.get(kind)
        if (entry !== undefined) entry.count++
        else {
          violations.set(kind, {
            count: 1,
            example: `case #${index}${detail === "" ? "" : ` (${detail})`}: ${Fuzz.describeCase(fuzzCase)}`
          })
        }
      }
      labels[fuzzCase.label] = (labels[fuzzCase.label] ?? 0) + 1
      server.enqueue(OpenAiServer.custom(fuzzCase.label, serve(fuzzCase.wire, serverProblems)))
      const requestsBefore = server.requests.length
      const before = yield* statsOf(balancer)
      const started = Date.now()

      // --- the call --------------------------------------------------------------------
      const seen: Array<Chat.StreamEvent> = []
      const exit = yield* (mode === "complete"
        ? Effect.map(
          Effect.provide(Llm.complete(ask, policy), context),
          (r): Ended => {
            if (r.endpoint.name !== NAME || r.attempts.length !== 1 || r.attempts[0].outcome !== "Success") {
              violate("a success that does not name its one attempt")
            }
            if (r.toolCalls !== undefined && (!Array.isArray(r.toolCalls) || r.toolCalls.length === 0)) {
              violate("toolCalls that are neither undefined nor a non-empty array")
            }
            if (!saneUsage(r.usage)) violate("a success with negative or infinite usage", show(r.usage))
            if (r.usage !== undefined) {
              expected.inputTokens += r.usage.inputTokens
              expected.outputTokens += r.usage.outputTokens
            }
            return { _tag: "Success", text: r.text, finishReason: r.finishReason }
          }
        )
        : Effect.map(
          Stream.runForEach(
            Stream.provideContext(Llm.stream(ask, policy), context),
            (e) => Effect.sync(() => seen.push(e))
          ),
          (): Ended => {
            const [first, ...rest] = seen
            const finish = rest.at(-1)
            const deltas = rest.slice(0, -1)
            if (
              first?._tag !== "Started" || first.endpoint.name !== NAME || first.attempts.length !== 1 ||
              finish?._tag !== "Finish" ||
              !deltas.every((d) => d._tag === "Delta" && typeof d.text === "string" && d.text !== "")
            ) {
              violate("a stream that is not Started, Deltas, Finish", JSON.stringify(seen.map((e) => e._tag)))
              return { _tag: "Broken" }
            }
            if (!saneUsage(finish.usage)) {
              violate("a success with negative or infinite usage", show(finish.usage))
            }
            if (finish.usage !== undefined) {
              expected.inputTokens += finish.usage.inputTokens
              expected.outputTokens += finish.usage.outputTokens
            }
            const text = deltas.map((d) => d._tag === "Delta" ? d.text : "").join("")
            return { _tag: "Success", text, finishReason: finish.finishReason }
          }
        )).pipe(Effect.timeout(GUARD), Effect.exit)
      const ms = Date.now() - started
      slowestMs = Math.max(slowestMs, ms)
      if (ms > ATTEMPT_TIMEOUT_MS + 1_000) violate("a case that took longer than the attempt timeout", `${ms} ms`)

      // --- how it ended ----------------------------------------------------------------
      let ended: Ended = { _tag: "Broken" }
      if (Exit.isSuccess(exit)) ended = exit.value
      else {
        const cause = exit.cause
        const defect = Cause.dieOption(cause)
        const failure = Cause.failureOption(cause)
        if (Option.isSome(defect)) violate("a defect", Cause.pretty(cause).slice(0, 600))
        else if (Option.isNone(failure)) violate("interrupted", Cause.pretty(cause).slice(0, 300))
        else {
          const error: unknown = failure.value
          const tag = (error as { _tag?: unknown })._tag
          if (tag === "TimeoutException") violate("a hang (no end within the guard)")
          else if (tag === "RoutingFailed") {
            const routed = error as Errors.RoutingFailed
            const last = routed.lastError
            if (mode === "stream" && seen.length > 0) violate("RoutingFailed after the stream started")
            if (!Errors.isProviderError(last)) {
              violate("RoutingFailed without a ProviderError as lastError", String(last?._tag))
            } else {
              const reason = last.retryable || last._tag === "ContextLengthExceeded"
                ? "attempts-exhausted"
                : "not-retryable"
              if (routed.reason !== reason) violate(`RoutingFailed ${routed.reason} for ${last._tag}`)
              if (
                routed.attempts.length !== 1 || routed.attempts[0].endpoint !== NAME ||
                routed.attempts[0].outcome !== last._tag
              ) violate("RoutingFailed whose attempts do not name the one attempt")
              if (leaksKey(last) === undefined && leaksKey(routed) !== undefined) {
                violate("the key in RoutingFailed (not from its lastError)", last._tag)
              }
              ended = { _tag: "Failure", error: last }
            }
          } else if (Errors.isProviderError(error)) {
            // a stream fails with the provider's error itself once it has started
            if (mode === "complete" || seen[0]?._tag !== "Started") {
              violate(`a bare ${error._tag} where RoutingFailed was due`)
            }
            ended = { _tag: "Failure", error }
          } else violate("an error that is not a ProviderError", String(tag))
        }
      }

      // --- the error's fields, and the oracle --------------------------------------------
      const expect_ = fuzzCase.expect
      if (ended._tag === "Failure") {
        const error = ended.error
        outcomes[error._tag] = (outcomes[error._tag] ?? 0) + 1
        if (error.endpoint !== NAME) violate("an error that does not name the endpoint", error._tag)
        if (error.status !== undefined && !Number.isInteger(error.status)) {
          violate("an error whose status is not a number", `${error._tag} status ${String(error.status)}`)
        }
        const httpError = fuzzCase.wire.status < 200 || fuzzCase.wire.status >= 300
        if (httpError && error.status !== fuzzCase.wire.status) {
          violate("an HTTP error answer whose error does not carry its status", `${error._tag} ${error.status}`)
        }
        if (error.detail !== undefined && (typeof error.detail !== "string" || error.detail.length > MAX_DETAIL)) {
          violate("a detail longer than 500 characters", `${error._tag}: ${String(error.detail).length}`)
        }
        if (error._tag === "Timeout" && error.status === undefined) {
          violate("the router's own Timeout (the server never stalls: something hung)")
        }
        if (error._tag === "RateLimited" && error.retryAfter !== undefined) {
          const wait = Duration.toMillis(error.retryAfter)
          if (Number.isNaN(wait) || wait < 0) violate("a RateLimited with a nonsense retryAfter", String(wait))
        }
        const leak = leaksKey(error)
        if (leak !== undefined) violate(`the key in an error (${provider} ${mode})`, `${error._tag}: ...${leak}...`)
        const allowed = expect_.failure === "any" || (expect_.failure ?? []).includes(error._tag)
        if (!allowed) {
          violate(
            `${fuzzCase.label}: expected ${wanted(expect_)}, got ${error._tag}`,
            `${expect_.why}; detail: ${error.detail}`
          )
        }
      } else if (ended._tag === "Success") {
        outcomes.Success = (outcomes.Success ?? 0) + 1
        if (!finishReasons.includes(ended.finishReason)) violate("an unknown finish reason", ended.finishReason)
        const want = expect_.success
        if (want === undefined) {
          violate(`${fuzzCase.label}: expected ${wanted(expect_)}, got Success`, expect_.why)
        } else if (want.text !== ended.text || want.finishReason !== ended.finishReason) {
          violate(
            `${fuzzCase.label}: a success with other text or finish reason`,
            `want ${JSON.stringify(want).slice(0, 200)} got ${
              JSON.stringify({ text: ended.text, finishReason: ended.finishReason }).slice(0, 200)
            }`
          )
        }
      } else outcomes.Broken = (outcomes.Broken ?? 0) + 1

      // --- one request, the lease released, the health as the outcome says ----------------
      if (server.requests.length !== requestsBefore + 1) {
        violate("not exactly one request", `${server.requests.length - requestsBefore}`)
      }
      const after = yield* statsOf(balancer)
      if (after.active !== 0) violate("a leaked lease (active > 0 after the call)", `active ${after.active}`)
      const moved = {
        successes: after.successes - before.successes,
        failures: after.failures - before.failures,
        rateLimited: after.rateLimited - before.rateLimited
      }
      if (ended._tag === "Success") {
        expected.successes++
        if (moved.successes !== 1 || moved.failures !== 0 || after.consecutiveFailures !== 0) {
          violate("a success not counted as one", JSON.stringify(moved))
        }
      } else if (ended._tag === "Failure") {
        expected.failures++
        const effect = healthEffectOf(ended.error)
        if (effect === "cooldown") expected.rateLimited++
        const ok = moved.successes === 0 && moved.failures === 1 &&
          moved.rateLimited === (effect === "cooldown" ? 1 : 0) &&
          (effect !== "counts" || after.consecutiveFailures === 1) &&
          (effect !== "ignore" || (after.consecutiveFailures === 0 && !after.held)) &&
          (effect !== "hold" || after.held)
        if (!ok) {
          violate(
            `health does not reflect a ${effect} failure`,
            `${ended.error._tag}: ${
              JSON.stringify({ moved, consecutive: after.consecutiveFailures, held: after.held })
            }`
          )
        }
      }
      yield* balancer.forceHealthy(NAME)
    }

    // --- the whole run -------------------------------------------------------------------
    const stats = yield* statsOf(balancer)
    const whole = [
      ["successes", stats.successes, expected.successes],
      ["failures", stats.failures, expected.failures],
      ["rateLimited", stats.rateLimited, expected.rateLimited],
      ["inputTokens", stats.inputTokens, expected.inputTokens],
      ["outputTokens", stats.outputTokens, expected.outputTokens]
    ] as const
    const report: Array<string> = []
    for (const [name, actual, want] of whole) {
      if (!Object.is(actual, want)) report.push(`stats.${name} is ${actual}, the cases add up to ${want}`)
    }
    if (stats.successes + stats.failures !== samples.length) {
      report.push(`successes + failures = ${stats.successes + stats.failures} for ${samples.length} cases`)
    }
    if (stats.successes === 0 || stats.failures === 0) report.push("the run lacks successes or failures")
    if (!saneUsage({ inputTokens: stats.inputTokens, outputTokens: stats.outputTokens })) {
      report.push(`the endpoint's token counters are ${stats.inputTokens} in, ${stats.outputTokens} out`)
    }
    for (const problem of new Set(serverProblems)) report.push(`test server: ${problem}`)
    for (const [kind, { count, example }] of violations) report.push(`${kind} (x${count}), e.g. ${example}`)
    return {
      cases: samples.length,
      ms: Date.now() - startedAll,
      slowestMs,
      outcomes,
      labels,
      stats,
      violations: report
    } satisfies Report
  })

const check = (provider: Fuzz.Provider, mode: Fuzz.Mode) =>
  Effect.gen(function*() {
    const report = yield* runFuzz(provider, mode)
    const { stats } = report
    console.log(
      `fuzz ${provider} ${mode}: ${report.cases} cases in ${report.ms} ms (slowest ${report.slowestMs} ms), seed ${SEED}\n` +
        `  outcomes ${JSON.stringify(report.outcomes)}\n  bodies ${JSON.stringify(report.labels)}\n` +
        `  stats successes=${stats.successes} failures=${stats.failures} rateLimited=${stats.rateLimited} ` +
        `active=${stats.active}` +
        (report.violations.length === 0 ? "" : `\n  ${report.violations.length} kind(s) of violation`)
    )
    expect(report.cases).toBe(RUNS)
    expect(
      report.violations,
      `fuzz ${provider} ${mode} (seed ${SEED}, FUZZ_SEED=${SEED} to replay):\n${report.violations.join("\n")}`
    ).toEqual([])
  })

describe("fuzzing the providers through the loopback server", () => {
  it.scopedLive("OpenAI-compatible, complete (JSON)", () => check("openai", "complete"))
  it.scopedLive("OpenAI-compatible, stream (SSE)", () => check("openai", "stream"))
  it.scopedLive("Anthropic, complete (JSON)", () => check("anthropic", "complete"))
  it.scopedLive("Anthropic, stream (SSE)", () => check("anthropic", "stream"))
})

// ---------------------------------------------------------------------------
// what the fuzzing found, each as its smallest case (these fail until fixed)
// ---------------------------------------------------------------------------

const wireOf = (status: number, body: string, contentType = "application/json"): Fuzz.Wire => ({
  status,
  headers: { "content-type": contentType },
  pieces: [new TextEncoder().encode(body)],
  ending: "end"
})

/** One call through `Llm` on a fresh server and balancer: how it ended, and the endpoint's stats after it. */
const once = (provider: Fuzz.Provider, mode: Fuzz.Mode, wire: Fuzz.Wire, extra: Partial<Endpoint.Input> = {}) =>
  Effect.gen(function*() {
    const server = yield* OpenAiServer.make()
    const { balancer, context } = yield* setup(provider, server, extra)
    const problems: Array<string> = []
    server.enqueue(OpenAiServer.custom("once", serve(wire, problems)))
    const events: Array<Chat.StreamEvent> = []
    const exit = yield* Effect.exit(
      mode === "complete"
        ? Effect.map(Effect.provide(Llm.complete(ask, policy), context), (r) => r.usage)
        : Effect.map(
          Stream.runForEach(
            Stream.provideContext(Llm.stream(ask, policy), context),
            (e) => Effect.sync(() => events.push(e))
          ),
          () => {
            const finish = events.at(-1)
            return finish?._tag === "Finish" ? finish.usage : undefined
          }
        )
    )
    expect(problems).toEqual([])
    // a normal answer next: the endpoint must still take it
    server.enqueue(
      OpenAiServer.custom("normal", serve(wireOf(200, normalAnswer(provider, mode), contentTypeOf(mode)), problems))
    )
    const next = yield* Effect.exit(
      mode === "complete"
        ? Effect.provide(Llm.complete(ask, policy), context)
        : Stream.runDrain(Stream.provideContext(Llm.stream(ask, policy), context))
    )
    return { exit, next, stats: yield* statsOf(balancer) }
  })

const contentTypeOf = (mode: Fuzz.Mode) => mode === "complete" ? "application/json" : "text/event-stream"

const normalAnswer = (
  provider: Fuzz.Provider,
  mode: Fuzz.Mode,
  usage = "\"prompt_tokens\":10,\"completion_tokens\":2"
) => {
  const anthropicUsage = usage.replace("prompt_tokens", "input_tokens").replace("completion_tokens", "output_tokens")
  if (provider === "openai") {
    return mode === "complete"
      ? `{"choices":[{"index":0,"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{${usage}}}`
      : `data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n` +
        `data: {"choices":[],"usage":{${usage}}}\n\ndata: [DONE]\n\n`
  }
  return mode === "complete"
    ? `{"content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{${anthropicUsage}}}`
    : `event: message_start\ndata: {"message":{"usage":{${anthropicUsage}}}}\n\n` +
      `event: content_block_delta\ndata: {"delta":{"type":"text_delta","text":"hi"}}\n\n` +
      `event: message_stop\ndata: {}\n\n`
}

describe("fuzz findings, smallest cases", () => {
  // src/llm/Anthropic.ts:390 `statusOfType[body.error.type] ?? 500` looks the type up in a plain
  // object, so a type named like a member of Object.prototype finds that member: the error's
  // status is a function (or Object.prototype) and `fromStatus` falls through to
  // MalformedResponse "unexpected status ...", or keeps the bogus status (spend limit).
  it.scopedLive("Anthropic: an error event whose type names an Object.prototype member is an api_error (500)", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      for (const type of ["constructor", "__proto__", "hasOwnProperty", "toString", "valueOf"]) {
        const body = `event: error\ndata: {"type":"error","error":{"type":"${type}","message":"boom"}}\n\n`
        const { exit } = yield* once("anthropic", "stream", wireOf(200, body, "text/event-stream"))
        const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
        const last = Option.getOrUndefined(error) as Errors.RoutingFailed | undefined
        seen.push(
          `${type}: ${last?.lastError?._tag} ${typeof (last?.lastError as any)?.status} ${
            (last?.lastError as any)?.status === 500
          }`
        )
      }
      expect(seen).toEqual([
        "constructor: Unavailable number true",
        "__proto__: Unavailable number true",
        "hasOwnProperty: Unavailable number true",
        "toString: Unavailable number true",
        "valueOf: Unavailable number true"
      ])
    }))

  // src/llm/OpenAiCompatible.ts:288 and :295 clip the detail to 500 characters (fields /
  // httpErrors.fromStatus) before `redactIn` (:306, applied at :419 and :431) looks for the
  // whole key: a key across the 500th character is cut, no longer found, and its first part
  // stays in the error. Anthropic scrubs before it clips.
  it.scopedLive("OpenAI-compatible: a key across the 500th character of an error's detail is still redacted", () =>
    Effect.gen(function*() {
      const leaks: Array<string> = []
      for (const pad of [420, 440, 460, 480]) {
        const error = `{"error":{"message":"${"p".repeat(pad)}${Fuzz.KEY}","type":"invalid_request_error","code":null}}`
        const http = yield* once("openai", "complete", wireOf(400, error))
        const inStream = yield* once("openai", "stream", wireOf(200, `data: ${error}\n\n`, "text/event-stream"))
        for (const [where, exit] of [["HTTP 400", http.exit], ["stream", inStream.exit]] as const) {
          const leak = Exit.isFailure(exit) ? leaksKey(Cause.squash(exit.cause)) : undefined
          if (leak !== undefined) leaks.push(`${where}, pad ${pad}: ...${leak}...`)
        }
      }
      expect(leaks).toEqual([])
    }))

  // Usage is read with Schema.Number (src/llm/OpenAiCompatible.ts:91-92, src/llm/Anthropic.ts:169,
  // :313-314, :330-331), which takes any number: `1e309` parses to Infinity, and negative
  // counts pass too. The balancer adds them up as they are (src/EndpointState.ts:520-529): its
  // token counters become Infinity, NaN or negative, the tokens-per-minute window fills with
  // Infinity, and one answer spends an endpoint's whole budget (over-budget until the period ends).
  for (const provider of ["openai", "anthropic"] as const) {
    for (const mode of ["complete", "stream"] as const) {
      it.scopedLive(`${provider} ${mode}: usage that is infinite or negative neither passes as valid nor poisons the endpoint`, () =>
        Effect.gen(function*() {
          const problems: Array<string> = []
          for (
            const usage of [
              "\"prompt_tokens\":1e309,\"completion_tokens\":2",
              "\"prompt_tokens\":-1e9,\"completion_tokens\":-3"
            ]
          ) {
            const { exit, next, stats } = yield* once(
              provider,
              mode,
              wireOf(200, normalAnswer(provider, mode, usage), contentTypeOf(mode)),
              {
                limits: { tpm: 100_000 },
                cost: { inputPerMillion: 1, outputPerMillion: 1 },
                budget: { limit: 1, period: "1 day" }
              }
            )
            // either the answer is refused as malformed, or its usage is dropped or valid
            if (Exit.isSuccess(exit)) {
              if (!saneUsage(exit.value)) problems.push(`${usage}: a success with usage ${show(exit.value)}`)
            } else {
              const error = Cause.squash(exit.cause) as Errors.RoutingFailed | Errors.ProviderError
              const tag = error._tag === "RoutingFailed" ? error.lastError?._tag : error._tag
              if (tag !== "MalformedResponse") problems.push(`${usage}: failed with ${tag}`)
            }
            if (Exit.isFailure(next)) {
              problems.push(`${usage}: the next, normal answer was refused: ${Cause.squash(next.cause)}`)
            }
            const counters = { in: stats.inputTokens, out: stats.outputTokens, spent: stats.spent }
            if (!saneUsage({ inputTokens: counters.in, outputTokens: counters.out }) || !(counters.spent >= 0)) {
              problems.push(`${usage}: the endpoint's counters ${show(counters)}`)
            }
          }
          expect(problems).toEqual([])
        }))
    }
  }
})

describe("fuzz findings, smallest cases: headers", () => {
  // The fuzz run raises small `*-remaining-*` counts on 2xx answers (see `sanitizeRemaining`),
  // because of this: src/RateLimit.ts:186-188 (`tightest`) takes any reset it can parse, and
  // `resetOf` (:81) parses 400 nines as Infinity ms (a huge finite one is as bad). One answer
  // saying 0 requests are left, with such a reset, keeps the endpoint out (no-headroom) for
  // ever, with `retryAt` undefined, while its stats say "healthy"; `forceHealthy`
  // (src/EndpointState.ts:817) does not clear the provider's hint.
  it.scopedLive("a 2xx with 0 requests left and an absurd reset does not keep the endpoint out for ever", () =>
    Effect.gen(function*() {
      const problems: Array<string> = []
      for (const reset of [`${"9".repeat(400)}s`, "99999999h"]) {
        const server = yield* OpenAiServer.make()
        const { balancer, context } = yield* setup("openai", server)
        const wire: Fuzz.Wire = {
          ...wireOf(200, normalAnswer("openai", "complete")),
          headers: {
            "content-type": "application/json",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": reset
          }
        }
        server.enqueue(OpenAiServer.custom("absurd reset", serve(wire, problems)))
        const first = yield* Effect.exit(Effect.provide(Llm.complete(ask, policy), context))
        expect(Exit.isSuccess(first)).toBe(true)
        yield* balancer.forceHealthy(NAME)
        server.enqueue(OpenAiServer.custom("normal", serve(wireOf(200, normalAnswer("openai", "complete")), problems)))
        const next = yield* Effect.exit(Effect.provide(Llm.complete(ask, policy), context))
        if (Exit.isFailure(next)) {
          // refused: then only for a while, and saying until when
          const error = Cause.squash(next.cause) as Errors.RoutingFailed
          const bounded = error.retryAt !== undefined && Number.isFinite(error.retryAt) &&
            error.retryAt <= Date.now() + 86_400_000
          if (!bounded) problems.push(`reset ${reset.slice(0, 12)}...: ${error.message} (retryAt ${error.retryAt})`)
        }
      }
      expect(problems).toEqual([])
    }))
})
