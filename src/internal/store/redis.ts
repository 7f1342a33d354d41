import { Duration, Effect, Either } from "effect"
import type { Redis } from "ioredis"
import type { SharedReason } from "../../EndpointState.js"
import type { Admission, AdmitRequest, BudgetPeriod, Settle, StoreService } from "../../Store.js"
import { StoreUnavailable } from "../../Store.js"
import * as scripts from "./redisScripts.js"

export interface Resolved {
  readonly url: string
  /** The server without credentials, for messages. */
  readonly server: string
  readonly prefix: string
  readonly timeoutMs: number
  readonly connectTimeoutMs: number
  readonly probeTimeoutMs: number
}

const durationMs = (name: string, input: Duration.DurationInput | undefined, fallback: number): number => {
  if (input === undefined) return fallback
  const decoded = Duration.decodeUnknown(input)
  const ms = decoded._tag === "None" ? NaN : Duration.toMillis(decoded.value)
  // timers take at most 2^31 - 1 ms (about 24.8 days); past it Node fires them at once
  if (!(Number.isFinite(ms) && ms > 0 && ms <= maxTimerMs)) {
    throw new Error(`${name} must be a duration longer than 0 and at most 24 days, got ${show(input)}`)
  }
  return Math.ceil(ms)
}

const maxTimerMs = 2_147_483_647

const show = (value: unknown): string => {
  try {
    const text = typeof value === "string" ? JSON.stringify(value) : String(value)
    return text.length > 60 ? `${text.slice(0, 60)}...` : text
  } catch {
    return "an unreadable value"
  }
}

/** Checks the options; throws an `Error` whose message names the bad one. */
export const resolve = (options: {
  readonly url?: string | undefined
  readonly prefix?: string | undefined
  readonly timeout?: Duration.DurationInput | undefined
  readonly connectTimeout?: Duration.DurationInput | undefined
  readonly probeTimeout?: Duration.DurationInput | undefined
}): Resolved => {
  const url = options.url ?? "redis://127.0.0.1:6379"
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new Error(`url must be redis://host:port or rediss://host:port, got an unreadable URL`)
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new Error(`url must start with redis:// or rediss://, got ${parsed.protocol}//`)
  }
  const prefix = options.prefix ?? "llm-balancer"
  if (typeof prefix !== "string" || prefix === "" || /[{}]/.test(prefix)) {
    throw new Error(`prefix must be a non-empty string without braces, got ${JSON.stringify(prefix)}`)
  }
  return {
    url,
    server: `${parsed.protocol}//${parsed.host}`,
    prefix,
    timeoutMs: durationMs("timeout", options.timeout, 50),
    connectTimeoutMs: durationMs("connectTimeout", options.connectTimeout, 2_000),
    probeTimeoutMs: durationMs("probeTimeout", options.probeTimeout, 60_000)
  }
}

/**
 * Closes a client the store opened: `QUIT` (so commands already sent are answered), then
 * the socket, with no reconnection, whether or not Redis answered; done when the
 * connection has ended (so nothing of it holds the process).
 */
export const close = (client: Redis): Effect.Effect<void> =>
  Effect.promise(async () => {
    const ended = client.status === "end"
      ? Promise.resolve()
      : new Promise<void>((resolve) => client.once("end", () => resolve()))
    if (client.status === "ready") await orAfter(client.quit().catch(() => undefined), 1_000)
    client.disconnect(false)
    // a client that was waiting to reconnect has no socket left, and disconnecting cancels
    // its timer: it holds nothing, but stays "reconnecting" and sends no "end" event
    if (client.status !== "end" && client.status !== "reconnecting") await orAfter(ended, 1_000)
  })

// the library is typed without a platform's globals: take the timers from the host
const host = globalThis as unknown as {
  readonly setTimeout: (f: () => void, ms: number) => unknown
  readonly clearTimeout: (handle: unknown) => void
  readonly setImmediate?: (f: () => void) => unknown
}

/** Waits for `promise`, or `ms` at most; no timer is left behind. */
const orAfter = (promise: Promise<unknown>, ms: number): Promise<void> =>
  new Promise<void>((resolve) => {
    const timer = host.setTimeout(resolve, ms)
    promise.then(() => {
      host.clearTimeout(timer)
      resolve()
    })
  })

/**
 * A command's promise, or `StoreUnavailable` after `ms`. A busy event loop runs timers
 * before it reads sockets, so an answer that arrived in time may still sit unread when
 * the timer fires: the timeout is declared only after the loop's next read (`setImmediate`
 * runs after it), so a late loop is not taken for a slow Redis.
 */
export const within = <A>(ms: number, run: () => Promise<A>): Effect.Effect<A, StoreUnavailable> =>
  Effect.async<A, StoreUnavailable>((resume) => {
    let done = false
    const timer = host.setTimeout(() => {
      const declare = () => {
        if (done) return
        done = true
        resume(Effect.fail(new StoreUnavailable({ store: "redis", reason: `no answer within ${ms} ms` })))
      }
      if (host.setImmediate !== undefined) host.setImmediate(declare)
      else declare()
    }, ms)
    run().then(
      (value) => {
        if (done) return
        done = true
        host.clearTimeout(timer)
        resume(Effect.succeed(value))
      },
      (error: unknown) => {
        if (done) return
        done = true
        host.clearTimeout(timer)
        resume(Effect.fail(new StoreUnavailable({ store: "redis", reason: reasonOf(error) })))
      }
    )
    return Effect.sync(() => {
      done = true
      host.clearTimeout(timer)
    })
  })

/** Why a command failed, in words: ioredis says a closed connection in its own terms. */
const reasonOf = (error: unknown): string => {
  const message = error instanceof Error ? error.message : String(error)
  return /enableOfflineQueue|Connection is closed/.test(message) ? `not connected to Redis (${message})` : message
}

/** The keys of one endpoint and its periods; all carry the prefix as their hash tag. */
const keysOf = (prefix: string, name: string, group: string | undefined) => {
  const p = `{${prefix}}`
  return {
    cooldown: `${p}:cooldown:${name}`,
    groupCooldown: group === undefined ? `${p}:none` : `${p}:group-cooldown:${group}`,
    circuit: `${p}:circuit:${name}`,
    probes: `${p}:probes:${name}`,
    rpm: `${p}:rpm:${name}`,
    tpm: `${p}:tpm:${name}`,
    rpd: `${p}:rpd:${name}`
  }
}

const spendKey = (prefix: string, period: BudgetPeriod | undefined) =>
  period === undefined ? `{${prefix}}:none` : `{${prefix}}:spend:${period.periodMs}:${period.start}`
const endpointSpendKey = (prefix: string, name: string, period: BudgetPeriod | undefined) =>
  period === undefined
    ? `{${prefix}}:none`
    : `{${prefix}}:endpoint-spend:${period.periodMs}:${period.start}:${name}`

const reasons: ReadonlySet<string> = new Set<SharedReason>([
  "unhealthy",
  "probing",
  "cooling-down",
  "no-headroom",
  "too-large",
  "over-budget"
])

/** Loads the scripts and returns the store; fails when Redis refuses them. */
export const make = (client: Redis, resolved: Resolved): Effect.Effect<StoreService, StoreUnavailable> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const unavailable = (error: unknown) => new StoreUnavailable({ store: "redis", reason: reasonOf(error) })
    const load = (lua: string) =>
      Effect.tryPromise({ try: () => client.script("LOAD", lua) as Promise<string>, catch: unavailable })
    const admitSha = yield* load(scripts.admit)
    const settleSha = yield* load(scripts.settle)

    // EVALSHA, and EVAL when the server lost its script cache (a restart)
    const run = (sha: string, lua: string, keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) =>
      within(resolved.timeoutMs, () =>
        client.evalsha(sha, keys.length, ...keys, ...args).catch((error: unknown) => {
          if (error instanceof Error && error.message.startsWith("NOSCRIPT")) {
            return client.eval(lua, keys.length, ...keys, ...args)
          }
          throw error
        }))

    const { prefix } = resolved
    const msToEnd = (period: BudgetPeriod | undefined, now: number): string =>
      period === undefined ? "" : String(Math.max(0, period.start + period.periodMs - now))

    const admit = (request: AdmitRequest): Effect.Effect<Admission, StoreUnavailable> => {
      const endpoint = request.endpoint
      const keys = keysOf(prefix, endpoint.name, endpoint.quotaGroup)
      const now = clock.unsafeCurrentTimeMillis()
      const limits = endpoint.limits
      return Effect.flatMap(
        run(admitSha, scripts.admit, [
          keys.cooldown,
          keys.groupCooldown,
          keys.circuit,
          keys.probes,
          keys.rpm,
          keys.tpm,
          keys.rpd,
          spendKey(prefix, request.budget),
          endpointSpendKey(prefix, endpoint.name, request.endpointBudget)
        ], [
          request.tokens,
          limits?.rpm ?? 0,
          limits?.tpm ?? 0,
          limits?.rpd ?? 0,
          request.halfOpenProbes,
          request.callId,
          resolved.probeTimeoutMs,
          request.budget === undefined ? "" : request.budget.limit,
          msToEnd(request.budget, now),
          request.endpointBudget === undefined ? "" : request.endpointBudget.limit,
          msToEnd(request.endpointBudget, now)
        ]),
        (reply) => Either.match(parseAdmission(reply), { onLeft: Effect.fail, onRight: Effect.succeed })
      )
    }

    const settle = (s: Settle): Effect.Effect<void, StoreUnavailable> => {
      const endpoint = s.endpoint
      const keys = keysOf(prefix, endpoint.name, endpoint.quotaGroup)
      const now = clock.unsafeCurrentTimeMillis()
      // a period's spend is kept a minute past its end, for the stragglers' clocks
      const ttl = (period: BudgetPeriod | undefined) =>
        period === undefined ? "" : String(period.start + period.periodMs - now + 60_000)
      return Effect.asVoid(run(settleSha, scripts.settle, [
        keys.cooldown,
        keys.groupCooldown,
        keys.circuit,
        keys.probes,
        keys.tpm,
        spendKey(prefix, s.budget),
        endpointSpendKey(prefix, endpoint.name, s.endpointBudget)
      ], [
        Math.round(s.tokensDelta),
        s.admittedAt,
        Math.ceil(s.cooldownMs),
        s.spent,
        ttl(s.budget),
        ttl(s.endpointBudget),
        Math.ceil(s.openMs),
        s.openings,
        s.closed ? 1 : 0,
        s.probe?.callId ?? "",
        s.probe?.outcome ?? "",
        Math.ceil(s.recoveryMs),
        s.recoveryFactor,
        Math.ceil(s.maxRecoveryMs),
        Math.ceil(s.maxRecoveryMs),
        endpoint.quotaGroup === undefined ? 0 : 1
      ]))
    }

    const service: StoreService = {
      name: "redis",
      admit,
      settle,
      ping: Effect.asVoid(within(resolved.timeoutMs, () => client.ping()))
    }
    return service
  })

/** Reads the admit script's reply; anything else is the store misbehaving. */
const parseAdmission = (reply: unknown): Either.Either<Admission, StoreUnavailable> => {
  if (Array.isArray(reply) && reply.length === 3) {
    const [ok, second, third] = reply as [unknown, unknown, unknown]
    if (ok === 1 && typeof second === "number" && (third === 0 || third === 1)) {
      return Either.right({ _tag: "Admitted", at: second, probe: third === 1 })
    }
    if (ok === 0 && typeof second === "string" && reasons.has(second) && typeof third === "number") {
      return Either.right({
        _tag: "Refused",
        reason: second as SharedReason,
        retryAfterMs: third < 0 ? undefined : third
      })
    }
  }
  return Either.left(new StoreUnavailable({ store: "redis", reason: `unexpected reply ${JSON.stringify(reply)}` }))
}
