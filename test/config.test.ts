/**
 * Bad configurations: every one must fail with an `InvalidConfig` whose `issues` name
 * the bad field (`path`) and say what is wrong with it, and no message, stats or
 * serialized endpoint may ever show an API key.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, ConfigProvider, Duration, Effect, Either, Exit, FastCheck, Layer, Option, Redacted } from "effect"
import * as Balancer from "../src/Balancer.js"
import * as Endpoint from "../src/Endpoint.js"
import type * as Errors from "../src/Errors.js"
import * as Outcome from "../src/Outcome.js"
import * as Strategy from "../src/Strategy.js"

const CANARY = "sk-canary-123"

const base = { name: "a", provider: "openai", model: "gpt-4o-mini" } as const
const other = { name: "b", provider: "anthropic", model: "claude-3-5-haiku-latest" } as const

/** Bad input is deliberately outside the types. */
const optionsOf = (input: unknown): Balancer.Options => input as Balancer.Options
const inputOf = (input: unknown): Endpoint.Input => input as Endpoint.Input

const makeError = (options: Balancer.Options) => Effect.scoped(Effect.flip(Balancer.make(options)))

const layerError = (options: Balancer.Options) =>
  Effect.flip(Effect.provide(Balancer.Balancer, Balancer.layer(options)))

const withProvider = (provider: ConfigProvider.ConfigProvider) =>
  Layer.provide(Balancer.BalancerLive, Layer.setConfigProvider(provider))

const configError = (provider: ConfigProvider.ConfigProvider) =>
  Effect.flip(Effect.provide(Balancer.Balancer, withProvider(provider)))

const expectIssue = (error: Errors.InvalidConfig, path: string, fragment: string) => {
  expect(error._tag).toBe("InvalidConfig")
  expect(error.issues.length).toBeGreaterThanOrEqual(1)
  expect(error.issues).toContainEqual({ path, message: expect.stringContaining(fragment) })
  // the rendered message names the field too
  expect(error.message).toContain(path === "" ? "(root)" : path)
}

const expectNoCanary = (text: string) => expect(text).not.toContain(CANARY)

const leftOf = <A>(either: Either.Either<A, Errors.InvalidConfig>): Errors.InvalidConfig => {
  if (Either.isRight(either)) throw new Error(`expected an InvalidConfig, decoded ${JSON.stringify(either.right)}`)
  return either.left
}

interface FieldCase {
  readonly label: string
  /** The whole endpoint input. */
  readonly input: unknown
  /** Path of the issue relative to the endpoint. */
  readonly path: string
  readonly fragment: string
}

const fieldCase = (label: string, patch: Record<string, unknown>, path: string, fragment: string): FieldCase => ({
  label,
  input: { ...base, ...patch },
  path,
  fragment
})

const fieldCases: ReadonlyArray<FieldCase> = [
  fieldCase("negative weight", { weight: -1 }, "weight", "must be a finite number greater than 0, got -1"),
  fieldCase("zero weight", { weight: 0 }, "weight", "greater than 0, got 0"),
  fieldCase("NaN weight", { weight: NaN }, "weight", "got NaN"),
  fieldCase("Infinity weight", { weight: Infinity }, "weight", "got Infinity"),
  fieldCase("-Infinity weight", { weight: -Infinity }, "weight", "got -Infinity"),
  fieldCase("weight given as a string", { weight: "2" }, "weight", "Expected number"),
  fieldCase("empty name", { name: "" }, "name", "must not be empty"),
  fieldCase("blank name", { name: "   " }, "name", "must not be empty"),
  fieldCase("name with spaces around", { name: " a " }, "name", "must not have leading or trailing spaces"),
  fieldCase("name with a trailing newline", { name: "a\n" }, "name", "leading or trailing spaces"),
  fieldCase("name of the wrong type", { name: 7 }, "name", "Expected string"),
  { label: "missing provider", input: { name: "a", model: "m" }, path: "provider", fragment: "is missing" },
  { label: "missing model", input: { name: "a", provider: "openai" }, path: "model", fragment: "is missing" },
  { label: "missing name", input: { provider: "openai", model: "m" }, path: "name", fragment: "is missing" },
  fieldCase("empty provider", { provider: "" }, "provider", "must not be empty"),
  fieldCase("blank model", { model: " " }, "model", "must not be empty"),
  fieldCase("non-integer priority", { priority: 1.5 }, "priority", "must be a whole number of at least 0, got 1.5"),
  fieldCase("negative priority", { priority: -1 }, "priority", "at least 0, got -1"),
  fieldCase("zero rpm", { limits: { rpm: 0 } }, "limits.rpm", "must be a whole number greater than 0, got 0"),
  fieldCase("fractional tpm", { limits: { tpm: 1.5 } }, "limits.tpm", "whole number greater than 0, got 1.5"),
  fieldCase("negative rpd", { limits: { rpd: -3 } }, "limits.rpd", "got -3"),
  fieldCase("typo inside limits", { limits: { rmp: 10 } }, "limits.rmp", "is unexpected"),
  fieldCase(
    "negative cost",
    { cost: { inputPerMillion: -1, outputPerMillion: 1 } },
    "cost.inputPerMillion",
    "must be a finite number of at least 0, got -1"
  ),
  fieldCase("cost without output price", { cost: { inputPerMillion: 1 } }, "cost.outputPerMillion", "is missing"),
  fieldCase(
    "infinite cost",
    { cost: { inputPerMillion: 1, outputPerMillion: Infinity } },
    "cost.outputPerMillion",
    "got Infinity"
  ),
  fieldCase("unparsable duration", { recoveryTimeout: "soon" }, "recoveryTimeout", "must be a duration such as"),
  fieldCase("unparsable duration names the value", { recoveryTimeout: "soon" }, "recoveryTimeout", "got \"soon\""),
  fieldCase("negative duration (number)", { recoveryTimeout: -5 }, "recoveryTimeout", "must not be negative, got -5"),
  fieldCase("negative duration (numeric string)", { recoveryTimeout: "-5" }, "recoveryTimeout", "must not be negative"),
  fieldCase("NaN duration", { recoveryTimeout: NaN }, "recoveryTimeout", "got NaN"),
  fieldCase("duration of the wrong type", { recoveryTimeout: true }, "recoveryTimeout", "must be a duration"),
  fieldCase("unknown key typo", { wieght: 2 }, "wieght", "is unexpected"),
  fieldCase("bad baseUrl", { baseUrl: "not a url" }, "baseUrl", "must be an absolute URL, got \"not a url\""),
  fieldCase("baseUrl without a scheme", { baseUrl: "api.openai.com/v1" }, "baseUrl", "must be an absolute URL"),
  fieldCase("empty tag", { tags: ["region:eu", ""] }, "tags[1]", "must not be empty"),
  fieldCase("tags not an array", { tags: "vision" }, "tags", "Expected"),
  fieldCase("zero maxConcurrency", { maxConcurrency: 0 }, "maxConcurrency", "greater than 0, got 0"),
  fieldCase("fractional contextWindow", { contextWindow: 1.5 }, "contextWindow", "whole number"),
  fieldCase("zero maxFailures", { maxFailures: 0 }, "maxFailures", "greater than 0, got 0"),
  fieldCase("apiKey of the wrong type", { apiKey: 12345 }, "apiKey", "must be a non-empty string or a Redacted string"),
  fieldCase("empty apiKey", { apiKey: "" }, "apiKey", "must be a non-empty string"),
  fieldCase("explicit undefined for an optional field", { weight: undefined }, "weight", "Expected number"),
  fieldCase("zero budget", { budget: { limit: 0 } }, "budget.limit", "must be a finite number greater than 0, got 0"),
  fieldCase("budget without a limit", { budget: { period: "1 day" } }, "budget.limit", "is missing"),
  fieldCase("budget period of 0", { budget: { limit: 5, period: "0 seconds" } }, "budget.period", "longer than 0"),
  fieldCase("budget period unparsable", { budget: { limit: 5, period: "monthly" } }, "budget.period", "duration"),
  fieldCase(
    "budget softLimit above 1",
    { budget: { limit: 5, softLimit: 2 } },
    "budget.softLimit",
    "must be a number from 0 to 1, got 2"
  ),
  fieldCase("typo inside budget", { budget: { limit: 5, limt: 1 } }, "budget.limt", "is unexpected"),
  fieldCase("empty group", { group: "" }, "group", "must not be empty"),
  { label: "endpoint not an object", input: 42, path: "", fragment: "Expected" },
  { label: "endpoint is null", input: null, path: "", fragment: "Expected" },
  { label: "endpoint is an array", input: [], path: "", fragment: "Expected" }
]

describe("bad endpoint fields", () => {
  it("covers at least 20 kinds of bad configuration", () => {
    expect(fieldCases.length).toBeGreaterThanOrEqual(20)
  })

  for (const c of fieldCases) {
    describe(c.label, () => {
      it("Endpoint.decodeEither", () => {
        expectIssue(leftOf(Endpoint.decodeEither(c.input)), c.path, c.fragment)
      })

      it.effect("Endpoint.decode", () =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(Endpoint.decode(c.input))
          expectIssue(error, c.path, c.fragment)
        }))

      it.effect("Balancer.make, with the endpoint's index in the path", () =>
        Effect.gen(function*() {
          const error = yield* makeError(optionsOf({ endpoints: [other, c.input] }))
          expectIssue(error, c.path === "" ? "endpoints[1]" : `endpoints[1].${c.path}`, c.fragment)
          // the good endpoint has no issue
          expect(error.issues.every((i) => i.path.startsWith("endpoints[1]"))).toBe(true)
        }))

      it.effect("Balancer.layer", () =>
        Effect.gen(function*() {
          const error = yield* layerError(optionsOf({ endpoints: [c.input] }))
          expectIssue(error, c.path === "" ? "endpoints[0]" : `endpoints[0].${c.path}`, c.fragment)
        }))
    })
  }

  // Guards against a negative duration with a unit ("-5 seconds") being clamped to 0 and accepted.
  it("a negative duration with a unit is rejected", () => {
    for (const recoveryTimeout of ["-5 seconds", "-1 minute", "-0.5 millis"]) {
      expectIssue(
        leftOf(Endpoint.decodeEither({ ...base, recoveryTimeout })),
        "recoveryTimeout",
        "must not be negative"
      )
    }
  })
})

// Guards against decoding throwing or dying on a duration whose `toString` is not a function.
describe("a duration that cannot be stringified", () => {
  const input: unknown = JSON.parse("{\"toString\": 0}")

  it("Endpoint.decodeEither fails with InvalidConfig, never throws", () => {
    const decode = () => Endpoint.decodeEither({ ...base, recoveryTimeout: input })
    expect(decode).not.toThrow()
    expectIssue(leftOf(decode()), "recoveryTimeout", "must be a duration")
  })

  it.effect("Balancer.make fails with InvalidConfig, never dies", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.scoped(Balancer.make(optionsOf({ endpoints: [base], health: { window: input } })))
      )
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause), "Balancer.make died").toBe(false)
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        const error = Cause.failureOption(exit.cause)
        expect(Option.isSome(error)).toBe(true)
        if (Option.isSome(error)) expectIssue(error.value, "health.window", "must be a duration")
      }
    }))
})

describe("API keys never show", () => {
  const badKeys: ReadonlyArray<unknown> = [
    { value: CANARY },
    [CANARY],
    { key: CANARY, nested: { again: CANARY } },
    Redacted.make(12345),
    Redacted.make({ key: CANARY })
  ]

  it("an apiKey of the wrong type is reported without its value", () => {
    for (const apiKey of badKeys) {
      const error = leftOf(Endpoint.decodeEither({ ...base, apiKey }))
      expectIssue(error, "apiKey", "must be a non-empty string or a Redacted string")
      expectNoCanary(error.message)
      expectNoCanary(JSON.stringify(error.issues))
      expect(error.message).not.toContain("12345")
    }
  })

  it("a misspelled apiKey key is reported without its value", () => {
    for (const key of ["apikey", "api_key", "apiKEY", "key"]) {
      const error = leftOf(Endpoint.decodeEither({ ...base, [key]: CANARY }))
      expectIssue(error, key, "is unexpected")
      expectNoCanary(error.message)
      expectNoCanary(JSON.stringify(error))
    }
  })

  it.scoped("a good key next to bad fields does not show in the error", () =>
    Effect.gen(function*() {
      const error = yield* makeError(
        optionsOf({
          endpoints: [{ ...base, apiKey: CANARY, weight: -1, wieght: 2 }, { ...base, apiKey: CANARY }],
          strategy: "nope"
        })
      )
      expect(error.issues.length).toBe(4)
      expectNoCanary(error.message)
      expectNoCanary(JSON.stringify(error))
      expectNoCanary(String(error))
      expectNoCanary(Cause.pretty(Cause.fail(error)))
    }))

  it.scoped("stats, endpoints and their string forms never contain the key", () =>
    Effect.gen(function*() {
      const balancer = yield* Balancer.make({ endpoints: [{ ...base, apiKey: CANARY }, { ...other, apiKey: CANARY }] })
      yield* Effect.flip(balancer.use(() => Effect.fail("boom")))
      yield* balancer.use(() => Effect.void)
      const stats = yield* balancer.stats
      expect(stats.length).toBe(2)
      expectNoCanary(JSON.stringify(stats))
      const endpoints = yield* balancer.endpoints
      expectNoCanary(JSON.stringify(endpoints))
      for (const endpoint of endpoints) {
        expectNoCanary(String(endpoint))
        expectNoCanary(String(endpoint.apiKey))
        // it is still there for the provider that needs it
        expect(Option.map(Endpoint.apiKey(endpoint), Redacted.value)).toEqual(Option.some(CANARY))
      }
    }))
})

describe("bad balancer options", () => {
  it.scoped("duplicate names, naming both places", () =>
    Effect.gen(function*() {
      const error = yield* makeError({ endpoints: [base, other, { ...base, model: "gpt-4o" }] })
      expect(error.issues).toEqual([
        { path: "endpoints[2].name", message: "duplicate endpoint name \"a\" (also endpoints[0])" }
      ])
    }))

  it.effect("duplicate names between a decoded Endpoint and plain data", () =>
    Effect.gen(function*() {
      const decoded = Either.getOrThrow(Endpoint.decodeEither(base))
      const error = yield* makeError({ endpoints: [decoded, base] })
      expectIssue(error, "endpoints[1].name", "duplicate endpoint name \"a\"")
    }))

  it.effect("unknown strategy name, listing the built-ins", () =>
    Effect.gen(function*() {
      const error = yield* makeError(optionsOf({ endpoints: [base], strategy: "fastest" }))
      expectIssue(error, "strategy", "unknown strategy \"fastest\"")
      for (const name of Object.keys(Strategy.builtIn)) expectIssue(error, "strategy", name)
    }))

  // Guards against Object.prototype member names ("constructor", "toString", ...) passing as strategies.
  it.effect("Object.prototype member names are not strategies", () =>
    Effect.gen(function*() {
      for (const strategy of ["constructor", "toString", "hasOwnProperty", "__proto__"]) {
        const result = yield* Effect.either(Effect.scoped(Balancer.make(optionsOf({ endpoints: [base], strategy }))))
        expect(Either.isLeft(result), `strategy "${strategy}" was accepted`).toBe(true)
        if (Either.isLeft(result)) expectIssue(result.left, "strategy", `unknown strategy "${strategy}"`)
      }
    }))

  const healthCases: ReadonlyArray<readonly [string, Record<string, unknown>, string, string]> = [
    ["maxFailures 0", { maxFailures: 0 }, "health.maxFailures", "greater than 0, got 0"],
    ["maxFailures 2.5", { maxFailures: 2.5 }, "health.maxFailures", "whole number"],
    ["degradedErrorRate 1.5", { degradedErrorRate: 1.5 }, "health.degradedErrorRate", "from 0 to 1, got 1.5"],
    ["degradedErrorRate -0.1", { degradedErrorRate: -0.1 }, "health.degradedErrorRate", "from 0 to 1"],
    ["window 0", { window: 0 }, "health.window", "must be longer than 0"],
    ["window \"0 seconds\"", { window: "0 seconds" }, "health.window", "must be longer than 0"],
    ["window \"soon\"", { window: "soon" }, "health.window", "must be a duration"],
    ["recoveryTimeout -1", { recoveryTimeout: -1 }, "health.recoveryTimeout", "must not be negative"],
    ["halfOpenProbes 0", { halfOpenProbes: 0 }, "health.halfOpenProbes", "greater than 0"],
    ["degradedMinRequests -1", { degradedMinRequests: -1 }, "health.degradedMinRequests", "at least 0, got -1"],
    ["degradedLatency \"slow\"", { degradedLatency: "slow" }, "health.degradedLatency", "got \"slow\""],
    ["typo maxFailure", { maxFailure: 3 }, "health.maxFailure", "is unexpected"]
  ]

  for (const [label, health, path, fragment] of healthCases) {
    it.effect(`bad health policy: ${label}`, () =>
      Effect.gen(function*() {
        expectIssue(yield* makeError(optionsOf({ endpoints: [base], health })), path, fragment)
        expectIssue(yield* layerError(optionsOf({ endpoints: [base], health })), path, fragment)
      }))
  }

  it.effect("health that is not an object", () =>
    Effect.gen(function*() {
      expectIssue(yield* makeError(optionsOf({ endpoints: [base], health: 5 })), "health", "Expected")
    }))

  it.effect("several bad health values are all reported", () =>
    Effect.gen(function*() {
      const error = yield* makeError(
        optionsOf({ endpoints: [base], health: { maxFailures: 0, degradedErrorRate: 1.5, window: 0 } })
      )
      expect(error.issues.map((i) => i.path).sort()).toEqual([
        "health.degradedErrorRate",
        "health.maxFailures",
        "health.window"
      ])
    }))

  it.effect("a bad balancer budget names each field", () =>
    Effect.gen(function*() {
      const error = yield* makeError(
        optionsOf({ endpoints: [base], budget: { limit: -2, period: "0 seconds", softLimit: 2, cap: 1 } })
      )
      expect(error.issues.map((i) => i.path).sort()).toEqual([
        "budget.cap",
        "budget.limit",
        "budget.period",
        "budget.softLimit"
      ])
      expectIssue(error, "budget.limit", "must be a finite number greater than 0, got -2")
      expectIssue(yield* makeError(optionsOf({ endpoints: [base], budget: 5 })), "budget", "Expected")
    }))

  it.effect("several errors at once are all reported, in make and in layer", () =>
    Effect.gen(function*() {
      const options = optionsOf({
        endpoints: [
          { ...base, weight: -1, wieght: 2 },
          { name: " b", provider: "", model: "m", apiKey: 5, limits: { rpm: 0, tpm: 1.5 } },
          { ...base, priority: -1 },
          42
        ],
        strategy: "fastest",
        health: { maxFailures: 0, degradedErrorRate: 1.5, window: 0, wat: 1 }
      })
      const expected = [
        "endpoints[0].weight",
        "endpoints[0].wieght",
        "endpoints[1].name",
        "endpoints[1].provider",
        "endpoints[1].apiKey",
        "endpoints[1].limits.rpm",
        "endpoints[1].limits.tpm",
        "endpoints[2].priority",
        "endpoints[2].name",
        "endpoints[3]",
        "strategy",
        "health.maxFailures",
        "health.degradedErrorRate",
        "health.window",
        "health.wat"
      ].sort()
      for (const error of [yield* makeError(options), yield* layerError(options)]) {
        expect(error._tag).toBe("InvalidConfig")
        expect(error.issues.map((i) => i.path).sort()).toEqual(expected)
        expectIssue(error, "endpoints[2].name", "duplicate endpoint name \"a\" (also endpoints[0])")
        expectIssue(error, "endpoints[1].apiKey", "must be a non-empty string")
        for (const issue of error.issues) expect(issue.message.length).toBeGreaterThan(0)
        for (const path of expected) expect(error.message).toContain(path)
      }
    }))

  it.scoped("good options still build (sanity)", () =>
    Effect.gen(function*() {
      const balancer = yield* Balancer.make({
        endpoints: [
          { ...base, weight: 2, priority: 1, tags: ["vision"], recoveryTimeout: "10 seconds", apiKey: CANARY },
          { ...other, limits: { rpm: 10, tpm: 1000 }, cost: { inputPerMillion: 0, outputPerMillion: 1.5 } }
        ],
        strategy: "round-robin",
        health: { maxFailures: 1, window: "1 minute", degradedLatency: 2000 }
      })
      expect(balancer.strategy).toBe("round-robin")
      expect((yield* balancer.endpoints).map((e) => e.name)).toEqual(["a", "b"])
    }))
})

describe("addEndpoint, forceHealthy and friends", () => {
  it.scoped("addEndpoint with a duplicate name fails and changes nothing", () =>
    Effect.gen(function*() {
      const balancer = yield* Balancer.make({ endpoints: [base, other] })
      const error = yield* Effect.flip(balancer.addEndpoint({ ...base, model: "gpt-4o" }))
      expectIssue(error, "name", "duplicate endpoint name \"a\"")
      expect((yield* balancer.endpoints).map((e) => e.model)).toEqual(["gpt-4o-mini", "claude-3-5-haiku-latest"])
    }))

  it.scoped("addEndpoint with bad fields fails naming each of them", () =>
    Effect.gen(function*() {
      const balancer = yield* Balancer.make({ endpoints: [base] })
      const error = yield* Effect.flip(
        balancer.addEndpoint(inputOf({ name: "c", provider: "p", model: "m", weight: 0, tags: [""], apiKey: [CANARY] }))
      )
      expectIssue(error, "weight", "greater than 0")
      expectIssue(error, "tags[0]", "must not be empty")
      expectIssue(error, "apiKey", "must be a non-empty string")
      expectNoCanary(error.message)
      expect((yield* balancer.endpoints).map((e) => e.name)).toEqual(["a"])
      // a good one is added
      yield* balancer.addEndpoint({ name: "c", provider: "p", model: "m" })
      expect((yield* balancer.endpoints).map((e) => e.name)).toEqual(["a", "c"])
    }))

  it.effect("addEndpoint through the accessor and the layer", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Balancer.addEndpoint(inputOf({ ...other, wieght: 1 })))
      expectIssue(error, "wieght", "is unexpected")
    }).pipe(Effect.provide(Balancer.layer({ endpoints: [base] }))))

  it.scoped("forceHealthy(\"nope\") fails with UnknownEndpoint listing the known names", () =>
    Effect.gen(function*() {
      const balancer = yield* Balancer.make({ endpoints: [base, other] })
      const error = yield* Effect.flip(balancer.forceHealthy("nope"))
      expect(error._tag).toBe("UnknownEndpoint")
      expect(error.name).toBe("nope")
      expect(error.known).toEqual(["a", "b"])
      expect(error.message).toBe("Unknown endpoint \"nope\" (known: a, b)")
      for (const op of [balancer.forceUnhealthy, balancer.removeEndpoint]) {
        const e = yield* Effect.flip(op("nope"))
        expect(e).toMatchObject({ _tag: "UnknownEndpoint", name: "nope", known: ["a", "b"] })
      }
      // a removed endpoint is unknown afterwards
      yield* balancer.removeEndpoint("a")
      const gone = yield* Effect.flip(balancer.forceHealthy("a"))
      expect(gone.known).toEqual(["b"])
    }))

  it.scoped("UnknownEndpoint on an empty balancer says so", () =>
    Effect.gen(function*() {
      const balancer = yield* Balancer.make({ endpoints: [] })
      const error = yield* Effect.flip(balancer.forceHealthy("nope"))
      expect(error.message).toBe("Unknown endpoint \"nope\" (known: none)")
    }))
})

describe("BalancerLive through ConfigProvider", () => {
  const goodJson = {
    balancer: {
      endpoints: [
        { ...base, apiKey: CANARY, recoveryTimeout: "10 seconds", weight: 2, tags: ["vision", "region:eu"] },
        { ...other, recoveryTimeout: "1500", limits: { rpm: 60 }, cost: { inputPerMillion: 0.8, outputPerMillion: 4 } },
        {
          name: "c",
          provider: "openai",
          model: "gpt-4o",
          priority: 1,
          recoveryTimeout: 2500,
          maxConcurrency: 4,
          group: "smart",
          budget: { limit: 20, period: "1 hour", softLimit: 0.5 }
        }
      ],
      strategy: "round-robin",
      health: { maxFailures: 1, window: "1 minute", degradedErrorRate: 0.5 },
      budget: { limit: 100 }
    }
  }

  it.effect("a good config: defaults, Redacted apiKey, durations in both forms, strategy and health", () =>
    Effect.gen(function*() {
      const balancer = yield* Balancer.Balancer
      expect(balancer.strategy).toBe("round-robin")
      const [a, b, c] = yield* balancer.endpoints
      expect(a).toBeInstanceOf(Endpoint.Endpoint)
      expect([a.name, a.provider, a.model, a.weight, a.priority]).toEqual(["a", "openai", "gpt-4o-mini", 2, 0])
      expect(a.tags).toEqual(["vision", "region:eu"])
      expect(Redacted.isRedacted(a.apiKey)).toBe(true)
      expect(Redacted.value(a.apiKey!)).toBe(CANARY)
      expect(Duration.toMillis(a.recoveryTimeout!)).toBe(10_000)
      // defaults
      expect([b.weight, b.priority, b.apiKey, b.maxConcurrency]).toEqual([1, 0, undefined, undefined])
      expect(b.tags).toEqual([])
      expect(b.limits).toEqual({ rpm: 60 })
      expect(b.cost).toEqual({ inputPerMillion: 0.8, outputPerMillion: 4 })
      // a bare number in a string is milliseconds, and so is a JSON number
      expect(Duration.toMillis(b.recoveryTimeout!)).toBe(1500)
      expect(Duration.toMillis(c.recoveryTimeout!)).toBe(2500)
      expect([c.priority, c.maxConcurrency, c.group]).toEqual([1, 4, "smart"])
      expect(c.budget?.limit).toBe(20)
      expect(Duration.toMillis(c.budget!.period)).toBe(3_600_000)
      expect(c.budget?.softLimit).toBe(0.5)
      expect(a.budget).toBeUndefined()
      const summary = yield* balancer.summary
      expect(summary.budget).toEqual({ limit: 100, spent: 0, softLimit: 0.8, periodStart: 0, periodEnd: 86_400_000 })

      // health.maxFailures 1: one failure opens a circuit for the endpoint's recoveryTimeout
      yield* Effect.flip(balancer.use(() => Effect.fail("boom"), { exclude: ["b", "c"] }))
      yield* Effect.flip(balancer.use(() => Effect.fail("boom"), { exclude: ["a", "c"] }))
      const stats = yield* balancer.stats
      expect(stats.map((s) => [s.name, s.circuit, s.unhealthyUntil])).toEqual([
        ["a", "open", 10_000],
        ["b", "open", 1500],
        ["c", "closed", null]
      ])
      expectNoCanary(JSON.stringify(stats))
      expectNoCanary(JSON.stringify(yield* balancer.endpoints))
    }).pipe(Effect.provide(withProvider(ConfigProvider.fromJson(goodJson)))))

  it.effect("a bad number names its full path", () =>
    Effect.gen(function*() {
      const error = yield* configError(
        ConfigProvider.fromJson({ balancer: { endpoints: [{ ...base, weight: "abc", apiKey: CANARY }] } })
      )
      expectIssue(error, "balancer.endpoints[0].weight", "abc")
      expectNoCanary(error.message)
    }))

  it.effect("several unparsable numbers are all reported", () =>
    Effect.gen(function*() {
      const error = yield* configError(
        ConfigProvider.fromJson({
          balancer: {
            endpoints: [base, { ...other, weight: "abc", priority: "first" }],
            health: { maxFailures: "x" }
          }
        })
      )
      expect(error.issues.map((i) => i.path).sort()).toEqual([
        "balancer.endpoints[1].priority",
        "balancer.endpoints[1].weight",
        "balancer.health.maxFailures"
      ])
    }))

  it.effect("a missing endpoints key fails with InvalidConfig", () =>
    Effect.gen(function*() {
      for (
        const json of [{ balancer: { strategy: "round-robin" } }, {}, { other: { endpoints: [base] } }]
      ) {
        const error = yield* configError(ConfigProvider.fromJson(json))
        expect(error._tag).toBe("InvalidConfig")
        expect(error.issues.length).toBeGreaterThanOrEqual(1)
        expect(error.issues.some((i) => i.path.includes("endpoints") && i.message.includes("missing"))).toBe(true)
      }
    }))

  it.effect("schema errors of a config-fed balancer (bad range, unknown strategy)", () =>
    Effect.gen(function*() {
      const error = yield* configError(
        ConfigProvider.fromJson({
          balancer: { endpoints: [{ ...base, weight: -1, apiKey: CANARY }, base], strategy: "fastest" }
        })
      )
      expect(error.issues.map((i) => i.message)).toEqual([
        "must be a finite number greater than 0, got -1",
        "duplicate endpoint name \"a\" (also endpoints[0])",
        expect.stringContaining("unknown strategy \"fastest\"")
      ])
      expectNoCanary(error.message)
    }))

  // Guards against config-fed schema issues (and a missing `endpoints`) losing the `balancer.` prefix.
  it.effect("config-fed schema issues carry the full `balancer.` path", () =>
    Effect.gen(function*() {
      const error = yield* configError(
        ConfigProvider.fromJson({ balancer: { endpoints: [{ ...base, weight: -1 }], strategy: "fastest" } })
      )
      expectIssue(error, "balancer.endpoints[0].weight", "greater than 0")
      expectIssue(error, "balancer.strategy", "unknown strategy")
      const missing = yield* configError(ConfigProvider.fromJson({ balancer: { strategy: "round-robin" } }))
      expect(missing.issues).toEqual([{ path: "balancer.endpoints", message: expect.stringContaining("missing") }])
    }))

  // Guards against `tags: []` in JSON (stored by fromJson as "<nil>") reading as the tag "<nil>".
  it.effect("an empty tags array in a JSON config reads as no tags", () =>
    Effect.gen(function*() {
      const [a] = yield* Effect.flatMap(Balancer.Balancer, (b) => b.endpoints)
      expect(a.tags).toEqual([])
    }).pipe(
      Effect.provide(withProvider(ConfigProvider.fromJson({ balancer: { endpoints: [{ ...base, tags: [] }] } })))
    ))

  it.effect("ConfigProvider.fromMap with `balancer.endpoints[0].name` keys works", () =>
    Effect.gen(function*() {
      const balancer = yield* Balancer.Balancer
      expect(balancer.strategy).toBe("smooth-weighted-round-robin")
      const endpoints = yield* balancer.endpoints
      expect(endpoints.map((e) => [e.name, e.provider, e.model, e.weight, e.priority])).toEqual([
        ["a", "openai", "gpt-4o-mini", 1, 0],
        ["b", "anthropic", "claude", 3, 1]
      ])
      // fromMap splits sequences on ","
      expect(endpoints[0].tags).toEqual(["vision", "region:eu"])
      expect(Redacted.value(endpoints[1].apiKey!)).toBe(CANARY)
      expect(Duration.toMillis(endpoints[1].recoveryTimeout!)).toBe(1500)
      expectNoCanary(JSON.stringify(yield* balancer.stats))
    }).pipe(
      Effect.provide(withProvider(ConfigProvider.fromMap(
        new Map([
          ["balancer.endpoints[0].name", "a"],
          ["balancer.endpoints[0].provider", "openai"],
          ["balancer.endpoints[0].model", "gpt-4o-mini"],
          ["balancer.endpoints[0].tags", "vision,region:eu"],
          ["balancer.endpoints[1].name", "b"],
          ["balancer.endpoints[1].provider", "anthropic"],
          ["balancer.endpoints[1].model", "claude"],
          ["balancer.endpoints[1].weight", "3"],
          ["balancer.endpoints[1].priority", "1"],
          ["balancer.endpoints[1].apiKey", CANARY],
          ["balancer.endpoints[1].recoveryTimeout", "1500"],
          ["balancer.strategy", "smooth-weighted-round-robin"],
          ["balancer.health.maxFailures", "2"]
        ])
      )))
    ))

  it.effect("ConfigProvider.fromMap: a bad number names its full path", () =>
    Effect.gen(function*() {
      const error = yield* configError(ConfigProvider.fromMap(
        new Map([
          ["balancer.endpoints[0].name", "a"],
          ["balancer.endpoints[0].provider", "openai"],
          ["balancer.endpoints[0].model", "m"],
          ["balancer.endpoints[0].apiKey", CANARY],
          ["balancer.endpoints[0].limits.rpm", "lots"]
        ])
      ))
      expectIssue(error, "balancer.endpoints[0].limits.rpm", "lots")
      expectNoCanary(error.message)
    }))

  it.effect("Balancer.config can be nested under another name with layerConfig", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.provide(
          Balancer.Balancer,
          Layer.provide(
            Balancer.layerConfig(Balancer.config),
            Layer.setConfigProvider(ConfigProvider.fromJson({ endpoints: [{ ...base, maxFailures: "many" }] }))
          )
        )
      )
      expectIssue(error, "endpoints[0].maxFailures", "many")
    }))
})

// ---------------------------------------------------------------------------------------
// Fuzz: arbitrary input never throws; it decodes to a valid Endpoint or fails with an
// InvalidConfig that has at least one issue.
// ---------------------------------------------------------------------------------------

const nonEmpty = (s: unknown): boolean => typeof s === "string" && s.trim().length > 0
const positiveInt = (n: unknown): boolean => typeof n === "number" && Number.isInteger(n) && n > 0
const optionalPositiveInt = (n: unknown): boolean => n === undefined || positiveInt(n)
const nonNegativeFinite = (n: unknown): boolean => typeof n === "number" && Number.isFinite(n) && n >= 0

const isValidEndpoint = (e: Endpoint.Endpoint): boolean =>
  e instanceof Endpoint.Endpoint &&
  nonEmpty(e.name) && e.name.trim() === e.name &&
  nonEmpty(e.provider) && nonEmpty(e.model) &&
  (e.baseUrl === undefined || /^[a-z][a-z0-9+.-]*:\/\//i.test(e.baseUrl)) &&
  (e.apiKey === undefined || (Redacted.isRedacted(e.apiKey) && typeof Redacted.value(e.apiKey) === "string")) &&
  typeof e.weight === "number" && Number.isFinite(e.weight) && e.weight > 0 &&
  Number.isInteger(e.priority) && e.priority >= 0 &&
  Array.isArray(e.tags) && e.tags.every(nonEmpty) &&
  optionalPositiveInt(e.maxConcurrency) && optionalPositiveInt(e.contextWindow) &&
  optionalPositiveInt(e.maxFailures) &&
  (e.limits === undefined ||
    (optionalPositiveInt(e.limits.rpm) && optionalPositiveInt(e.limits.tpm) && optionalPositiveInt(e.limits.rpd))) &&
  (e.cost === undefined || (nonNegativeFinite(e.cost.inputPerMillion) && nonNegativeFinite(e.cost.outputPerMillion))) &&
  (e.recoveryTimeout === undefined || Duration.toMillis(e.recoveryTimeout) >= 0)

const isWellFormedError = (error: unknown): boolean => {
  if (typeof error !== "object" || error === null || (error as { _tag?: unknown })._tag !== "InvalidConfig") {
    return false
  }
  const issues = (error as Errors.InvalidConfig).issues
  return Array.isArray(issues) && issues.length >= 1 &&
    issues.every((i) => typeof i.path === "string" && typeof i.message === "string" && i.message.length > 0)
}

const fc = FastCheck

/** Values that are sometimes right for some endpoint field and mostly wrong. */
const wild: FastCheck.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom<unknown>(
    NaN,
    Infinity,
    -Infinity,
    -0,
    0,
    -1,
    0.5,
    1,
    2,
    1.5,
    "",
    " ",
    " a ",
    "a",
    "10 seconds",
    "soon",
    "-5",
    "1500",
    "https://api.example.com/v1",
    "not a url",
    undefined,
    null,
    true,
    [],
    ["vision"],
    [""],
    { rpm: 10 },
    { rpm: 0 },
    { inputPerMillion: 1, outputPerMillion: 2 },
    { inputPerMillion: -1 },
    Duration.seconds(5),
    Redacted.make(CANARY),
    // plain JSON that cannot be turned into a string (see "a duration that cannot be stringified")
    JSON.parse("{\"toString\": 0}"),
    JSON.parse("[{\"toString\": \"x\"}]")
  ),
  fc.double(),
  fc.integer(),
  fc.string({ maxLength: 12 }),
  fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 })
)

const endpointKeys = [
  "name",
  "provider",
  "model",
  "baseUrl",
  "weight",
  "priority",
  "tags",
  "maxConcurrency",
  "limits",
  "cost",
  "contextWindow",
  "maxFailures",
  "recoveryTimeout"
] as const

/** `undefined` four times out of five. */
const sometimes = <A>(arbitrary: FastCheck.Arbitrary<A>): FastCheck.Arbitrary<A | undefined> =>
  fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, { arbitrary, weight: 1 })

/** A valid value for each endpoint key. */
const validValue: { readonly [K in (typeof endpointKeys)[number]]: FastCheck.Arbitrary<unknown> } = {
  name: fc.constantFrom("b", "openai-eu", "x.y:z"),
  provider: fc.constantFrom("anthropic", "azure"),
  model: fc.constantFrom("m2", "gpt-4o"),
  baseUrl: fc.constantFrom("https://api.example.com/v1", "http://localhost:8080"),
  weight: fc.double({ min: 0.001, max: 1000, noNaN: true }),
  priority: fc.nat(5),
  tags: fc.array(fc.constantFrom("vision", "region:eu", "tools"), { maxLength: 3 }),
  maxConcurrency: fc.integer({ min: 1, max: 100 }),
  limits: fc.record({ rpm: fc.integer({ min: 1, max: 1000 }), tpm: fc.integer({ min: 1, max: 1e6 }) }, {
    requiredKeys: []
  }),
  cost: fc.record({ inputPerMillion: fc.double({ min: 0, max: 100, noNaN: true }), outputPerMillion: fc.constant(1) }),
  contextWindow: fc.integer({ min: 1, max: 2_000_000 }),
  maxFailures: fc.integer({ min: 1, max: 10 }),
  recoveryTimeout: fc.oneof(
    fc.constantFrom("10 seconds", "1500", "2 minutes"),
    fc.nat(60_000),
    fc.constant(Duration.seconds(3))
  )
}

/**
 * Endpoint-shaped records: a valid endpoint with a few fields replaced by wild values,
 * sometimes a required field dropped, a typo key added, or an apiKey (the canary, of the
 * right or the wrong type). The canary only ever goes into `apiKey`, so no message may show it.
 */
const endpointLike: FastCheck.Arbitrary<Record<string, unknown>> = fc.tuple(
  fc.array(
    fc.constantFrom(...endpointKeys).chain((key) => fc.tuple(fc.constant(key), fc.oneof(validValue[key], wild))),
    { maxLength: 4 }
  ),
  sometimes(fc.subarray(["name", "provider", "model"] as const, { minLength: 1, maxLength: 1 })),
  sometimes(fc.constantFrom("wieght", "apikey", "tag", "__proto__", "constructor", "length")),
  fc.oneof(
    { arbitrary: fc.constant(undefined), weight: 2 },
    { arbitrary: fc.constantFrom<unknown>(CANARY, Redacted.make(CANARY)), weight: 2 },
    { arbitrary: fc.constantFrom<unknown>(42, [CANARY], { key: CANARY }, "", Redacted.make(42)), weight: 1 }
  )
).map(([fields, drop = [], typo, apiKey]) => {
  const required: Record<string, unknown> = { name: "a", provider: "openai", model: "m" }
  const out: Record<string, unknown> = Object.fromEntries(
    Object.entries(required).filter(([key]) => !(drop as ReadonlyArray<string>).includes(key))
  )
  for (const [key, value] of fields) out[key] = value
  if (typo !== undefined) Object.defineProperty(out, typo, { value: 1, enumerable: true, writable: true })
  if (apiKey !== undefined) out.apiKey = apiKey
  return out
})

const anyEndpointInput: FastCheck.Arbitrary<unknown> = fc.oneof(fc.jsonValue(), endpointLike, endpointLike)

describe("fuzz", () => {
  const numRuns = 1000
  /**
   * Run first, before the random inputs: a duration that cannot be stringified (see above),
   * so that the fuzz always covers it rather than only when it happens upon one.
   */
  const unstringifiable: unknown = JSON.parse("{\"toString\": 0}")
  const badDuration = { name: "a", provider: "openai", model: "m", recoveryTimeout: unstringifiable }

  const checkDecode = (input: unknown) => {
    const result = Endpoint.decodeEither(input)
    if (Either.isRight(result)) {
      expect(isValidEndpoint(result.right)).toBe(true)
      // a decoded endpoint decodes again, to the same thing
      const again = Endpoint.decodeEither(result.right)
      expect(Either.isRight(again)).toBe(true)
      if (Either.isRight(again)) expect(JSON.stringify(again.right)).toBe(JSON.stringify(result.right))
    } else {
      expect(isWellFormedError(result.left)).toBe(true)
      expectNoCanary(result.left.message)
    }
  }

  it("Endpoint.decodeEither on arbitrary JSON never throws", () => {
    FastCheck.assert(FastCheck.property(fc.jsonValue(), (input) => checkDecode(input)), {
      numRuns,
      examples: [[badDuration as FastCheck.JsonValue]]
    })
  })

  it("Endpoint.decodeEither on endpoint-shaped records never throws", () => {
    FastCheck.assert(FastCheck.property(endpointLike, (input) => checkDecode(input)), {
      numRuns,
      examples: [[badDuration]]
    })
  })

  it("Endpoint.decodeEither finds valid endpoints among the fuzzed records too", () => {
    // guards against a fuzz that only ever produces errors
    const samples = fc.sample(endpointLike, { numRuns: 500, seed: 42 })
    const valid = samples.filter((s) => Either.isRight(Endpoint.decodeEither(s)))
    expect(valid.length).toBeGreaterThan(100)
  })

  it("Endpoint.decode (the Effect) agrees with decodeEither", () => {
    FastCheck.assert(
      FastCheck.property(anyEndpointInput, (input) => {
        const either = Endpoint.decodeEither(input)
        const exit = Effect.runSyncExit(Endpoint.decode(input))
        expect(Exit.isSuccess(exit)).toBe(Either.isRight(either))
        if (Exit.isFailure(exit)) {
          expect(Option.map(Cause.failureOption(exit.cause), (e) => e.issues)).toEqual(
            Either.isLeft(either) ? Option.some(either.left.issues) : Option.none()
          )
        }
      }),
      { numRuns, examples: [[badDuration]] }
    )
  })

  const optionsArbitrary = fc.record({
    endpoints: fc.array(fc.oneof(anyEndpointInput, endpointLike), { maxLength: 4 }).map((inputs) =>
      // distinct default names, so that duplicates do not hide every other outcome
      inputs.map((input, i) =>
        typeof input === "object" && input !== null && (input as { name?: unknown }).name === "a"
          ? { ...input, name: `e${i}` }
          : input
      )
    ),
    strategy: fc.option(fc.oneof(fc.constantFrom(...Object.keys(Strategy.builtIn)), fc.string({ maxLength: 10 })), {
      nil: undefined
    }),
    health: fc.oneof(
      { arbitrary: fc.constant(undefined), weight: 3 },
      { arbitrary: fc.jsonValue({ maxDepth: 2 }), weight: 1 },
      {
        arbitrary: fc.record({
          maxFailures: wild,
          recoveryTimeout: wild,
          halfOpenProbes: wild,
          window: wild,
          degradedErrorRate: wild,
          degradedMinRequests: wild,
          degradedLatency: wild
        }, { requiredKeys: [] }),
        weight: 1
      }
    )
  }, { requiredKeys: ["endpoints"] })

  // The examples (an unstringifiable duration, the strategy "valueOf") are always run.
  it("Balancer.make on fuzzed options builds a working balancer or fails with InvalidConfig", () => {
    let built = 0
    let failed = 0
    FastCheck.assert(
      FastCheck.property(optionsArbitrary, (options) => {
        const exit = Effect.runSyncExit(Effect.scoped(Effect.gen(function*() {
          const balancer = yield* Balancer.make(optionsOf(options))
          // a balancer that was built works: acquiring never dies
          const acquired = yield* Effect.either(balancer.acquire())
          if (Either.isRight(acquired)) yield* balancer.release(acquired.right, Outcome.success())
          const stats = yield* balancer.stats
          return { balancer, stats, endpoints: yield* balancer.endpoints }
        })))
        if (Exit.isSuccess(exit)) {
          built++
          const { balancer, endpoints, stats } = exit.value
          expect(Object.keys(Strategy.builtIn)).toContain(balancer.strategy)
          expect(endpoints.every(isValidEndpoint)).toBe(true)
          expect(new Set(endpoints.map((e) => e.name)).size).toBe(endpoints.length)
          expectNoCanary(JSON.stringify(stats))
        } else {
          failed++
          // a failure, never a defect
          expect(Cause.isDie(exit.cause)).toBe(false)
          const error = Cause.failureOption(exit.cause)
          expect(Option.isSome(error)).toBe(true)
          if (Option.isSome(error)) {
            expect(isWellFormedError(error.value)).toBe(true)
            expectNoCanary(error.value.message)
          }
        }
      }),
      {
        numRuns,
        examples: [
          [{ endpoints: [badDuration], health: { window: unstringifiable } }],
          [{ endpoints: [], strategy: "valueOf" }]
        ]
      }
    )
    // both outcomes were exercised
    expect(built).toBeGreaterThan(50)
    expect(failed).toBeGreaterThan(50)
  })
})
