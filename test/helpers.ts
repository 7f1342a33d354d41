import { Context, Effect, Layer } from "effect"
import type { Endpoint } from "../src/index.js"
import { Balancer, Router } from "../src/index.js"

export const endpoint = (name: string, extra: Partial<Endpoint.Input> = {}): Endpoint.Input => ({
  name,
  provider: "mock",
  model: "mock-1",
  ...extra
})

/** Builds a balancer in the current scope, dying on a bad config (tests pass good ones). */
export const makeBalancer = (options: Balancer.Options) => Effect.orDie(Balancer.make(options))

/** Picks `n` times with `use`, returning the names chosen. */
export const pick = (balancer: Balancer.BalancerService, n: number, hints?: Balancer.Hints) =>
  Effect.forEach(
    Array.from({ length: n }, (_, i) => i),
    () => balancer.use((e) => Effect.succeed(e.name), hints)
  )

/** A balancer and a router over it, built in the test's scope (so on its TestClock). */
export const makeRouter = (options: Balancer.Options, routerOptions?: Router.Options) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(Router.layer(routerOptions).pipe(Layer.provideMerge(Balancer.layer(options))))
      .pipe(Effect.orDie)
    return {
      balancer: Context.get(context, Balancer.Balancer),
      router: Context.get(context, Router.Router),
      context
    }
  })
