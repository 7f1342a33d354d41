/**
 * The simulated endpoints: the truth the balancer under test tries to learn. Each call
 * draws its latency, checks the provider's own limits and the faults active at that
 * instant, waits on the simulated clock, and answers or fails the way a real provider
 * would. Everything a report needs about the attempts is counted here, as it happens.
 */
import { Duration, Effect } from "effect"
import type * as Balancer from "../../Balancer.js"
import type * as Endpoint from "../../Endpoint.js"
import * as Errors from "../../Errors.js"
import { waitForever } from "./driver.js"
import type { Fault, Model, SimulatedEndpoint } from "./schema.js"

/** A standard normal draw (Box-Muller) from two uniforms. */
const normal = (random: () => number): number => {
  const u = 1 - random()
  const v = random()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

const Z99 = 2.3263478740408408

/** A log-normal draw by median and 99th percentile. */
export const logNormal = (median: number, p99: number, random: () => number): number => {
  if (p99 <= median || median <= 0) return median
  const sigma = Math.log(p99 / median) / Z99
  return median * Math.exp(sigma * normal(random))
}

/** Timestamps in a sliding window of one minute, oldest first (a queue). */
class MinuteWindow {
  private times: Array<number> = []
  private amounts: Array<number> = []
  private head = 0
  total = 0

  prune(now: number): void {
    while (this.head < this.times.length && this.times[this.head] <= now - 60_000) {
      this.total -= this.amounts[this.head]
      this.head++
    }
    if (this.head > 1024 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head)
      this.amounts = this.amounts.slice(this.head)
      this.head = 0
    }
  }
  add(now: number, amount: number): void {
    this.times.push(now)
    this.amounts.push(amount)
    this.total += amount
  }
  /** When the window will hold `room` less than now: when its oldest entries leave. */
  freesAt(now: number, excess: number): number {
    let freed = 0
    for (let i = this.head; i < this.times.length; i++) {
      freed += this.amounts[i]
      if (freed >= excess) return this.times[i] + 60_000
    }
    return now + 60_000
  }
}

/** What the faults active at one instant do to an endpoint. */
export interface Condition {
  readonly down: boolean
  readonly hang: boolean
  readonly slowdown: number
  readonly errorRate: number
  readonly stallProbability: number
  readonly stallFactor: number
  readonly rpm: number | undefined
}

/** A fault's window in epoch ms. */
export interface TimedFault {
  readonly fault: Fault
  readonly from: number
  readonly to: number
}

export const conditionAt = (faults: ReadonlyArray<TimedFault>, model: Model, now: number): Condition => {
  let down = false
  let hang = false
  let slowdown = 1
  let errorRate = model.errorRate
  let stallProbability = 0
  let stallFactor = 1
  let rpm = model.limits?.rpm
  for (const { fault, from, to } of faults) {
    if (now < from || now >= to) continue
    switch (fault.type) {
      case "brownout":
        slowdown *= fault.factor
        break
      case "outage":
        down = true
        break
      case "hang":
        hang = true
        break
      case "errors":
        errorRate = Math.max(errorRate, fault.rate)
        break
      case "flapping": {
        const up = Duration.toMillis(fault.up)
        const period = up + Duration.toMillis(fault.down)
        if ((now - from) % period >= up) down = true
        break
      }
      case "stalls":
        stallProbability = fault.probability
        stallFactor = fault.factor
        break
      case "rate-limit":
        rpm = rpm === undefined ? fault.rpm : Math.min(rpm, fault.rpm)
        break
    }
  }
  return { down, hang, slowdown, errorRate, stallProbability, stallFactor, rpm }
}

/** Whether calls to the endpoint fail (or never answer) at this instant. */
export const isFailing = (c: Condition): boolean => c.down || c.hang || c.errorRate >= 0.5

/** Everything counted about one endpoint during a run. */
export class SimulatedEndpointState {
  readonly name: string
  readonly endpoint: Endpoint.Endpoint
  readonly model: Model
  readonly faults: Array<TimedFault>
  inFlight = 0
  attempts = 0
  successes = 0
  failures = 0
  rateLimited = 0
  /** Attempts started while its faults made it fail or hang. */
  sentWhileFailing = 0
  /** Attempts started after it answered 429 and before the `Retry-After` it gave. */
  sentBeforeRetryAfter = 0
  cost = 0
  /** Active health checks it answered (not calls). */
  healthChecks = 0
  /** Attempts cut before they answered (a lost hedge race, a timeout, the end of the run). */
  cancelled = 0
  /** Start times (ms since the run began) of every attempt, in order. */
  readonly attemptTimes: Array<number> = []
  private retryAfterUntil = -Infinity
  private readonly requests = new MinuteWindow()
  private readonly tokens = new MinuteWindow()

  constructor(simulated: SimulatedEndpoint, faults: Array<TimedFault>) {
    this.endpoint = simulated.endpoint
    this.name = simulated.endpoint.name
    this.model = simulated.model
    this.faults = faults
  }

  /**
   * The provider's answer to one call, on the simulated clock. An attempt the router gives
   * up on (a lost hedge, a timeout) counts as cancelled; the provider still bills its input
   * and what it had generated by then.
   */
  call(
    start: number,
    lease: Balancer.Lease,
    inputTokens: number,
    outputTokens: number,
    random: () => number
  ): Effect.Effect<void, Errors.ProviderError> {
    return Effect.suspend((): Effect.Effect<void, Errors.ProviderError> => {
      const now = lease.startedAt
      const condition = conditionAt(this.faults, this.model, now)
      this.attempts++
      this.attemptTimes.push(now - start)
      if (isFailing(condition)) this.sentWhileFailing++
      if (now < this.retryAfterUntil) this.sentBeforeRetryAfter++
      const ended = <A, E>(effect: Effect.Effect<A, E>) => this.counted(effect)
      if (condition.hang) return ended(waitForever)
      if (condition.down) {
        // a refused connection answers fast
        return ended(Effect.zipRight(
          Effect.sleep(Duration.millis(2 + Math.round(random() * 3))),
          Effect.fail(
            new Errors.Unavailable({ endpoint: this.name, detail: "connection refused (simulated outage)" })
          )
        ))
      }
      const limited = this.admit(now, condition.rpm, inputTokens + outputTokens)
      if (limited !== undefined) {
        return ended(Effect.zipRight(
          Effect.sleep(Duration.millis(5)),
          Effect.suspend(() => {
            // counted when the answer is delivered (an attempt cut before it got no 429)
            this.rateLimited++
            const retryAfter = Math.max(1, Math.ceil((limited - now - 5) / 1000)) * 1000
            this.retryAfterUntil = Math.max(this.retryAfterUntil, now + 5 + retryAfter)
            return Effect.fail(
              new Errors.RateLimited({ endpoint: this.name, status: 429, retryAfter: Duration.millis(retryAfter) })
            )
          })
        ))
      }
      const median = Duration.toMillis(this.model.latency.median)
      const p99 = Duration.toMillis(this.model.latency.p99)
      let ttft = logNormal(median, p99, random) * condition.slowdown
      const knee = this.model.concurrency
      if (knee !== undefined && this.inFlight >= knee.knee) {
        ttft *= 1 + knee.slowdown * (this.inFlight + 1 - knee.knee)
      }
      if (condition.stallProbability > 0 && random() < condition.stallProbability) ttft *= condition.stallFactor
      if (random() < condition.errorRate) {
        return ended(Effect.zipRight(
          Effect.sleep(Duration.millis(Math.round(ttft / 2))),
          Effect.fail(new Errors.Unavailable({ endpoint: this.name, status: 500, detail: "simulated server error" }))
        ))
      }
      const generation = this.model.tokensPerSecond === undefined
        ? 0
        : (outputTokens / this.model.tokensPerSecond) * 1000 * condition.slowdown
      const total = Math.max(1, Math.round(ttft + generation))
      this.inFlight++
      return Effect.sleep(Duration.millis(total)).pipe(
        Effect.zipRight(Effect.suspend(() => {
          this.successes++
          this.bill(inputTokens, outputTokens)
          return lease.report({
            usage: { inputTokens, outputTokens },
            timeToFirstToken: Duration.millis(Math.round(ttft)),
            rateLimit: this.model.rateLimitHeaders ? this.remaining(now + total, condition.rpm) : undefined
          })
        })),
        Effect.onInterrupt(() =>
          Effect.clockWith((clock) =>
            Effect.sync(() => {
              // billed for the input and the tokens generated before the cut
              const elapsed = clock.unsafeCurrentTimeMillis() - now
              const generated = elapsed <= ttft || generation === 0
                ? 0
                : Math.min(outputTokens, Math.floor(outputTokens * (elapsed - ttft) / generation))
              this.bill(inputTokens, generated)
            })
          )
        ),
        Effect.ensuring(Effect.sync(() => {
          this.inFlight--
        })),
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            this.cancelled++
          })
        )
      )
    }).pipe(Effect.tapError(() =>
      Effect.sync(() => {
        this.failures++
      })
    ))
  }

  /** A call that never answers or fails: in flight while it lasts, cancelled if cut. */
  private counted<A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> {
    this.inFlight++
    return effect.pipe(
      Effect.ensuring(Effect.sync(() => {
        this.inFlight--
      })),
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          this.cancelled++
        })
      )
    )
  }

  private bill(inputTokens: number, outputTokens: number): void {
    const price = this.endpoint.cost
    if (price !== undefined) {
      this.cost += (inputTokens * price.inputPerMillion + outputTokens * price.outputPerMillion) / 1_000_000
    }
  }

  /**
   * Counts the call against the provider's limits, or says when they free up. Calls are
   * counted whether or not there is a limit now, so a limit that starts mid-run (a
   * `rate-limit` fault) sees the minute before it.
   */
  private admit(now: number, rpm: number | undefined, tokens: number): number | undefined {
    const tpm = this.model.limits?.tpm
    this.requests.prune(now)
    this.tokens.prune(now)
    if (rpm !== undefined && this.requests.total + 1 > rpm) {
      return this.requests.freesAt(now, this.requests.total + 1 - rpm)
    }
    if (tpm !== undefined && this.tokens.total + tokens > tpm) {
      return this.tokens.freesAt(now, this.tokens.total + tokens - tpm)
    }
    this.requests.add(now, 1)
    this.tokens.add(now, tokens)
    return undefined
  }

  private remaining(now: number, rpm: number | undefined) {
    this.requests.prune(now)
    this.tokens.prune(now)
    const tpm = this.model.limits?.tpm
    return {
      requests: rpm === undefined ? undefined : {
        remaining: Math.max(0, rpm - this.requests.total),
        limit: rpm,
        resetAt: this.requests.freesAt(now, 1)
      },
      tokens: tpm === undefined ? undefined : {
        remaining: Math.max(0, tpm - this.tokens.total),
        limit: tpm,
        resetAt: this.tokens.freesAt(now, 1)
      }
    }
  }

  /**
   * An active health check (listing models, say): it fails fast while the endpoint is
   * down, never answers while it hangs, and passes otherwise, also while its calls fail
   * with errors (a listing does not run the model).
   */
  check(random: () => number): Effect.Effect<void, Errors.Unavailable> {
    return Effect.clockWith((clock) => {
      const now = clock.unsafeCurrentTimeMillis()
      this.healthChecks++
      const condition = conditionAt(this.faults, this.model, now)
      if (condition.hang) return waitForever
      const wait = Effect.sleep(Duration.millis(20 + Math.round(random() * 30)))
      return condition.down
        ? Effect.zipRight(
          Effect.sleep(Duration.millis(3)),
          Effect.fail(new Errors.Unavailable({ endpoint: this.name, detail: "connection refused (simulated outage)" }))
        )
        : wait
    })
  }

  /** Whether the provider would refuse a call now for its limits (for the oracle). */
  wouldRefuse(now: number, tokens: number): boolean {
    const rpm = conditionAt(this.faults, this.model, now).rpm
    const tpm = this.model.limits?.tpm
    this.requests.prune(now)
    this.tokens.prune(now)
    return (rpm !== undefined && this.requests.total + 1 > rpm) ||
      (tpm !== undefined && this.tokens.total + tokens > tpm)
  }
}
