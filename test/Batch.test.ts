/**
 * Batch over inline providers on TestClock: input order, the concurrency bound, per-item
 * failures, progress (exact, monotonic, per endpoint), interruption, the progress bar and
 * option validation.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Clock, Context, Effect, Fiber, Layer, Random, Stream, TestClock } from "effect"
import type { Chat, Provider as ProviderModel } from "../src/index.js"
import { Batch, Errors, Provider, Router } from "../src/index.js"
import { endpoint, makeRouter } from "./helpers.js"

/** `#3 slow` -> 3: the request's number, from its content. */
const numberOf = (content: string) => Number(/#(\d+)/.exec(content)![1])

interface Probe {
  inFlight: number
  maxInFlight: number
}

/**
 * Answers after the request's latency (`latencies[n]` ms, default 100); fails with a
 * `BadRequest` when the content says "bad", and with `Unavailable` on endpoints named
 * "down*". Tracks calls in flight in `probe`.
 */
const provider = (probe: Probe, latencies: ReadonlyArray<number> = []): ProviderModel.Provider => ({
  complete: (e, request) => {
    const content = request.messages[0].content
    return Effect.acquireUseRelease(
      Effect.sync(() => {
        probe.inFlight++
        probe.maxInFlight = Math.max(probe.maxInFlight, probe.inFlight)
      }),
      () =>
        Effect.sleep(latencies[numberOf(content)] ?? 100).pipe(
          Effect.zipRight<Chat.Completion, Errors.ProviderError, never>(
            content.includes("bad")
              ? Effect.fail(new Errors.BadRequest({ endpoint: e.name, status: 400 }))
              : e.name.startsWith("down")
              ? Effect.fail(new Errors.Unavailable({ endpoint: e.name, status: 503 }))
              : Effect.succeed({
                text: `${e.name}: ${content}`,
                finishReason: "stop" as const,
                usage: { inputTokens: 5, outputTokens: 2 },
                toolCalls: undefined,
                rateLimit: undefined
              })
          )
        ),
      () => Effect.sync(() => probe.inFlight--)
    )
  },
  stream: () => Stream.die("not used")
})

const setup = (names: ReadonlyArray<string>, latencies?: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const probe: Probe = { inFlight: 0, maxInFlight: 0 }
    const { balancer, context } = yield* makeRouter(
      { endpoints: names.map((name) => endpoint(name)), strategy: "round-robin" },
      // a generous budget: these tests are about the batch, not the retry budget
      { retryBudget: { percent: 1, minPerSecond: 100 } }
    )
    const registry = yield* Layer.build(Provider.layer({ mock: provider(probe, latencies) }))
    return { balancer, probe, context: Context.merge(context, registry) }
  })

const requests = (n: number, content: (i: number) => string = (i) => `#${i}`) =>
  Array.from({ length: n }, (_, i) => ({ messages: [{ role: "user" as const, content: content(i) }], maxTokens: 10 }))

/** Runs `effect` in the background and moves the clock until it is done. */
const settle = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    yield* TestClock.adjust("10 minutes")
    return yield* Fiber.join(fiber)
  })

/** Validation fails before the router or the providers are used. */
const unreachable = Layer.merge(
  Layer.succeed(Router.Router, { execute: () => Effect.die("unreachable") }),
  Layer.succeed(Provider.Providers, new Map())
)

const activeCalls = (balancer: { readonly stats: Effect.Effect<ReadonlyArray<{ readonly active: number }>> }) =>
  Effect.map(balancer.stats, (stats) => stats.reduce((n, s) => n + s.active, 0))

describe("Batch", () => {
  it.scoped("run keeps input order under random latencies and never exceeds the concurrency", () =>
    Effect.gen(function*() {
      const latencies = yield* Effect.forEach(
        Array.from({ length: 40 }),
        () => Random.nextIntBetween(10, 2_000)
      ).pipe(Effect.withRandom(Random.make("batch")))
      const { context, probe } = yield* setup(["a", "b", "c"], latencies)
      const seen: Array<Batch.Progress> = []
      const items = yield* settle(Effect.provide(
        Batch.run(requests(40), { concurrency: 5, onProgress: (p) => Effect.sync(() => seen.push(p)) }),
        context
      ))
      expect(items.map((item) => item.index)).toEqual(Array.from({ length: 40 }, (_, i) => i))
      for (const item of items) {
        expect(item._tag).toBe("Success")
        if (Batch.isSuccess(item)) expect(item.response.text.endsWith(`: #${item.index}`)).toBe(true)
      }
      expect(probe.maxInFlight).toBe(5)
      expect(Math.max(...seen.map((p) => p.inFlight))).toBe(5)
      // completions really were out of order
      const completionOrder = Array.from({ length: 40 }, (_, i) => i).sort((x, y) => latencies[x] - latencies[y])
      expect(completionOrder).not.toEqual(Array.from({ length: 40 }, (_, i) => i))
    }))

  it.scoped("the default concurrency is 8", () =>
    Effect.gen(function*() {
      const { context, probe } = yield* setup(["a", "b"])
      const items = yield* settle(Effect.provide(Batch.run(requests(20)), context))
      expect(items).toHaveLength(20)
      expect(probe.maxInFlight).toBe(8)
    }))

  it.scoped("a failing request is that item's failure; the rest succeed", () =>
    Effect.gen(function*() {
      const { context } = yield* setup(["a", "b"])
      const items = yield* settle(Effect.provide(
        Batch.run(requests(6, (i) => (i % 3 === 1 ? `#${i} bad` : `#${i}`)), { concurrency: 2 }),
        context
      ))
      expect(items.map((item) => item._tag)).toEqual(["Success", "Failure", "Success", "Success", "Failure", "Success"])
      const failure = items[1]
      if (!Batch.isFailure(failure)) throw new Error("expected a failure")
      expect(failure.error._tag).toBe("RoutingFailed")
      if (failure.error._tag === "RoutingFailed") {
        expect(failure.error.reason).toBe("not-retryable")
        expect(failure.error.lastError?._tag).toBe("BadRequest")
      }
    }))

  it.scoped("an invalid request is an item failure with InvalidRequest, not a defect", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* setup(["a"])
      const input = [
        ...requests(2),
        { messages: [{ role: "robot", content: "#2" }] } as never,
        { messages: [] },
        ...requests(1)
      ]
      const progress: Array<Batch.Progress> = []
      const items = yield* settle(Effect.provide(
        Batch.run(input, { onProgress: (p) => Effect.sync(() => progress.push(p)) }),
        context
      ))
      expect(items.map((item) => item._tag)).toEqual(["Success", "Success", "Failure", "Failure", "Success"])
      const [bad, empty] = [items[2], items[3]]
      if (!Batch.isFailure(bad) || !Batch.isFailure(empty)) throw new Error("expected failures")
      expect(bad.error._tag).toBe("InvalidRequest")
      expect(bad.error.message).toContain("messages[0].role")
      expect(empty.error._tag).toBe("InvalidRequest")
      const last = progress.at(-1)!
      expect([last.done, last.succeeded, last.failed]).toEqual([5, 3, 2])
      // no attempt was made for them: they count for no endpoint
      expect(last.perEndpoint).toEqual({ a: { succeeded: 3, failed: 0 } })
      expect((yield* balancer.stats)[0].successes).toBe(3)
    }))

  it.scoped("progress is exact at the end, monotonic, timed by Clock, and split per endpoint", () =>
    Effect.gen(function*() {
      // "down" fails every call (503) and the router fails over; "bad" requests fail everywhere
      const { context } = yield* setup(["a", "b", "down"], [300, 100, 200, 500, 100, 400, 100, 200, 300, 100])
      const seen: Array<Batch.Progress> = []
      const clockAt: Array<number> = []
      const items = yield* settle(Effect.provide(
        Batch.run(requests(10, (i) => (i === 4 || i === 7 ? `#${i} bad` : `#${i}`)), {
          concurrency: 3,
          onProgress: (p) =>
            Effect.map(Clock.currentTimeMillis, (now) => {
              seen.push(p)
              clockAt.push(now)
            })
        }),
        context
      ))
      // once at the start, then when each request starts and ends
      expect(seen).toHaveLength(1 + 2 * 10)
      expect(seen[0]).toEqual({
        total: 10,
        done: 0,
        succeeded: 0,
        failed: 0,
        inFlight: 0,
        perEndpoint: {},
        elapsedMs: 0
      })
      for (let i = 1; i < seen.length; i++) {
        const [before, after] = [seen[i - 1], seen[i]]
        expect(after.done).toBeGreaterThanOrEqual(before.done)
        expect(after.succeeded).toBeGreaterThanOrEqual(before.succeeded)
        expect(after.failed).toBeGreaterThanOrEqual(before.failed)
        expect(after.elapsedMs).toBeGreaterThanOrEqual(before.elapsedMs)
        expect(after.done).toBe(after.succeeded + after.failed)
        expect(after.inFlight).toBeLessThanOrEqual(3)
        expect(Math.abs(after.done - before.done) + Math.abs(after.inFlight - before.inFlight)).toBeGreaterThan(0)
      }
      const last = seen.at(-1)!
      expect(last).toMatchObject({ total: 10, done: 10, succeeded: 8, failed: 2, inFlight: 0 })
      // the batch started at 0 on the TestClock
      expect(seen.map((p) => p.elapsedMs)).toEqual(clockAt)
      expect(last.elapsedMs).toBeGreaterThan(0)
      // the split agrees with the items: successes by the endpoint that answered, failures by the last attempt
      const expected: Record<string, { succeeded: number; failed: number }> = {}
      for (const item of items) {
        const name = item._tag === "Success"
          ? item.response.endpoint.name
          : item.error._tag === "RoutingFailed"
          ? item.error.attempts.at(-1)!.endpoint
          : undefined
        if (name === undefined) continue
        expected[name] ??= { succeeded: 0, failed: 0 }
        if (item._tag === "Success") expected[name].succeeded++
        else expected[name].failed++
      }
      expect(last.perEndpoint).toEqual(expected)
      const { a, b } = last.perEndpoint
      // "down" never answers: its calls failed over to a or b, so it has no successes
      expect(last.perEndpoint.down?.succeeded ?? 0).toBe(0)
      expect(a.succeeded + b.succeeded).toBe(8)
      expect(a.succeeded).toBeGreaterThan(0)
      expect(b.succeeded).toBeGreaterThan(0)
      const failedOn = Object.values(last.perEndpoint).reduce((n, c) => n + c.failed, 0)
      expect(failedOn).toBe(2)
    }))

  it.scoped("interrupting a batch interrupts its calls and releases every lease", () =>
    Effect.gen(function*() {
      const { balancer, context, probe } = yield* setup(["a", "b"], Array.from({ length: 10 }, () => 60_000))
      const fiber = yield* Effect.fork(Effect.provide(Batch.run(requests(10), { concurrency: 4 }), context))
      yield* TestClock.adjust("1 second")
      expect(yield* activeCalls(balancer)).toBe(4)
      expect(probe.inFlight).toBe(4)
      yield* Fiber.interrupt(fiber)
      expect(yield* activeCalls(balancer)).toBe(0)
      expect(probe.inFlight).toBe(0)
      const stats = yield* balancer.stats
      expect(stats.map((s) => s.successes + s.failures)).toEqual([0, 0])
    }))

  it.scoped("stream emits items in completion order, each with its index", () =>
    Effect.gen(function*() {
      const latencies = [500, 100, 400, 200, 300]
      const { context } = yield* setup(["a"], latencies)
      const items = yield* settle(Effect.provide(
        Stream.runCollect(Batch.stream(requests(5), { concurrency: 5 })),
        context
      ))
      expect(Chunk.toReadonlyArray(items).map((item) => item.index)).toEqual([1, 3, 4, 2, 0])
    }))

  it.scoped("a stream ended early interrupts the calls still in flight", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* setup(["a", "b"], [100, 100, 60_000, 60_000, 60_000])
      const items = yield* settle(Effect.provide(
        Stream.runCollect(Stream.take(Batch.stream(requests(5), { concurrency: 5 }), 2)),
        context
      ))
      expect(Chunk.toReadonlyArray(items).map((item) => item.index).sort()).toEqual([0, 1])
      expect(yield* activeCalls(balancer)).toBe(0)
    }))

  it.scoped("make gives the results and the progress as a stream that ends with the batch", () =>
    Effect.gen(function*() {
      const { context } = yield* setup(["a", "b"], [300, 100, 200, 400])
      const { progress, results } = yield* settle(Effect.provide(
        Effect.scoped(Effect.gen(function*() {
          const batch = yield* Batch.make(requests(4), { concurrency: 2 })
          const progress = yield* Effect.fork(Stream.runCollect(batch.progress))
          const results = yield* batch.results
          return { results, progress: Chunk.toReadonlyArray(yield* Fiber.join(progress)) }
        })),
        context
      ))
      expect(results.map((item) => [item.index, item._tag])).toEqual([
        [0, "Success"],
        [1, "Success"],
        [2, "Success"],
        [3, "Success"]
      ])
      expect(progress[0].done).toBeLessThan(4)
      expect(progress.at(-1)).toMatchObject({ total: 4, done: 4, succeeded: 4, inFlight: 0 })
      expect(progress.map((p) => p.done)).toEqual([...progress.map((p) => p.done)].sort())
    }))

  it.scoped("make: closing the scope interrupts the batch and ends its progress stream", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* setup(["a"], Array.from({ length: 3 }, () => 60_000))
      const progressFiber = yield* Effect.provide(
        Effect.scoped(Effect.gen(function*() {
          const batch = yield* Batch.make(requests(3), { concurrency: 2 })
          const fiber = yield* Effect.fork(Stream.runCollect(batch.progress))
          yield* TestClock.adjust("1 second")
          expect((yield* batch.current).inFlight).toBe(2)
          return fiber
        })),
        context
      )
      expect(yield* activeCalls(balancer)).toBe(0)
      const seen = Chunk.toReadonlyArray(yield* Fiber.join(progressFiber))
      expect(seen.at(-1)).toMatchObject({ done: 0, inFlight: 2 })
    }))

  it.scoped("an empty batch has no items and reports its progress once", () =>
    Effect.gen(function*() {
      const { context } = yield* setup(["a"])
      const seen: Array<Batch.Progress> = []
      const items = yield* Effect.provide(
        Batch.run([], { onProgress: (p) => Effect.sync(() => seen.push(p)) }),
        context
      )
      expect(items).toEqual([])
      expect(seen).toEqual([{ total: 0, done: 0, succeeded: 0, failed: 0, inFlight: 0, perEndpoint: {}, elapsedMs: 0 }])
    }))

  it.effect("concurrency that is not a whole number of at least 1 fails with InvalidConfig naming it", () =>
    Effect.gen(function*() {
      for (const concurrency of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, "4" as never]) {
        const fromRun = yield* Effect.flip(Batch.run(requests(1), { concurrency }))
        expect(fromRun._tag).toBe("InvalidConfig")
        expect(fromRun.issues.map((i) => i.path)).toEqual(["concurrency"])
        const fromStream = yield* Effect.flip(Stream.runDrain(Batch.stream(requests(1), { concurrency })))
        expect(fromStream.issues.map((i) => i.path)).toEqual(["concurrency"])
        const fromMake = yield* Effect.flip(Effect.scoped(Batch.make(requests(1), { concurrency })))
        expect(fromMake.issues.map((i) => i.path)).toEqual(["concurrency"])
      }
      const error = yield* Effect.flip(Batch.run(requests(1), { concurrency: 0 }))
      expect(error.message).toContain("concurrency: must be a whole number of at least 1, got 0")
    }).pipe(Effect.provide(unreachable)))

  it.effect("an unusable policy fails the batch with InvalidConfig before any request", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Batch.run(requests(3), { concurrency: 0, policy: { maxAttempts: 0, timeout: "soon" as never } })
      )
      expect(error.issues.map((i) => i.path)).toEqual(["concurrency", "policy", "policy"])
      expect(error.issues[1].message).toContain("maxAttempts")
      expect(error.issues[2].message).toContain("timeout")
    }).pipe(Effect.provide(unreachable)))

  it.effect("progressBar redraws one line in a terminal and ends it with a newline", () =>
    Effect.gen(function*() {
      const out: Array<string> = []
      const bar = Batch.progressBar({ write: (s) => out.push(s), isTTY: true, width: 10, label: "batch" })
      const progress = (done: number, inFlight: number, elapsedMs: number): Batch.Progress => ({
        total: 4,
        done,
        succeeded: done === 0 ? 0 : done - 1,
        failed: done === 0 ? 0 : 1,
        inFlight,
        perEndpoint: {},
        elapsedMs
      })
      yield* bar(progress(0, 0, 0))
      yield* bar(progress(2, 2, 1_250))
      yield* bar(progress(4, 0, 3_000))
      expect(out).toEqual([
        "\rbatch [----------] 0/4    0%  ok 0  failed 0  in flight 0  0.0s\u001b[K",
        "\rbatch [#####-----] 2/4   50%  ok 1  failed 1  in flight 2  1.3s\u001b[K",
        "\rbatch [##########] 4/4  100%  ok 3  failed 1  in flight 0  3.0s\u001b[K\n"
      ])
    }))

  it.scoped("progressBar writes nothing when not in a terminal; in one, it draws every change of a batch", () =>
    Effect.gen(function*() {
      const { context } = yield* setup(["a"], [100, 200, 300])
      const piped: Array<string> = []
      const tty: Array<string> = []
      const onPipe = Batch.progressBar({ write: (s) => piped.push(s), isTTY: false })
      const onTty = Batch.progressBar({ write: (s) => tty.push(s), isTTY: true })
      yield* settle(Effect.provide(
        Batch.run(requests(3), { concurrency: 2, onProgress: (p) => Effect.zipRight(onPipe(p), onTty(p)) }),
        context
      ))
      expect(piped).toEqual([])
      expect(tty).toHaveLength(1 + 2 * 3)
      expect(tty.every((s) => s.startsWith("\r"))).toBe(true)
      expect(tty.filter((s) => s.endsWith("\n"))).toEqual([tty.at(-1)])
      expect(tty.at(-1)).toContain("3/3  100%  ok 3  failed 0  in flight 0  0.4s")
    }))

  it("format puts the progress in one line", () => {
    expect(Batch.format({
      total: 120,
      done: 7,
      succeeded: 6,
      failed: 1,
      inFlight: 8,
      perEndpoint: {},
      elapsedMs: 2_449
    })).toBe("  7/120    5%  ok 6  failed 1  in flight 8  2.4s")
  })
})
