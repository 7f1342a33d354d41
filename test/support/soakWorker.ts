/**
 * The soak's simulated day, in a child process (run with `--expose-gc`, so the heap can be
 * measured after a full collection): 24 simulated hours of traffic through the Router and
 * the Balancer, with outages, 429 bursts and brownouts, on simulated time (the
 * simulation's stepped scheduler). Prints one JSON line: the heap after each hour, the
 * requests, how they ended, and the endpoints' calls in flight at the end.
 *
 *   node --expose-gc --import tsx test/support/soakWorker.ts [hours]
 */
import { Duration, Effect, Random } from "effect"
import { Balancer, Errors, Router } from "../../src/index.js"
import { drive } from "../../src/internal/simulation/driver.js"

const HOUR = 3_600_000
const hours = Number(process.argv[2] ?? 24)
const START = Date.UTC(2026, 0, 1)
const gc = (globalThis as { gc?: () => void }).gc

const heapMb = () => {
  gc?.()
  gc?.()
  return Math.round(process.memoryUsage().heapUsed / 1e5) / 10
}

/** What an endpoint does at `t` ms into the day: its faults repeat every few hours. */
const behaviour = (name: string, t: number) => {
  const hourOfCycle = (t % (4 * HOUR)) / HOUR
  switch (name) {
    case "a":
      // down for 10 minutes every 4 hours
      return hourOfCycle < 1 / 6 ? { down: true, slow: 1, errorRate: 0, limited: false } : undefined
    case "b":
      // rate limited for 5 minutes every 4 hours, at hour 1
      return hourOfCycle >= 1 && hourOfCycle < 1 + 1 / 12
        ? { down: false, slow: 1, errorRate: 0, limited: true }
        : undefined
    case "c":
      // a brownout: 5x slower and 30 % errors, 20 minutes every 4 hours, at hour 2
      return hourOfCycle >= 2 && hourOfCycle < 2 + 1 / 3
        ? { down: false, slow: 5, errorRate: 0.3, limited: false }
        : undefined
    default:
      return undefined
  }
}

const program = Effect.gen(function*() {
  const balancer = yield* Balancer.make({
    endpoints: ["a", "b", "c", "d"].map((name) => ({
      name,
      provider: "sim",
      model: "m",
      maxConcurrency: 16,
      limits: { rpm: 600, tpm: 600_000 },
      cost: { inputPerMillion: 1, outputPerMillion: 2 }
    })),
    budget: { limit: 1_000_000, period: "1 hours" },
    healthCheck: { check: () => Effect.void, interval: "5 seconds" }
  })
  const router = yield* Effect.provideService(
    Router.make({ defaults: { maxAttempts: 3, timeout: "20 seconds", attemptTimeout: "8 seconds" } }),
    Balancer.Balancer,
    balancer
  )
  const ended = { success: 0, failed: 0 }
  const heap: Array<number> = []
  const call = Effect.gen(function*() {
    const exit = yield* Effect.exit(router.execute((endpoint, _attempt, lease) =>
      Effect.gen(function*() {
        const now = yield* Effect.clockWith((c) => c.currentTimeMillis)
        const fault = behaviour(endpoint.name, now - START)
        if (fault?.down) return yield* Effect.fail(new Errors.Unavailable({ status: 503 }))
        if (fault?.limited) {
          return yield* Effect.fail(new Errors.RateLimited({ retryAfter: Duration.seconds(20) }))
        }
        const latency = (200 + (yield* Random.nextRange(0, 1_800))) * (fault?.slow ?? 1)
        yield* Effect.sleep(Duration.millis(latency))
        if ((yield* Random.next) < (fault?.errorRate ?? 0.01)) {
          return yield* Effect.fail(new Errors.Unavailable({ status: 500 }))
        }
        yield* lease.report({ usage: { inputTokens: 500, outputTokens: 200 } })
        return latency
      }), { hints: { inputTokens: 500, outputTokens: 200, wait: "5 seconds" } }))
    if (exit._tag === "Success") ended.success++
    else ended.failed++
  })
  let requests = 0
  const traffic = Effect.gen(function*() {
    const end = START + hours * HOUR
    let nextHour = START + HOUR
    for (;;) {
      const now = yield* Effect.clockWith((c) => c.currentTimeMillis)
      if (now >= end) return
      if (now >= nextHour) {
        heap.push(heapMb())
        nextHour += HOUR
      }
      // about 1 request a second, in Poisson arrivals
      yield* Effect.sleep(Duration.millis(-Math.log(1 - (yield* Random.next)) * 1_000))
      requests++
      yield* Effect.fork(call)
    }
  })
  yield* traffic
  // the last calls end within their deadline
  yield* Effect.sleep("30 seconds")
  heap.push(heapMb())
  const stats = yield* balancer.stats
  return {
    hours,
    requests,
    ...ended,
    active: stats.map((s) => s.active),
    heapMb: heap
  }
})

const started = Date.now()
Effect.runPromise(drive(Effect.scoped(program), { start: START, seed: 7 })).then(
  (result) => {
    console.log(JSON.stringify({ ...result, wallMs: Date.now() - started }))
  },
  (error) => {
    console.error(String(error))
    process.exitCode = 1
  }
)
