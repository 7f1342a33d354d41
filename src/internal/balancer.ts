import type { Scope } from "effect"
import { Cause, Clock, Duration, Effect, Either, Exit, PubSub, Random, Ref, Stream } from "effect"
import type { BalancerService, EndpointStats, Hints, Lease, Options } from "../Balancer.js"
import * as Endpoint from "../Endpoint.js"
import * as EndpointState from "../EndpointState.js"
import type { ConfigIssue } from "../Errors.js"
import { InvalidConfig, NoEndpointAvailable, UnknownEndpoint } from "../Errors.js"
import { Event } from "../Event.js"
import * as Health from "../Health.js"
import type * as Outcome from "../Outcome.js"
import * as Strategy from "../Strategy.js"
import * as random from "./random.js"
import * as Table from "./table.js"

class LeaseImpl implements Lease {
  /** Set by the first release; a second release of the same lease does nothing. */
  settled = false
  constructor(
    readonly endpoint: Endpoint.Endpoint,
    readonly id: number,
    readonly startedAt: number,
    readonly probe: boolean
  ) {}
}

export interface Resolved {
  readonly endpoints: ReadonlyArray<Endpoint.Endpoint>
  readonly strategy: Strategy.Strategy
  readonly policy: Health.Policy
}

/** Decodes options given in code, naming every bad field at once. */
export const resolveOptions = (options: Options): Either.Either<Resolved, InvalidConfig> => {
  const issues: Array<ConfigIssue> = []
  const endpoints: Array<Endpoint.Endpoint> = []
  const inputs = Array.from(options.endpoints ?? [])
  inputs.forEach((input, i) => {
    const decoded = Endpoint.decodeEither(input)
    if (Either.isLeft(decoded)) {
      for (const issue of decoded.left.issues) {
        issues.push({
          path: issue.path === "" ? `endpoints[${i}]` : `endpoints[${i}].${issue.path}`,
          ...{ message: issue.message }
        })
      }
    } else endpoints.push(decoded.right)
  })
  const seen = new Map<string, number>()
  inputs.forEach((input, i) => {
    const name = typeof input === "object" && input !== null ? (input as { name?: unknown }).name : undefined
    if (typeof name !== "string") return
    const first = seen.get(name)
    if (first !== undefined) {
      issues.push({
        path: `endpoints[${i}].name`,
        message: `duplicate endpoint name "${name}" (also endpoints[${first}])`
      })
    } else seen.set(name, i)
  })
  let strategy: Strategy.Strategy = Strategy.leastConnections
  if (typeof options.strategy === "string") {
    const found = (Strategy.builtIn as Record<string, Strategy.Strategy>)[options.strategy]
    if (found === undefined) {
      issues.push({
        path: "strategy",
        message: `unknown strategy "${options.strategy}" (expected one of ${Object.keys(Strategy.builtIn).join(", ")})`
      })
    } else strategy = found
  } else if (options.strategy !== undefined) strategy = options.strategy
  const policy = Health.decodePolicy(options.health, ["health"])
  if (Either.isLeft(policy)) { for (const issue of policy.left.issues) issues.push(issue) }
  return issues.length > 0 || Either.isLeft(policy)
    ? Either.left(new InvalidConfig({ issues }))
    : Either.right({ endpoints, strategy, policy: policy.right })
}

const endingOf = (outcome: Outcome.Outcome, latencyMs: number): Table.Ending => {
  switch (outcome._tag) {
    case "Success":
      return {
        _tag: "Success",
        latencyMs: outcome.latency === undefined ? latencyMs : Duration.toMillis(outcome.latency)
      }
    case "Failure":
      return {
        _tag: "Failure",
        latencyMs: outcome.latency === undefined ? latencyMs : Duration.toMillis(outcome.latency),
        countsAgainstHealth: outcome.countsAgainstHealth
      }
    case "Cancelled":
      return outcome
  }
}

const endingOfExit = (exit: Exit.Exit<unknown, unknown>, latencyMs: number): Table.Ending => {
  if (Exit.isSuccess(exit)) return { _tag: "Success", latencyMs }
  if (Cause.isInterruptedOnly(exit.cause)) return { _tag: "Cancelled" }
  return { _tag: "Failure", latencyMs, countsAgainstHealth: true }
}

const requestOf = (hints: Hints | undefined): Table.Request => ({ exclude: hints?.exclude, tags: hints?.tags })

export const make = (options: Options): Effect.Effect<BalancerService, InvalidConfig, Scope.Scope> =>
  Effect.flatMap(Effect.suspend(() => resolveOptions(options)), fromResolved)

export const fromResolved = (resolved: Resolved): Effect.Effect<BalancerService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { policy, strategy } = resolved
    const start = yield* Clock.currentTimeMillis
    const ref = yield* Ref.make(
      resolved.endpoints.reduce(
        (table, endpoint) => Table.add(table, endpoint, Health.resolve(policy, endpoint), start),
        Table.make(strategy)
      )
    )
    const pubsub = yield* Effect.acquireRelease(PubSub.sliding<Event>(1024), PubSub.shutdown)

    // Waiters for capacity. `version` mirrors the table's, so that registering a waiter
    // and checking that nothing changed since it looked happen in one synchronous step.
    let version = 0
    const waiters = new Set<() => void>()
    const wake = () => {
      if (waiters.size === 0) return
      const all = Array.from(waiters)
      waiters.clear()
      for (const resume of all) resume()
    }
    const waitForChange = (seen: number) =>
      Effect.async<void>((resume) => {
        if (version !== seen) return resume(Effect.void)
        const waiter = () => resume(Effect.void)
        waiters.add(waiter)
        return Effect.sync(() => waiters.delete(waiter))
      })

    const publish = (events: ReadonlyArray<Event>): Effect.Effect<void> =>
      events.length === 0 ? Effect.void : PubSub.publishAll(pubsub, events)

    /** Applies a change to the table; wakes waiters when it may have freed capacity. */
    const modify = <A>(f: (table: Table.Table) => readonly [A, Table.Table], frees: boolean) =>
      Effect.map(
        Ref.modify(ref, (table) => {
          const result = f(table)
          version = result[1].version
          return result
        }),
        (a) => {
          if (frees) wake()
          return a
        }
      )

    const tryAcquire = (request: Table.Request, now: number, draw: () => number) =>
      Ref.modify(ref, (table) => {
        const result = Table.acquire(table, strategy, request, now, draw)
        version = result[1].version
        return result
      })

    const attempt = (request: Table.Request, now: number) =>
      strategy.usesRandom
        ? Effect.flatMap(Random.nextInt, (seed) => tryAcquire(request, now, random.fromSeed(seed)))
        : tryAcquire(request, now, random.none)

    const leaseOf = (result: Table.AcquireResult & { _tag: "Acquired" }, now: number): Lease =>
      new LeaseImpl(result.entry.endpoint, result.entry.id, now, result.probe)

    /**
     * Takes a slot, waiting (interruptibly, through `restore`) for one to free up when the
     * hints ask for it. Each reservation itself runs uninterruptibly in the caller's region,
     * so a slot is never reserved without the caller getting its lease.
     */
    const acquireWith = (
      hints: Hints | undefined,
      restore: <X, E, R>(effect: Effect.Effect<X, E, R>) => Effect.Effect<X, E, R>
    ): Effect.Effect<Lease, NoEndpointAvailable> => {
      const request = requestOf(hints)
      const waitMs = hints?.wait === undefined ? 0 : Duration.toMillis(Duration.decode(hints.wait))
      return Effect.clockWith((clock) => {
        const now = clock.unsafeCurrentTimeMillis()
        const deadline = now + waitMs
        const loop = (now: number): Effect.Effect<Lease, NoEndpointAvailable> =>
          Effect.flatMap(attempt(request, now), (result) => {
            if (result._tag === "Acquired") {
              return result.events.length === 0
                ? Effect.succeed(leaseOf(result, now))
                : Effect.as(publish(result.events), leaseOf(result, now))
            }
            if (now >= deadline) {
              return Effect.fail(new NoEndpointAvailable({ passedOver: result.passedOver, retryAt: result.retryAt }))
            }
            const wakeAt = result.retryAt !== undefined && result.retryAt < deadline ? result.retryAt : deadline
            return restore(Effect.timeoutOption(waitForChange(result.version), Duration.millis(wakeAt - now))).pipe(
              Effect.zipRight(Effect.suspend(() => loop(clock.unsafeCurrentTimeMillis())))
            )
          })
        return loop(now)
      })
    }

    const settle = (lease: Lease, ending: (latencyMs: number) => Table.Ending): Effect.Effect<void> =>
      Effect.clockWith((clock) => {
        const impl = lease as LeaseImpl
        if (impl.settled) return Effect.void
        impl.settled = true
        const now = clock.unsafeCurrentTimeMillis()
        return Effect.flatMap(
          modify((table) => Table.release(table, impl.id, impl.probe, ending(now - impl.startedAt), now), true),
          publish
        )
      })

    const release = (lease: Lease, outcome: Outcome.Outcome) =>
      settle(lease, (latencyMs) => endingOf(outcome, latencyMs))

    const use = <A, E, R>(
      f: (endpoint: Endpoint.Endpoint, lease: Lease) => Effect.Effect<A, E, R>,
      hints?: Hints
    ): Effect.Effect<A, E | NoEndpointAvailable, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(acquireWith(hints, restore), (lease) =>
          Effect.flatMap(
            Effect.exit(restore(f(lease.endpoint, lease))),
            (exit) => Effect.zipRight(settle(lease, (latencyMs) => endingOfExit(exit, latencyMs)), exit)
          ))
      )

    const byName = <A>(
      name: string,
      f: (table: Table.Table, index: number, now: number) => readonly [A, Table.Table],
      frees: boolean
    ): Effect.Effect<A, UnknownEndpoint> =>
      Effect.clockWith((clock) => {
        const now = clock.unsafeCurrentTimeMillis()
        return Effect.flatMap(
          modify((table): readonly [Either.Either<A, UnknownEndpoint>, Table.Table] => {
            const index = Table.find(table, name)
            if (index === -1) return [Either.left(new UnknownEndpoint({ name, known: Table.names(table) })), table]
            const [a, next] = f(table, index, now)
            return [Either.right(a), next]
          }, frees),
          (either) => either
        )
      })

    const addEndpoint = (input: Endpoint.Input | Endpoint.Endpoint) =>
      Effect.flatMap(Endpoint.decode(input), (endpoint) =>
        Effect.clockWith((clock) => {
          const now = clock.unsafeCurrentTimeMillis()
          return Effect.flatMap(
            modify((table): readonly [Either.Either<void, InvalidConfig>, Table.Table] => {
              if (Table.find(table, endpoint.name) !== -1) {
                return [
                  Either.left(
                    new InvalidConfig({
                      issues: [{ path: "name", message: `duplicate endpoint name "${endpoint.name}"` }]
                    })
                  ),
                  table
                ]
              }
              return [Either.void, Table.add(table, endpoint, Health.resolve(policy, endpoint), now)]
            }, true),
            (either) =>
              Either.isLeft(either)
                ? either
                : PubSub.publish(pubsub, Event.EndpointAdded({ name: endpoint.name, at: now })).pipe(Effect.asVoid)
          )
        }))

    const removeEndpoint = (name: string) =>
      byName(name, (table, index, now) => [now, Table.remove(table, index)], false).pipe(
        Effect.flatMap((now) => PubSub.publish(pubsub, Event.EndpointRemoved({ name, at: now }))),
        Effect.asVoid
      )

    const forceHealthy = (name: string) =>
      byName(name, (table, index, now) => {
        const before = table.entries[index]
        const wasOut = before.held || before.circuit._tag !== "Closed"
        return [wasOut ? now : undefined, Table.update(table, index, EndpointState.forceHealthy)]
      }, true).pipe(
        Effect.flatMap((at) =>
          at === undefined
            ? Effect.void
            : PubSub.publish(pubsub, Event.EndpointRecovered({ name, at, reason: "forced" }))
        ),
        Effect.asVoid
      )

    const forceUnhealthy = (name: string) =>
      byName(name, (table, index, now) => {
        const wasHeld = table.entries[index].held
        return [wasHeld ? undefined : now, Table.update(table, index, EndpointState.forceUnhealthy)]
      }, false).pipe(
        Effect.flatMap((at) =>
          at === undefined
            ? Effect.void
            : PubSub.publish(pubsub, Event.EndpointUnhealthy({ name, at, reason: "forced", until: undefined }))
        ),
        Effect.asVoid
      )

    const withLive = <A>(f: (entries: ReadonlyArray<EndpointState.EndpointState>, now: number) => A) =>
      Effect.clockWith((clock) =>
        Effect.map(Ref.get(ref), (table) => f(Table.live(table), clock.unsafeCurrentTimeMillis()))
      )

    const service: BalancerService = {
      strategy: strategy.name,
      acquire: (hints) => Effect.uninterruptibleMask((restore) => acquireWith(hints, restore)),
      release,
      use,
      addEndpoint,
      removeEndpoint,
      forceHealthy,
      forceUnhealthy,
      endpoints: withLive((entries) => entries.map((e) => e.endpoint)),
      healthyEndpoints: withLive((entries, now) =>
        entries.filter((e) => EndpointState.status(e, now) !== "unhealthy").map((e) => e.endpoint)
      ),
      stats: withLive((entries, now) => entries.map((e) => statsOf(e, now))),
      events: Stream.fromPubSub(pubsub)
    }
    return service
  })

const round = (n: number, digits: number) => {
  const f = 10 ** digits
  return Math.round(n * f) / f
}

export const statsOf = (e: EndpointState.EndpointState, now: number): EndpointStats => {
  const average = EndpointState.averageLatencyMs(e)
  const recentLatency = Health.recentLatencyMs(e.recent)
  return {
    name: e.endpoint.name,
    provider: e.endpoint.provider,
    model: e.endpoint.model,
    status: EndpointState.status(e, now),
    circuit: e.circuit._tag === "Closed" ? "closed" : e.circuit._tag === "Open" ? "open" : "half-open",
    held: e.held,
    active: e.active,
    successes: e.successes,
    failures: e.failures,
    consecutiveFailures: e.consecutiveFailures,
    errorRate: round(EndpointState.errorRate(e), 4),
    recentErrorRate: round(Health.recentErrorRate(e.recent), 4),
    avgLatencyMs: average === undefined ? null : round(average, 1),
    recentLatencyMs: recentLatency === undefined ? null : round(recentLatency, 1),
    unhealthyUntil: e.circuit._tag === "Open" && now < e.circuit.until ? e.circuit.until : null,
    weight: e.endpoint.weight,
    priority: e.endpoint.priority
  }
}
