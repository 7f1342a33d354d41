import { Duration, Option, ParseResult, Schema } from "effect"

export const NonEmptyName = Schema.String.pipe(
  Schema.filter((s) => s.trim().length > 0 || "must not be empty"),
  Schema.filter((s) => s.trim() === s || "must not have leading or trailing spaces")
)

export const NonEmpty = Schema.String.pipe(Schema.filter((s) => s.trim().length > 0 || "must not be empty"))

export const PositiveFinite = Schema.Number.pipe(
  Schema.filter((n) => (Number.isFinite(n) && n > 0) || `must be a finite number greater than 0, got ${n}`)
)

export const NonNegativeFinite = Schema.Number.pipe(
  Schema.filter((n) => (Number.isFinite(n) && n >= 0) || `must be a finite number of at least 0, got ${n}`)
)

export const PositiveInt = Schema.Number.pipe(
  Schema.filter((n) => (Number.isInteger(n) && n > 0) || `must be a whole number greater than 0, got ${n}`)
)

export const NonNegativeInt = Schema.Number.pipe(
  Schema.filter((n) => (Number.isInteger(n) && n >= 0) || `must be a whole number of at least 0, got ${n}`)
)

export const Ratio = Schema.Number.pipe(
  Schema.filter((n) => (Number.isFinite(n) && n >= 0 && n <= 1) || `must be a number from 0 to 1, got ${n}`)
)

/** Shows a bad value in a message without ever throwing (`String` throws on some objects). */
export const show = (input: unknown): string => {
  if (typeof input === "string") return `"${input}"`
  if (typeof input === "number" || typeof input === "boolean" || input === null || input === undefined) {
    return String(input)
  }
  return Array.isArray(input) ? "an array" : `a value of type ${typeof input}`
}

const durationMessage = (input: unknown) =>
  `must be a duration such as "30 seconds", "500 millis" or a number of milliseconds, got ${show(input)}`

/** A `Duration`, a number of milliseconds, or a string such as `"30 seconds"` (or `"1500"`, in ms). */
export const DurationInput = Schema.transformOrFail(Schema.Unknown, Schema.DurationFromSelf, {
  strict: true,
  decode: (input, _, ast) => {
    const fail = (message: string) => ParseResult.fail(new ParseResult.Type(ast, input, message))
    let duration: Duration.Duration
    if (Duration.isDuration(input)) duration = input
    else if (typeof input === "number") {
      if (!Number.isFinite(input)) return fail(durationMessage(input))
      duration = Duration.millis(Math.max(0, input))
      if (input < 0) return fail(`must not be negative, got ${input}`)
    } else if (typeof input === "string") {
      const text = input.trim()
      // a bare number in a string (as configuration providers deliver numbers) is milliseconds
      const asNumber = text === "" ? NaN : Number(text)
      if (Number.isFinite(asNumber)) {
        if (asNumber < 0) return fail(`must not be negative, got "${input}"`)
        duration = Duration.millis(asNumber)
      } else {
        // Duration.decode clamps "-5 seconds" to zero; a negative duration is a mistake
        if (text.startsWith("-")) return fail(`must not be negative, got "${input}"`)
        const decoded = Duration.decodeUnknown(text)
        if (Option.isNone(decoded)) return fail(durationMessage(input))
        duration = decoded.value
      }
    } else return fail(durationMessage(input))
    return Duration.lessThan(duration, Duration.zero)
      ? fail(`must not be negative, got ${show(input)}`)
      : ParseResult.succeed(duration)
  },
  encode: (d) => ParseResult.succeed(d)
}).annotations({ identifier: "DurationInput" }) as unknown as Schema.Schema<
  Duration.Duration,
  Duration.Duration | number | string
>
