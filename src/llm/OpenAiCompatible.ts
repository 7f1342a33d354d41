/**
 * A `Provider` for OpenAI's Chat Completions API and the servers that copy it: OpenAI,
 * Azure OpenAI, vLLM, Ollama, Groq, Together, llama.cpp's server and others.
 * It runs over `@effect/platform`'s `HttpClient` (provide `FetchHttpClient.layer`).
 *
 * ```ts
 * import { FetchHttpClient } from "@effect/platform"
 * import { Layer } from "effect"
 * import { OpenAiCompatible, Provider } from "effect-llm-balancer"
 *
 * const ProvidersLive = Provider.layer({
 *   openai: OpenAiCompatible.make(),
 *   groq: OpenAiCompatible.make({ baseUrl: "https://api.groq.com/openai/v1" }),
 *   ollama: OpenAiCompatible.make({ baseUrl: "http://127.0.0.1:11434/v1" })
 * }).pipe(Layer.provide(FetchHttpClient.layer))
 * ```
 *
 * - **Where.** `POST {baseUrl}{path}`: the endpoint's `baseUrl` first, then the option's,
 *   then `https://api.openai.com/v1`; `path` defaults to `/chat/completions`.
 * - **Who.** The endpoint's `apiKey` as `Authorization: Bearer <key>` (or Azure's
 *   `api-key: <key>` with `auth: "api-key"`), unwrapped only to set the header; without a
 *   key no header is sent (a local vLLM or Ollama). The key never appears in an error:
 *   a provider that echoes it back has it replaced by `<redacted>`.
 * - **What.** `model` is the endpoint's `model`; the system prompt (with any system
 *   messages) goes first as a `system` message; `maxTokens` is sent as `max_tokens`
 *   (every compatible server reads it; OpenAI's reasoning models want
 *   `max_completion_tokens`: set `maxTokensField`); `temperature`, `stop`, `tools`,
 *   `tool_choice`; then the request's `extra` fields as they are.
 * - **Streams** ask for `stream_options: { include_usage: true }`, so the usage arrives in
 *   a last chunk with empty `choices`; `Finish` is emitted at `data: [DONE]` with the
 *   finish reason and that usage. A stream that ends before `[DONE]` fails with
 *   `MalformedResponse`; an `error` object inside the stream fails it like the same error
 *   would as an HTTP answer.
 * - **Errors** (every one a `ProviderError`): the body is read first (`context_length_exceeded`,
 *   a content filter, an exhausted quota), then the status (429 with its `retry-after-ms`,
 *   `retry-after` or `x-ratelimit-reset-*` wait, 401/403, 408, 5xx), then the transport
 *   (refused or reset: `Unavailable`). See docs/providers.md for the whole table.
 *
 * @since 0.1.0
 */
import { Headers, HttpClient, HttpClientRequest } from "@effect/platform"
import type { HttpClientError, HttpClientResponse } from "@effect/platform"
import { Clock, Effect, Either, ParseResult, Redacted, Schema, Stream } from "effect"
import type { Endpoint } from "../Endpoint.js"
import * as Errors from "../Errors.js"
import * as httpErrors from "../internal/httpErrors.js"
import * as Sse from "../internal/sse.js"
import * as Tokens from "../internal/usage.js"
import type { Usage } from "../Outcome.js"
import * as RateLimit from "../RateLimit.js"
import * as Chat from "./Chat.js"
import type { Provider } from "./Provider.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * The API's base URL, for endpoints that do not give their own `baseUrl` (an endpoint's
   * wins). Default `https://api.openai.com/v1`.
   */
  readonly baseUrl?: string | undefined
  /** Appended to the base URL; may carry a query (`/chat/completions?api-version=...`). Default `/chat/completions`. */
  readonly path?: string | undefined
  /** Sent with every request (an organization, a project, a gateway's own header). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /**
   * How the key is sent: `"bearer"` (`Authorization: Bearer <key>`, the default) or
   * `"api-key"` (an `api-key: <key>` header, as Azure OpenAI wants).
   */
  readonly auth?: "bearer" | "api-key" | undefined
  /**
   * The body field `maxTokens` is sent as. Default `max_tokens`, which vLLM, Ollama, Groq,
   * Together and Azure read; OpenAI deprecated it in favour of `max_completion_tokens`,
   * which its reasoning models (o1, o3, gpt-5) require and some compatible servers ignore.
   */
  readonly maxTokensField?: "max_tokens" | "max_completion_tokens" | undefined
}

/**
 * OpenAI's API.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultBaseUrl = "https://api.openai.com/v1"

// --- the wire format -----------------------------------------------------------------

const WireUsage = Schema.Struct({
  prompt_tokens: Schema.Number,
  completion_tokens: Schema.Number
})

const Optional = <S extends Schema.Schema.Any>(schema: S) => Schema.optional(Schema.NullOr(schema))

const ChatCompletion = Schema.Struct({
  choices: Schema.NonEmptyArray(Schema.Struct({
    index: Optional(Schema.Number),
    message: Schema.Struct({
      content: Optional(Schema.String),
      refusal: Optional(Schema.String),
      tool_calls: Optional(Schema.Array(Schema.Unknown))
    }),
    finish_reason: Optional(Schema.String)
  })),
  usage: Optional(WireUsage)
})

const ChatCompletionChunk = Schema.Struct({
  choices: Optional(Schema.Array(Schema.Struct({
    index: Optional(Schema.Number),
    delta: Optional(Schema.Struct({ content: Optional(Schema.String) })),
    finish_reason: Optional(Schema.String)
  }))),
  usage: Optional(WireUsage)
})

const decodeCompletion = Schema.decodeUnknownEither(ChatCompletion)
const decodeChunk = Schema.decodeUnknownEither(ChatCompletionChunk)

const describeParseError = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatErrorSync(error)
    .map((issue) => `${issue.path.length === 0 ? "(root)" : issue.path.join(".")}: ${issue.message}`)
    .join("; ")

const parseJson = (text: string): Either.Either<unknown, string> => {
  try {
    return Either.right(JSON.parse(text) as unknown)
  } catch (e) {
    return Either.left(e instanceof Error ? e.message : "invalid JSON")
  }
}

/**
 * The finish reason in this library's words: `stop`, `length`, `tool_calls` (and the older
 * `function_call`), `content_filter`; anything else (or none) is `other`.
 *
 * @since 0.1.0
 * @category parsing
 */
export const finishReason = (reason: string | null | undefined): Chat.FinishReason => {
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

// counts that are not believable (negative, infinite, absurd) are dropped, the answer kept
const usageOf = (usage: typeof WireUsage.Type | null | undefined): Usage | undefined =>
  usage == null ? undefined : Tokens.usageOf(usage.prompt_tokens, usage.completion_tokens)

// --- the request ---------------------------------------------------------------------

const messageOf = (m: Chat.Message): Record<string, unknown> => {
  const wire: Record<string, unknown> = { role: m.role, content: m.content }
  if (m.name !== undefined) wire.name = m.name
  if (m.toolCallId !== undefined) wire.tool_call_id = m.toolCallId
  return wire
}

/**
 * The Chat Completions body of a request on an endpoint. The request's `extra` fields are
 * added as they are and may replace the standard ones (`temperature`, `max_tokens`), but
 * not `model`, `messages` or the streaming fields, which the provider owns.
 *
 * @since 0.1.0
 * @category encoding
 */
export const requestBody = (
  endpoint: Endpoint,
  request: Chat.Request,
  options: { readonly stream: boolean; readonly maxTokensField?: Options["maxTokensField"] }
): Record<string, unknown> => {
  const { messages, system } = Chat.splitSystem(request)
  const body: Record<string, unknown> = {}
  if (request.maxTokens !== undefined) body[options.maxTokensField ?? "max_tokens"] = request.maxTokens
  if (request.temperature !== undefined) body.temperature = request.temperature
  if (request.stop !== undefined) body.stop = request.stop
  if (request.tools !== undefined) body.tools = request.tools
  if (request.toolChoice !== undefined) body.tool_choice = request.toolChoice
  const {
    messages: _messages,
    model: _model,
    stream: _stream,
    stream_options: streamOptions,
    ...extra
  } = request.extra ?? {}
  Object.assign(body, extra)
  body.model = endpoint.model
  body.messages = [
    ...(system === undefined ? [] : [{ role: "system", content: system }]),
    ...messages.map(messageOf)
  ]
  if (options.stream) {
    body.stream = true
    body.stream_options = {
      ...(typeof streamOptions === "object" && streamOptions !== null ? streamOptions : {}),
      include_usage: true
    }
  }
  return body
}

// --- errors --------------------------------------------------------------------------

/** What an error body says, from OpenAI's `{ error: { message, type, param, code } }` and its variants. */
interface WireError {
  readonly message: string | undefined
  readonly type: string | undefined
  readonly code: string | undefined
  /** A numeric `code` or a `status` (vLLM, llama.cpp and Azure put the HTTP status there). */
  readonly status: number | undefined
  readonly innerCode: string | undefined
}

const str = (u: unknown): string | undefined => typeof u === "string" && u !== "" ? u : undefined

const asRecord = (u: unknown): Record<string, unknown> | undefined =>
  typeof u === "object" && u !== null && !Array.isArray(u) ? u as Record<string, unknown> : undefined

/**
 * Reads an error body leniently: OpenAI's and Azure's `{ error: { ... } }`, an
 * `{ error: "message" }`, and vLLM's older top-level `{ object: "error", message, code }`.
 */
const wireError = (body: unknown): WireError | undefined => {
  const top = asRecord(body)
  if (top === undefined) return undefined
  const nested = asRecord(top.error)
  const e = nested ??
    (typeof top.error === "string" ? { message: top.error } : top.object === "error" ? top : undefined)
  if (e === undefined) return undefined
  const numeric = typeof e.code === "number" ? e.code : typeof e.status === "number" ? e.status : undefined
  return {
    message: str(e.message),
    type: str(e.type),
    code: typeof e.code === "string" ? str(e.code) : undefined,
    status: numeric !== undefined && numeric >= 400 && numeric <= 599 ? numeric : undefined,
    innerCode: str(asRecord(e.innererror)?.code)
  }
}

const describeWireError = (e: WireError): string => {
  const label = e.code ?? e.type
  return label !== undefined && e.message !== undefined
    ? `${label}: ${e.message}`
    : e.message ?? label ?? "no message"
}

/**
 * The body says the request does not fit: OpenAI's and Azure's `context_length_exceeded`
 * code, llama.cpp's `exceed_context_size_error` type, and the messages of servers that
 * give no code (vLLM: "This model's maximum context length is ...").
 */
const isContextLength = (e: WireError): boolean =>
  e.code === "context_length_exceeded" ||
  e.type === "exceed_context_size_error" ||
  (e.message !== undefined &&
    /maximum context length|context length exceeded|exceeds the available context size/i.test(e.message))

/** Azure's `content_filter` code (with its `ResponsibleAIPolicyViolation` inner error). */
const isContentFilter = (e: WireError): boolean =>
  e.code === "content_filter" || e.innerCode === "ResponsibleAIPolicyViolation"

/**
 * The error for an OpenAI-style error body: with `status` (an HTTP answer) or without (an
 * `error` object inside a stream), the body's own reading first, then the status.
 */
const fromWireError = (
  at: Endpoint,
  status: number | undefined,
  headers: RateLimit.Headers,
  body: string,
  now: number
): Errors.ProviderError => {
  const endpoint = at.name
  // the key out first: clipped afterwards, a key across the cut would escape whole-key search
  const text = scrub(at, body)
  const parsed = parseJson(text)
  const e = Either.isRight(parsed) ? wireError(parsed.right) : undefined
  const detail = e === undefined ? text.trim() : describeWireError(e)
  const effective = status ?? e?.status
  const fields = { endpoint, status: effective, detail: httpErrors.clip(detail) }
  if (e !== undefined && (effective === undefined || effective >= 400 && effective < 500)) {
    if (isContextLength(e)) return new Errors.ContextLengthExceeded(fields)
    if (isContentFilter(e)) return new Errors.ContentFiltered(fields)
    // a 429 that says the account is out of credit: waiting will not help, another key may
    if (e.code === "insufficient_quota") return new Errors.Unauthorized(fields)
  }
  if (effective !== undefined) return httpErrors.fromStatus(endpoint, effective, headers, detail, now)
  // an error inside a stream, with no status: its type or code says what it is
  const kind = `${e?.type ?? ""} ${e?.code ?? ""}`
  if (/rate_limit/.test(kind)) return new Errors.RateLimited(fields)
  if (/invalid_api_key|authentication|permission/.test(kind)) return new Errors.Unauthorized(fields)
  if (/invalid_request/.test(kind)) return new Errors.BadRequest(fields)
  if (/server_error|overloaded|unavailable|timeout/.test(kind)) return new Errors.Unavailable(fields)
  return new Errors.UnknownProviderError(fields)
}

/**
 * The client without @effect/platform's own `http.client` spans: a span's exit holds the
 * request, whose headers carry the key in clear for any tracer that keeps it. The router's
 * attempt spans say what the call did.
 */
const withoutSpans = (client: HttpClient.HttpClient): HttpClient.HttpClient =>
  HttpClient.withTracerDisabledWhen(client, () => true)

/**
 * The text without the endpoint's key, should a server echo it back. Done before a detail
 * is clipped: a key cut in two by the clip would escape a search for the whole key.
 */
const scrub = (endpoint: Endpoint, text: string): string => {
  const key = endpoint.apiKey === undefined ? undefined : Redacted.value(endpoint.apiKey)
  return key === undefined || key === "" ? text : text.split(key).join("<redacted>")
}

/** Replaces the key, should a server echo it back, in an error's detail. */
const redactIn = (key: string | undefined) => (error: Errors.ProviderError): Errors.ProviderError => {
  if (key === undefined || error.detail === undefined || !error.detail.includes(key)) return error
  const Constructor = error.constructor as new(fields: object) => Errors.ProviderError
  return new Constructor({ ...error, detail: error.detail.split(key).join("<redacted>") })
}

// --- the provider --------------------------------------------------------------------

/**
 * The provider, over an `HttpClient` (provide `FetchHttpClient.layer` or a Node client).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Provider, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => fromClient(client, options))

/**
 * The provider over a given client.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromClient = (base: HttpClient.HttpClient, options: Options = {}): Provider => {
  const client = withoutSpans(base)
  const path = options.path ?? "/chat/completions"
  const auth = options.auth ?? "bearer"

  const send = (endpoint: Endpoint, request: Chat.Request, stream: boolean) => {
    const base = (endpoint.baseUrl ?? options.baseUrl ?? defaultBaseUrl).replace(/\/+$/, "")
    let http = HttpClientRequest.post(`${base}${path.startsWith("/") ? path : `/${path}`}`).pipe(
      HttpClientRequest.setHeaders({
        ...options.headers,
        accept: stream ? "text/event-stream" : "application/json"
      }),
      HttpClientRequest.bodyUnsafeJson(
        requestBody(endpoint, request, { stream, maxTokensField: options.maxTokensField })
      )
    )
    const key = endpoint.apiKey
    if (key !== undefined) {
      http = auth === "api-key"
        ? HttpClientRequest.setHeader(http, "api-key", Redacted.value(key))
        : HttpClientRequest.bearerToken(http, Redacted.value(key))
    }
    return client.execute(http).pipe(
      Effect.mapError((error) => httpErrors.fromClientError(endpoint.name, error)),
      Effect.flatMap((response) =>
        response.status >= 200 && response.status < 300
          ? Effect.succeed(response)
          : failWith(endpoint, response)
      ),
      // Azure's key header is kept out of traces like `authorization` is
      Effect.locallyWith(Headers.currentRedactedNames, (names) => [...names, "api-key"])
    )
  }

  const failWith = (endpoint: Endpoint, response: HttpClientResponse.HttpClientResponse) =>
    Effect.flatMap(
      Effect.orElseSucceed(response.text, () => ""),
      (text) =>
        Effect.flatMap(
          Clock.currentTimeMillis,
          (now) => Effect.fail(fromWireError(endpoint, response.status, response.headers, text, now))
        )
    )

  const readError = (endpoint: Endpoint) => (error: HttpClientError.HttpClientError) =>
    httpErrors.fromClientError(endpoint.name, error)

  const complete = (endpoint: Endpoint, request: Chat.Request): Effect.Effect<Chat.Completion, Errors.ProviderError> =>
    Effect.gen(function*() {
      const response = yield* send(endpoint, request, false)
      const text = yield* Effect.mapError(response.text, readError(endpoint))
      const now = yield* Clock.currentTimeMillis
      const malformed = (detail: string) =>
        new Errors.MalformedResponse({
          endpoint: endpoint.name,
          status: response.status,
          detail: httpErrors.clip(scrub(endpoint, detail))
        })
      const json = parseJson(text)
      if (Either.isLeft(json)) return yield* Effect.fail(malformed(`the answer is not JSON (${json.left})`))
      // some servers answer an error with a 200
      if (asRecord(json.right)?.error !== undefined && asRecord(json.right)?.choices === undefined) {
        return yield* Effect.fail(fromWireError(endpoint, undefined, response.headers, text, now))
      }
      const decoded = decodeCompletion(json.right)
      if (Either.isLeft(decoded)) {
        return yield* Effect.fail(
          malformed(`the answer is not a chat completion (${describeParseError(decoded.left)})`)
        )
      }
      const choice = decoded.right.choices.find((c) => c.index == null || c.index === 0) ?? decoded.right.choices[0]
      const content = choice.message.content ?? ""
      const toolCalls = choice.message.tool_calls ?? undefined
      const reason = finishReason(choice.finish_reason)
      if (reason === "content-filter" && content === "" && (toolCalls === undefined || toolCalls.length === 0)) {
        return yield* Effect.fail(
          new Errors.ContentFiltered({
            endpoint: endpoint.name,
            status: response.status,
            detail: "the answer was filtered (finish_reason content_filter)"
          })
        )
      }
      return {
        text: content,
        finishReason: reason,
        usage: usageOf(decoded.right.usage),
        toolCalls: toolCalls !== undefined && toolCalls.length > 0 ? toolCalls : undefined,
        rateLimit: RateLimit.remaining(response.headers, now)
      } satisfies Chat.Completion
    }).pipe(
      Effect.mapError(redactIn(endpoint.apiKey === undefined ? undefined : Redacted.value(endpoint.apiKey)))
    )

  const stream = (endpoint: Endpoint, request: Chat.Request): Stream.Stream<Chat.StreamPart, Errors.ProviderError> =>
    Stream.unwrap(Effect.gen(function*() {
      const response = yield* send(endpoint, request, true)
      const now = yield* Clock.currentTimeMillis
      return Stream.concat(
        Stream.make(Chat.StreamPart.Start({ rateLimit: RateLimit.remaining(response.headers, now) })),
        partsOf(endpoint, response)
      )
    })).pipe(
      Stream.mapError(redactIn(endpoint.apiKey === undefined ? undefined : Redacted.value(endpoint.apiKey)))
    )

  return { complete, stream }
}

/** The parts of a streamed answer, from its events. */
const partsOf = (
  endpoint: Endpoint,
  response: HttpClientResponse.HttpClientResponse
): Stream.Stream<Chat.StreamPart, Errors.ProviderError> =>
  Stream.suspend(() => {
    const state: {
      done: boolean
      texts: number
      reason: string | undefined
      usage: Usage | undefined
    } = { done: false, texts: 0, reason: undefined, usage: undefined }
    const malformed = (detail: string) =>
      new Errors.MalformedResponse({
        endpoint: endpoint.name,
        status: response.status,
        detail: httpErrors.clip(scrub(endpoint, detail))
      })

    const onEvent = (event: Sse.Event): Effect.Effect<ReadonlyArray<Chat.StreamPart>, Errors.ProviderError> => {
      if (event.data.trim() === "[DONE]") {
        state.done = true
        if (state.reason === "content_filter" && state.texts === 0) {
          return Effect.fail(
            new Errors.ContentFiltered({
              endpoint: endpoint.name,
              status: response.status,
              detail: "the answer was filtered (finish_reason content_filter)"
            })
          )
        }
        return Effect.succeed([
          Chat.StreamPart.Finish({ finishReason: finishReason(state.reason), usage: state.usage })
        ])
      }
      // OpenAI sends `data: {"error": ...}`; some servers an `event: error` (its data JSON or not)
      const json = parseJson(event.data)
      if (event.event === "error" || (Either.isRight(json) && asRecord(json.right)?.error !== undefined)) {
        return Effect.flatMap(
          Clock.currentTimeMillis,
          (now) => Effect.fail(fromWireError(endpoint, undefined, response.headers, event.data, now))
        )
      }
      if (Either.isLeft(json)) return Effect.fail(malformed(`a stream event is not JSON (${json.left})`))
      const decoded = decodeChunk(json.right)
      if (Either.isLeft(decoded)) {
        return Effect.fail(malformed(`a stream event is not a chunk (${describeParseError(decoded.left)})`))
      }
      const parts: Array<Chat.StreamPart> = []
      for (const choice of decoded.right.choices ?? []) {
        if (choice.index != null && choice.index !== 0) continue
        const text = choice.delta?.content
        if (text != null && text !== "") {
          state.texts++
          parts.push(Chat.StreamPart.Delta({ text }))
        }
        if (choice.finish_reason != null) state.reason = choice.finish_reason
      }
      const usage = usageOf(decoded.right.usage)
      if (usage !== undefined) state.usage = usage
      return Effect.succeed(parts)
    }

    const ended = Stream.suspend(() =>
      state.done ? Stream.empty : Stream.fail(malformed("the stream ended before data: [DONE]"))
    )
    return Sse.parse(response.stream).pipe(
      Stream.mapError((error) =>
        malformed(`the stream was cut before data: [DONE] (${httpErrors.describe(error.cause ?? error)})`)
      ),
      Stream.mapEffect(onEvent),
      Stream.takeUntil(() => state.done),
      Stream.concat(ended),
      Stream.mapConcat((parts) => parts)
    )
  })
