/**
 * One "process" of the cluster in `storeProcesses.test.ts`: a balancer over a real Redis
 * store, driven by a JSON config given as the only argument.
 *
 * ```sh
 * node --import tsx test/support/storeWorker.ts '{"mode":"rpm","url":"redis://127.0.0.1:6379","prefix":"p",...}'
 * ```
 *
 * The handshake: once its balancer is built (Redis connected, scripts loaded) the worker
 * prints `{"ready":true}` and waits for one line on stdin: the common start time (epoch
 * ms) of all workers, so that every worker runs its load over the same moment however
 * long it took to start. It then runs its mode, prints one JSON line with its results and
 * exits by itself once its scope (and the Redis connection) is closed.
 *
 * Modes:
 * - `rpm`: `fibers` fibers offer calls to endpoint `x` (`rpm: 60`) for `durationMs`,
 *   a `pauseMs` pause between attempts; prints `{ admitted, refused, failedOther, fellBack }`.
 * - `breaker`: after `breakAfterMs`, sends failing calls (503) to `x` until its circuit
 *   opens; prints `{ releaseCalledAt, openedAt, until, failures, fellBack }`.
 * - `observer`: `fibers` fibers call with success until `durationMs`, holding each call
 *   on `x` `holdMs`; prints every call (`calls`: start, admission, release, end, endpoint),
 *   and `refused`, `failedOther`, `fellBack`.
 */
import type { Scope } from "effect"
import { Cause, Chunk, Duration, Effect, Exit, Layer, Queue } from "effect"
// the modules themselves, not `src/index.js`: every module tsx loads slows the start, and
// four workers start at once
import * as Balancer from "../../src/Balancer.js"
import type * as Endpoint from "../../src/Endpoint.js"
import * as Errors from "../../src/Errors.js"
import * as Outcome from "../../src/Outcome.js"
import * as RedisStore from "../../src/RedisStore.js"

interface Common {
  readonly url: string
  readonly prefix: string
  /** The store's command timeout (ms); generous, so a busy machine does not make it fall back. */
  readonly timeoutMs: number
}

export type WorkerConfig =
  | Common & { readonly mode: "rpm"; readonly fibers: number; readonly durationMs: number; readonly pauseMs: number }
  | Common & { readonly mode: "breaker"; readonly breakAfterMs: number }
  | Common & {
    readonly mode: "observer"
    readonly fibers: number
    readonly durationMs: number
    readonly holdMs: number
    readonly pauseMs: number
  }

export interface RpmResult {
  readonly admitted: number
  readonly refused: number
  readonly failedOther: number
  readonly fellBack: number
}

export interface BreakerResult {
  /** Just before the release that opened the circuit: the store knew nothing yet. */
  readonly releaseCalledAt: number
  /** Just after it: the store had the circuit open. */
  readonly openedAt: number
  /** The end of the open period, from the breaker's `EndpointUnhealthy` event. */
  readonly until: number
  readonly failures: number
  readonly fellBack: number
}

/** One observer call: when `acquire` was called, returned, when `release` was called, returned. */
export interface Call {
  readonly endpoint: string
  readonly startedAt: number
  readonly admittedAt: number
  readonly releasedAt: number
  readonly endedAt: number
}

export interface ObserverResult {
  readonly calls: ReadonlyArray<Call>
  readonly refused: number
  readonly failedOther: number
  readonly fellBack: number
}

/** The health policy of the circuit scenario, the same in every worker. */
export const circuitHealth = { maxFailures: 3, recoveryTimeout: "2 seconds", halfOpenProbes: 1 } as const

/** As `endpoint` in `test/helpers.ts` (not imported: it loads all of `src/index.js`). */
const endpoint = (name: string, extra: Partial<Endpoint.Input> = {}): Endpoint.Input => ({
  name,
  provider: "mock",
  model: "mock-1",
  ...extra
})

const now = Effect.sync(() => Date.now())

/** Sleeps until the epoch ms `at` (real time). */
const sleepUntil = (at: number) => Effect.suspend(() => Effect.sleep(Duration.millis(Math.max(0, at - Date.now()))))

/** Prints `{"ready":true}` and reads the common start time from the first line on stdin. */
const handshake: Effect.Effect<number> = Effect.async<number>((resume) => {
  let buffered = ""
  const onData = (chunk: Buffer) => {
    buffered += chunk.toString("utf8")
    const newline = buffered.indexOf("\n")
    if (newline === -1) return
    cleanup()
    const startAt = Number(buffered.slice(0, newline).trim())
    resume(
      Number.isFinite(startAt) ? Effect.succeed(startAt) : Effect.dieMessage(`bad start time ${buffered.slice(0, 100)}`)
    )
  }
  const onEnd = () => {
    cleanup()
    resume(Effect.dieMessage("stdin closed before the start time came"))
  }
  const cleanup = () => {
    process.stdin.off("data", onData)
    process.stdin.off("end", onEnd)
    // stdin must not keep the process alive once read
    process.stdin.pause()
    process.stdin.unref?.()
  }
  process.stdin.on("data", onData)
  process.stdin.on("end", onEnd)
  process.stdin.resume()
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`)
  return Effect.sync(cleanup)
})

/** A balancer over the Redis store, built in the current scope, and a count of its `StoreFellBack` events. */
const build = (config: Common, options: Balancer.Options) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      RedisStore.layer({ url: config.url, prefix: config.prefix, timeout: Duration.millis(config.timeoutMs) })
    )
    const balancer = yield* Effect.provide(Balancer.make(options), context)
    const events = yield* balancer.subscribe
    const fellBack = Effect.map(
      Queue.takeAll(events),
      (taken) => Chunk.filter(taken, (event) => event._tag === "StoreFellBack").length
    )
    return { balancer, fellBack }
  })

/** Runs `body` in `fibers` fibers at once until the epoch ms `end`, `pauseMs` after each round. */
const loopUntil = (fibers: number, end: number, pauseMs: number, body: Effect.Effect<void>) =>
  Effect.forEach(
    Array.from({ length: fibers }, (_, i) => i),
    () =>
      Effect.whileLoop({
        while: () => Date.now() < end,
        body: () => Effect.zipRight(body, Effect.sleep(Duration.millis(pauseMs))),
        step: () => {}
      }),
    { concurrency: "unbounded", discard: true }
  )

const rpm = (config: WorkerConfig & { readonly mode: "rpm" }): Effect.Effect<RpmResult, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const { balancer, fellBack } = yield* build(config, { endpoints: [endpoint("x", { limits: { rpm: 60 } })] })
    const startAt = yield* handshake
    yield* sleepUntil(startAt)
    let admitted = 0
    let refused = 0
    let failedOther = 0
    const attempt = Effect.flatMap(Effect.exit(balancer.acquire()), (exit) => {
      if (Exit.isSuccess(exit)) {
        admitted++
        return balancer.release(exit.value, Outcome.success())
      }
      const error = Cause.failureOption(exit.cause)
      if (error._tag === "Some" && error.value instanceof Errors.NoEndpointAvailable) refused++
      else failedOther++
      return Effect.void
    })
    yield* loopUntil(config.fibers, startAt + config.durationMs, config.pauseMs, attempt)
    return { admitted, refused, failedOther, fellBack: yield* fellBack }
  })

const breaker = (config: WorkerConfig & { readonly mode: "breaker" }) =>
  Effect.gen(function*() {
    const { balancer, fellBack } = yield* build(config, {
      health: circuitHealth,
      endpoints: [endpoint("x", { priority: 0 }), endpoint("y", { priority: 1 })]
    })
    const events = yield* balancer.subscribe
    const startAt = yield* handshake
    yield* sleepUntil(startAt + config.breakAfterMs)
    const failed = Outcome.failure(new Errors.Unavailable({ status: 503 }))
    let failures = 0
    for (;;) {
      if (failures >= 10) return yield* Effect.dieMessage("the circuit did not open after 10 failures")
      const lease = yield* balancer.acquire()
      if (lease.endpoint.name !== "x") {
        return yield* Effect.dieMessage(`the breaker was sent to ${lease.endpoint.name}, not x`)
      }
      const releaseCalledAt = yield* now
      yield* balancer.release(lease, failed)
      const openedAt = yield* now
      failures++
      const stats = yield* balancer.stats
      if (stats.find((s) => s.name === "x")?.circuit !== "open") continue
      const opened = Chunk.findFirst(
        yield* Queue.takeAll(events),
        (event) => event._tag === "EndpointUnhealthy" && event.name === "x"
      )
      if (opened._tag === "None" || opened.value._tag !== "EndpointUnhealthy" || opened.value.until === undefined) {
        return yield* Effect.dieMessage("the circuit opened without an EndpointUnhealthy event with an end")
      }
      const result: BreakerResult = {
        releaseCalledAt,
        openedAt,
        until: opened.value.until,
        failures,
        fellBack: yield* fellBack
      }
      return result
    }
  })

const observer = (config: WorkerConfig & { readonly mode: "observer" }) =>
  Effect.gen(function*() {
    const { balancer, fellBack } = yield* build(config, {
      health: circuitHealth,
      endpoints: [endpoint("x", { priority: 0 }), endpoint("y", { priority: 1 })]
    })
    const startAt = yield* handshake
    yield* sleepUntil(startAt)
    const calls: Array<Call> = []
    let refused = 0
    let failedOther = 0
    const call = Effect.gen(function*() {
      const startedAt = yield* now
      const exit = yield* Effect.exit(balancer.acquire())
      if (Exit.isFailure(exit)) {
        const error = Cause.failureOption(exit.cause)
        if (error._tag === "Some" && error.value instanceof Errors.NoEndpointAvailable) refused++
        else failedOther++
        return
      }
      const lease = exit.value
      const admittedAt = yield* now
      if (lease.endpoint.name === "x") yield* Effect.sleep(Duration.millis(config.holdMs))
      const releasedAt = yield* now
      yield* balancer.release(lease, Outcome.success())
      const endedAt = yield* now
      calls.push({ endpoint: lease.endpoint.name, startedAt, admittedAt, releasedAt, endedAt })
    })
    yield* loopUntil(config.fibers, startAt + config.durationMs, config.pauseMs, call)
    const result: ObserverResult = { calls, refused, failedOther, fellBack: yield* fellBack }
    return result
  })

const run = (config: WorkerConfig): Effect.Effect<unknown, unknown, Scope.Scope> => {
  switch (config.mode) {
    case "rpm":
      return rpm(config)
    case "breaker":
      return breaker(config)
    case "observer":
      return observer(config)
  }
}

/** How long the worker may take to exit once its result is printed before it is made to. */
const EXIT_GRACE_MS = 5_000

const main = async () => {
  const config = JSON.parse(process.argv[2] ?? "") as WorkerConfig
  // the scope closes (the Redis connection with it) before the result is printed
  const result = await Effect.runPromise(Effect.scoped(run(config)))
  process.stdout.write(`${JSON.stringify({ result })}\n`)
  // nothing should be left to keep the process alive; if something is, say so and go
  setTimeout(() => {
    process.stderr.write(`storeWorker (${config.mode}): still running ${EXIT_GRACE_MS} ms after its result\n`)
    process.exit(3)
  }, EXIT_GRACE_MS).unref()
}

main().catch((error: unknown) => {
  process.stderr.write(`storeWorker failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`)
  process.exitCode = 1
  setTimeout(() => process.exit(1), EXIT_GRACE_MS).unref()
})
