/**
 * The simulation's input as data: a fleet (each endpoint's configuration and how it
 * behaves), the traffic and a timeline of faults, decoded from code or from a JSON file
 * with every bad field named.
 */
import type { Duration } from "effect"
import { Duration as D, Either, Schema } from "effect"
import * as Endpoint from "../../Endpoint.js"
import type { ConfigIssue } from "../../Errors.js"
import { InvalidConfig } from "../../Errors.js"
import * as Health from "../../Health.js"
import { decodeAll } from "../config.js"
import { DurationInput, NonEmpty, NonNegativeFinite, PositiveFinite, PositiveInt, Ratio } from "../schemas.js"

const Spread = Schema.Struct({ median: DurationInput, p99: DurationInput }).pipe(
  Schema.filter((s) => D.greaterThanOrEqualTo(s.p99, s.median) || "p99 must be at least the median")
)

/** How one simulated endpoint behaves when nothing is wrong with it. */
export const Model = Schema.Struct({
  /** Time to the first token: a log-normal distribution by its median and 99th percentile. */
  latency: Spread,
  /** Output tokens per second after the first token; without it, the answer is whole at the first token. */
  tokensPerSecond: Schema.optionalWith(PositiveFinite, { exact: true }),
  /** The share of calls that fail (HTTP 500) even when it is healthy. */
  errorRate: Schema.optionalWith(Ratio, { default: () => 0, exact: true }),
  /** A self-hosted server: each call in flight beyond `knee` adds `slowdown` x its latency. */
  concurrency: Schema.optionalWith(
    Schema.Struct({ knee: PositiveInt, slowdown: NonNegativeFinite }),
    { exact: true }
  ),
  /**
   * The provider's own limits, enforced with 429 + `Retry-After` whether or not the
   * balancer was told about them (`limits` on the endpoint is what the balancer knows).
   */
  limits: Schema.optionalWith(
    Schema.Struct({
      rpm: Schema.optionalWith(PositiveInt, { exact: true }),
      tpm: Schema.optionalWith(PositiveInt, { exact: true })
    }),
    { exact: true }
  ),
  /** Whether its answers carry rate-limit headers (what is left of its limits). Default false. */
  rateLimitHeaders: Schema.optionalWith(Schema.Boolean, { default: () => false, exact: true })
}).annotations({ identifier: "SimulatedBehaviour" })

export type Model = typeof Model.Type

const Window = {
  /** The endpoint's name, or `"*"` for every endpoint. */
  endpoint: NonEmpty,
  /** Since the start of the run. */
  from: DurationInput,
  to: DurationInput
}

const fault = <Tag extends string, Fields extends Schema.Struct.Fields>(tag: Tag, fields: Fields) =>
  Schema.Struct({ type: Schema.Literal(tag), ...Window, ...fields })

/** What goes wrong, where and when. */
export const Fault = Schema.Union(
  /** Latency (and generation) `factor` times slower. */
  fault("brownout", { factor: PositiveFinite }),
  /** Fast connection errors. */
  fault("outage", {}),
  /** No answer at all: calls wait until the caller gives up. */
  fault("hang", {}),
  /** A share of calls fails with HTTP 500. */
  fault("errors", { rate: Ratio }),
  /** Up for `up`, down (an outage) for `down`, over and over, starting up. */
  fault("flapping", { up: DurationInput, down: DurationInput }),
  /** A share of calls is `factor` times slower to its first token. */
  fault("stalls", { probability: Ratio, factor: PositiveFinite }),
  /** The provider's requests-per-minute limit drops to `rpm` (a 429 burst). */
  fault("rate-limit", { rpm: PositiveInt })
).pipe(
  Schema.filter((f) => D.greaterThan(f.to, f.from) || "to must be later than from")
).annotations({ identifier: "Fault" })

export type Fault = typeof Fault.Type

const Tokens = Schema.Union(
  PositiveInt,
  Schema.Struct({ median: PositiveFinite, p99: PositiveFinite }).pipe(
    Schema.filter((s) => s.p99 >= s.median || "p99 must be at least the median")
  )
)

export type Tokens = typeof Tokens.Type

/** Open-loop traffic: Poisson arrivals at `rate` per second, or a recorded trace. */
export const Traffic = Schema.Union(
  Schema.Struct({
    /** Requests per second, on average. */
    rate: PositiveFinite,
    duration: DurationInput,
    inputTokens: Schema.optionalWith(Tokens, { default: () => 500, exact: true }),
    outputTokens: Schema.optionalWith(Tokens, { default: () => 200, exact: true })
  }),
  Schema.Struct({
    /** One entry per request: when it arrives (since the start) and its size. */
    trace: Schema.Array(Schema.Struct({
      at: DurationInput,
      inputTokens: Schema.optionalWith(PositiveInt, { default: () => 500, exact: true }),
      outputTokens: Schema.optionalWith(PositiveInt, { default: () => 200, exact: true })
    })).pipe(Schema.filter((t) => t.length > 0 || "must hold at least one request"))
  })
).annotations({ identifier: "Traffic" })

export type Traffic = typeof Traffic.Type

/** The router's policy as data (the code API takes a full `Router.Policy`). */
export const Routing = Schema.Struct({
  maxAttempts: Schema.optionalWith(PositiveInt, { exact: true }),
  timeout: Schema.optionalWith(DurationInput, { exact: true }),
  attemptTimeout: Schema.optionalWith(DurationInput, { exact: true }),
  hedge: Schema.optionalWith(
    Schema.Union(
      Schema.Struct({ delay: Schema.Literal("p95"), minDelay: Schema.optionalWith(DurationInput, { exact: true }) }),
      Schema.Struct({ delay: DurationInput })
    ),
    { exact: true }
  ),
  /** Wait this long for capacity instead of failing at once. */
  wait: Schema.optionalWith(DurationInput, { exact: true })
}).annotations({ identifier: "Routing" })

export type Routing = typeof Routing.Type

const Head = Schema.Struct({
  name: Schema.optionalWith(NonEmpty, { default: () => "custom", exact: true }),
  description: Schema.optionalWith(Schema.String, { default: () => "", exact: true }),
  traffic: Traffic,
  faults: Schema.optionalWith(Schema.Array(Fault), { default: () => [], exact: true }),
  routing: Schema.optionalWith(Routing, { default: () => ({}), exact: true }),
  /** A spend cap for the balancer (baselines have none). */
  budget: Schema.optionalWith(Endpoint.Budget, { exact: true }),
  /** Health policy overrides for the balancer under test. */
  health: Schema.optionalWith(Health.PolicyInput, { exact: true }),
  endpoints: Schema.Array(Schema.Unknown).pipe(Schema.filter((a) => a.length > 0 || "must hold at least one endpoint"))
})

/** One endpoint of the fleet: its configuration as the balancer sees it, and how it behaves. */
export interface SimulatedEndpoint {
  readonly endpoint: Endpoint.Endpoint
  readonly model: Model
}

export interface Scenario {
  readonly name: string
  readonly description: string
  readonly endpoints: ReadonlyArray<SimulatedEndpoint>
  readonly traffic: Traffic
  readonly faults: ReadonlyArray<Fault>
  readonly routing: Routing
  readonly budget: Endpoint.Budget | undefined
  readonly health: typeof Health.PolicyInput.Type | undefined
}

/** What a user writes: the scenario as plain data. */
export type ScenarioInput = Omit<typeof Head.Encoded, "endpoints"> & {
  readonly endpoints: ReadonlyArray<Endpoint.Input & { readonly simulate: typeof Model.Encoded }>
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** Decodes a scenario, naming every bad field (`endpoints[1].simulate.latency.p99`). */
export const decodeScenario = (input: unknown): Either.Either<Scenario, InvalidConfig> => {
  const head = decodeAll(Head, input)
  const issues: Array<ConfigIssue> = []
  const endpoints: Array<SimulatedEndpoint> = []
  // the endpoints are checked even when the rest is bad, so every bad field is named at once
  const rawEndpoints: ReadonlyArray<unknown> = Either.isRight(head)
    ? head.right.endpoints
    : isRecord(input) && Array.isArray(input.endpoints)
    ? input.endpoints
    : []
  if (Either.isLeft(head)) { for (const issue of head.left.issues) issues.push(issue) }
  rawEndpoints.forEach((raw, i) => {
    if (!isRecord(raw)) {
      issues.push({ path: `endpoints[${i}]`, message: "must be an object" })
      return
    }
    const { simulate, ...rest } = raw
    const endpoint = decodeAll(Endpoint.Endpoint, rest, ["endpoints", i])
    const model = simulate === undefined
      ? Either.left(
        new InvalidConfig({
          issues: [{ path: `endpoints[${i}].simulate`, message: "is missing: how the endpoint behaves" }]
        })
      )
      : decodeAll(Model, simulate, ["endpoints", i, "simulate"])
    if (Either.isLeft(endpoint)) { for (const issue of endpoint.left.issues) issues.push(issue) }
    if (Either.isLeft(model)) { for (const issue of model.left.issues) issues.push(issue) }
    if (Either.isRight(endpoint) && Either.isRight(model)) {
      endpoints.push({ endpoint: endpoint.right, model: model.right })
    }
  })
  const names = new Set(endpoints.map((e) => e.endpoint.name))
  if (names.size !== endpoints.length) issues.push({ path: "endpoints", message: "endpoint names must be unique" })
  if (Either.isLeft(head)) return Either.left(new InvalidConfig({ issues }))
  head.right.faults.forEach((f, i) => {
    if (f.endpoint !== "*" && !names.has(f.endpoint)) {
      issues.push({
        path: `faults[${i}].endpoint`,
        message: `names no endpoint of the fleet: "${f.endpoint}" (known: ${
          names.size === 0 ? "none valid" : [...names].join(", ")
        }, or "*")`
      })
    }
  })
  if (issues.length > 0) return Either.left(new InvalidConfig({ issues }))
  const h = head.right
  return Either.right({
    name: h.name,
    description: h.description,
    endpoints,
    traffic: h.traffic,
    faults: h.faults,
    routing: h.routing,
    budget: h.budget,
    health: h.health
  })
}

/** How long the traffic lasts. */
export const durationOf = (traffic: Traffic): Duration.Duration =>
  "rate" in traffic
    ? traffic.duration
    : D.millis(traffic.trace.reduce((latest, r) => Math.max(latest, D.toMillis(r.at)), 0) + 1)
