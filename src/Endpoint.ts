/**
 * The configuration of one endpoint: a provider, a model and the account or deployment
 * that serves it, with the weight, tier, limits and prices the balancer routes by.
 *
 * Decode untrusted input (a JSON file, the environment) with {@link decode}: it fails
 * with an `InvalidConfig` that names every bad field.
 *
 * @since 0.1.0
 */
import type { Either } from "effect"
import { Duration, Effect, Option, ParseResult, Redacted, Schema } from "effect"
import type { InvalidConfig } from "./Errors.js"
import * as config from "./internal/config.js"
import * as schemas from "./internal/schemas.js"

const { NonEmpty, NonEmptyName, NonNegativeFinite, NonNegativeInt, PositiveFinite, PositiveInt, Ratio } = schemas

/**
 * A duration given as a `Duration`, a number of milliseconds, or a string such as
 * `"30 seconds"`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DurationInput = schemas.DurationInput

/**
 * An API key: a `Redacted` value, or a string that is wrapped in `Redacted` on decoding.
 * It is never printed, logged or put into stats, events or error messages.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ApiKey = Schema.transformOrFail(Schema.Unknown, Schema.RedactedFromSelf(Schema.String), {
  strict: true,
  decode: (input, _, ast) =>
    Redacted.isRedacted(input) && typeof Redacted.value(input) === "string"
      ? ParseResult.succeed(input as Redacted.Redacted<string>)
      : typeof input === "string" && input.trim().length > 0
      ? ParseResult.succeed(Redacted.make(input))
      // the message never shows the value: it may be a key
      : ParseResult.fail(new ParseResult.Type(ast, "<redacted>", "must be a non-empty string or a Redacted string")),
  encode: ParseResult.succeed
}).annotations({ identifier: "ApiKey" }) as unknown as Schema.Schema<
  Redacted.Redacted<string>,
  Redacted.Redacted<string> | string
>

/**
 * Request limits of the endpoint's account or deployment, per minute and per day.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Limits = Schema.Struct({
  /** requests per minute */
  rpm: Schema.optionalWith(PositiveInt, { exact: true }),
  /** tokens per minute (input + output) */
  tpm: Schema.optionalWith(PositiveInt, { exact: true }),
  /** requests per day */
  rpd: Schema.optionalWith(PositiveInt, { exact: true })
}).annotations({ identifier: "Limits" })

/**
 * Prices in the provider's currency (usually US dollars) per million tokens.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Cost = Schema.Struct({
  inputPerMillion: NonNegativeFinite,
  outputPerMillion: NonNegativeFinite
}).annotations({ identifier: "Cost" })

/**
 * A spend cap: at most `limit` (in the currency of `cost`) per `period`. Periods are
 * aligned to the Unix epoch (a `"1 day"` period runs from midnight UTC to midnight UTC)
 * and spend is counted from the usage calls report, priced by `cost`. Past `softLimit`
 * (a share of `limit`) the balancer prefers cheaper endpoints; at `limit`, what the cap
 * covers stops taking calls until the period rolls over.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Budget = Schema.Struct({
  limit: PositiveFinite,
  period: Schema.optionalWith(
    DurationInput.pipe(
      Schema.filter((d) => Duration.toMillis(d) > 0 || "must be longer than 0")
    ),
    { default: () => Duration.days(1), exact: true }
  ),
  softLimit: Schema.optionalWith(Ratio, { default: () => 0.8, exact: true })
}).annotations({ identifier: "Budget" })

/**
 * @since 0.1.0
 * @category models
 */
export type Budget = typeof Budget.Type

/**
 * One endpoint. Construct it from plain data with {@link decode} (or pass plain data to
 * `Balancer.layer`, which decodes it); `new Endpoint(...)` validates too but throws.
 *
 * @since 0.1.0
 * @category models
 */
export class Endpoint extends Schema.Class<Endpoint>("Endpoint")({
  /** Unique within one balancer; used in stats, events and errors. */
  name: NonEmptyName,
  /** Which provider implementation serves it, for example `"openai"` or `"anthropic"`. */
  provider: NonEmpty,
  /** The provider's model id, for example `"gpt-4o-mini"`. */
  model: NonEmpty,
  /** The base URL of the API; providers have their own default. */
  baseUrl: Schema.optionalWith(
    Schema.String.pipe(
      Schema.filter((s) => /^[a-z][a-z0-9+.-]*:\/\/[^\s/?#]+[^\s]*$/i.test(s) || `must be an absolute URL, got "${s}"`)
    ),
    { exact: true }
  ),
  apiKey: Schema.optionalWith(ApiKey, { exact: true }),
  /** Relative share of traffic for weighted strategies; greater than 0. */
  weight: Schema.optionalWith(PositiveFinite, { default: () => 1, exact: true }),
  /** Fallback tier: 0 is tried first; higher tiers serve only when lower ones cannot. */
  priority: Schema.optionalWith(NonNegativeInt, { default: () => 0, exact: true }),
  /** Free-form labels a request can require (`region:eu`, `vision`). */
  tags: Schema.optionalWith(Schema.Array(NonEmpty), { default: () => [], exact: true }),
  /** At most this many calls in flight at once. */
  maxConcurrency: Schema.optionalWith(PositiveInt, { exact: true }),
  limits: Schema.optionalWith(Limits, { exact: true }),
  cost: Schema.optionalWith(Cost, { exact: true }),
  /** A spend cap for this endpoint alone (the balancer can have one for all of them). */
  budget: Schema.optionalWith(Budget, { exact: true }),
  /**
   * The logical model it serves, which requests name to be routed among equivalents
   * (`"fast"`, `"gpt-4o-class"`); when absent, the endpoint's group is its `model`.
   */
  group: Schema.optionalWith(NonEmpty, { exact: true }),
  /** Input + output tokens the model accepts. */
  contextWindow: Schema.optionalWith(PositiveInt, { exact: true }),
  /**
   * Endpoints that share one API key or account: a 429 from one of them cools them all
   * down, since the provider's limit is theirs together.
   */
  quotaGroup: Schema.optionalWith(NonEmpty, { exact: true }),
  /** Consecutive failures that open the circuit; overrides the balancer's health policy. */
  maxFailures: Schema.optionalWith(PositiveInt, { exact: true }),
  /** How long an open circuit stays open before a probe; overrides the balancer's health policy. */
  recoveryTimeout: Schema.optionalWith(DurationInput, { exact: true })
}) {}

/**
 * What a user writes to describe an endpoint: plain data, with the defaults optional.
 *
 * @since 0.1.0
 * @category models
 */
export type Input = typeof Endpoint.Encoded

/**
 * Decodes one endpoint from unknown input. Fails with an `InvalidConfig` naming every bad
 * field; unknown keys are rejected too, since they are almost always typos.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decode = (input: unknown): Effect.Effect<Endpoint, InvalidConfig> =>
  Effect.suspend(() => config.decodeAll(Endpoint, input))

/**
 * The same as {@link decode}, synchronously, as an `Either`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decodeEither = (input: unknown): Either.Either<Endpoint, InvalidConfig> =>
  config.decodeAll(Endpoint, input)

/**
 * The key the endpoint authenticates with, if any; `Redacted.value` unwraps it at the
 * last moment, when a provider builds the request header.
 *
 * @since 0.1.0
 * @category getters
 */
export const apiKey = (endpoint: Endpoint): Option.Option<Redacted.Redacted<string>> =>
  Option.fromNullable(endpoint.apiKey)

/**
 * The model group the endpoint serves: its `group`, or else its `model`.
 *
 * @since 0.1.0
 * @category getters
 */
export const groupOf = (endpoint: Endpoint): string => endpoint.group ?? endpoint.model

/**
 * What a request is expected to cost on the endpoint, from its estimated tokens and the
 * endpoint's `cost`: `undefined` when the endpoint has no prices. Without an estimate
 * (both 0) it is the price of a million input and a million output tokens, which ranks
 * endpoints the same way for a typical request.
 *
 * @since 0.1.0
 * @category getters
 */
export const priceOf = (endpoint: Endpoint, inputTokens: number, outputTokens: number): number | undefined => {
  const cost = endpoint.cost
  if (cost === undefined) return undefined
  if (inputTokens === 0 && outputTokens === 0) return cost.inputPerMillion + cost.outputPerMillion
  return (inputTokens * cost.inputPerMillion + outputTokens * cost.outputPerMillion) / 1_000_000
}
