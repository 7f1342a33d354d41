import { Either, ParseResult, Schema } from "effect"
import type { ConfigIssue } from "../Errors.js"
import { InvalidConfig } from "../Errors.js"

/** `["endpoints", 1, "weight"]` -> `endpoints[1].weight` */
export const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (acc, key) => typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`,
    ""
  )

export const issuesOf = (error: ParseResult.ParseError, prefix: ReadonlyArray<PropertyKey> = []) =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((issue): ConfigIssue => ({
    path: formatPath([...prefix, ...issue.path]),
    message: issue.message
  }))

/**
 * Decodes unknown input, reporting every bad field (`errors: "all"`) and rejecting
 * unknown keys, which are almost always typos (`wieght`).
 */
export const decodeAll = <A, I>(
  schema: Schema.Schema<A, I, never>,
  input: unknown,
  prefix: ReadonlyArray<PropertyKey> = []
): Either.Either<A, InvalidConfig> => {
  try {
    return Schema.decodeUnknownEither(schema, { errors: "all", onExcessProperty: "error" })(input).pipe(
      Either.mapLeft((error) => new InvalidConfig({ issues: issuesOf(error, prefix) }))
    )
  } catch (error) {
    // Schema's own messages call String() on the input, which throws for objects such as
    // { toString: 0 }: the input is still bad, not a defect
    return Either.left(
      new InvalidConfig({
        issues: [{ path: prefix.map(String).join("."), message: `could not be read: ${errorText(error)}` }]
      })
    )
  }
}

const errorText = (error: unknown): string => error instanceof Error ? error.message : "an unreadable value"
