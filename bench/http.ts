/**
 * The HTTP bench: chat calls to a loopback OpenAI-compatible server (in its own process),
 * made directly with the `OpenAiCompatible` provider's `complete` (the same `HttpClient`
 * calls, no routing) and through `Llm.complete` (Router + Balancer over 4 endpoints that
 * all point at the server), at 64 and 256 calls in flight. The two alternate, repetition
 * by repetition, so that drift on a shared machine hits both alike.
 */
import { FetchHttpClient } from "@effect/platform"
import { Effect, Fiber, Layer } from "effect"
import { Balancer, Chat, Endpoint, Llm, OpenAiCompatible, Provider, Router } from "effect-llm-balancer"
import { fork } from "node:child_process"
import { median } from "./harness.js"

export interface HttpCase {
  readonly concurrency: number
  readonly calls: number
  readonly direct: Measure
  readonly routed: Measure
  readonly throughputRatio: number
  readonly addedP50Ms: number
  readonly addedP99Ms: number
}

export interface Measure {
  /** Calls per second, median of the repetitions. */
  readonly throughput: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly runs: ReadonlyArray<{ readonly throughput: number; readonly p50Ms: number; readonly p99Ms: number }>
}

const quantile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]

/** Starts the server process; its port, and a way to stop it. */
const startServer = Effect.acquireRelease(
  Effect.async<{ readonly port: number; readonly stop: () => void }, Error>((resume) => {
    const child = fork(new URL("./loopbackServer.mjs", import.meta.url), [], {
      stdio: ["ignore", "pipe", "inherit", "ipc"]
    })
    child.stdout!.once("data", (data: Buffer) => {
      resume(Effect.succeed({ port: Number(String(data).trim()), stop: () => child.kill("SIGTERM") }))
    })
    child.once("error", (error) => resume(Effect.fail(error)))
  }),
  (server) => Effect.sync(server.stop)
)

/** Runs `calls` calls of `one`, `concurrency` at a time; throughput and latency quantiles. */
const measure = <E, R>(one: Effect.Effect<unknown, E, R>, calls: number, concurrency: number) =>
  Effect.gen(function*() {
    const latencies: Array<number> = []
    const timed = Effect.suspend(() => {
      const start = performance.now()
      return Effect.map(one, () => {
        latencies.push(performance.now() - start)
      })
    })
    const start = performance.now()
    yield* Effect.forEach(Array.from({ length: calls }), () => timed, { concurrency, discard: true })
    const seconds = (performance.now() - start) / 1000
    latencies.sort((a, b) => a - b)
    return { throughput: calls / seconds, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99) }
  })

/**
 * Open loop: calls start at a fixed rate (evenly spaced), whatever the earlier ones are
 * doing, for `calls` calls per path; the latency of each, without the queueing a closed
 * loop adds. The two paths alternate call by call in one stream (which goes first in a
 * pair alternates too), so a collector pause or a slow moment of the server falls on both
 * alike: the difference between them is what routing adds, not which of two runs was luckier.
 */
const measureOpen = <E1, E2, R>(
  direct: Effect.Effect<unknown, E1, R>,
  routed: Effect.Effect<unknown, E2, R>,
  calls: number,
  ratePerSecond: number
) =>
  Effect.gen(function*() {
    const latencies = { direct: [] as Array<number>, routed: [] as Array<number> }
    const gapMs = 1000 / ratePerSecond
    const start = performance.now()
    const fibers = []
    for (let i = 0; i < 2 * calls; i++) {
      const due = start + i * gapMs
      const wait = due - performance.now()
      if (wait >= 1) yield* Effect.sleep(Math.floor(wait))
      const pair = Math.floor(i / 2)
      const path = (i + pair) % 2 === 0 ? "direct" : "routed"
      const one: Effect.Effect<unknown, E1 | E2, R> = path === "direct" ? direct : routed
      fibers.push(
        yield* Effect.fork(Effect.suspend(() => {
          const began = performance.now()
          return Effect.map(one, () => {
            latencies[path].push(performance.now() - began)
          })
        }))
      )
    }
    for (const fiber of fibers) yield* Fiber.join(fiber)
    const quantiles = (xs: Array<number>) => {
      xs.sort((a, b) => a - b)
      return { p50Ms: quantile(xs, 0.5), p99Ms: quantile(xs, 0.99) }
    }
    return { direct: quantiles(latencies.direct), routed: quantiles(latencies.routed) }
  })

const summarize = (runs: ReadonlyArray<{ throughput: number; p50Ms: number; p99Ms: number }>): Measure => ({
  throughput: median(runs.map((r) => r.throughput)),
  p50Ms: median(runs.map((r) => r.p50Ms)),
  p99Ms: median(runs.map((r) => r.p99Ms)),
  runs
})

export const runHttp = (options: {
  readonly concurrencies: ReadonlyArray<number>
  readonly calls: number
  readonly repetitions: number
  /** Rounds of `calls` per path before measuring. */
  readonly warmupRounds: number
  /** Calls per path and repetition of the open-loop measurement. */
  readonly openCalls: number
}) =>
  Effect.scoped(Effect.gen(function*() {
    const server = yield* startServer
    const baseUrl = `http://127.0.0.1:${server.port}/v1`
    const endpoints = ["a", "b", "c", "d"].map((name) => ({ name, provider: "openai", model: "bench", baseUrl }))
    const provider = yield* OpenAiCompatible.make().pipe(Effect.provide(FetchHttpClient.layer))
    const context = yield* Layer.build(
      Router.layer().pipe(
        Layer.provideMerge(Balancer.layer({ endpoints })),
        Layer.merge(Provider.layer({ openai: provider }))
      )
    )
    const endpoint = yield* Endpoint.decode(endpoints[0])
    const request = Chat.request({ messages: [{ role: "user", content: "ping" }], maxTokens: 8 })
    const direct = provider.complete(endpoint, request)
    const routed = Llm.complete(request)
    const measureRouted = (calls: number, concurrency: number) =>
      Effect.provide(measure(routed, calls, concurrency), context)
    // warm up both paths (connections, JIT): throughput still climbs for about 12,000 calls
    for (let i = 0; i < options.warmupRounds; i++) {
      yield* measure(direct, options.calls, 64)
      yield* measureRouted(options.calls, 64)
    }
    const cases: Array<HttpCase> = []
    for (const concurrency of options.concurrencies) {
      const directRuns: Array<Measure["runs"][number]> = []
      const routedRuns: Array<Measure["runs"][number]> = []
      for (let i = 0; i < options.repetitions; i++) {
        directRuns.push(yield* measure(direct, options.calls, concurrency))
        routedRuns.push(yield* measureRouted(options.calls, concurrency))
      }
      const d = summarize(directRuns)
      const r = summarize(routedRuns)
      cases.push({
        concurrency,
        calls: options.calls,
        direct: d,
        routed: r,
        throughputRatio: r.throughput / d.throughput,
        addedP50Ms: r.p50Ms - d.p50Ms,
        addedP99Ms: r.p99Ms - d.p99Ms
      })
    }
    // open loop at half the slower path's closed-loop throughput (both paths together): the
    // latency a call gains
    const rate = Math.round(Math.min(...cases.map((c) => c.routed.throughput)) / 2)
    const openRuns: Array<{ direct: { p50Ms: number; p99Ms: number }; routed: { p50Ms: number; p99Ms: number } }> = []
    for (let i = 0; i < options.repetitions; i++) {
      openRuns.push(yield* Effect.provide(measureOpen(direct, routed, options.openCalls, rate), context))
    }
    const open = {
      ratePerSecond: rate,
      calls: options.openCalls,
      direct: {
        p50Ms: median(openRuns.map((r) => r.direct.p50Ms)),
        p99Ms: median(openRuns.map((r) => r.direct.p99Ms))
      },
      routed: {
        p50Ms: median(openRuns.map((r) => r.routed.p50Ms)),
        p99Ms: median(openRuns.map((r) => r.routed.p99Ms))
      },
      runs: openRuns
    }
    return { cases, open, repetitions: options.repetitions, warmupRounds: options.warmupRounds }
  }))
