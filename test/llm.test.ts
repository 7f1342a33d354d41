/**
 * Llm.complete and Llm.stream over inline providers: routing, usage, failover before the
 * first token and not after it, and the stream's lease.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Deferred, Effect, Exit, Fiber, Layer, Stream, TestClock } from "effect"
import type { Provider as ProviderModel } from "../src/index.js"
import { Balancer, Chat, Errors, Llm, Provider, Router } from "../src/index.js"
import { endpoint, makeRouter } from "./helpers.js"

const usage = { inputTokens: 12, outputTokens: 3 }

const good: ProviderModel.Provider = {
  complete: (e) =>
    Effect.succeed({
      text: `hi from ${e.name}`,
      finishReason: "stop",
      usage,
      toolCalls: undefined,
      rateLimit: undefined
    }),
  stream: (e) =>
    Stream.make(
      Chat.StreamPart.Start({ rateLimit: undefined }),
      Chat.StreamPart.Delta({ text: "hi " }),
      Chat.StreamPart.Delta({ text: `from ${e.name}` }),
      Chat.StreamPart.Finish({ finishReason: "stop", usage })
    ).pipe(Stream.tap(() => Effect.sleep("100 millis")))
}

const down: ProviderModel.Provider = {
  complete: (e) => Effect.fail(new Errors.Unavailable({ endpoint: e.name, status: 503 })),
  stream: (e) => Stream.fail(new Errors.Unavailable({ endpoint: e.name, status: 503 }))
}

/** Streams two tokens, then fails. */
const cutsOff: ProviderModel.Provider = {
  complete: down.complete,
  stream: (e) =>
    Stream.concat(
      Stream.make(Chat.StreamPart.Delta({ text: "a" }), Chat.StreamPart.Delta({ text: "b" })),
      Stream.fail(new Errors.MalformedResponse({ endpoint: e.name, detail: "connection reset" }))
    )
}

const setup = (providers: Record<string, ProviderModel.Provider>, names: ReadonlyArray<[string, string]>) =>
  Effect.gen(function*() {
    const { balancer, context } = yield* makeRouter({
      endpoints: names.map(([name, provider]) => endpoint(name, { provider })),
      strategy: "round-robin"
    })
    const registry = yield* Layer.build(Provider.layer(providers))
    return { balancer, context: Context.merge(context, registry) }
  })

const request = { messages: [{ role: "user" as const, content: "hello there" }], maxTokens: 20 }

describe("Llm", () => {
  it.scoped("complete fails over to a healthy endpoint and records the usage", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* setup({ down, good }, [["a", "down"], ["b", "good"]])
      const answer = yield* Effect.provide(Llm.complete(request), context)
      expect(answer.text).toBe("hi from b")
      expect(answer.endpoint.name).toBe("b")
      expect(answer.attempts.map((a) => [a.endpoint, a.outcome])).toEqual([["a", "Unavailable"], ["b", "Success"]])
      const b = (yield* balancer.stats).find((s) => s.name === "b")!
      expect([b.inputTokens, b.outputTokens]).toEqual([12, 3])
    }))

  it.scoped("a balancer wrapped by the caller (its own use, its own leases) is called through, not around", () =>
    Effect.gen(function*() {
      // the router and Llm take shortcuts into this library's own balancer and leases; a
      // wrapper that puts its own `use` in, and hands out leases with its own `report`,
      // must see every call and every report
      const real = yield* Balancer.make({ endpoints: [endpoint("a", { provider: "good" })] })
      const uses: Array<string> = []
      const reports: Array<unknown> = []
      const wrapped: Balancer.BalancerService = {
        ...real,
        use: (f, hints) =>
          real.use((e, lease) => {
            uses.push(e.name)
            const own: Balancer.Lease = Object.assign(Object.create(lease), {
              report: (report: Balancer.Report) =>
                Effect.zipRight(Effect.sync(() => reports.push(report)), lease.report(report))
            })
            return f(e, own)
          }, hints)
      }
      const context = yield* Layer.build(
        Router.layer().pipe(
          Layer.provideMerge(Layer.succeed(Balancer.Balancer, wrapped)),
          Layer.merge(Provider.layer({ good }))
        )
      )
      const answer = yield* Effect.provide(Llm.complete(request), context)
      expect(answer.attempts.map((a) => [a.endpoint, a.outcome])).toEqual([["a", "Success"]])
      expect(uses).toEqual(["a"])
      expect(reports).toEqual([{ usage, rateLimit: undefined }])
      const a = (yield* real.stats)[0]
      expect([a.inputTokens, a.outputTokens, a.active]).toEqual([12, 3, 0])
    }))

  it.scoped("a router wrapped by the caller (its own execute) is called through, and the usage still reported", () =>
    Effect.gen(function*() {
      // Llm.complete takes a shortcut into this library's own router; a wrapper that puts
      // its own `execute` in must see the call, and the answer must be whole
      const { balancer, context } = yield* setup({ good }, [["a", "good"]])
      const real = Context.get(context, Router.Router)
      const calls: Array<number> = []
      const wrapped: Router.RouterService = {
        ...real,
        execute: (call, policy) => {
          calls.push(calls.length + 1)
          return real.execute(call, policy)
        }
      }
      const answer = yield* Effect.provide(
        Llm.complete(request),
        Context.add(context, Router.Router, wrapped)
      )
      expect(calls).toEqual([1])
      expect([answer.text, answer.endpoint.name, answer.usage]).toEqual(["hi from a", "a", usage])
      expect(answer.attempts.map((a) => [a.endpoint, a.outcome])).toEqual([["a", "Success"]])
      const a = (yield* balancer.stats)[0]
      expect([a.inputTokens, a.outputTokens, a.active]).toEqual([12, 3, 0])
    }))

  it.scoped("a wrapped lease's own report runs inside the attempt: under its timeout, and interruptible", () =>
    Effect.gen(function*() {
      const real = yield* Balancer.make({ endpoints: [endpoint("a", { provider: "good" })] })
      const wrapped: Balancer.BalancerService = {
        ...real,
        use: (f, hints) =>
          real.use((e, lease) =>
            f(
              e,
              Object.assign(Object.create(lease), {
                report: (report: Balancer.Report) => Effect.zipRight(Effect.sleep("10 seconds"), lease.report(report))
              })
            ), hints)
      }
      const context = yield* Layer.build(
        Router.layer().pipe(
          Layer.provideMerge(Layer.succeed(Balancer.Balancer, wrapped)),
          Layer.merge(Provider.layer({ good }))
        )
      )
      const fiber = yield* Effect.fork(
        Effect.exit(
          Effect.timeout(Effect.provide(Llm.complete(request, { attemptTimeout: "1 second" }), context), "2 seconds")
        )
      )
      yield* TestClock.adjust("3 seconds")
      // the caller's timeout ended the call on time, and the slot is free
      const exit = fiber.unsafePoll()
      expect(exit !== null && Exit.isSuccess(exit) && Exit.isFailure(exit.value)).toBe(true)
      expect((yield* real.stats)[0].active).toBe(0)
    }))

  it.scoped("a lease wrapped with Object.create that keeps the lease's report gets the usage recorded", () =>
    Effect.gen(function*() {
      const real = yield* Balancer.make({ endpoints: [endpoint("a", { provider: "good" })] })
      const wrapped: Balancer.BalancerService = {
        ...real,
        use: (f, hints) => real.use((e, lease) => f(e, Object.assign(Object.create(lease), { tag: "mine" })), hints)
      }
      const context = yield* Layer.build(
        Router.layer().pipe(
          Layer.provideMerge(Layer.succeed(Balancer.Balancer, wrapped)),
          Layer.merge(Provider.layer({ good }))
        )
      )
      yield* Effect.provide(Llm.complete(request), context)
      const a = (yield* real.stats)[0]
      expect([a.inputTokens, a.outputTokens, a.active]).toEqual([12, 3, 0])
    }))

  it.scoped("a bad request fails with InvalidRequest naming the field, before any attempt", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({ good }, [["a", "good"]])
      const error = yield* Effect.flip(
        Effect.provide(Llm.complete({ messages: [{ role: "robot", content: "x" }] } as never), context)
      )
      expect(error._tag).toBe("InvalidRequest")
      expect(error.message).toContain("messages[0].role")
    }))

  it.scoped("an endpoint whose provider is not registered fails over, naming the registered ones", () =>
    Effect.gen(function*() {
      const { context } = yield* setup({ good }, [["a", "nope"], ["b", "good"]])
      const answer = yield* Effect.provide(Llm.complete(request), context)
      expect(answer.attempts.map((a) => a.outcome)).toEqual(["UnknownProviderError", "Success"])
    }))

  it.scoped("stream fails over before its first token, holds the lease until it ends, records TTFT", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* setup({ down, good }, [["a", "down"], ["b", "good"]])
      const fiber = yield* Effect.fork(Stream.runCollect(Stream.provideContext(Llm.stream(request), context)))
      yield* TestClock.adjust("150 millis")
      expect((yield* balancer.stats).find((s) => s.name === "b")!.active).toBe(1)
      yield* TestClock.adjust("1 second")
      const events = Chunk.toReadonlyArray(yield* Fiber.join(fiber))
      expect(events.map((e) => e._tag)).toEqual(["Started", "Delta", "Delta", "Finish"])
      const started = events[0] as Extract<Chat.StreamEvent, { _tag: "Started" }>
      expect(started.endpoint.name).toBe("b")
      expect(started.attempts.map((a) => a.outcome)).toEqual(["Unavailable", "Success"])
      const b = (yield* balancer.stats).find((s) => s.name === "b")!
      expect(b.active).toBe(0)
      expect(b.successes).toBe(1)
      // first token after 200 ms (Start, then the first Delta); the whole stream 400 ms
      expect(b.avgTimeToFirstTokenMs).toBe(200)
      expect(b.avgLatencyMs).toBe(400)
      expect(b.outputTokens).toBe(3)
    }))

  it.scoped("after its first token a failing stream ends with the error and counts against the endpoint", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* setup({ cutsOff, good }, [["a", "cutsOff"], ["b", "good"]])
      const seen: Array<string> = []
      const error = yield* Effect.flip(
        Stream.runForEach(
          Stream.provideContext(Llm.stream(request), context),
          (e) => Effect.sync(() => seen.push(e._tag === "Delta" ? e.text : e._tag))
        )
      )
      expect(seen).toEqual(["Started", "a", "b"])
      expect(error._tag).toBe("MalformedResponse")
      const a = (yield* balancer.stats).find((s) => s.name === "a")!
      expect([a.active, a.failures, a.successes]).toEqual([0, 1, 0])
    }))

  it.scoped("a consumer that stops early cancels the stream and frees the slot", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* setup({ good }, [["a", "good"]])
      const fiber = yield* Effect.fork(
        Stream.runCollect(Stream.take(Stream.provideContext(Llm.stream(request), context), 2))
      )
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      const [a] = yield* balancer.stats
      expect([a.active, a.successes, a.failures]).toEqual([0, 0, 0])
    }))

  it.scoped("a consumer that stops at the finish counts the stream as a success", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* setup({ good }, [["a", "good"]])
      const fiber = yield* Effect.fork(
        Stream.runCollect(
          Stream.takeUntil(Stream.provideContext(Llm.stream(request), context), (e) => e._tag === "Finish")
        )
      )
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      const [a] = yield* balancer.stats
      expect([a.active, a.successes, a.failures, a.outputTokens]).toEqual([0, 1, 0, 3])
    }))

  it.scoped("an interruption right after the stream is routed still releases its lease", () =>
    Effect.gen(function*() {
      const { balancer, context } = yield* setup({ good }, [["a", "good"]])
      const real = Context.get(context, Router.Router)
      const routed = yield* Deferred.make<void>()
      // a router that hangs once it has routed: the widest window between routing and the stream
      const hanging: Router.RouterService = {
        execute: (call, policy) =>
          Effect.zipRight(
            Effect.zipRight(real.execute(call, policy), Deferred.succeed(routed, undefined)),
            Effect.never
          )
      }
      const fiber = yield* Effect.fork(
        Stream.runCollect(Stream.provideContext(Llm.stream(request), Context.add(context, Router.Router, hanging)))
      )
      yield* TestClock.adjust("1 second")
      yield* Deferred.await(routed)
      expect((yield* balancer.stats)[0].active).toBe(1)
      yield* Fiber.interrupt(fiber)
      const [a] = yield* balancer.stats
      expect([a.active, a.successes, a.failures]).toEqual([0, 0, 0])
    }))
})
