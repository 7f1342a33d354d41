/**
 * Many processes, one budget: balancers that share their limits, cooldowns, circuits and
 * spend through a `Store`.
 *
 * With `REDIS_URL` set (say `redis://127.0.0.1:6379`, after
 * `redis-server --port 6379 --save ""`), the two balancers below share a Redis store, as
 * two processes would; without it they share `Store.memory`, as two balancers in one
 * process would. Either way they admit 5 calls a minute between them, not 5 each.
 *
 *   npx tsx --tsconfig tsconfig.examples.json examples/shared-store.ts
 */
import { Console, Duration, Effect, Either, Layer } from "effect"
import type { Endpoint } from "effect-llm-balancer"
import { Balancer, Errors, Store } from "effect-llm-balancer"
import * as RedisStore from "effect-llm-balancer/RedisStore"

// one key, 5 requests per minute, shared by every process that uses it
const endpoints: ReadonlyArray<Endpoint.Input> = [
  { name: "openai-key-1", provider: "openai", model: "gpt-4o-mini", limits: { rpm: 5 }, quotaGroup: "key-1" },
  { name: "anthropic", provider: "anthropic", model: "claude-3-5-haiku", priority: 1 }
]

// the store is a layer under the balancer: the balancer's code does not change with it
const redisUrl = process.env.REDIS_URL
const StoreLive: Layer.Layer<Store.Store, RedisStore.RedisStoreError> = redisUrl === undefined
  ? Store.memory
  : RedisStore.layer({ url: redisUrl, prefix: `shared-store-example-${process.pid}`, timeout: Duration.millis(50) })

const program = Effect.gen(function*() {
  const context = yield* Layer.build(StoreLive)
  const balancerOver = (endpoints: ReadonlyArray<Endpoint.Input>) =>
    Effect.provide(Balancer.make({ endpoints }), context)
  const call = (balancer: Balancer.BalancerService) =>
    Effect.either(balancer.use((endpoint) => Effect.succeed(endpoint.name)))

  // two balancers over one store stand for two processes with the same keys
  const a = yield* balancerOver(endpoints)
  const b = yield* balancerOver(endpoints)
  // 6 calls from each: the cluster's 5 go to the key, the rest overflow to the next tier
  const picks = yield* Effect.forEach(Array.from({ length: 12 }), (_, i) => call(i % 2 === 0 ? a : b))
  const names = picks.map((p) => Either.getOrElse(p, () => "refused"))
  yield* Console.log(`12 calls from two balancers: ${names.join(", ")}`)
  yield* Console.log(
    `openai-key-1 took ${names.filter((n) => n === "openai-key-1").length} (its rpm is 5 for both together)`
  )

  // a 429 seen by one balancer rests the key for the other
  const withKey2: ReadonlyArray<Endpoint.Input> = [
    { name: "openai-key-2", provider: "openai", model: "gpt-4o-mini" },
    { name: "anthropic", provider: "anthropic", model: "claude-3-5-haiku", priority: 1 }
  ]
  const c = yield* balancerOver(withKey2)
  const d = yield* balancerOver(withKey2)
  const events = yield* d.subscribe
  yield* Effect.ignore(c.use(() => Effect.fail(new Errors.RateLimited({ retryAfter: Duration.seconds(30) }))))
  const next = yield* call(d)
  yield* Console.log(`after c's 429 on openai-key-2, d's call went to ${Either.getOrElse(next, () => "nowhere")}`)
  const shared = (yield* d.stats).find((s) => s.name === "openai-key-2")?.shared
  yield* Console.log(`d's stats: openai-key-2 turned away by the store: ${JSON.stringify(shared)}`)
  const seen = yield* events.takeAll
  yield* Console.log(`store events on d: ${Array.from(seen, (e) => e._tag).join(", ") || "none (the store answered)"}`)
})

Effect.runPromise(Effect.scoped(program)).catch((error) => {
  console.error(String(error))
  process.exitCode = 1
})
