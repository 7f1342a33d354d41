/**
 * Provider-neutral chat: the request every provider accepts, the response every provider
 * gives, and the parts of a streamed answer. Providers translate these to and from their
 * wire formats (see `OpenAiCompatible`, `Anthropic`).
 *
 * ```ts
 * import { Chat } from "effect-llm-balancer"
 *
 * const request = Chat.request({
 *   system: "You answer in one sentence.",
 *   messages: [{ role: "user", content: "What is a circuit breaker?" }],
 *   maxTokens: 200,
 *   group: "fast"
 * })
 * ```
 *
 * @since 0.1.0
 */
import { Data, Effect, Either, Schema } from "effect"
import type { Endpoint } from "../Endpoint.js"
import type { Attempt } from "../Errors.js"
import { InvalidRequest } from "../Errors.js"
import * as config from "../internal/config.js"
import * as schemas from "../internal/schemas.js"
import type { Usage } from "../Outcome.js"
import type { Remaining } from "../RateLimit.js"

/**
 * @since 0.1.0
 * @category schemas
 */
export const Role = Schema.Literal("system", "user", "assistant", "tool")

/**
 * One message of a conversation. `name` and `toolCallId` are passed through to providers
 * that know them.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Message = Schema.Struct({
  role: Role,
  content: Schema.String,
  name: Schema.optionalWith(schemas.NonEmpty, { exact: true }),
  toolCallId: Schema.optionalWith(schemas.NonEmpty, { exact: true })
}).annotations({ identifier: "Message" })

/**
 * @since 0.1.0
 * @category models
 */
export type Message = typeof Message.Type

/**
 * A chat request.
 *
 * - `system`: the system prompt (OpenAI-style providers send it as the first message,
 *   Anthropic as its `system` field). System messages in `messages` are joined to it.
 * - `maxTokens`: the most output tokens; also the estimate of the answer's length for
 *   capacity and cost routing. Anthropic requires one: its provider defaults to 1,024.
 * - `tools`, `toolChoice`, `extra`: passed through to the provider's body unchanged.
 * - `group`, `tags`: where the request may go (`Balancer.Hints`).
 *
 * @since 0.1.0
 * @category schemas
 */
export class Request extends Schema.Class<Request>("ChatRequest")({
  messages: Schema.Array(Message).pipe(Schema.minItems(1, { message: () => "must have at least one message" })),
  system: Schema.optionalWith(Schema.String, { exact: true }),
  maxTokens: Schema.optionalWith(schemas.PositiveInt, { exact: true }),
  temperature: Schema.optionalWith(
    Schema.Number.pipe(
      Schema.filter((n) => (Number.isFinite(n) && n >= 0 && n <= 2) || `must be a number from 0 to 2, got ${n}`)
    ),
    { exact: true }
  ),
  // a stop sequence is often only whitespace ("\n"): any non-empty string
  stop: Schema.optionalWith(
    Schema.Array(Schema.String.pipe(Schema.filter((s) => s.length > 0 || "must not be empty"))),
    { exact: true }
  ),
  tools: Schema.optionalWith(Schema.Array(Schema.Unknown), { exact: true }),
  toolChoice: Schema.optionalWith(Schema.Unknown, { exact: true }),
  /** Fields added to the provider's request body as they are (`top_p`, `seed`, ...). */
  extra: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), { exact: true }),
  group: Schema.optionalWith(schemas.NonEmpty, { exact: true }),
  tags: Schema.optionalWith(Schema.Array(schemas.NonEmpty), { exact: true })
}) {}

/**
 * What a caller writes: plain data.
 *
 * @since 0.1.0
 * @category models
 */
export type RequestInput = typeof Request.Encoded

/**
 * Decodes a request from plain data, failing with an `InvalidRequest` that names every
 * bad field.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decodeRequest = (input: unknown): Effect.Effect<Request, InvalidRequest> =>
  Effect.suspend(() => decodeRequestEither(input))

/**
 * @since 0.1.0
 * @category constructors
 */
export const decodeRequestEither = (input: unknown): Either.Either<Request, InvalidRequest> =>
  input instanceof Request
    ? Either.right(input)
    : Either.mapLeft(config.decodeAll(Request, input), (error) => new InvalidRequest({ issues: error.issues }))

/**
 * A request from plain data, for input known to be good (it throws on a bad one; use
 * {@link decodeRequest} for untrusted input).
 *
 * @since 0.1.0
 * @category constructors
 */
export const request = (input: RequestInput): Request => Either.getOrThrow(decodeRequestEither(input))

/**
 * Why the model stopped.
 *
 * @since 0.1.0
 * @category models
 */
export type FinishReason = "stop" | "length" | "tool-calls" | "content-filter" | "other"

/**
 * What a provider returns for one call, before routing adds where it was served.
 *
 * @since 0.1.0
 * @category models
 */
export interface Completion {
  readonly text: string
  readonly finishReason: FinishReason
  readonly usage: Usage | undefined
  /** Tool calls as the provider returned them (its own shape), when any. */
  readonly toolCalls: ReadonlyArray<unknown> | undefined
  /** What the provider's headers said is left of its limits. */
  readonly rateLimit: Remaining | undefined
}

/**
 * The answer of a routed call: the completion, the endpoint that gave it and every
 * attempt it took.
 *
 * @since 0.1.0
 * @category models
 */
export interface Response extends Completion {
  readonly endpoint: Endpoint
  readonly attempts: ReadonlyArray<Attempt>
}

/**
 * How a streamed answer ended: the last part of a provider's stream and of `Llm.stream`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Finished {
  readonly finishReason: FinishReason
  readonly usage: Usage | undefined
  /** Tool calls the stream carried, assembled (the provider's own shape), when any. */
  readonly toolCalls?: ReadonlyArray<unknown> | undefined
}

/**
 * A part of a streamed answer, as a provider emits it: `Start` when the answer begins (with
 * what the headers said of the limits), `Delta`s of text, and one `Finish` with the usage.
 * A stream that ends without `Finish` was cut short: providers fail it with
 * `MalformedResponse` instead.
 *
 * @since 0.1.0
 * @category models
 */
export type StreamPart = Data.TaggedEnum<{
  Start: { readonly rateLimit: Remaining | undefined }
  Delta: { readonly text: string }
  Finish: Finished
}>

/**
 * @since 0.1.0
 * @category constructors
 */
export const StreamPart = Data.taggedEnum<StreamPart>()

/**
 * A part of a routed stream, as `Llm.stream` emits it: the first part names the endpoint
 * that serves the stream, then text deltas, then the finish with usage.
 *
 * @since 0.1.0
 * @category models
 */
export type StreamEvent = Data.TaggedEnum<{
  Started: { readonly endpoint: Endpoint; readonly attempts: ReadonlyArray<Attempt> }
  Delta: { readonly text: string }
  Finish: Finished
}>

/**
 * @since 0.1.0
 * @category constructors
 */
export const StreamEvent = Data.taggedEnum<StreamEvent>()

/**
 * A rough estimate of a request's input tokens, for routing before the provider counts
 * them: about 4 characters per token (OpenAI's rule of thumb for English), plus 4 per
 * message for the framing. It only has to be close; usage corrects it when the call ends.
 *
 * @since 0.1.0
 * @category getters
 */
export const estimateInputTokens = (request: Request): number => {
  let chars = request.system?.length ?? 0
  for (const m of request.messages) chars += m.content.length
  return Math.ceil(chars / 4) + 4 * (request.messages.length + (request.system === undefined ? 0 : 1))
}

/**
 * The system prompt with any system messages joined to it, and the other messages.
 *
 * @since 0.1.0
 * @category getters
 */
export const splitSystem = (
  request: Request
): { readonly system: string | undefined; readonly messages: ReadonlyArray<Message> } => {
  const parts = request.system === undefined ? [] : [request.system]
  const messages: Array<Message> = []
  for (const m of request.messages) {
    if (m.role === "system") parts.push(m.content)
    else messages.push(m)
  }
  return { system: parts.length === 0 ? undefined : parts.join("\n\n"), messages }
}
