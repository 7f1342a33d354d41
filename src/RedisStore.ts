/**
 * The shared state on Redis (`ioredis` ^5, an optional peer dependency: install it to use
 * this module). Several processes whose balancers use the same Redis and `prefix` share
 * their rate limits, cooldowns, circuits and spend (see `Store`).
 *
 * ```ts
 * const BalancerLive = Balancer.layer(options).pipe(
 *   Layer.provide(RedisStore.layer({ url: "redis://127.0.0.1:6379", prefix: "my-app" }))
 * )
 * ```
 *
 * - Admission is one server-side script (one round trip): it checks and reserves every
 *   limit at once, on the server's clock.
 * - Every key starts with `{prefix}`: one hash tag, so the scripts work on Redis Cluster
 *   (all of a prefix's keys live on one node). Every key expires by itself; a run leaves
 *   nothing behind once its windows, cooldowns and periods are over.
 * - A command that does not answer within `timeout` (50 ms by default) fails, and the
 *   balancer falls back to its own state until Redis answers again. Commands are never
 *   queued while the connection is down.
 * - The layer fails to build, with {@link RedisStoreError}, when its options are invalid
 *   or Redis cannot be reached (within `connectTimeout`).
 *
 * @since 0.1.0
 */
import type { Scope } from "effect"
import { Data, Duration, Effect, Layer } from "effect"
import type { RedisOptions } from "ioredis"
import { Redis } from "ioredis"
import * as internal from "./internal/store/redis.js"
import type { StoreService } from "./Store.js"
import { Store } from "./Store.js"

/**
 * The Redis store could not be built: a bad option, or Redis could not be reached. The
 * message names the server without its password.
 *
 * @since 0.1.0
 * @category errors
 */
export class RedisStoreError extends Data.TaggedError("RedisStoreError")<{
  readonly reason: string
}> {
  override get message(): string {
    return `Redis store: ${this.reason}`
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `redis://[user:password@]host:port[/db]` (or `rediss://`). Default `redis://127.0.0.1:6379`. */
  readonly url?: string
  /** More `ioredis` options (TLS, password, family...); the store sets its own timeouts. */
  readonly redis?: RedisOptions
  /**
   * A client of your own instead of `url`/`redis`: it is not closed with the layer. Give it
   * `enableOfflineQueue: false`, or calls may wait for a reconnection.
   */
  readonly client?: Redis
  /** Starts every key (as a hash tag: `{prefix}:...`). Default `"llm-balancer"`. */
  readonly prefix?: string
  /** The longest a call waits on Redis before the balancer falls back. Default 50 ms. */
  readonly timeout?: Duration.DurationInput
  /** The longest the layer waits to connect when it is built. Default 2 s. */
  readonly connectTimeout?: Duration.DurationInput
  /**
   * How long a half-open probe's slot lasts when its process never reports its end (it
   * died): then another may probe. Default 60 s; make it longer than your longest call.
   */
  readonly probeTimeout?: Duration.DurationInput
}

/**
 * Builds the store in a scope, connected; the connection closes with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<StoreService, RedisStoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const resolved = yield* Effect.try({
      try: () => internal.resolve(options),
      catch: (error) => new RedisStoreError({ reason: error instanceof Error ? error.message : String(error) })
    })
    const client = options.client ?? (yield* Effect.acquireRelease(
      Effect.try({
        try: () =>
          new Redis(resolved.url, {
            ...options.redis,
            lazyConnect: true,
            enableOfflineQueue: false,
            maxRetriesPerRequest: 0,
            connectTimeout: resolved.connectTimeoutMs,
            // reconnect soon and forever: the balancer serves locally meanwhile
            retryStrategy: (times: number) => Math.min(times * 50, 500)
          }),
        // ioredis refuses some settings in its constructor (sentinels without a name, say)
        catch: (error) =>
          new RedisStoreError({
            reason: `bad redis options: ${error instanceof Error ? error.message : String(error)}`
          })
      }),
      (client) => internal.close(client)
    ))
    if (options.client === undefined) {
      // connection errors are answered by falling back, not by ioredis's unhandled-error log
      client.on("error", () => {})
      yield* Effect.tryPromise({
        try: () => client.connect(),
        catch: (error) =>
          new RedisStoreError({
            reason: `cannot connect to ${resolved.server}: ${error instanceof Error ? error.message : String(error)}`
          })
      }).pipe(
        Effect.timeoutFail({
          duration: Duration.millis(resolved.connectTimeoutMs + 100),
          onTimeout: () =>
            new RedisStoreError({
              reason: `cannot connect to ${resolved.server} within ${resolved.connectTimeoutMs} ms`
            })
        })
      )
    }
    return yield* Effect.mapError(
      internal.make(client, resolved),
      (error) => new RedisStoreError({ reason: `${resolved.server} does not run the store's scripts: ${error.reason}` })
    )
  })

/**
 * The store as a layer, for `Balancer.layer(...).pipe(Layer.provide(RedisStore.layer(...)))`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Store, RedisStoreError> => Layer.scoped(Store, make(options))
