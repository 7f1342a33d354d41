/**
 * The state that processes share: where several balancers (in several processes, or
 * several pods) that call the same providers with the same keys keep what must be counted
 * once for all of them.
 *
 * Without a `Store` in its context a balancer keeps everything in its own memory, which is
 * right for one process. Provide one and, with no change to the balancer's code, these are
 * shared:
 *
 * - requests and tokens per minute and requests per day, per endpoint: admission checks
 *   and reserves in one atomic step, so the processes together never admit more than the
 *   limit;
 * - 429 cooldowns (`Retry-After`), per endpoint and per quota group;
 * - circuits: a circuit opened by the failures one process saw is open for all, and once
 *   its open period is over at most `halfOpenProbes` probes run in the whole cluster;
 * - spend per budget period, the balancer's and each endpoint's.
 *
 * Calls in flight and latency estimates stay per process: they describe this process's
 * connections and the network path from it, and keeping them local costs no round trip.
 *
 * The store is consulted once per call at admission (one round trip) and, when a call
 * ends with something to share (tokens to correct, spend, a 429, a circuit change), once
 * more. When it cannot answer in time the balancer falls back to its own state, publishes
 * `Event.StoreFellBack`, keeps serving, and publishes `Event.StoreResumed` when the store
 * answers again: a call never fails because of the store.
 *
 * `Store.memory` shares between balancers in one process; `RedisStore.layer` (module
 * `effect-llm-balancer/RedisStore`, needs `ioredis`) between processes.
 *
 * @since 0.1.0
 */
import { Context, Data, Effect, Layer } from "effect"
import type * as Endpoint from "./Endpoint.js"
import type { SharedReason } from "./EndpointState.js"
import * as memoryStore from "./internal/store/memory.js"

/**
 * The store could not answer: it is down, slow past its timeout, or refused the command.
 * The balancer never passes this on to a caller; it falls back to local state.
 *
 * @since 0.1.0
 * @category errors
 */
export class StoreUnavailable extends Data.TaggedError("StoreUnavailable")<{
  readonly store: string
  readonly reason: string
}> {
  override get message(): string {
    return `The ${this.store} store is unavailable: ${this.reason}`
  }
}

/**
 * What one call asks of the shared state when it is admitted.
 *
 * @since 0.1.0
 * @category models
 */
export interface AdmitRequest {
  readonly endpoint: Endpoint.Endpoint
  /** The call's estimated tokens (input + output), counted against `tpm`. */
  readonly tokens: number
  /** Unique to the call, across processes: names a half-open probe's slot. */
  readonly callId: string
  /** Probes allowed in flight in the whole cluster while the endpoint's circuit is half-open. */
  readonly halfOpenProbes: number
  /** The balancer's budget and the period it is in, when it has one and the endpoint has prices. */
  readonly budget: BudgetPeriod | undefined
  /** The endpoint's own budget and its period, when it has one. */
  readonly endpointBudget: BudgetPeriod | undefined
}

/**
 * A budget's limit and the current period, which the caller's clock sets: `start` is the
 * period's start (epoch ms), so every process names the same period.
 *
 * @since 0.1.0
 * @category models
 */
export interface BudgetPeriod {
  readonly limit: number
  readonly start: number
  readonly periodMs: number
}

/**
 * The store's answer: admitted (as a probe of a half-open circuit, or not), or refused with
 * the reason and how long to wait.
 *
 * @since 0.1.0
 * @category models
 */
export type Admission =
  | {
    readonly _tag: "Admitted"
    /** The store's time of admission, in its own clock: where a token correction goes. */
    readonly at: number
    /** A probe of a half-open circuit: its end closes or reopens the circuit for all. */
    readonly probe: boolean
  }
  | {
    readonly _tag: "Refused"
    readonly reason: SharedReason
    /** How long until it may admit (ms from now), when that is known. */
    readonly retryAfterMs: number | undefined
  }

/**
 * What one call's end changes in the shared state; the balancer sends it only when there
 * is something to say.
 *
 * @since 0.1.0
 * @category models
 */
export interface Settle {
  readonly endpoint: Endpoint.Endpoint
  /** The admission's `at`, and reported tokens less the estimate reserved then. */
  readonly admittedAt: number
  readonly tokensDelta: number
  /** Spent on the call, against the balancer's and the endpoint's budget periods. */
  readonly spent: number
  readonly budget: BudgetPeriod | undefined
  readonly endpointBudget: BudgetPeriod | undefined
  /** A 429: the endpoint (and its quota group) rest this long. */
  readonly cooldownMs: number
  /** The process opened the circuit for this long, after `openings` openings in a row. */
  readonly openMs: number
  readonly openings: number
  /** The process saw the endpoint recover (a probe succeeded, or it was forced healthy). */
  readonly closed: boolean
  /** The call was the cluster's probe (`callId`), and how it ended. */
  readonly probe: { readonly callId: string; readonly outcome: "success" | "failure" | "cancelled" } | undefined
  /** For a failed cluster probe: how long the circuit reopens, before growth by `openings`. */
  readonly recoveryMs: number
  readonly recoveryFactor: number
  readonly maxRecoveryMs: number
}

/**
 * A shared state store. Each operation is atomic in the store: `admit` checks and reserves
 * in one step, so concurrent callers from any number of processes cannot admit more than
 * a limit between them. An implementation answers within its timeout or fails with
 * {@link StoreUnavailable}; it never makes a caller wait longer.
 *
 * @since 0.1.0
 * @category models
 */
export interface StoreService {
  /** Names the store in events and errors (`"memory"`, `"redis"`). */
  readonly name: string
  readonly admit: (request: AdmitRequest) => Effect.Effect<Admission, StoreUnavailable>
  readonly settle: (settle: Settle) => Effect.Effect<void, StoreUnavailable>
  /** Answers when the store is reachable; the balancer uses it to learn the store is back. */
  readonly ping: Effect.Effect<void, StoreUnavailable>
}

/**
 * The shared state store a balancer uses when its context has one.
 *
 * @since 0.1.0
 * @category tags
 */
export class Store extends Context.Tag("effect-llm-balancer/Store")<Store, StoreService>() {}

/**
 * A store in this process's memory, shared by every balancer built with it: for several
 * balancers over the same keys in one process, and for tests of shared behaviour without
 * a server. Its time is the `Clock` of the layer's context.
 *
 * @since 0.1.0
 * @category layers
 */
export const memory: Layer.Layer<Store> = Layer.effect(Store, Effect.map(Effect.clock, memoryStore.make))

/**
 * A store that is down: every operation fails with {@link StoreUnavailable}. For testing
 * the fallback.
 *
 * @since 0.1.0
 * @category layers
 */
export const unavailable = (reason = "down for the test"): Layer.Layer<Store> =>
  Layer.succeed(Store, {
    name: "unavailable",
    admit: () => Effect.fail(new StoreUnavailable({ store: "unavailable", reason })),
    settle: () => Effect.fail(new StoreUnavailable({ store: "unavailable", reason })),
    ping: Effect.fail(new StoreUnavailable({ store: "unavailable", reason }))
  })
