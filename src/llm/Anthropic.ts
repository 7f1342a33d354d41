/**
 * A `Provider` for Anthropic's Messages API (`POST {baseUrl}/v1/messages`) over
 * `@effect/platform`'s `HttpClient`.
 *
 * ```ts
 * import { FetchHttpClient } from "@effect/platform"
 * import { Layer } from "effect"
 * import { Anthropic, Provider } from "effect-llm-balancer"
 *
 * const ProvidersLive = Provider.layer({
 *   anthropic: Anthropic.make({ defaultMaxTokens: 2048 })
 * }).pipe(Layer.provide(FetchHttpClient.layer))
 * // endpoints: { name: "claude", provider: "anthropic", model: "claude-3-5-haiku-latest", apiKey: "sk-ant-..." }
 * ```
 *
 * - The request: `model` is the endpoint's; the system prompt (with any system messages)
 *   goes in `system`; `tool` messages become `tool_result` blocks of a user turn
 *   (`toolCallId` is the `tool_use_id`); `max_tokens` is the request's `maxTokens` or
 *   `defaultMaxTokens` (the API requires one); `temperature`, `stop_sequences`, `tools`
 *   and `tool_choice` as given; `extra` is merged in last.
 * - Headers: `x-api-key` (the endpoint's key, unwrapped only here), `anthropic-version`
 *   and `content-type`, after any `headers` of the options (`anthropic-beta`, say).
 * - The answer: text blocks joined, `tool_use` blocks as `toolCalls`, `stop_reason` as the
 *   finish reason, `usage.input_tokens` / `output_tokens`, and what the
 *   `anthropic-ratelimit-*` headers say is left of the limits.
 * - Streams (`stream: true`): `Start` with the limits from the headers, a `Delta` per
 *   `text_delta`, and `Finish` at `message_stop` with the input tokens of `message_start`
 *   and the output tokens of the last `message_delta`. A stream that ends before
 *   `message_stop` fails with `MalformedResponse`; an `error` event fails like the HTTP
 *   error of its type (`overloaded_error` as a 529).
 *
 * Errors: the error body's `type` and `message` first (a prompt too long for the model is
 * `ContextLengthExceeded`, a billing error or a spend limit holds the endpoint out), then
 * the status (429 `RateLimited` with `retry-after` or the `anthropic-ratelimit-*-reset`
 * headers, 401/403 `Unauthorized`, 413 `ContextLengthExceeded`, 5xx and 529
 * `Unavailable`, other 4xx `BadRequest`), then the transport (refused or reset before an
 * answer: `Unavailable`; an answer that cannot be read: `MalformedResponse`). The key never
 * appears in an error.
 *
 * @since 0.1.0
 */
import type { HttpClientResponse } from "@effect/platform"
import { HttpClient, HttpClientRequest } from "@effect/platform"
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
  /** Default `"https://api.anthropic.com"`; an endpoint's `baseUrl` wins. `/v1/messages` is appended. */
  readonly baseUrl?: string | undefined
  /** The `anthropic-version` header. Default `"2023-06-01"`. */
  readonly version?: string | undefined
  /** `max_tokens` of requests without `maxTokens` (the API requires it). Default 1,024. */
  readonly defaultMaxTokens?: number | undefined
  /** Headers added to every request (`anthropic-beta`, a proxy's own). */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/**
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  baseUrl: "https://api.anthropic.com",
  version: "2023-06-01",
  defaultMaxTokens: 1024
} as const

// ---------------------------------------------------------------------------
// the request
// ---------------------------------------------------------------------------

type Block =
  | { readonly type: "text"; readonly text: string }
  | { readonly type: "tool_result"; readonly tool_use_id: string; readonly content: string }

interface Turn {
  readonly role: "user" | "assistant"
  readonly blocks: Array<Block>
}

/**
 * The Messages API body for a request, without `stream`. Fails with `BadRequest` for a
 * `tool` message without `toolCallId` (the API needs the `tool_use_id` it answers).
 * Consecutive messages of one role are joined into one turn, as the API would.
 *
 * @since 0.1.0
 * @category encoding
 */
export const requestBody = (
  endpoint: Endpoint,
  request: Chat.Request,
  options?: Pick<Options, "defaultMaxTokens">
): Either.Either<Record<string, unknown>, Errors.BadRequest> => {
  const { messages, system } = Chat.splitSystem(request)
  const turns: Array<Turn> = []
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]
    let role: Turn["role"]
    let block: Block
    if (m.role === "tool") {
      if (m.toolCallId === undefined) {
        return Either.left(
          new Errors.BadRequest({
            endpoint: endpoint.name,
            detail: `messages[${i}]: a tool message needs toolCallId (Anthropic's tool_use_id)`
          })
        )
      }
      role = "user"
      block = { type: "tool_result", tool_use_id: m.toolCallId, content: m.content }
    } else {
      role = m.role === "assistant" ? "assistant" : "user"
      block = { type: "text", text: m.content }
    }
    const last = turns[turns.length - 1]
    if (last !== undefined && last.role === role) last.blocks.push(block)
    else turns.push({ role, blocks: [block] })
  }
  const body: Record<string, unknown> = {
    model: endpoint.model,
    max_tokens: request.maxTokens ?? options?.defaultMaxTokens ?? defaults.defaultMaxTokens,
    messages: turns.map((t) => ({
      role: t.role,
      content: t.blocks.length === 1 && t.blocks[0].type === "text" ? t.blocks[0].text : t.blocks
    }))
  }
  if (system !== undefined) body.system = system
  if (request.temperature !== undefined) body.temperature = request.temperature
  if (request.stop !== undefined) body.stop_sequences = request.stop
  if (request.tools !== undefined) body.tools = request.tools
  if (request.toolChoice !== undefined) body.tool_choice = request.toolChoice
  return Either.right(request.extra === undefined ? body : { ...body, ...request.extra })
}

// ---------------------------------------------------------------------------
// the answer
// ---------------------------------------------------------------------------

const TextBlock = Schema.Struct({ type: Schema.Literal("text"), text: Schema.String })
const ToolUseBlock = Schema.Struct({
  type: Schema.Literal("tool_use"),
  id: Schema.String,
  name: Schema.String,
  input: Schema.Unknown
})
/** Thinking, server tools, citations...: read past. */
const OtherBlock = Schema.Struct({
  type: Schema.String.pipe(Schema.filter((t) => t !== "text" && t !== "tool_use"))
})
const ContentBlock = Schema.Union(TextBlock, ToolUseBlock, OtherBlock)

const StopReason = Schema.optionalWith(Schema.NullOr(Schema.String), { exact: true })

const MessageResponse = Schema.Struct({
  content: Schema.Array(ContentBlock),
  stop_reason: StopReason,
  usage: Schema.optionalWith(
    Schema.Struct({ input_tokens: Schema.Number, output_tokens: Schema.Number }),
    { exact: true }
  )
})

const decodeMessage = Schema.decodeUnknownEither(Schema.parseJson(MessageResponse))

/**
 * Anthropic's `stop_reason` as a finish reason: `end_turn` and `stop_sequence` are
 * `stop`; `max_tokens` and `model_context_window_exceeded` are `length`; `tool_use` is
 * `tool-calls`; `refusal` is `content-filter`; anything else (`pause_turn`, none) `other`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const finishReason = (stopReason: string | null | undefined): Chat.FinishReason => {
  switch (stopReason) {
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

// ---------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------

const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    type: Schema.String,
    message: Schema.optionalWith(Schema.String, { exact: true }),
    details: Schema.optionalWith(
      Schema.NullOr(Schema.Struct({ error_code: Schema.optionalWith(Schema.Unknown, { exact: true }) })),
      { exact: true }
    )
  }),
  request_id: Schema.optionalWith(Schema.NullOr(Schema.String), { exact: true })
})
type ErrorBody = typeof ErrorBody.Type

const decodeErrorBody = Schema.decodeUnknownEither(Schema.parseJson(ErrorBody))

/** The status an error `type` is documented with, for errors that arrive in a stream. */
const statusOfType: Readonly<Record<string, number>> = {
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

/** The API's wordings for a request that does not fit the model's context window. */
const tooLong = /prompt is too long|exceed(?:s|ed)? (?:the )?context (?:limit|window)/i

/** Anthropic's `error.details.error_code`s for spend limits: no retry helps before the period or limit changes. */
const spendLimit = /spend_limit_reached$/

const scrub = (text: string, endpoint: Endpoint): string => {
  const key = endpoint.apiKey === undefined ? undefined : Redacted.value(endpoint.apiKey)
  return key === undefined || key === "" ? text : text.split(key).join("<redacted>")
}

const describeBody = (body: ErrorBody): string =>
  `${body.error.type}: ${body.error.message ?? "(no message)"}${
    typeof body.request_id === "string" ? ` (request ${body.request_id})` : ""
  }`

/**
 * The error for an Anthropic error: the body's `type`, `message` and
 * `details.error_code` first, then the status (`httpErrors.fromStatus`).
 */
const fromError = (
  endpoint: Endpoint,
  status: number,
  headers: RateLimit.Headers,
  body: ErrorBody | undefined,
  raw: string,
  now: number
): Errors.ProviderError => {
  const detail = httpErrors.clip(scrub(body === undefined ? raw : describeBody(body), endpoint))
  const fields = { endpoint: endpoint.name, status, detail }
  if (body !== undefined) {
    const { details, message, type } = body.error
    const code = details?.error_code
    if (typeof code === "string" && spendLimit.test(code)) {
      return new Errors.Unauthorized({ ...fields, detail: httpErrors.clip(`${code}: ${detail}`) })
    }
    if (type === "billing_error") return new Errors.Unauthorized(fields)
    if ((type === "invalid_request_error" || status === 400) && message !== undefined && tooLong.test(message)) {
      return new Errors.ContextLengthExceeded(fields)
    }
  }
  return httpErrors.fromStatus(endpoint.name, status, headers, detail, now)
}

const readError = (
  endpoint: Endpoint,
  response: HttpClientResponse.HttpClientResponse
): Effect.Effect<never, Errors.ProviderError> =>
  Effect.flatMap(
    Effect.zip(Effect.orElseSucceed(response.text, () => ""), Clock.currentTimeMillis),
    ([raw, now]) => {
      const body = decodeErrorBody(raw)
      return Effect.fail(
        fromError(
          endpoint,
          response.status,
          response.headers,
          Either.getOrUndefined(body),
          raw === "" ? "(empty body)" : raw,
          now
        )
      )
    }
  )

const malformed = (endpoint: Endpoint, detail: string) =>
  new Errors.MalformedResponse({ endpoint: endpoint.name, detail: httpErrors.clip(scrub(detail, endpoint)) })

const parseIssue = (error: ParseResult.ParseError): string =>
  ParseResult.TreeFormatter.formatErrorSync(error).replace(/\s+/g, " ")

// ---------------------------------------------------------------------------
// streaming
// ---------------------------------------------------------------------------

const MessageStart = Schema.Struct({
  message: Schema.Struct({
    usage: Schema.optionalWith(
      Schema.Struct({
        input_tokens: Schema.optionalWith(Schema.NullOr(Schema.Number), { exact: true }),
        output_tokens: Schema.optionalWith(Schema.NullOr(Schema.Number), { exact: true })
      }),
      { exact: true }
    )
  })
})
const ContentBlockStart = Schema.Struct({
  content_block: Schema.Struct({ type: Schema.String, text: Schema.optionalWith(Schema.Unknown, { exact: true }) })
})
const ContentBlockDelta = Schema.Struct({
  delta: Schema.Struct({ type: Schema.String, text: Schema.optionalWith(Schema.Unknown, { exact: true }) })
})
const MessageDelta = Schema.Struct({
  delta: Schema.optionalWith(Schema.Struct({ stop_reason: StopReason }), { exact: true }),
  usage: Schema.optionalWith(
    Schema.Struct({
      input_tokens: Schema.optionalWith(Schema.NullOr(Schema.Number), { exact: true }),
      output_tokens: Schema.optionalWith(Schema.NullOr(Schema.Number), { exact: true })
    }),
    { exact: true }
  )
})

const decodeEvent = <A, I>(schema: Schema.Schema<A, I>) => Schema.decodeUnknownEither(Schema.parseJson(schema))
const decodeMessageStart = decodeEvent(MessageStart)
const decodeContentBlockStart = decodeEvent(ContentBlockStart)
const decodeContentBlockDelta = decodeEvent(ContentBlockDelta)
const decodeMessageDelta = decodeEvent(MessageDelta)

/** The parts of one stream's events: stateful, so one per response. */
const streamDecoder = (endpoint: Endpoint) => {
  let inputTokens: number | undefined
  let outputTokens: number | undefined
  let stopReason: string | null | undefined
  const read = <A>(event: Sse.Event, result: Either.Either<A, ParseResult.ParseError>) =>
    Either.mapLeft(
      result,
      (error) => malformed(endpoint, `a ${event.event} event could not be read: ${parseIssue(error)}`)
    )
  return (event: Sse.Event, now: number): Either.Either<ReadonlyArray<Chat.StreamPart>, Errors.ProviderError> => {
    switch (event.event) {
      case "message_start":
        return Either.map(read(event, decodeMessageStart(event.data)), ({ message }) => {
          inputTokens = Tokens.tokenCount(message.usage?.input_tokens) ?? inputTokens
          outputTokens = Tokens.tokenCount(message.usage?.output_tokens) ?? outputTokens
          return []
        })
      case "content_block_start":
        return Either.map(
          read(event, decodeContentBlockStart(event.data)),
          ({ content_block }) =>
            content_block.type === "text" && typeof content_block.text === "string" && content_block.text !== ""
              ? [Chat.StreamPart.Delta({ text: content_block.text })]
              : []
        )
      case "content_block_delta":
        return Either.flatMap(read(event, decodeContentBlockDelta(event.data)), ({ delta }) => {
          if (delta.type !== "text_delta") return Either.right([])
          if (typeof delta.text !== "string") return Either.left(malformed(endpoint, "a text_delta without text"))
          return Either.right(delta.text === "" ? [] : [Chat.StreamPart.Delta({ text: delta.text })])
        })
      case "message_delta":
        return Either.map(read(event, decodeMessageDelta(event.data)), ({ delta, usage }) => {
          if (delta?.stop_reason !== undefined && delta.stop_reason !== null) stopReason = delta.stop_reason
          inputTokens = Tokens.tokenCount(usage?.input_tokens) ?? inputTokens
          outputTokens = Tokens.tokenCount(usage?.output_tokens) ?? outputTokens
          return []
        })
      case "message_stop": {
        const usage: Usage | undefined = inputTokens === undefined && outputTokens === undefined
          ? undefined
          : { inputTokens: inputTokens ?? 0, outputTokens: outputTokens ?? 0 }
        return Either.right([Chat.StreamPart.Finish({ finishReason: finishReason(stopReason), usage })])
      }
      case "error": {
        const body = Either.getOrUndefined(decodeErrorBody(event.data))
        // an own property only: a type named "constructor" is no status
        const status = body !== undefined && Object.hasOwn(statusOfType, body.error.type)
          ? statusOfType[body.error.type]
          : 500
        return Either.left(fromError(endpoint, status, {}, body, `an error event: ${event.data}`, now))
      }
      default:
        // ping, content_block_stop, and event types added later
        return Either.right([])
    }
  }
}

const decodeStream = (
  endpoint: Endpoint,
  bytes: Stream.Stream<Uint8Array, Errors.ProviderError>
): Stream.Stream<Chat.StreamPart, Errors.ProviderError> =>
  Stream.suspend(() => {
    const decode = streamDecoder(endpoint)
    let finished = false
    return Sse.parse(bytes).pipe(
      Stream.mapEffect((event) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const parts = decode(event, now)
          if (Either.isRight(parts) && parts.right.some((p) => p._tag === "Finish")) finished = true
          return parts
        })
      ),
      Stream.flattenIterables,
      // the answer is whole at message_stop: stop reading (the connection is closed)
      Stream.takeUntil((part) => part._tag === "Finish"),
      Stream.concat(
        Stream.suspend(() =>
          finished ? Stream.empty : Stream.fail(malformed(endpoint, "the stream ended before message_stop"))
        )
      )
    )
  })

// ---------------------------------------------------------------------------
// the provider
// ---------------------------------------------------------------------------

const trimSlash = (url: string) => url.replace(/\/+$/, "")

/**
 * The Anthropic provider over the `HttpClient` in context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: Options): Effect.Effect<Provider, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const maxTokens = options?.defaultMaxTokens ?? defaults.defaultMaxTokens
    if (!Number.isInteger(maxTokens) || maxTokens <= 0) {
      return yield* Effect.dieMessage(`Anthropic.make: defaultMaxTokens must be a whole number greater than 0`)
    }
    // no @effect/platform spans: their exits hold the request with its key (see OpenAiCompatible)
    const client = HttpClient.withTracerDisabledWhen(yield* HttpClient.HttpClient, () => true)
    const version = options?.version ?? defaults.version
    const baseHeaders: Record<string, string> = {
      "anthropic-version": version,
      ...options?.headers,
      "content-type": "application/json"
    }

    const send = (
      endpoint: Endpoint,
      request: Chat.Request,
      stream: boolean
    ): Effect.Effect<HttpClientResponse.HttpClientResponse, Errors.ProviderError> =>
      Effect.gen(function*() {
        const body = yield* requestBody(endpoint, request, { defaultMaxTokens: maxTokens })
        if (stream) body.stream = true
        else delete body.stream
        const url = `${trimSlash(endpoint.baseUrl ?? options?.baseUrl ?? defaults.baseUrl)}/v1/messages`
        const headers = endpoint.apiKey === undefined
          ? baseHeaders
          : { ...baseHeaders, "x-api-key": Redacted.value(endpoint.apiKey) }
        const httpRequest = yield* HttpClientRequest.post(url).pipe(
          HttpClientRequest.setHeaders(stream ? { ...headers, accept: "text/event-stream" } : headers),
          HttpClientRequest.bodyJson(body),
          Effect.mapError((error) =>
            new Errors.BadRequest({
              endpoint: endpoint.name,
              detail: httpErrors.clip(
                `the body could not be encoded as JSON: ${httpErrors.describe(error.reason.error)}`
              )
            })
          )
        )
        const response = yield* Effect.mapError(
          client.execute(httpRequest),
          (error) => httpErrors.fromClientError(endpoint.name, error)
        )
        if (response.status < 200 || response.status >= 300) return yield* readError(endpoint, response)
        return response
      })

    const complete = (
      endpoint: Endpoint,
      request: Chat.Request
    ): Effect.Effect<Chat.Completion, Errors.ProviderError> =>
      Effect.gen(function*() {
        const response = yield* send(endpoint, request, false)
        const text = yield* Effect.mapError(response.text, (error) => httpErrors.fromClientError(endpoint.name, error))
        const now = yield* Clock.currentTimeMillis
        const message = decodeMessage(text)
        if (Either.isLeft(message)) {
          return yield* Effect.fail(
            new Errors.MalformedResponse({
              endpoint: endpoint.name,
              status: response.status,
              detail: httpErrors.clip(scrub(`the answer could not be read: ${parseIssue(message.left)}`, endpoint))
            })
          )
        }
        const { content, stop_reason, usage } = message.right
        const toolCalls = content.filter((block) => block.type === "tool_use")
        return {
          text: content.flatMap((block) => block.type === "text" && "text" in block ? [block.text] : []).join(""),
          finishReason: finishReason(stop_reason),
          usage: usage === undefined ? undefined : Tokens.usageOf(usage.input_tokens, usage.output_tokens),
          toolCalls: toolCalls.length === 0 ? undefined : toolCalls,
          rateLimit: RateLimit.remaining(response.headers, now)
        } satisfies Chat.Completion
      })

    const stream = (endpoint: Endpoint, request: Chat.Request): Stream.Stream<Chat.StreamPart, Errors.ProviderError> =>
      Stream.unwrap(
        Effect.gen(function*() {
          const response = yield* send(endpoint, request, true)
          const now = yield* Clock.currentTimeMillis
          const bytes = Stream.mapError(response.stream, (error) => httpErrors.fromClientError(endpoint.name, error))
          return Stream.concat(
            Stream.make(Chat.StreamPart.Start({ rateLimit: RateLimit.remaining(response.headers, now) })),
            decodeStream(endpoint, bytes)
          )
        })
      )

    return { complete, stream } satisfies Provider
  })
