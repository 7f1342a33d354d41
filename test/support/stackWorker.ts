/**
 * The whole layer stack in a child process, under real-time load, then closed: providers
 * (OpenAI-compatible and Anthropic over `FetchHttpClient`), the balancer with active
 * health checks and the Redis store, the router, an events subscriber. It calls the
 * loopback servers the parent runs for `seconds`, measures the heap (after full
 * collections; run with `--expose-gc`) once warmed up and at the end, closes the scope,
 * and prints one JSON line with what is still open. The parent checks that the process
 * then exits by itself: nothing the library opened holds it.
 *
 *   node --expose-gc --import tsx test/support/stackWorker.ts '{"openai":..., "anthropic":..., "redis":..., "seconds":60}'
 */
import { FetchHttpClient } from "@effect/platform"
import { Effect, Layer, Stream } from "effect"
import { Anthropic, Balancer, Llm, OpenAiCompatible, Provider, Router } from "../../src/index.js"
import * as RedisStore from "../../src/RedisStore.js"

interface Config {
  readonly openai: string
  readonly anthropic: string
  readonly redis: string
  readonly seconds: number
  readonly concurrency?: number
}

const config = JSON.parse(process.argv[2]) as Config
const gc = (globalThis as { gc?: () => void }).gc
const heapMb = () => {
  gc?.()
  gc?.()
  return Math.round(process.memoryUsage().heapUsed / 1e5) / 10
}

const ProvidersLive = Provider.layer({
  openai: OpenAiCompatible.make(),
  anthropic: Anthropic.make()
}).pipe(Layer.provide(FetchHttpClient.layer))

const StackLive = Layer.mergeAll(
  Router.layer({ defaults: { timeout: "5 seconds", attemptTimeout: "2 seconds" } }),
  ProvidersLive
)
  .pipe(
    Layer.provideMerge(Balancer.layer({
      endpoints: [
        { name: "openai-1", provider: "openai", model: "gpt-4o-mini", baseUrl: config.openai, apiKey: "sk-soak-1" },
        { name: "openai-2", provider: "openai", model: "gpt-4o-mini", baseUrl: config.openai, apiKey: "sk-soak-2" },
        {
          name: "claude",
          provider: "anthropic",
          model: "claude-3-5-haiku",
          baseUrl: config.anthropic,
          apiKey: "sk-ant-soak"
        }
      ],
      healthCheck: { check: () => Effect.void, interval: "1 seconds" }
    })),
    Layer.provide(RedisStore.layer({ url: config.redis, prefix: `soak-${process.pid}` }))
  )

const request = { messages: [{ role: "user" as const, content: "Say hello" }], maxTokens: 20 }

const program = Effect.gen(function*() {
  const balancer = yield* Balancer.Balancer
  let events = 0
  let fellBack = 0
  yield* Effect.forkScoped(Stream.runForEach(balancer.events, (event) =>
    Effect.sync(() => {
      events++
      if (event._tag === "StoreFellBack") fellBack++
    })))
  const ended = { completed: 0, streamed: 0, failed: 0 }
  const deadline = Date.now() + config.seconds * 1000
  let warmHeap = 0
  const warmAt = Date.now() + Math.min(5_000, config.seconds * 250)
  const worker = (i: number) =>
    Effect.whileLoop({
      while: () => Date.now() < deadline,
      body: () =>
        Effect.exit(
          i % 2 === 0
            ? Effect.as(Llm.complete(request), "completed" as const)
            : Effect.as(Stream.runDrain(Llm.stream(request)), "streamed" as const)
        ).pipe(Effect.map((exit) => {
          if (exit._tag === "Success") ended[exit.value]++
          else ended.failed++
          if (warmHeap === 0 && Date.now() >= warmAt) warmHeap = heapMb()
        })),
      step: () => {}
    })
  yield* Effect.forEach(Array.from({ length: config.concurrency ?? 16 }, (_, i) => i), worker, {
    concurrency: "unbounded",
    discard: true
  })
  const stats = yield* balancer.stats
  return { ...ended, events, fellBack, active: stats.map((s) => s.active), warmHeapMb: warmHeap, endHeapMb: heapMb() }
})

const started = Date.now()
Effect.runPromise(Effect.scoped(Effect.provide(program, StackLive))).then(
  (result) => {
    // what is left once the scope is closed: only this process's own stdio
    const open = process.getActiveResourcesInfo().filter((r) => r !== "PipeWrap" && r !== "TTYWrap")
    // the sockets still open, by the port they talk to: fetch's idle keep-alive connections
    // belong to Node's global dispatcher (not to the layer) and close by themselves
    const sockets = (process as unknown as { _getActiveHandles: () => Array<{ remotePort?: number }> })
      ._getActiveHandles().flatMap((h) => typeof h.remotePort === "number" ? [h.remotePort] : [])
    console.log(JSON.stringify({ ...result, open, sockets, wallMs: Date.now() - started }))
  },
  (error) => {
    console.error(String(error))
    process.exitCode = 1
  }
)
