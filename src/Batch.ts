/**
 * Many chat requests at once: a batch runs each request through `Llm.complete` (so the
 * `Router` and the `Balancer` choose, fail over and retry for each one) with at most
 * `concurrency` requests in flight, and keeps count as it goes.
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Batch } from "effect-llm-balancer"
 *
 * const prompts = ["one", "two", "three"].map((p) => ({ messages: [{ role: "user" as const, content: p }] }))
 *
 * const items = Batch.run(prompts, { concurrency: 4 })
 * // Effect<ReadonlyArray<Batch.Item>, InvalidConfig, Router | Providers>
 * ```
 *
 * - One request's failure is that item's `Failure` (`RoutingFailed`, or `InvalidRequest`
 *   for a request that does not decode), never the batch's: the batch itself fails only
 *   with `InvalidConfig`, before any request starts, when its options are unusable.
 * - `run` gives the items in input order; `stream` gives them as they complete; `make`
 *   starts the batch in the current scope and gives its results and its progress as a
 *   `Stream`.
 * - `Progress` is kept in a `Ref` and timed by `Clock`; `onProgress` sees every change,
 *   one at a time and in order. `progressBar` is an `onProgress` that draws a one-line
 *   bar in a terminal.
 * - Interrupting a batch interrupts the calls in flight; the router releases their leases.
 *
 * @since 0.1.0
 */
import type { Scope } from "effect"
import { Clock, Data, Effect, Exit, Fiber, Ref, Stream, SubscriptionRef } from "effect"
import type { ConfigIssue, InvalidRequest, RoutingFailed } from "./Errors.js"
import { InvalidConfig } from "./Errors.js"
import { policyProblems } from "./internal/router.js"
import * as schemas from "./internal/schemas.js"
import * as spans from "./internal/spans.js"
import * as Llm from "./Llm.js"
import type * as Chat from "./llm/Chat.js"
import type { Providers } from "./llm/Provider.js"
import type { Policy, Router } from "./Router.js"

/**
 * The outcome of one request of a batch. `index` is the request's position in the input.
 *
 * @since 0.1.0
 * @category models
 */
export type Item = Data.TaggedEnum<{
  Success: { readonly index: number; readonly response: Chat.Response }
  Failure: { readonly index: number; readonly error: RoutingFailed | InvalidRequest }
}>

/**
 * Constructors and matchers for `Item` (`Item.$is("Success")`, `Item.$match`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const Item = Data.taggedEnum<Item>()

/**
 * @since 0.1.0
 * @category refinements
 */
export const isSuccess: (item: Item) => item is Extract<Item, { readonly _tag: "Success" }> = Item.$is("Success")

/**
 * @since 0.1.0
 * @category refinements
 */
export const isFailure: (item: Item) => item is Extract<Item, { readonly _tag: "Failure" }> = Item.$is("Failure")

/**
 * Where a batch stands. Every change gives a new value (plain JSON); none is mutated.
 *
 * - `done` = `succeeded` + `failed`; `inFlight` requests have started and not ended.
 * - `perEndpoint`: a success counts for the endpoint that answered, a failure for the
 *   endpoint of its last attempt. A failure with no attempt (an invalid request, no
 *   endpoint available) counts for none, so the counts here may add up to less than `done`.
 * - `elapsedMs`: since the batch started, from `Clock`, as of this change.
 *
 * @since 0.1.0
 * @category models
 */
export interface Progress {
  readonly total: number
  readonly done: number
  readonly succeeded: number
  readonly failed: number
  readonly inFlight: number
  readonly perEndpoint: Readonly<Record<string, { readonly succeeded: number; readonly failed: number }>>
  readonly elapsedMs: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Requests in flight at most: a whole number of at least 1. Default 8. */
  readonly concurrency?: number | undefined
  /** The routing policy of every request (deadline, attempts, hints...). Default: the router's. */
  readonly policy?: Policy | undefined
  /**
   * Called with every change of the progress: once when the batch starts, then when each
   * request starts and ends. Calls come one at a time, in the order of the changes, and
   * the batch waits for each: keep it quick.
   */
  readonly onProgress?: ((progress: Progress) => Effect.Effect<void>) | undefined
}

/**
 * A batch started by `make`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Running {
  /** The items in input order, when every request has ended. */
  readonly results: Effect.Effect<ReadonlyArray<Item>>
  /**
   * The progress as it changes: the current value first, then every change after it; it
   * ends with the change that completes the batch (or when the batch is interrupted).
   * Each run of the stream starts from the progress at that time.
   */
  readonly progress: Stream.Stream<Progress>
  /** The progress now. */
  readonly current: Effect.Effect<Progress>
}

/** The default `concurrency`. */
const defaultConcurrency = 8

const validate = (options: Options | undefined): Effect.Effect<number, InvalidConfig> =>
  Effect.suspend(() => {
    const issues: Array<ConfigIssue> = []
    const concurrency: unknown = options?.concurrency ?? defaultConcurrency
    if (!(typeof concurrency === "number" && Number.isInteger(concurrency) && concurrency >= 1)) {
      issues.push({
        path: "concurrency",
        message: `must be a whole number of at least 1, got ${schemas.show(concurrency)}`
      })
    }
    for (const problem of options?.policy === undefined ? [] : policyProblems(options.policy)) {
      issues.push({ path: "policy", message: problem })
    }
    return issues.length > 0 ? Effect.fail(new InvalidConfig({ issues })) : Effect.succeed(concurrency as number)
  })

const bump = (
  perEndpoint: Progress["perEndpoint"],
  name: string | undefined,
  ok: boolean
): Progress["perEndpoint"] => {
  if (name === undefined) return perEndpoint
  const counts = perEndpoint[name] ?? { succeeded: 0, failed: 0 }
  return {
    ...perEndpoint,
    [name]: ok ? { ...counts, succeeded: counts.succeeded + 1 } : { ...counts, failed: counts.failed + 1 }
  }
}

const servedBy = (item: Item): string | undefined =>
  item._tag === "Success"
    ? item.response.endpoint.name
    : item.error._tag === "RoutingFailed"
    ? item.error.attempts.at(-1)?.endpoint
    : undefined

interface Prepared {
  readonly inputs: ReadonlyArray<Chat.Request | Chat.RequestInput>
  readonly concurrency: number
  readonly current: Effect.Effect<Progress>
  /** Reports the starting progress. */
  readonly start: Effect.Effect<void>
  /** Runs one request, keeping count. */
  readonly one: (
    input: Chat.Request | Chat.RequestInput,
    index: number
  ) => Effect.Effect<Item, never, Router | Providers>
}

/** Validates the options, reads the requests and sets up the progress. */
const prepare = (
  requests: Iterable<Chat.Request | Chat.RequestInput>,
  options: Options | undefined
): Effect.Effect<Prepared, InvalidConfig> =>
  Effect.gen(function*() {
    const concurrency = yield* validate(options)
    const inputs = Array.from(requests)
    const startedAt = yield* Clock.currentTimeMillis
    const state = yield* Ref.make<Progress>({
      total: inputs.length,
      done: 0,
      succeeded: 0,
      failed: 0,
      inFlight: 0,
      perEndpoint: {},
      elapsedMs: 0
    })
    const onProgress = options?.onProgress
    // the lock orders the changes and their reports: onProgress sees them one at a time, in order
    const lock = yield* Effect.makeSemaphore(1)
    const change = (f: (p: Progress) => Progress) =>
      lock.withPermits(1)(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const next = yield* Ref.updateAndGet(state, (p) => ({ ...f(p), elapsedMs: now - startedAt }))
        if (onProgress !== undefined) yield* onProgress(next)
      }))
    const policy = options?.policy
    return {
      inputs,
      concurrency,
      current: Ref.get(state),
      start: lock.withPermits(1)(
        onProgress === undefined ? Effect.void : Effect.flatMap(Ref.get(state), onProgress)
      ),
      one: (input, index) =>
        Effect.gen(function*() {
          yield* change((p) => ({ ...p, inFlight: p.inFlight + 1 }))
          const item = yield* Llm.complete(input, policy).pipe(
            Effect.match({
              onFailure: (error): Item => Item.Failure({ index, error }),
              onSuccess: (response): Item => Item.Success({ index, response })
            })
          )
          const ok = item._tag === "Success"
          yield* change((p) => ({
            ...p,
            inFlight: p.inFlight - 1,
            done: p.done + 1,
            succeeded: p.succeeded + (ok ? 1 : 0),
            failed: p.failed + (ok ? 0 : 1),
            perEndpoint: bump(p.perEndpoint, servedBy(item), ok)
          }))
          return item
        })
    }
  })

/**
 * Runs every request, at most `concurrency` at a time, and gives one item per request, in
 * input order. The requests are read once, when the batch starts.
 *
 * Fails only with `InvalidConfig`, at once, when `concurrency` is not a whole number of at
 * least 1 or `policy` is unusable (each named in `issues`).
 *
 * @since 0.1.0
 * @category running
 */
export const run = (
  requests: Iterable<Chat.Request | Chat.RequestInput>,
  options?: Options
): Effect.Effect<ReadonlyArray<Item>, InvalidConfig, Router | Providers> =>
  Effect.gen(function*() {
    const batch = yield* prepare(requests, options)
    yield* batch.start
    return yield* Effect.forEach(batch.inputs, batch.one, { concurrency: batch.concurrency })
  }).pipe((effect) => spans.withSpan(effect, "effect-llm-balancer.batch"))

/**
 * Runs every request like `run`, emitting each item as soon as its request ends: in
 * completion order, each with its `index`. Each run of the stream runs the batch afresh;
 * ending the stream early (`Stream.take`) interrupts the requests still in flight.
 *
 * @since 0.1.0
 * @category running
 */
export const stream = (
  requests: Iterable<Chat.Request | Chat.RequestInput>,
  options?: Options
): Stream.Stream<Item, InvalidConfig, Router | Providers> =>
  Stream.unwrap(Effect.gen(function*() {
    const batch = yield* prepare(requests, options)
    yield* batch.start
    return Stream.fromIterable(batch.inputs.map((input, index) => [input, index] as const)).pipe(
      Stream.mapEffect(([input, index]) => batch.one(input, index), {
        concurrency: batch.concurrency,
        unordered: true
      })
    )
  }))

/**
 * Starts the batch in the background of the current scope and gives its `results` (in
 * input order) and its `progress` as a `Stream`. Closing the scope before the batch ends
 * interrupts it (and ends its progress streams).
 *
 * ```ts
 * Effect.scoped(Effect.gen(function*() {
 *   const batch = yield* Batch.make(requests, { concurrency: 4 })
 *   const printer = yield* Effect.fork(Stream.runForEach(batch.progress, (p) => Console.log(Batch.format(p))))
 *   const items = yield* batch.results
 *   yield* Fiber.join(printer) // it ends with the batch's last change
 *   return items
 * }))
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const make = (
  requests: Iterable<Chat.Request | Chat.RequestInput>,
  options?: Options
): Effect.Effect<Running, InvalidConfig, Router | Providers | Scope.Scope> =>
  Effect.gen(function*() {
    const latest = yield* SubscriptionRef.make<Progress | undefined>(undefined)
    const onProgress = options?.onProgress
    const batch = yield* prepare(requests, {
      ...options,
      onProgress: (p) =>
        onProgress === undefined
          ? SubscriptionRef.set(latest, p)
          : Effect.zipRight(SubscriptionRef.set(latest, p), onProgress(p))
    })
    yield* batch.start
    const fiber = yield* Effect.forkScoped(
      Effect.forEach(batch.inputs, batch.one, { concurrency: batch.concurrency }).pipe(
        (effect) => spans.withSpan(effect, "effect-llm-balancer.batch")
      )
    )
    // ends the progress stream when the batch stops without completing
    const stopped = Effect.flatMap(Fiber.await(fiber), (exit) => Exit.isSuccess(exit) ? Effect.never : Effect.void)
    return {
      results: Fiber.join(fiber),
      progress: latest.changes.pipe(
        Stream.filter((p): p is Progress => p !== undefined),
        Stream.takeUntil((p) => p.done === p.total),
        Stream.interruptWhen(stopped)
      ),
      current: batch.current
    }
  })

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`

/**
 * The progress in one line: `7/10  70%  ok 6  failed 1  in flight 3  2.4s`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (progress: Progress): string => {
  const width = String(progress.total).length
  const percent = progress.total === 0 ? 100 : Math.floor((progress.done / progress.total) * 100)
  return [
    `${String(progress.done).padStart(width)}/${progress.total}`,
    `${String(percent).padStart(3)}%`,
    `ok ${progress.succeeded}`,
    `failed ${progress.failed}`,
    `in flight ${progress.inFlight}`,
    seconds(progress.elapsedMs)
  ].join("  ")
}

/**
 * @since 0.1.0
 * @category models
 */
export interface ProgressBarOptions {
  /** Writes text as it is, without a newline (`(s) => process.stdout.write(s)`). */
  readonly write: (text: string) => void
  /** Draw only when true (`process.stdout.isTTY === true`): logs and pipes get nothing. */
  readonly isTTY: boolean
  /** The bar's width in characters. Default 24. */
  readonly width?: number | undefined
  /** Written before the bar. */
  readonly label?: string | undefined
}

/**
 * An `onProgress` that draws the progress as one line redrawn in place (`\r`, then the
 * line, then an erase to the end of the line), ending it with a newline when the batch
 * completes. It writes nothing unless `isTTY` is true, so output sent to a file or a pipe
 * is not filled with redraws.
 *
 * ```ts
 * Batch.run(requests, {
 *   onProgress: Batch.progressBar({ write: (s) => process.stdout.write(s), isTTY: process.stdout.isTTY === true })
 * })
 * // [##############----------] 7/10  70%  ok 6  failed 1  in flight 3  2.4s
 * ```
 *
 * @since 0.1.0
 * @category formatting
 */
export const progressBar = (options: ProgressBarOptions): (progress: Progress) => Effect.Effect<void> => {
  if (!options.isTTY) return () => Effect.void
  const width = Math.max(1, Math.floor(options.width ?? 24))
  const label = options.label === undefined ? "" : `${options.label} `
  return (progress) =>
    Effect.sync(() => {
      const filled = progress.total === 0 ? width : Math.floor((progress.done / progress.total) * width)
      const bar = `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`
      const end = progress.done === progress.total ? "\n" : ""
      options.write(`\r${label}${bar} ${format(progress)}\u001b[K${end}`)
    })
}
