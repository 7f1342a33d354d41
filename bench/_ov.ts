import { Effect, Layer } from "effect"
import { Balancer, Chat, Llm, Provider, Router } from "effect-llm-balancer"
const endpoints = ["a", "b", "c", "d"].map((name) => ({ name, provider: "p", model: "m" }))
const completion = {
  text: "ok",
  finishReason: "stop" as const,
  usage: { inputTokens: 1, outputTokens: 1 },
  toolCalls: undefined,
  rateLimit: undefined
}
const provider: Provider.Provider = {
  complete: () => Effect.succeed(completion),
  stream: () => {
    throw new Error()
  }
}
const program = Effect.gen(function*() {
  const context = yield* Layer.build(
    Router.layer().pipe(Layer.provideMerge(Balancer.layer({ endpoints })), Layer.merge(Provider.layer({ p: provider })))
  )
  const request = Chat.request({ messages: [{ role: "user", content: "ping" }], maxTokens: 8 })
  const router = yield* Effect.provide(Router.Router, context)
  const balancer = yield* Effect.provide(Balancer.Balancer, context)
  const cases: Record<string, Effect.Effect<unknown, any, Router.Router | Provider.Providers>> = {
    "balancer.use": balancer.use(() => Effect.succeed(1)),
    "router.execute": router.execute(() => Effect.succeed(1)),
    "Llm.complete": Llm.complete(request)
  }
  for (let rep = 0; rep < 1; rep++) {
    for (const [name, eff] of Object.entries(cases).filter(([n]) => n === (process.env.CASE ?? n))) {
      const N = Number(process.env.N ?? 20000)
      const s = performance.now()
      yield* Effect.provide(Effect.repeatN(eff, N - 1), context)
      console.log(name, ((performance.now() - s) * 1000 / N).toFixed(1), "µs")
    }
  }
})
Effect.runPromise(Effect.scoped(program))
