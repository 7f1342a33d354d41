/**
 * One process of the shared-store throughput bench (bench/store.ts), and the pieces that
 * bench shares with it: the balancer under test and the closed load loop.
 *
 *   node --import tsx bench/storeWorker.ts '<WorkerConfig as JSON>'
 *
 * (with `TSX_TSCONFIG_PATH=tsconfig.examples.json`, for the `effect-llm-balancer` alias).
 * The worker builds one balancer (over the Redis store at `url` under `prefix`, or with no
 * store), warms it up, prints `READY`, then waits for one line on stdin: the epoch ms at
 * which every worker starts. It runs `concurrency` fibers of acquire + release until
 * `durationMs` have passed, prints `RESULT <WorkerResult as JSON>` and exits.
 */
import type { Scope } from "effect"
import { Context, Duration, Effect, Layer, Queue } from "effect"
import type { Endpoint } from "effect-llm-balancer"
import { Balancer, Outcome, Store } from "effect-llm-balancer"
import * as RedisStore from "effect-llm-balancer/RedisStore"
import { resolve } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

/** The store behind a balancer: none (local state only), `Store.memory`, or Redis. */
export type StoreKind = "none" | "memory" | "redis"

/** An rpm limit high enough never to refuse, so that the window is really checked and counted. */
export const BENCH_RPM = 10_000_000

/** The one endpoint of every balancer here. */
export const benchEndpoint = (limited: boolean): Endpoint.Input => ({
  name: "bench",
  provider: "mock",
  model: "mock-1",
  ...(limited ? { limits: { rpm: BENCH_RPM } } : {})
})

const succeeded = Outcome.success()

/** One call's worth of balancer work: acquire, then release with a plain success (nothing to share). */
export const pair = (balancer: Balancer.BalancerService) =>
  Effect.flatMap(balancer.acquire(), (lease) => balancer.release(lease, succeeded))

/** The store's context: empty for `none`; `Store.memory` or a Redis store built in the current scope. */
export const storeContext = (
  kind: StoreKind,
  redis: {
    readonly url: string
    readonly prefix: string
    /** The Redis store's timeout in ms; its default (50 ms) when absent. */
    readonly timeoutMs?: number | undefined
  }
): Effect.Effect<Context.Context<never> | Context.Context<Store.Store>, unknown, Scope.Scope> =>
  kind === "none"
    ? Effect.succeed(Context.empty())
    : Layer.build(
      kind === "memory" ? Store.memory : RedisStore.layer({
        url: redis.url,
        prefix: redis.prefix,
        ...(redis.timeoutMs === undefined ? {} : { timeout: Duration.millis(redis.timeoutMs) })
      })
    )

/** A balancer over `benchEndpoint(limited)` in the given store's context, built in the current scope. */
export const benchBalancer = (
  context: Context.Context<never> | Context.Context<Store.Store>,
  limited: boolean
): Effect.Effect<Balancer.BalancerService, unknown, Scope.Scope> =>
  Effect.provide(Balancer.make({ endpoints: [benchEndpoint(limited)] }), context as Context.Context<Store.Store>)

/** What the balancer's events said about its store: a fallback means calls served locally, with no round trip. */
export interface StoreHealth {
  /** `StoreFellBack` events: the store did not answer in time. */
  readonly fallbacks: number
  /** `StoreResumed` events. */
  readonly resumed: number
  /** The reasons of the first few fallbacks. */
  readonly reasons: ReadonlyArray<string>
}

/**
 * Watches the balancer's store from now for as long as the scope lasts. The figures of a
 * run with any fallback are not (only) the store's.
 */
export const watchStore = (
  balancer: Balancer.BalancerService
): Effect.Effect<() => StoreHealth, never, Scope.Scope> =>
  Effect.gen(function*() {
    const events = yield* balancer.subscribe
    let fallbacks = 0
    let resumed = 0
    const reasons: Array<string> = []
    yield* Effect.forkScoped(Effect.forever(Effect.map(Queue.take(events), (event) => {
      if (event._tag === "StoreFellBack") {
        fallbacks++
        if (reasons.length < 3) reasons.push(event.reason)
      } else if (event._tag === "StoreResumed") resumed++
    })))
    return () => ({ fallbacks, resumed, reasons: [...reasons] })
  })

/**
 * Waits (up to `maxMs`) until the store is back when the balancer fell back from it, so that
 * a measured run starts with calls going to the store.
 */
export const untilStoreUp = (health: () => StoreHealth, maxMs = 10_000): Effect.Effect<void> =>
  Effect.suspend(() => {
    const deadline = Date.now() + maxMs
    return Effect.whileLoop({
      while: () => health().fallbacks > health().resumed && Date.now() < deadline,
      body: () => Effect.sleep(20),
      step: () => {}
    })
  })

export interface LoadResult {
  /** Acquire + release pairs completed. */
  readonly ops: number
  readonly elapsedMs: number
  readonly opsPerSecond: number
}

/**
 * A closed loop: `concurrency` fibers each run acquire + release back to back until
 * `durationMs` have passed since the start; pairs per second over the time until the
 * last fiber is done.
 */
export const runLoad = (
  balancer: Balancer.BalancerService,
  concurrency: number,
  durationMs: number
): Effect.Effect<LoadResult, unknown> =>
  Effect.suspend(() => {
    const start = performance.now()
    const deadline = start + durationMs
    let ops = 0
    const loop = Effect.whileLoop({
      while: () => performance.now() < deadline,
      body: () => pair(balancer),
      step: () => {
        ops++
      }
    })
    return Effect.map(
      Effect.forEach(Array.from({ length: concurrency }), () => loop, { concurrency: "unbounded", discard: true }),
      () => {
        const elapsedMs = performance.now() - start
        return { ops, elapsedMs, opsPerSecond: ops / (elapsedMs / 1000) }
      }
    )
  })

// --- the worker process --------------------------------------------------------------------

export interface WorkerConfig {
  readonly store: "none" | "redis"
  readonly url: string
  readonly prefix: string
  /** The Redis store's timeout in ms; its default when absent. */
  readonly timeoutMs?: number | undefined
  readonly limited: boolean
  readonly concurrency: number
  readonly warmupMs: number
  readonly durationMs: number
}

export interface WorkerResult extends LoadResult {
  readonly pid: number
  /** Epoch ms when the measured run started and ended in this process. */
  readonly startedAt: number
  readonly endedAt: number
  /** Pairs this process completed, warm-up included (admitted by the store too, unless it fell back). */
  readonly admitted: number
  readonly store: StoreHealth
  /** CPU ms this process used in the measured run. */
  readonly cpuMs: number
}

const nextLine = (lines: AsyncIterator<string>) =>
  Effect.promise(async () => {
    const next = await lines.next()
    if (next.done === true) throw new Error("stdin closed before the start time came")
    return next.value
  })

const worker = (config: WorkerConfig) =>
  Effect.scoped(Effect.gen(function*() {
    const context = yield* storeContext(config.store, config)
    const balancer = yield* benchBalancer(context, config.limited)
    const health = yield* watchStore(balancer)
    const warmup = yield* runLoad(balancer, config.concurrency, config.warmupMs)
    yield* untilStoreUp(health)
    const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
    process.stdout.write("READY\n")
    const startAt = Number(yield* nextLine(lines))
    yield* Effect.sleep(Math.max(0, startAt - Date.now()))
    const startedAt = Date.now()
    const cpu = process.cpuUsage()
    const load = yield* runLoad(balancer, config.concurrency, config.durationMs)
    const used = process.cpuUsage(cpu)
    const result: WorkerResult = {
      ...load,
      pid: process.pid,
      startedAt,
      endedAt: Date.now(),
      admitted: warmup.ops + load.ops,
      store: health(),
      cpuMs: (used.user + used.system) / 1000
    }
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`)
  }))

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)

if (isMain) {
  const config = JSON.parse(process.argv[2] ?? "") as WorkerConfig
  Effect.runPromise(worker(config)).then(
    () => process.exit(0),
    (error) => {
      console.error(error)
      process.exit(1)
    }
  )
}
