import { Config, ConfigError, Effect, Option } from "effect"
import type { Options } from "../Balancer.js"
import type { ConfigIssue } from "../Errors.js"
import { InvalidConfig } from "../Errors.js"

/**
 * Every field is read as optional here and checked by the same schemas that check
 * options given in code, so a missing or bad value gets the same message either way.
 */
const opt = <A>(config: Config.Config<A>): Config.Config<A | undefined> =>
  Config.map(Config.option(config), Option.getOrUndefined)

/** Drops absent keys (so `exactOptionalPropertyTypes` holds) and empty sections. */
const compact = <A extends Record<string, unknown>>(record: A): A | undefined => {
  const entries = Object.entries(record).filter(([, v]) => v !== undefined)
  return entries.length === 0 ? undefined : Object.fromEntries(entries) as A
}

const section = <A extends Record<string, Config.Config<unknown>>>(name: string, fields: A) =>
  Config.nested(Config.map(Config.all(fields), (record) => compact(record as Record<string, unknown>)), name)

const endpoint = Config.map(
  Config.all({
    name: opt(Config.string("name")),
    provider: opt(Config.string("provider")),
    model: opt(Config.string("model")),
    baseUrl: opt(Config.string("baseUrl")),
    apiKey: opt(Config.redacted("apiKey")),
    weight: opt(Config.number("weight")),
    priority: opt(Config.number("priority")),
    // ConfigProvider.fromJson keeps an empty array as the marker "<nil>"
    tags: opt(Config.map(Config.array(Config.string(), "tags"), (tags) => tags.filter((t) => t !== "<nil>"))),
    maxConcurrency: opt(Config.number("maxConcurrency")),
    limits: section("limits", {
      rpm: opt(Config.number("rpm")),
      tpm: opt(Config.number("tpm")),
      rpd: opt(Config.number("rpd"))
    }),
    cost: section("cost", {
      inputPerMillion: opt(Config.number("inputPerMillion")),
      outputPerMillion: opt(Config.number("outputPerMillion"))
    }),
    budget: section("budget", {
      limit: opt(Config.number("limit")),
      period: opt(Config.string("period")),
      softLimit: opt(Config.number("softLimit"))
    }),
    group: opt(Config.string("group")),
    contextWindow: opt(Config.number("contextWindow")),
    quotaGroup: opt(Config.string("quotaGroup")),
    maxFailures: opt(Config.number("maxFailures")),
    recoveryTimeout: opt(Config.string("recoveryTimeout"))
  }),
  (record) => compact(record) ?? {}
)

export const options: Config.Config<Options> = Config.map(
  Config.all({
    // A missing or empty list reads as one endpoint with no fields: drop it, and let the
    // check below say that no endpoint is configured. An empty record among others stays,
    // so every issue keeps its endpoint's index.
    endpoints: Config.map(
      Config.array(endpoint, "endpoints"),
      (list) => list.every((e) => Object.keys(e).length === 0) ? [] : list
    ),
    strategy: opt(Config.string("strategy")),
    panic: opt(Config.boolean("panic")),
    budget: section("budget", {
      limit: opt(Config.number("limit")),
      period: opt(Config.string("period")),
      softLimit: opt(Config.number("softLimit"))
    }),
    health: section("health", {
      maxFailures: opt(Config.number("maxFailures")),
      failureRateThreshold: opt(Config.number("failureRateThreshold")),
      failureRateMinRequests: opt(Config.number("failureRateMinRequests")),
      recoveryTimeout: opt(Config.string("recoveryTimeout")),
      recoveryFactor: opt(Config.number("recoveryFactor")),
      maxRecoveryTimeout: opt(Config.string("maxRecoveryTimeout")),
      halfOpenProbes: opt(Config.number("halfOpenProbes")),
      halfOpenSuccesses: opt(Config.number("halfOpenSuccesses")),
      slowStart: opt(Config.string("slowStart")),
      latencyDecay: opt(Config.string("latencyDecay")),
      rateLimitCooldown: opt(Config.string("rateLimitCooldown")),
      maxCooldown: opt(Config.string("maxCooldown")),
      window: opt(Config.string("window")),
      degradedErrorRate: opt(Config.number("degradedErrorRate")),
      degradedMinRequests: opt(Config.number("degradedMinRequests")),
      degradedLatency: opt(Config.string("degradedLatency"))
    })
  }),
  (record) => compact(record) as unknown as Options
)

export const nested = (name: string): Config.Config<Options> => Config.nested(options, name)

/** `["balancer", "endpoints", "[0]", "weight"]` -> `balancer.endpoints[0].weight` */
const pathOf = (path: ReadonlyArray<string>) => path.join(".").replaceAll(".[", "[")

const issuesOf = (error: ConfigError.ConfigError): Array<ConfigIssue> =>
  ConfigError.reduceWithContext(error, undefined, {
    andCase: (_, left: Array<ConfigIssue>, right: Array<ConfigIssue>) => [...left, ...right],
    orCase: (_, left: Array<ConfigIssue>, right: Array<ConfigIssue>) => [...left, ...right],
    invalidDataCase: (_, path, message) => [{ path: pathOf(path), message }],
    missingDataCase: (_, path, message) => [{ path: pathOf(path), message }],
    sourceUnavailableCase: (_, path, message) => [{ path: pathOf(path), message }],
    unsupportedCase: (_, path, message) => [{ path: pathOf(path), message }]
  })

/**
 * Reads a configuration, turning `ConfigError`s into an `InvalidConfig` naming each field,
 * and requires at least one endpoint (an empty list in a file is almost always a mistake;
 * add endpoints at run time with `Balancer.layer` instead).
 */
export const load = (config: Config.Config<Options>, prefix: string): Effect.Effect<Options, InvalidConfig> =>
  Effect.flatMap(
    Effect.mapError(config, (error) => new InvalidConfig({ issues: issuesOf(error) })),
    (options) =>
      Array.from(options.endpoints).length === 0
        ? Effect.fail(
          new InvalidConfig({
            issues: [{
              path: prefix === "" ? "endpoints" : `${prefix}.endpoints`,
              message: "is missing or empty: configure at least one endpoint"
            }]
          })
        )
        : Effect.succeed(options)
  )
