/**
 * Generated HTTP answers for fuzzing the providers (`test/fuzzProviders.test.ts`), and an
 * oracle that says, from the bytes alone, how each one must end.
 *
 * A case is a `Wire`: a status, headers, and the body as the successive writes of a loopback
 * server, ended cleanly or by destroying the socket (a cut). Bodies mix valid answers,
 * valid-shaped answers with wrong types, missing fields, huge, negative and infinite
 * numbers (`1e309` parses to `Infinity`), odd unicode (lone surrogates, RTL, emoji, NUL),
 * truncated JSON, provider error bodies (with the API key inside, near the 500-character
 * clip of `detail`), random JSON, text and bytes; streams add SSE framing (LF, CRLF or CR
 * line ends, comments, unknown fields, multi-line data), events out of order, duplicated
 * and dropped (`[DONE]`, `message_stop`), and `data:` lines that are not JSON. Headers carry
 * nonsense `retry-after`, `retry-after-ms`, `x-ratelimit-*` and `anthropic-ratelimit-*`.
 *
 * The oracle is written from the documented behaviour (docs/providers.md): it decodes the
 * body as fetch does (UTF-8, BOM dropped), parses SSE with its own reader (the spec's, not
 * `src/internal/sse.ts`), and reads the JSON by the documented shapes, so that it predicts
 * the outcome (a success with its text and finish reason, or the `ProviderError` tags
 * allowed) of every case.
 */
import { FastCheck } from "effect"
import type { Chat, Errors } from "../../src/index.js"

const fc = FastCheck

/** The endpoint's key: long, like a real one, and planted in bodies to catch leaks. */
export const KEY = "sk-fuzz-Q2hhb3NNb25rZXlLZXlEb05vdExlYWtUaGlzT25l"

export type Provider = "openai" | "anthropic"
export type Mode = "complete" | "stream"
export type Tag = Errors.ProviderError["_tag"]

/** What the loopback server does for one case. */
export interface Wire {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  /** The body's successive writes (their concatenation is the delivered body). */
  readonly pieces: ReadonlyArray<Uint8Array>
  /** `destroy`: the socket is destroyed after the last write (a cut before the body's end). */
  readonly ending: "end" | "destroy"
}

/** How a case may end. */
export interface Expectation {
  /** A success is allowed, with this text and finish reason. */
  readonly success?: { readonly text: string; readonly finishReason: Chat.FinishReason } | undefined
  /** The failures allowed: these tags, or any `ProviderError`. */
  readonly failure?: ReadonlyArray<Tag> | "any" | undefined
  /** Why, for the report. */
  readonly why: string
}

export interface FuzzCase {
  /** What kind of body the generator made (for the tallies). */
  readonly label: string
  readonly wire: Wire
  /** The whole body the generator meant (the cut delivers a prefix of it). */
  readonly body: Uint8Array
  readonly expect: Expectation
}

// ---------------------------------------------------------------------------
// JSON with what JSON.stringify cannot write (1e309, raw fragments)
// ---------------------------------------------------------------------------

/** A JSON fragment written as it is (`1e400`, `-0.0`, `NaN`, which makes the body invalid). */
export class Raw {
  constructor(readonly text: string) {}
}

interface Style {
  readonly indent: number
  /** Every non-ASCII UTF-16 unit as a `\uXXXX` escape (surrogate pairs as two escapes). */
  readonly ascii: boolean
}

const serialize = (value: unknown, style: Style): string => {
  const fragments: Array<string> = []
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof Raw) {
      fragments.push(v.text)
      return `@@RAW${fragments.length - 1}@@`
    }
    if (typeof v === "number" && !Number.isFinite(v)) {
      fragments.push(Number.isNaN(v) ? "NaN" : v > 0 ? "1e309" : "-1e309")
      return `@@RAW${fragments.length - 1}@@`
    }
    return v
  }, style.indent === 0 ? undefined : style.indent) ?? "null"
  const raw = text.replace(/"@@RAW(\d+)@@"/g, (_, i: string) => fragments[Number(i)])
  return style.ascii
    ? raw.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
    : raw
}

const styleArb: FastCheck.Arbitrary<Style> = fc.record({
  indent: fc.constantFrom(0, 0, 0, 2),
  ascii: fc.boolean()
})

const clone = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(clone)
  if (typeof value === "object" && value !== null && !(value instanceof Raw)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, clone(v)]))
  }
  return value
}

const DELETE = Symbol("delete")

/** Sets (or deletes) the value at `path` of a cloned `root`; a path through a non-object is left alone. */
const setPath = (root: unknown, path: ReadonlyArray<string | number>, value: unknown): unknown => {
  if (path.length === 0) return value === DELETE ? undefined : value
  const copy = clone(root)
  let node: any = copy
  for (const key of path.slice(0, -1)) {
    if (typeof node !== "object" || node === null || node[key] === undefined) return copy
    node = node[key]
  }
  if (typeof node !== "object" || node === null) return copy
  const last = path[path.length - 1]
  if (value === DELETE) {
    if (Array.isArray(node) && typeof last === "number") node.splice(last, 1)
    else Reflect.deleteProperty(node, last)
  } else node[last] = value
  return copy
}

// ---------------------------------------------------------------------------
// leaves
// ---------------------------------------------------------------------------

const specials = [
  "\u0000",
  "\u0001\u001f\u007f",
  "\u202e\u05e9\u05dc\u05d5\u05dd\u202c",
  "\u200f\u0645\u0631\u062d\u0628\u0627",
  "\u200b\u200d",
  "\ud83d\ude00",
  "\ud83d\udc69\u200d\ud83d\udc69\u200d\ud83d\udc67",
  "\ud83c\uddeb\ud83c\uddf7",
  "\ud800",
  "\udfff",
  "\udc00\ud800",
  "\ufeff",
  "\u2028\u2029",
  "e\u0301",
  "Z\u0351\u0362\u0334\u0315",
  "\uffff\ufffe\ufffd",
  "\ud835\udd18\ud835\udd2b",
  "\u00a0\u00e9\u00df",
  "\r\n",
  "\n\ndata: [DONE]\n\n",
  "event: message_stop\ndata: {}\n\n",
  "\\\"",
  "[DONE]",
  KEY
]

/** Text with odd unicode in it. */
export const oddText: FastCheck.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 10 }) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 10 }) },
  {
    weight: 4,
    arbitrary: fc.array(fc.oneof(fc.constantFrom(...specials), fc.string({ maxLength: 3 })), {
      minLength: 1,
      maxLength: 5
    }).map((parts) => parts.join(""))
  },
  { weight: 1, arbitrary: fc.constantFrom("x".repeat(4_000), "\ud83d\ude00\u05e9".repeat(1_500)) }
)

/** Numbers a usage field should never hold, and some it may. */
export const weirdNumber: FastCheck.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(
    0,
    -0,
    -1,
    -5,
    0.5,
    1.5,
    1e308,
    -1e308,
    Number.MAX_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER + 2,
    2 ** 64,
    5e-324,
    Infinity,
    -Infinity,
    new Raw("1e400"),
    new Raw("-0.0"),
    new Raw("1E+2"),
    new Raw("123456789012345678901234567890"),
    new Raw("NaN"),
    new Raw("Infinity"),
    new Raw("01")
  ),
  fc.integer(),
  fc.double({ noNaN: true })
)

/** A value of the wrong type (or a right one by chance). */
export const weirdValue: FastCheck.Arbitrary<unknown> = fc.oneof(
  weirdNumber,
  oddText,
  fc.constantFrom<unknown>(null, true, false, [], {}, "", "12", "NaN", "-5", "null", [1, "a"], { a: { b: [] } }),
  fc.jsonValue({ maxDepth: 2 })
)

const usageNumber = fc.oneof(
  { weight: 4, arbitrary: fc.nat({ max: 5_000 }) },
  { weight: 2, arbitrary: weirdNumber }
)

const pieces = fc.array(oddText, { minLength: 0, maxLength: 5 })

// ---------------------------------------------------------------------------
// headers
// ---------------------------------------------------------------------------

const nonsense = fc.oneof(
  fc.constantFrom(
    "-5",
    "abc",
    "1e309",
    "",
    " ",
    "0",
    "1",
    "2",
    "1.5",
    "NaN",
    "Infinity",
    "-1",
    "0x10",
    "99999999999999999999",
    "9".repeat(400),
    "1s",
    "6m0s",
    "1h2m3.5s",
    "20ms",
    "0.5\u00b5s",
    "-1s",
    "1e3",
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "2099-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "abc 5",
    "\u00e9\u00b5"
  ),
  fc.string({ unit: "binary-ascii", maxLength: 12 }).map((s) => s.replace(/[^\t\x20-\x7e]/g, "")),
  fc.nat().map(String)
)

const rateLimitNames = [
  "retry-after",
  "retry-after-ms",
  "x-ratelimit-limit-requests",
  "x-ratelimit-remaining-requests",
  "x-ratelimit-reset-requests",
  "x-ratelimit-limit-tokens",
  "x-ratelimit-remaining-tokens",
  "x-ratelimit-reset-tokens",
  "anthropic-ratelimit-requests-limit",
  "anthropic-ratelimit-requests-remaining",
  "anthropic-ratelimit-requests-reset",
  "anthropic-ratelimit-tokens-limit",
  "anthropic-ratelimit-tokens-remaining",
  "anthropic-ratelimit-tokens-reset",
  "anthropic-ratelimit-input-tokens-remaining",
  "anthropic-ratelimit-input-tokens-reset",
  "anthropic-ratelimit-output-tokens-remaining",
  "anthropic-ratelimit-output-tokens-reset"
]

const headersArb = fc.record({
  contentType: fc.constantFrom(
    "application/json",
    "text/event-stream; charset=utf-8",
    "text/html",
    "application/json; charset=utf-16",
    undefined
  ),
  limits: fc.dictionary(fc.constantFrom(...rateLimitNames), nonsense, { maxKeys: 5 })
})

/**
 * A 2xx answer's `*-remaining-*` header that says little is left would (rightly) keep the
 * endpoint out until its reset, which `forceHealthy` does not clear: it would turn the next
 * cases into `NoEndpointAvailable`. On 2xx answers such counts are raised well above what
 * 1,000 calls spend; error answers keep them as generated (their headers are not reported).
 */
const sanitizeRemaining = (headers: Record<string, string>, status: number): Record<string, string> => {
  if (status < 200 || status >= 300) return headers
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    out[name] = name.includes("remaining") && /^\d+$/.test(value.trim()) && Number(value.trim()) < 1e7
      ? "50000000"
      : value
  }
  return out
}

// ---------------------------------------------------------------------------
// error bodies
// ---------------------------------------------------------------------------

/** A message with the key around the 500th character of an error's `detail`. */
const keyNearClip = fc.integer({ min: 440, max: 510 }).map((n) => `${"p".repeat(n)}${KEY} and more`)

const errorMessage = fc.oneof(
  oddText,
  keyNearClip,
  fc.constantFrom(
    "This model's maximum context length is 128000 tokens.",
    "prompt is too long: 210000 tokens > 200000 maximum",
    "input length and `max_tokens` exceed context limit: 190000 + 20000 > 200000",
    "Rate limit reached",
    `Incorrect API key provided: ${KEY}`
  )
)

const openAiErrorBody: FastCheck.Arbitrary<unknown> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      error: fc.record({
        message: errorMessage,
        type: fc.constantFrom(
          "invalid_request_error",
          "server_error",
          "rate_limit_exceeded",
          "insufficient_quota",
          "exceed_context_size_error",
          "authentication_error",
          null,
          "",
          "constructor"
        ),
        code: fc.constantFrom<unknown>(
          "context_length_exceeded",
          "content_filter",
          "insufficient_quota",
          "rate_limit_exceeded",
          "invalid_api_key",
          null,
          400,
          429,
          503,
          999,
          Infinity,
          "x"
        ),
        param: fc.constant(null),
        innererror: fc.option(fc.constant({ code: "ResponsibleAIPolicyViolation" }), { nil: undefined }),
        status: fc.option(fc.constantFrom(400, 500, 413, 42), { nil: undefined })
      }, { requiredKeys: ["message"] })
    })
  },
  { weight: 1, arbitrary: errorMessage.map((message) => ({ error: message })) },
  {
    weight: 1,
    arbitrary: fc.record({ object: fc.constant("error"), message: errorMessage, code: fc.constantFrom(400, 503, 42) })
  },
  { weight: 1, arbitrary: weirdValue.map((error) => ({ error })) }
)

const anthropicErrorTypes = [
  "invalid_request_error",
  "authentication_error",
  "billing_error",
  "permission_error",
  "not_found_error",
  "request_too_large",
  "rate_limit_error",
  "api_error",
  "timeout_error",
  "overloaded_error",
  "unknown_error",
  // names of Object.prototype's members: a lookup table must not find them
  "constructor",
  "toString",
  "__proto__",
  "hasOwnProperty",
  "valueOf"
]

const anthropicErrorBody: FastCheck.Arbitrary<unknown> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      type: fc.constant("error"),
      error: fc.record({
        type: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...anthropicErrorTypes) }, {
          weight: 1,
          arbitrary: weirdValue
        }),
        message: fc.oneof({ weight: 5, arbitrary: errorMessage }, { weight: 1, arbitrary: weirdValue }),
        details: fc.constantFrom<unknown>(
          null,
          { error_code: "enforced_spend_limit_reached" },
          { error_code: 5 },
          [],
          "x"
        )
      }, { requiredKeys: ["type"] }),
      request_id: fc.constantFrom<unknown>("req_011", null, 5)
    }, { requiredKeys: ["type", "error"] })
  },
  { weight: 1, arbitrary: weirdValue.map((error) => ({ type: "error", error })) }
)

export const errorBody = (provider: Provider) => provider === "openai" ? openAiErrorBody : anthropicErrorBody

// ---------------------------------------------------------------------------
// JSON answers
// ---------------------------------------------------------------------------

type Path = ReadonlyArray<string | number>

interface Mutation {
  readonly path: Path
  readonly value: unknown
}

const mutationArb = (paths: ReadonlyArray<Path>, numeric: ReadonlyArray<Path>) =>
  fc.oneof(
    fc.record({ path: fc.constantFrom(...paths), value: fc.oneof(weirdValue, fc.constant<unknown>(DELETE)) }),
    fc.record({ path: fc.constantFrom(...numeric), value: weirdNumber })
  )

const applyAll = (root: unknown, mutations: ReadonlyArray<Mutation>) =>
  mutations.reduce((value, m) => setPath(value, m.path, m.value), root)

const openAiCompletion = fc.record({
  text: fc.option(oddText, { nil: null }),
  index: fc.constantFrom<unknown>(0, 0, null, undefined),
  finish: fc.constantFrom<unknown>(
    "stop",
    "stop",
    "length",
    "tool_calls",
    "function_call",
    "content_filter",
    null,
    "x"
  ),
  toolCalls: fc.option(fc.constant([{ id: "call_1", type: "function", function: { name: "f", arguments: "{}" } }]), {
    nil: undefined
  }),
  others: fc.array(fc.record({ index: fc.constantFrom(1, 2), text: oddText }), { maxLength: 2 }),
  othersFirst: fc.boolean(),
  usage: fc.oneof(
    { weight: 6, arbitrary: fc.record({ prompt_tokens: usageNumber, completion_tokens: usageNumber }) },
    { weight: 1, arbitrary: fc.constantFrom(null, undefined) }
  )
}).map((g) => {
  const main: Record<string, unknown> = {
    message: {
      role: "assistant",
      content: g.text,
      refusal: null,
      ...(g.toolCalls === undefined ? {} : { tool_calls: g.toolCalls })
    },
    logprobs: null,
    finish_reason: g.finish
  }
  if (g.index !== undefined) main.index = g.index
  const others = g.others.map((o) => ({
    index: o.index,
    message: { role: "assistant", content: o.text },
    finish_reason: "stop"
  }))
  return {
    id: "chatcmpl-fuzz",
    object: "chat.completion",
    created: 1_700_000_000,
    model: "gpt-fuzz",
    choices: g.othersFirst ? [...others, main] : [main, ...others],
    ...(g.usage === undefined ? {} : { usage: g.usage })
  }
})

const openAiCompletionPaths: ReadonlyArray<Path> = [
  [],
  ["choices"],
  ["choices", 0],
  ["choices", 0, "message"],
  ["choices", 0, "message", "content"],
  ["choices", 0, "message", "refusal"],
  ["choices", 0, "message", "tool_calls"],
  ["choices", 0, "index"],
  ["choices", 0, "finish_reason"],
  ["usage"],
  ["usage", "prompt_tokens"],
  ["usage", "completion_tokens"],
  ["error"],
  ["object"]
]
const openAiNumericPaths: ReadonlyArray<Path> = [
  ["usage", "prompt_tokens"],
  ["usage", "completion_tokens"],
  ["choices", 0, "index"]
]

const anthropicBlock = fc.oneof(
  { weight: 5, arbitrary: oddText.map((text) => ({ type: "text", text })) },
  { weight: 1, arbitrary: fc.constant({ type: "tool_use", id: "toolu_1", name: "f", input: { a: 1 } }) },
  { weight: 1, arbitrary: fc.constant({ type: "thinking", thinking: "hmm", signature: "sig" }) },
  { weight: 1, arbitrary: oddText.map((type) => ({ type, text: "ignored?" })) }
)

const anthropicMessage = fc.record({
  content: fc.array(anthropicBlock, { maxLength: 4 }),
  stop: fc.constantFrom<unknown>(
    "end_turn",
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "refusal",
    "pause_turn",
    null,
    undefined
  ),
  usage: fc.oneof(
    { weight: 6, arbitrary: fc.record({ input_tokens: usageNumber, output_tokens: usageNumber }) },
    { weight: 1, arbitrary: fc.constant(undefined) }
  )
}).map((g) => ({
  id: "msg_fuzz",
  type: "message",
  role: "assistant",
  model: "claude-fuzz",
  content: g.content,
  ...(g.stop === undefined ? {} : { stop_reason: g.stop }),
  stop_sequence: null,
  ...(g.usage === undefined ? {} : { usage: g.usage })
}))

const anthropicMessagePaths: ReadonlyArray<Path> = [
  [],
  ["content"],
  ["content", 0],
  ["content", 0, "type"],
  ["content", 0, "text"],
  ["content", 1, "text"],
  ["stop_reason"],
  ["usage"],
  ["usage", "input_tokens"],
  ["usage", "output_tokens"],
  ["type"],
  ["error"]
]
const anthropicNumericPaths: ReadonlyArray<Path> = [["usage", "input_tokens"], ["usage", "output_tokens"]]

const answer = (provider: Provider) => provider === "openai" ? openAiCompletion : anthropicMessage

const mutatedAnswer = (provider: Provider) =>
  fc.tuple(
    answer(provider),
    fc.array(
      provider === "openai"
        ? mutationArb(openAiCompletionPaths, openAiNumericPaths)
        : mutationArb(anthropicMessagePaths, anthropicNumericPaths),
      { minLength: 1, maxLength: 3 }
    )
  ).map(([value, mutations]) => applyAll(value, mutations))

interface Body {
  readonly label: string
  readonly bytes: Uint8Array
}

const utf8 = (text: string) => new TextEncoder().encode(text)

const jsonBody = (label: string, value: FastCheck.Arbitrary<unknown>): FastCheck.Arbitrary<Body> =>
  fc.tuple(value, styleArb).map(([v, style]) => ({ label, bytes: utf8(serialize(v, style)) }))

const truncated = (label: string, value: FastCheck.Arbitrary<unknown>): FastCheck.Arbitrary<Body> =>
  fc.tuple(value, styleArb, fc.double({ min: 0, max: 1, noNaN: true })).map(([v, style, at]) => {
    const text = serialize(v, style)
    return { label, bytes: utf8(text.slice(0, Math.floor(at * text.length))) }
  })

const otherBodies: ReadonlyArray<FastCheck.WeightedArbitrary<Body>> = [
  { weight: 1, arbitrary: jsonBody("random JSON", fc.jsonValue({ maxDepth: 3 })) },
  {
    weight: 1,
    arbitrary: fc.string({ unit: "binary", maxLength: 200 }).map((s) => ({ label: "text", bytes: utf8(s) }))
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((bytes) => ({ label: "bytes", bytes })) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "",
      "<html><body><h1>502 Bad Gateway</h1></body></html>",
      "\ufeff",
      "null",
      "[]",
      "{}",
      "{\"choices\": []}",
      "{\"content\": []}",
      "data: [DONE]\n\n",
      "event: message_stop\ndata: {}\n\n",
      "\ufeff{\"content\":[],\"stop_reason\":\"end_turn\"}"
    ).map((s) => ({ label: "fixed", bytes: utf8(s) }))
  }
]

// ---------------------------------------------------------------------------
// SSE streams
// ---------------------------------------------------------------------------

/** One event as the generator writes it: `data` is JSON (serialized) or raw text; `noData` omits the data lines. */
interface SseEvent {
  readonly event?: string | undefined
  readonly id?: string | undefined
  readonly data: unknown
  readonly noData?: boolean | undefined
}

const chunk = (choices: unknown, usage?: unknown) => ({
  id: "chatcmpl-fuzz",
  object: "chat.completion.chunk",
  created: 1_700_000_000,
  model: "gpt-fuzz",
  choices,
  ...(usage === undefined ? {} : { usage })
})

const openAiEvents = fc.record({
  texts: pieces,
  finish: fc.constantFrom<unknown>("stop", "stop", "length", "tool_calls", "content_filter", null, "x"),
  usage: fc.option(fc.record({ prompt_tokens: usageNumber, completion_tokens: usageNumber }), { nil: undefined }),
  nulls: fc.boolean()
}).map((g): Array<SseEvent> => [
  { data: chunk([{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]) },
  ...g.texts.map((content) => ({
    data: chunk(
      [{ index: 0, delta: { content }, logprobs: null, finish_reason: null }],
      g.nulls ? null : undefined
    )
  })),
  { data: chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: g.finish }], g.nulls ? null : undefined) },
  ...(g.usage === undefined ? [] : [{ data: chunk([], g.usage) }]),
  { data: "[DONE]" }
])

const openAiJunkEvent: FastCheck.Arbitrary<SseEvent> = fc.oneof(
  fc.constantFrom<SseEvent>(
    { data: "{broken" },
    { data: "null" },
    { data: "5" },
    { data: "[]" },
    { data: "\"str\"" },
    { data: "{}" },
    { data: "{\"choices\":[{\"delta\":{\"content\":5}}]}" },
    { data: "{\"choices\":null,\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":1e309}}" },
    { data: "{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"not mine\"}}]}" },
    { data: "[DONE]x" },
    { data: "  [DONE]  " },
    { data: "" },
    { event: "error", data: "upstream exploded" },
    { event: "ping", data: "{}" },
    { event: "error", data: "[DONE]" },
    { data: "{\"error\": null}" }
  ),
  openAiErrorBody.map((data) => ({ data })),
  oddText.map((text) => ({ data: chunk([{ index: 0, delta: { content: text }, finish_reason: null }]) }))
)

const anthropicEvents = fc.record({
  texts: pieces,
  inputTokens: usageNumber,
  outputTokens: usageNumber,
  stop: fc.constantFrom<unknown>("end_turn", "end_turn", "max_tokens", "tool_use", "refusal", null, "x"),
  initial: fc.constantFrom("", "", "Hi ")
}).map((g): Array<SseEvent> => [
  {
    event: "message_start",
    data: {
      type: "message_start",
      message: {
        id: "msg_fuzz",
        type: "message",
        role: "assistant",
        content: [],
        model: "claude-fuzz",
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: g.inputTokens, output_tokens: 1 }
      }
    }
  },
  {
    event: "content_block_start",
    data: { type: "content_block_start", index: 0, content_block: { type: "text", text: g.initial } }
  },
  { event: "ping", data: { type: "ping" } },
  ...g.texts.map((text) => ({
    event: "content_block_delta",
    data: { type: "content_block_delta", index: 0, delta: { type: "text_delta", text } }
  })),
  { event: "content_block_stop", data: { type: "content_block_stop", index: 0 } },
  {
    event: "message_delta",
    data: {
      type: "message_delta",
      delta: { stop_reason: g.stop, stop_sequence: null },
      usage: { output_tokens: g.outputTokens }
    }
  },
  { event: "message_stop", data: { type: "message_stop" } }
])

const anthropicJunkEvent: FastCheck.Arbitrary<SseEvent> = fc.oneof(
  fc.constantFrom<SseEvent>(
    { event: "content_block_delta", data: "{broken" },
    { event: "content_block_delta", data: { type: "content_block_delta", delta: { type: "text_delta" } } },
    { event: "content_block_delta", data: { type: "content_block_delta", delta: { type: "text_delta", text: 5 } } },
    {
      event: "content_block_delta",
      data: { type: "content_block_delta", delta: { type: "input_json_delta", partial_json: "{\"a" } }
    },
    { event: "content_block_delta", data: { delta: { type: "thinking_delta", thinking: "hmm" } } },
    { event: "content_block_start", data: { content_block: { type: "tool_use", id: "t", name: "f", input: {} } } },
    { event: "message_start", data: { message: null } },
    { event: "message_start", data: { message: { usage: null } } },
    { event: "message_delta", data: { delta: null } },
    { event: "message_delta", data: { usage: { output_tokens: -3, input_tokens: 1e308 } } },
    { event: "mystery", data: "whatever" },
    { data: { type: "message_stop" } },
    { event: "message_stop", data: "" },
    { event: "message_stop", data: "", noData: true },
    { event: "error", data: "not json" },
    { event: "ping", data: "" }
  ),
  anthropicErrorBody.map((data) => ({ event: "error", data })),
  oddText.map((text) => ({
    event: "content_block_delta",
    data: { type: "content_block_delta", index: 0, delta: { type: "text_delta", text } }
  }))
)

const eventNames = [
  "message_start",
  "content_block_start",
  "content_block_delta",
  "content_block_stop",
  "message_delta",
  "message_stop",
  "ping",
  "error",
  "message",
  "Message_Stop",
  "message_stop "
]

type EventMutation =
  | { readonly _tag: "drop-terminal" }
  | { readonly _tag: "duplicate"; readonly at: number }
  | { readonly _tag: "swap"; readonly at: number; readonly with: number }
  | { readonly _tag: "terminal-to"; readonly at: number }
  | { readonly _tag: "remove"; readonly at: number }
  | { readonly _tag: "insert"; readonly at: number; readonly event: SseEvent }
  | { readonly _tag: "data"; readonly at: number; readonly path: Path; readonly value: unknown }
  | { readonly _tag: "rename"; readonly at: number; readonly name: string | undefined }

const dataPaths = (provider: Provider): ReadonlyArray<Path> =>
  provider === "openai"
    ? [
      [],
      ["choices"],
      ["choices", 0],
      ["choices", 0, "delta"],
      ["choices", 0, "delta", "content"],
      ["choices", 0, "index"],
      ["choices", 0, "finish_reason"],
      ["usage"],
      ["usage", "prompt_tokens"],
      ["usage", "completion_tokens"],
      ["error"]
    ]
    : [
      [],
      ["message"],
      ["message", "usage"],
      ["message", "usage", "input_tokens"],
      ["delta"],
      ["delta", "type"],
      ["delta", "text"],
      ["delta", "stop_reason"],
      ["content_block"],
      ["content_block", "text"],
      ["usage"],
      ["usage", "output_tokens"],
      ["usage", "input_tokens"]
    ]

const eventMutation = (provider: Provider): FastCheck.Arbitrary<EventMutation> => {
  const at = fc.nat({ max: 20 })
  return fc.oneof(
    { weight: 2, arbitrary: fc.constant({ _tag: "drop-terminal" as const }) },
    { weight: 2, arbitrary: at.map((at) => ({ _tag: "duplicate" as const, at })) },
    { weight: 2, arbitrary: fc.tuple(at, at).map(([a, b]) => ({ _tag: "swap" as const, at: a, with: b })) },
    { weight: 1, arbitrary: at.map((at) => ({ _tag: "terminal-to" as const, at })) },
    { weight: 1, arbitrary: at.map((at) => ({ _tag: "remove" as const, at })) },
    {
      weight: 3,
      arbitrary: fc.tuple(at, provider === "openai" ? openAiJunkEvent : anthropicJunkEvent).map(([at, event]) => ({
        _tag: "insert" as const,
        at,
        event
      }))
    },
    {
      weight: 3,
      arbitrary: fc.record({
        at,
        path: fc.constantFrom(...dataPaths(provider)),
        value: fc.oneof(weirdValue, weirdNumber, fc.constant<unknown>(DELETE))
      }).map((m) => ({ _tag: "data" as const, ...m }))
    },
    {
      weight: provider === "anthropic" ? 2 : 1,
      arbitrary: fc.tuple(at, fc.option(fc.constantFrom(...eventNames), { nil: undefined })).map(([at, name]) => ({
        _tag: "rename" as const,
        at,
        name
      }))
    }
  )
}

const isTerminal = (e: SseEvent) => e.event === "message_stop" || e.data === "[DONE]"

const mutateEvents = (events: ReadonlyArray<SseEvent>, mutations: ReadonlyArray<EventMutation>) => {
  let out = events.slice()
  for (const m of mutations) {
    const i = out.length === 0 ? 0 : ("at" in m ? m.at % out.length : 0)
    switch (m._tag) {
      case "drop-terminal":
        out = out.filter((e) => !isTerminal(e))
        break
      case "duplicate":
        if (out.length > 0) out.splice(i, 0, out[i])
        break
      case "swap":
        if (out.length > 0) {
          const j = m.with % out.length
          const a = out[i]
          out[i] = out[j]
          out[j] = a
        }
        break
      case "terminal-to": {
        const t = out.findIndex(isTerminal)
        if (t >= 0) {
          const [terminal] = out.splice(t, 1)
          out.splice(out.length === 0 ? 0 : m.at % (out.length + 1), 0, terminal)
        }
        break
      }
      case "remove":
        if (out.length > 0) out.splice(i, 1)
        break
      case "insert":
        out.splice(out.length === 0 ? 0 : m.at % (out.length + 1), 0, m.event)
        break
      case "data":
        if (out.length > 0 && typeof out[i].data !== "string") {
          out[i] = { ...out[i], data: setPath(out[i].data, m.path, m.value) }
        }
        break
      case "rename":
        if (out.length > 0) out[i] = { ...out[i], event: m.name }
        break
    }
  }
  return out
}

/** Lines that change nothing: comments, unknown fields, `id`, `retry`, a field-like `data` that is not `data`. */
const junkLine = fc.oneof(
  fc.constantFrom(
    ": keep-alive",
    ":",
    ": \ud83d\ude00 \u202e",
    "id: 42",
    "id",
    "retry: 100",
    "retry: abc",
    "foo: bar",
    "foo",
    "DATA: {broken",
    " data: {broken",
    "dat: x",
    "eventually: message_stop"
  ),
  fc.string({ maxLength: 8 }).map((s) => `: ${s.replace(/[\r\n]/g, "")}`)
)

interface Framing {
  readonly eol: string
  readonly space: boolean
  readonly pretty: boolean
  readonly ascii: boolean
  readonly junk: ReadonlyArray<ReadonlyArray<string>>
  readonly bom: boolean
}

const framingArb = fc.record({
  eol: fc.constantFrom("\n", "\n", "\r\n", "\r"),
  space: fc.boolean(),
  pretty: fc.boolean(),
  ascii: fc.boolean(),
  junk: fc.array(fc.array(junkLine, { maxLength: 2 }), { maxLength: 12 }),
  bom: fc.boolean()
})

/** The SSE text of events: each event's lines, a blank line, and junk lines in between. */
const sseText = (events: ReadonlyArray<SseEvent>, f: Framing): string => {
  const lines: Array<string> = []
  events.forEach((e, i) => {
    for (const junk of f.junk[i] ?? []) lines.push(junk)
    if (e.event !== undefined) lines.push(`event:${f.space ? " " : ""}${e.event}`)
    if (e.id !== undefined) lines.push(`id: ${e.id}`)
    if (e.noData !== true) {
      const data = typeof e.data === "string" ? e.data : serialize(e.data, { indent: f.pretty ? 2 : 0, ascii: f.ascii })
      // a data line cannot hold a line break: text with one is sent as several data lines, as it should be
      for (const line of data.split(/\r\n|\r|\n/)) lines.push(`data:${f.space ? " " : ""}${line}`)
    }
    lines.push("")
  })
  return (f.bom ? "\ufeff" : "") + lines.map((l) => l + f.eol).join("")
}

const streamBody = (provider: Provider): FastCheck.Arbitrary<Body> =>
  fc.oneof(
    {
      weight: 4,
      arbitrary: fc.tuple(provider === "openai" ? openAiEvents : anthropicEvents, framingArb).map((
        [events, framing]
      ) => ({ label: "valid stream", bytes: utf8(sseText(events, framing)) }))
    },
    {
      weight: 7,
      arbitrary: fc.tuple(
        provider === "openai" ? openAiEvents : anthropicEvents,
        fc.array(eventMutation(provider), { minLength: 1, maxLength: 4 }),
        framingArb
      ).map(([events, mutations, framing]) => ({
        label: "mutated stream",
        bytes: utf8(sseText(mutateEvents(events, mutations), framing))
      }))
    },
    {
      weight: 1,
      arbitrary: fc.array(
        fc.oneof(
          fc.constantFrom(
            "data: ",
            "data:",
            "event: ",
            "event: message_stop",
            "event: error",
            "event: content_block_delta",
            "\n",
            "\r",
            "\r\n",
            ":",
            "[DONE]",
            "{",
            "}",
            "{\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}",
            "{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}",
            "\ud83d\ude00"
          ),
          fc.string({ maxLength: 4 })
        ),
        { maxLength: 40 }
      ).map((parts) => ({ label: "sse soup", bytes: utf8(parts.join("")) }))
    },
    { weight: 1, arbitrary: jsonBody("error body", errorBody(provider)) },
    { weight: 1, arbitrary: jsonBody("JSON answer", answer(provider)) },
    ...otherBodies
  )

const completeBody = (provider: Provider): FastCheck.Arbitrary<Body> =>
  fc.oneof(
    { weight: 4, arbitrary: jsonBody("valid", answer(provider)) },
    { weight: 5, arbitrary: jsonBody("mutated", mutatedAnswer(provider)) },
    { weight: 2, arbitrary: truncated("truncated", answer(provider)) },
    { weight: 2, arbitrary: jsonBody("error body", errorBody(provider)) },
    {
      weight: 1,
      arbitrary: fc.tuple(answer(provider), styleArb, fc.constantFrom("\ufeff", " \n\t", "\r\n")).map((
        [value, style, pad]
      ) => ({ label: "padded", bytes: utf8(`${pad}${serialize(value, style)}${pad === "\ufeff" ? "" : pad}`) }))
    },
    ...otherBodies
  )

// ---------------------------------------------------------------------------
// the oracle
// ---------------------------------------------------------------------------

type Json = { readonly ok: true; readonly value: unknown } | { readonly ok: false }

const parseJson = (text: string): Json => {
  try {
    return { ok: true, value: JSON.parse(text) as unknown }
  } catch {
    return { ok: false }
  }
}

/** A JSON object (not an array, not null): what a `Schema.Struct` takes. */
const record = (u: unknown): Record<string, unknown> | undefined =>
  typeof u === "object" && u !== null && !Array.isArray(u) ? u as Record<string, unknown> : undefined

const has = (o: Record<string, unknown>, key: string) => Object.prototype.hasOwnProperty.call(o, key)
/** Absent, null, or satisfying `ok` (an `optional(NullOr(...))` field). */
const optionalNull = (o: Record<string, unknown>, key: string, ok: (u: unknown) => boolean) =>
  o[key] === undefined || o[key] === null || ok(o[key])
/** Absent or satisfying `ok` (an exact optional field: null is a wrong type). */
const optionalExact = (o: Record<string, unknown>, key: string, ok: (u: unknown) => boolean) =>
  !has(o, key) || ok(o[key])
const isString = (u: unknown): u is string => typeof u === "string"
const isNumber = (u: unknown): u is number => typeof u === "number"
const nonEmpty = (u: unknown): string | undefined => typeof u === "string" && u !== "" ? u : undefined

const fail = (why: string, ...tags: ReadonlyArray<Tag>): Expectation => ({ failure: tags, why })
const succeed = (text: string, finishReason: Chat.FinishReason, why: string): Expectation => ({
  success: { text, finishReason },
  why
})

/** The status table of docs/providers.md. */
export const statusTag = (status: number): Tag => {
  if (status === 429) return "RateLimited"
  if (status === 401 || status === 403) return "Unauthorized"
  if (status === 408 || status === 504) return "Timeout"
  if (status === 413) return "ContextLengthExceeded"
  if (status >= 500) return "Unavailable"
  if (status === 404 || status === 409 || status === 425) return "Unavailable"
  if (status >= 400) return "BadRequest"
  return "MalformedResponse"
}

const openAiFinish = (reason: unknown): Chat.FinishReason => {
  switch (reason) {
    case "stop":
      return "stop"
    case "length":
      return "length"
    case "tool_calls":
    case "function_call":
      return "tool-calls"
    case "content_filter":
      return "content-filter"
    default:
      return "other"
  }
}

const anthropicFinish = (reason: unknown): Chat.FinishReason => {
  switch (reason) {
    case "end_turn":
    case "stop_sequence":
      return "stop"
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length"
    case "tool_use":
      return "tool-calls"
    case "refusal":
      return "content-filter"
    default:
      return "other"
  }
}

/** OpenAI: the error of an error body, with the HTTP status or (in a stream, or a 200) without. */
const openAiErrorTag = (text: string, status: number | undefined): Tag => {
  const parsed = parseJson(text)
  const top = parsed.ok ? record(parsed.value) : undefined
  const e = top === undefined
    ? undefined
    : record(top.error) ??
      (typeof top.error === "string" ? { message: top.error } : top.object === "error" ? top : undefined)
  const numeric = e === undefined ? undefined : isNumber(e.code) ? e.code : isNumber(e.status) ? e.status : undefined
  const effective = status ?? (numeric !== undefined && numeric >= 400 && numeric <= 599 ? numeric : undefined)
  const message = nonEmpty(e?.message)
  const type = nonEmpty(e?.type)
  const code = isString(e?.code) ? nonEmpty(e.code) : undefined
  if (e !== undefined && (effective === undefined || (effective >= 400 && effective < 500))) {
    if (
      code === "context_length_exceeded" || type === "exceed_context_size_error" ||
      (message !== undefined &&
        /maximum context length|context length exceeded|exceeds the available context size/i.test(message))
    ) return "ContextLengthExceeded"
    if (code === "content_filter" || nonEmpty(record(e.innererror)?.code) === "ResponsibleAIPolicyViolation") {
      return "ContentFiltered"
    }
    if (code === "insufficient_quota") return "Unauthorized"
  }
  if (effective !== undefined) return statusTag(effective)
  const kind = `${type ?? ""} ${code ?? ""}`
  if (/rate_limit/.test(kind)) return "RateLimited"
  if (/invalid_api_key|authentication|permission/.test(kind)) return "Unauthorized"
  if (/invalid_request/.test(kind)) return "BadRequest"
  if (/server_error|overloaded|unavailable|timeout/.test(kind)) return "Unavailable"
  return "UnknownProviderError"
}

/** Anthropic: `{"type":"error","error":{"type","message","details"},"request_id"}`, as its schema reads it. */
const anthropicErrorOf = (text: string) => {
  const parsed = parseJson(text)
  const top = parsed.ok ? record(parsed.value) : undefined
  const error = record(top?.error)
  if (top === undefined || error === undefined || !isString(error.type)) return undefined
  const details = error.details
  if (
    !optionalExact(error, "message", isString) ||
    !optionalExact(error, "details", (d) => d === null || record(d) !== undefined) ||
    !optionalExact(top, "request_id", (r) => r === null || isString(r))
  ) return undefined
  return { type: error.type, message: error.message as string | undefined, code: record(details)?.error_code }
}

/** The status an error `type` is documented with; any other type is an `api_error` (500). */
const documentedStatus: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529
}

const anthropicErrorTag = (text: string, status: number): Tag => {
  const body = anthropicErrorOf(text)
  if (body !== undefined) {
    if (isString(body.code) && /spend_limit_reached$/.test(body.code)) return "Unauthorized"
    if (body.type === "billing_error") return "Unauthorized"
    if (
      (body.type === "invalid_request_error" || status === 400) && body.message !== undefined &&
      /prompt is too long|exceed(?:s|ed)? (?:the )?context (?:limit|window)/i.test(body.message)
    ) return "ContextLengthExceeded"
  }
  return statusTag(status)
}

const anthropicStreamErrorTag = (data: string): Tag => {
  const body = anthropicErrorOf(data)
  const status = body !== undefined && Object.prototype.hasOwnProperty.call(documentedStatus, body.type)
    ? documentedStatus[body.type]
    : 500
  return anthropicErrorTag(data, status)
}

const openAiComplete = (text: string): Expectation => {
  const parsed = parseJson(text)
  if (!parsed.ok) return fail("not JSON", "MalformedResponse")
  const top = record(parsed.value)
  if (top !== undefined && top.error !== undefined && top.choices === undefined) {
    return fail("a 200 with an error body", openAiErrorTag(text, undefined))
  }
  const choices = top?.choices
  const shaped = Array.isArray(choices) && choices.length > 0 && choices.every((c) => {
    const choice = record(c)
    const message = record(choice?.message)
    return choice !== undefined && message !== undefined &&
      optionalNull(choice, "index", isNumber) &&
      optionalNull(choice, "finish_reason", isString) &&
      optionalNull(message, "content", isString) &&
      optionalNull(message, "refusal", isString) &&
      optionalNull(message, "tool_calls", Array.isArray)
  }) && optionalNull(top!, "usage", (u) => {
    const usage = record(u)
    return usage !== undefined && isNumber(usage.prompt_tokens) && isNumber(usage.completion_tokens)
  })
  if (!shaped) return fail("not a chat completion", "MalformedResponse")
  const all = choices as Array<Record<string, any>>
  const choice = all.find((c) => c.index == null || c.index === 0) ?? all[0]
  const content: string = choice.message.content ?? ""
  const toolCalls: Array<unknown> | undefined = choice.message.tool_calls ?? undefined
  const finishReason = openAiFinish(choice.finish_reason)
  if (finishReason === "content-filter" && content === "" && (toolCalls === undefined || toolCalls.length === 0)) {
    return fail("filtered, nothing left", "ContentFiltered")
  }
  return succeed(content, finishReason, "a chat completion")
}

const anthropicComplete = (text: string): Expectation => {
  const parsed = parseJson(text)
  if (!parsed.ok) return fail("not JSON", "MalformedResponse")
  const top = record(parsed.value)
  const content = top?.content
  const shaped = top !== undefined && Array.isArray(content) && content.every((b) => {
    const block = record(b)
    if (block === undefined) return false
    if (block.type === "text") return isString(block.text)
    if (block.type === "tool_use") return isString(block.id) && isString(block.name)
    return isString(block.type)
  }) && optionalExact(top, "stop_reason", (r) => r === null || isString(r)) &&
    optionalExact(top, "usage", (u) => {
      const usage = record(u)
      return usage !== undefined && isNumber(usage.input_tokens) && isNumber(usage.output_tokens)
    })
  if (!shaped) return fail("not a message", "MalformedResponse")
  const joined = (content as Array<Record<string, unknown>>).flatMap((b) => b.type === "text" ? [b.text as string] : [])
    .join("")
  return succeed(joined, anthropicFinish(top.stop_reason), "a message")
}

/** Server-sent events as the WHATWG spec reads them (the trailing, unfinished line dropped). */
export const sseEvents = (text: string): Array<{ readonly event: string; readonly data: string }> => {
  const lines = text.split(/\r\n|\r|\n/)
  lines.pop()
  const out: Array<{ event: string; data: string }> = []
  let event = ""
  let data: Array<string> | undefined
  for (const line of lines) {
    if (line === "") {
      if (data !== undefined) out.push({ event: event === "" ? "message" : event, data: data.join("\n") })
      event = ""
      data = undefined
      continue
    }
    if (line.startsWith(":")) continue
    const colon = line.indexOf(":")
    const field = colon < 0 ? line : line.slice(0, colon)
    let value = colon < 0 ? "" : line.slice(colon + 1)
    if (value.startsWith(" ")) value = value.slice(1)
    if (field === "event") event = value
    else if (field === "data") (data ??= []).push(value)
  }
  return out
}

type StreamResult = Expectation & { readonly terminal: boolean }

const openAiStream = (events: ReadonlyArray<{ readonly event: string; readonly data: string }>): StreamResult => {
  let texts = 0
  let text = ""
  let reason: unknown
  for (const e of events) {
    if (e.data.trim() === "[DONE]") {
      if (reason === "content_filter" && texts === 0) {
        return { ...fail("[DONE] after content_filter and no text", "ContentFiltered"), terminal: true }
      }
      return { ...succeed(text, openAiFinish(reason), "[DONE]"), terminal: true }
    }
    const parsed = parseJson(e.data)
    if (e.event === "error" || (parsed.ok && record(parsed.value)?.error !== undefined)) {
      return { ...fail("an error in the stream", openAiErrorTag(e.data, undefined)), terminal: false }
    }
    const top = parsed.ok ? record(parsed.value) : undefined
    const shaped = top !== undefined &&
      optionalNull(top, "choices", (cs) =>
        Array.isArray(cs) && cs.every((c) => {
          const choice = record(c)
          return choice !== undefined && optionalNull(choice, "index", isNumber) &&
            optionalNull(choice, "finish_reason", isString) &&
            optionalNull(
              choice,
              "delta",
              (d) => record(d) !== undefined && optionalNull(record(d)!, "content", isString)
            )
        })) &&
      optionalNull(top, "usage", (u) => {
        const usage = record(u)
        return usage !== undefined && isNumber(usage.prompt_tokens) && isNumber(usage.completion_tokens)
      })
    if (!shaped) return { ...fail("an event that is not a chunk", "MalformedResponse"), terminal: false }
    for (const choice of (top.choices ?? []) as Array<Record<string, any>>) {
      if (choice.index != null && choice.index !== 0) continue
      const content = choice.delta?.content
      if (content != null && content !== "") {
        texts++
        text += content
      }
      if (choice.finish_reason != null) reason = choice.finish_reason
    }
  }
  return { ...fail("no [DONE]", "MalformedResponse"), terminal: false }
}

const optionalCount = (o: Record<string, unknown>, key: string) =>
  optionalExact(o, key, (n) => n === null || isNumber(n))
const usageShape = (u: unknown) => {
  const usage = record(u)
  return usage !== undefined && optionalCount(usage, "input_tokens") && optionalCount(usage, "output_tokens")
}

const anthropicStream = (events: ReadonlyArray<{ readonly event: string; readonly data: string }>): StreamResult => {
  let text = ""
  let stop: unknown
  const malformed = (why: string) => ({ ...fail(why, "MalformedResponse"), terminal: false })
  for (const e of events) {
    if (e.event === "message_stop") return { ...succeed(text, anthropicFinish(stop), "message_stop"), terminal: true }
    if (e.event === "error") return { ...fail("an error event", anthropicStreamErrorTag(e.data)), terminal: false }
    const known = ["message_start", "content_block_start", "content_block_delta", "message_delta"]
    if (!known.includes(e.event)) continue
    const parsed = parseJson(e.data)
    const top = parsed.ok ? record(parsed.value) : undefined
    if (top === undefined) return malformed(`a ${e.event} that is not a JSON object`)
    switch (e.event) {
      case "message_start": {
        const message = record(top.message)
        if (message === undefined || !optionalExact(message, "usage", usageShape)) return malformed("bad message_start")
        break
      }
      case "content_block_start": {
        const block = record(top.content_block)
        if (block === undefined || !isString(block.type)) return malformed("bad content_block_start")
        if (block.type === "text" && isString(block.text)) text += block.text
        break
      }
      case "content_block_delta": {
        const delta = record(top.delta)
        if (delta === undefined || !isString(delta.type)) return malformed("bad content_block_delta")
        if (delta.type !== "text_delta") break
        if (!isString(delta.text)) return malformed("a text_delta without text")
        text += delta.text
        break
      }
      case "message_delta": {
        const ok = optionalExact(top, "delta", (d) => {
          const delta = record(d)
          return delta !== undefined && optionalExact(delta, "stop_reason", (r) => r === null || isString(r))
        }) && optionalExact(top, "usage", usageShape)
        if (!ok) return malformed("bad message_delta")
        const reason = record(top.delta)?.stop_reason
        if (reason !== undefined && reason !== null) stop = reason
        break
      }
    }
  }
  return malformed("no message_stop")
}

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

const widen = (e: Expectation, tag: Tag, why: string): Expectation => ({
  success: e.success,
  failure: e.failure === "any" ? "any" : [...new Set([...(e.failure ?? []), tag])],
  why: `${e.why}; ${why}`
})

/**
 * How a case must end, from the wire alone. A cut (destroyed socket) makes a body that
 * cannot be read: `MalformedResponse` for a 2xx, the status's error for others (the body
 * read as empty). A cut stream may lose the events the client had not read yet when the
 * socket closed (a WHATWG stream drops its queue on error), so `MalformedResponse` is
 * allowed in place of what the delivered events say.
 */
export const expectation = (provider: Provider, mode: Mode, wire: Wire): Expectation => {
  const delivered = decode(concat(wire.pieces))
  const cut = wire.ending === "destroy"
  if (wire.status < 200 || wire.status >= 300) {
    const text = cut ? "" : delivered
    return fail(
      `HTTP ${wire.status}`,
      provider === "openai" ? openAiErrorTag(text, wire.status) : anthropicErrorTag(text, wire.status)
    )
  }
  if (mode === "complete") {
    if (cut) return fail("a 2xx body cut short", "MalformedResponse")
    return provider === "openai" ? openAiComplete(delivered) : anthropicComplete(delivered)
  }
  const events = sseEvents(delivered)
  const result = provider === "openai" ? openAiStream(events) : anthropicStream(events)
  const { terminal: _terminal, ...expectation } = result
  return cut ? widen(expectation, "MalformedResponse", "cut") : expectation
}

export const concat = (pieces: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of pieces) {
    out.set(p, at)
    at += p.length
  }
  return out
}

// ---------------------------------------------------------------------------
// cases
// ---------------------------------------------------------------------------

const statusArb = fc.oneof(
  { weight: 7, arbitrary: fc.constant(200) },
  { weight: 3, arbitrary: fc.constantFrom(400, 401, 403, 404, 408, 409, 413, 429, 500, 502, 503, 529, 999) }
)

const framing = fc.record({
  splits: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }),
  // about one case in seven is cut
  cut: fc.oneof(
    { weight: 6, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }) }
  ),
  contentLength: fc.boolean()
})

/** Splits `bytes` at the given fractions (anywhere, a UTF-8 sequence included). */
const split = (bytes: Uint8Array, at: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = [...new Set(at.map((f) => Math.floor(f * bytes.length)))].filter((p) => p > 0 && p < bytes.length)
    .sort((a, b) => a - b)
  const out: Array<Uint8Array> = []
  let last = 0
  for (const p of [...points, bytes.length]) {
    if (p > last) out.push(bytes.subarray(last, p))
    last = p
  }
  return out
}

/** Generated cases for a provider and a mode. */
export const cases = (provider: Provider, mode: Mode): FastCheck.Arbitrary<FuzzCase> =>
  fc.record({
    status: statusArb,
    headers: headersArb,
    body: mode === "complete" ? completeBody(provider) : streamBody(provider),
    framing
  }).map(({ body, framing, headers, status }) => {
    const bytes = body.bytes
    // a cut leaves at least one byte written (so the headers surely went out) and one not
    const cutAt = framing.cut !== undefined && bytes.length > 1
      ? 1 + Math.floor(framing.cut * (bytes.length - 1))
      : undefined
    const delivered = cutAt === undefined ? bytes : bytes.subarray(0, cutAt)
    const all: Record<string, string> = sanitizeRemaining({ ...headers.limits }, status)
    if (headers.contentType !== undefined) all["content-type"] = headers.contentType
    // a declared length is exact on a whole body, and longer than what a cut body delivers
    if (framing.contentLength) all["content-length"] = String(bytes.length)
    const wire: Wire = {
      status,
      headers: all,
      pieces: split(delivered, framing.splits),
      ending: cutAt === undefined ? "end" : "destroy"
    }
    return { label: body.label, wire, body: bytes, expect: expectation(provider, mode, wire) }
  })

/** A case as text, to reproduce it. */
export const describeCase = (c: FuzzCase): string =>
  JSON.stringify({
    label: c.label,
    status: c.wire.status,
    headers: c.wire.headers,
    ending: c.wire.ending,
    pieces: c.wire.pieces.map((p) => p.length),
    body: decode(concat(c.wire.pieces)).slice(0, 800),
    expect: c.expect
  })
