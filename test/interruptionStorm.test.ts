/**
 * Interruption storm (issue "Hardening"): 10,000 calls through the Router (`Llm.complete`
 * with hedging, and `Llm.stream`), each interrupted at a random moment: while it waits for
 * capacity, mid-attempt, during back-off, during a hedge, before a stream's first token or
 * mid-stream. Afterwards: no slot leaked, every lease settled exactly once, the balancer's
 * counters agree with the router's `AttemptEnded` reports, every call ended once as a
 * success, a typed error or (only when we interrupted it) an interruption, and no fiber is
 * left running. A second storm wakes every fiber due in a millisecond at once, so that
 * interruptions also race with resumptions; a third, with circuits flapping, finds a waiter
 * that spins (it fails, as does a case found on the way: see "found by the storm").
 *
 * Time is virtual and the run is deterministic: a `Clock` whose sleeps sit in a heap, and
 * a `ControlledScheduler`, driven from plain code (fire the earliest timer, then run every
 * fiber until all are suspended again). `TestClock` would do the same, but it waits for
 * the fibers to settle with real `setTimeout`s and re-sorts its sleeps on every wake-up:
 * about 4 ms per wake-up measured here, and the storm fires about 60,000 timers. Here,
 * when a timer fires every other fiber is suspended, so the phase a call was in at its
 * interruption is known exactly.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Exit } from "effect"
import {
  Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Fiber,
  FiberRef,
  Metric,
  Option,
  Random,
  Schedule,
  ScheduleDecision,
  ScheduleIntervals,
  Scheduler,
  Stream,
  Supervisor,
  TestClock
} from "effect"
import type { Chat, Errors, Event } from "../src/index.js"
import { Balancer, Llm, MockProvider, Outcome, Provider, Router, Strategy } from "../src/index.js"
import { endpoint } from "./helpers.js"

// --- virtual time ------------------------------------------------------------------------

interface Timer {
  readonly at: number
  readonly seq: number
  readonly resume: () => void
  state: "pending" | "fired" | "cancelled"
}

/** A `Clock` whose sleeps wait in a heap until `fireNext` resumes them, earliest first (ties in order). */
class VirtualClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  now = 0
  /** Sleeps neither fired nor cancelled. */
  pending = 0
  fired = 0
  private seq = 0
  private readonly heap: Array<Timer> = []

  unsafeCurrentTimeMillis(): number {
    return this.now
  }
  get currentTimeMillis(): Effect.Effect<number> {
    return Effect.sync(() => this.now)
  }
  unsafeCurrentTimeNanos(): bigint {
    return BigInt(this.now) * 1_000_000n
  }
  get currentTimeNanos(): Effect.Effect<bigint> {
    return Effect.sync(() => this.unsafeCurrentTimeNanos())
  }
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    const ms = Duration.toMillis(duration)
    if (!(ms > 0)) return Effect.void
    if (!Number.isFinite(ms)) return Effect.never
    return Effect.async<void>((resume) => {
      const timer: Timer = { at: this.now + ms, seq: this.seq++, resume: () => resume(Effect.void), state: "pending" }
      this.push(timer)
      this.pending++
      return Effect.sync(() => {
        if (timer.state === "pending") {
          timer.state = "cancelled"
          this.pending--
        }
      })
    })
  }
  /**
   * Moves time to the earliest pending sleep and resumes it, and with `sameInstant` every
   * other one due then too; false when none is left.
   */
  fireNext(sameInstant = false): boolean {
    let fired = false
    for (;;) {
      const top = this.heap[0]
      if (top === undefined || (fired && (!sameInstant || top.at > this.now))) return fired
      this.pop()
      if (top.state !== "pending") continue
      top.state = "fired"
      this.pending--
      this.fired++
      this.now = Math.max(this.now, top.at)
      top.resume()
      fired = true
    }
  }
  private before(a: Timer, b: Timer) {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq)
  }
  private push(timer: Timer) {
    const h = this.heap
    h.push(timer)
    let i = h.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(h[i], h[parent])) break
      ;[h[i], h[parent]] = [h[parent], h[i]]
      i = parent
    }
  }
  private pop(): Timer | undefined {
    const h = this.heap
    if (h.length === 0) return undefined
    const top = h[0]
    const last = h.pop()!
    if (h.length > 0) {
      h[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1, r = l + 1
        let m = i
        if (l < h.length && this.before(h[l], h[m])) m = l
        if (r < h.length && this.before(h[r], h[m])) m = r
        if (m === i) break
        ;[h[i], h[m]] = [h[m], h[i]]
        i = m
      }
    }
    return top
  }
}

/**
 * Runs `effect` on virtual time: every fiber runs until all are suspended, then the
 * earliest timer fires (with `sameInstant`, every timer due at that millisecond), and so
 * on until the effect ends. An effect still running with no timer left and nothing to run
 * is stuck: that is reported as such.
 */
const runVirtual = <A, E>(
  clock: VirtualClock,
  effect: Effect.Effect<A, E>,
  sameInstant: boolean,
  /** Virtual time by which the effect must have ended. */
  limitMs: number
): Exit.Exit<A, E> => {
  const scheduler = new Scheduler.ControlledScheduler()
  const fiber = Effect.runFork(Effect.withClock(effect, clock), { scheduler })
  for (;;) {
    // time stands still while fibers run: a fiber that never suspends would hold it there
    for (let steps = 0; scheduler.tasks.buckets.length > 0; steps++) {
      if (steps > 1_000_000) throw new Error(`spinning at ${clock.now} ms: fibers run without ever waiting`)
      scheduler.step()
    }
    const exit = fiber.unsafePoll()
    if (exit !== null) return exit
    if (clock.now > limitMs) throw new Error(`still running at ${clock.now} ms`)
    if (!clock.fireNext(sameInstant)) {
      throw new Error(`stuck at ${clock.now} ms: no timer left, and the storm never ended`)
    }
  }
}

/** A small seeded generator for the storm's plan (arrivals, kinds, interruption times). */
const mulberry32 = (seed: number) => () => {
  seed = (seed + 0x6D2B79F5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

// --- the storm ---------------------------------------------------------------------------

type Phase =
  | "waiting for capacity"
  | "mid-attempt"
  | "during a hedge"
  | "during back-off"
  | "stream before first token"
  | "mid-stream"
  | "already ended"
  | "other"

interface Call {
  readonly id: number
  readonly kind: "complete" | "stream"
  /** In `balancer.use`, no slot yet. */
  acquiring: number
  /** Attempts running on a slot (inside `use`'s callback). */
  attempts: number
  /** Until when the call backs off (the back-off schedule's last decision). */
  backoffUntil: number
  /** A stream whose consumer has `Started` and not ended. */
  streaming: boolean
  started: (Chat.StreamEvent & { readonly _tag: "Started" }) | undefined
  readonly events: Array<Event.Event & { readonly _tag: "AttemptEnded" }>
  /** `release` of the stream's detached lease, with its outcome. */
  readonly releases: Array<{ readonly endpoint: string; readonly outcome: string }>
  /** The phase the call was in when its interruption was sent. */
  phase: Phase | undefined
  exit: Exit.Exit<unknown, unknown> | undefined
}

/** The call a fiber works for: the router's attempts, hedges and streams inherit it. */
const CallId = FiberRef.unsafeMake(-1)

const limits = [2, 3, 4, 6]
const words = (n: number) => Array.from({ length: n }, (_, i) => `w${i}`).join(" ")
const request = { messages: [{ role: "user" as const, content: "weather in the storm" }], maxTokens: 64 }

const outcomeTags = ["Success", "Cancelled", "Unavailable", "Timeout", "MalformedResponse"]

/** The router's counters: calls, failed calls, hedges, and attempts by endpoint and outcome. */
const routerMetrics = Effect.gen(function*() {
  const counts: Record<string, number> = {
    requests: (yield* Metric.value(Router.metrics.requests)).count,
    failedRequests: (yield* Metric.value(Router.metrics.failedRequests)).count,
    hedges: (yield* Metric.value(Router.metrics.hedges)).count
  }
  for (let i = 0; i < limits.length; i++) {
    for (const outcome of outcomeTags) {
      const attempts = Router.metrics.attempts.pipe(
        Metric.tagged("endpoint", `e${i}`),
        Metric.tagged("outcome", outcome)
      )
      counts[`e${i}/${outcome}`] = (yield* Metric.value(attempts)).count
    }
  }
  return counts
})
const diff = (after: Record<string, number>, before: Record<string, number>) =>
  Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k]]))

/** What the fleet is like, and when the calls are interrupted. */
interface Weather {
  /** The share of calls that fail (retryably). */
  readonly failureRate: number
  readonly health: Balancer.Options["health"]
  readonly hedgeDelay: Duration.DurationInput
  /** How long after it starts a call is interrupted (ms), from a uniform draw. */
  readonly interruptAfter: (rng: () => number) => number
}

/** Circuits open now and then; interruptions spread over a call's whole life. */
const squally: Weather = {
  failureRate: 0.2,
  health: { maxFailures: 5, failureRateThreshold: 0.7, recoveryTimeout: "2 seconds" },
  hedgeDelay: "250 millis",
  interruptAfter: (rng) => rng() < 0.7 ? rng() * 1200 : 1200 + rng() * 4000
}

/** Half the calls fail: circuits flap, calls wait for probes; most are interrupted early. */
const stormy: Weather = {
  failureRate: 0.5,
  health: { maxFailures: 3, recoveryTimeout: "500 millis" },
  hedgeDelay: "50 millis",
  interruptAfter: (rng) => rng() < 0.4 ? rng() * 100 : rng() * 3000
}

const storm = (seed: number, N: number, weather: Weather, calls: Array<Call>) =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    let unknownCaller = 0
    let waiting = 0
    let onSlot = 0
    let streaming = 0
    // what the sampler saw (every 50 ms), and the longest any call waited for a slot
    const samples = {
      count: 0,
      overLimit: 0,
      mismatched: 0,
      idleWhileWaiting: 0,
      peakWaiting: 0,
      peakActive: 0,
      longestWaitMs: 0
    }
    const callOf = (id: number) => {
      if (id < 0) unknownCaller++
      return calls[id] as Call | undefined
    }

    const real = yield* Effect.orDie(Balancer.make({
      endpoints: limits.map((maxConcurrency, i) => endpoint(`e${i}`, { maxConcurrency })),
      // two arms, so that the summary counts every lease the strategy picks and how it settled
      strategy: Strategy.experiment({
        control: Strategy.powerOfTwo,
        candidate: Strategy.leastConnections,
        fraction: 0.5
      }),
      // circuits open, and their probes get interrupted too
      health: weather.health
    }))
    // the balancer as the router sees it: every call still goes to the real one, and we
    // note what each call is doing (waiting for a slot, on a slot) and what it reports
    const balancer: Balancer.BalancerService = {
      ...real,
      use: (f, hints) =>
        Effect.flatMap(FiberRef.get(CallId), (id) => {
          const call = callOf(id)
          const since = now()
          let entered = false
          if (call !== undefined) call.acquiring++
          waiting++
          return real.use(
            (e, lease) =>
              Effect.suspend(() => {
                entered = true
                samples.longestWaitMs = Math.max(samples.longestWaitMs, now() - since)
                waiting--
                onSlot++
                if (call !== undefined) {
                  call.acquiring--
                  call.attempts++
                }
                return Effect.ensuring(
                  f(e, lease),
                  Effect.sync(() => {
                    onSlot--
                    if (call !== undefined) call.attempts--
                  })
                )
              }),
            hints
          ).pipe(Effect.ensuring(Effect.sync(() => {
            if (entered) return
            samples.longestWaitMs = Math.max(samples.longestWaitMs, now() - since)
            waiting--
            if (call !== undefined) call.acquiring--
          })))
        }),
      release: (lease, outcome) =>
        Effect.flatMap(FiberRef.get(CallId), (id) => {
          callOf(id)?.releases.push({ endpoint: lease.endpoint.name, outcome: outcome._tag })
          return real.release(lease, outcome)
        }),
      reportAttempt: (event) =>
        Effect.flatMap(FiberRef.get(CallId), (id) => {
          callOf(id)?.events.push(event)
          return real.reportAttempt(event)
        })
    }

    // back-off: exponential from 300 ms with jitter, at most 2 s; we note until when each call waits
    const backoff = Schedule.exponential("300 millis").pipe(
      Schedule.jittered,
      Schedule.union(Schedule.spaced("2 seconds")),
      Schedule.onDecision((_, decision) =>
        Effect.flatMap(FiberRef.get(CallId), (id) =>
          Effect.sync(() => {
            const call = callOf(id)
            if (call !== undefined && ScheduleDecision.isContinue(decision)) {
              call.backoffUntil = ScheduleIntervals.start(decision.intervals)
            }
          }))
      )
    )
    const router = yield* Effect.orDie(
      Effect.provideService(
        Router.make({
          retryBudget: { percent: 0.5, minPerSecond: 20 },
          defaults: {
            maxAttempts: 5,
            timeout: "10 seconds",
            attemptTimeout: "1500 millis",
            hedge: { delay: weather.hedgeDelay },
            backoff
          }
        }),
        Balancer.Balancer,
        balancer
      )
    )
    const mock = yield* Effect.orDie(MockProvider.make({
      default: {
        latency: MockProvider.uniform(40, 700),
        timeToFirstToken: MockProvider.uniform(40, 700),
        tokensPerSecond: 20,
        answer: words(16),
        failureRate: weather.failureRate,
        stall: { rate: 0.05 },
        cut: { afterTokens: 5, rate: 0.05 }
      },
      endpoints: {
        // streams that stall after a few tokens (idleTimeout ends them); a whole answer just hangs
        e1: { stall: { afterTokens: 4, rate: 0.08 } },
        // a slow one: its attempts get hedged and time out
        e3: { latency: MockProvider.uniform(200, 2500), timeToFirstToken: MockProvider.uniform(200, 2500) }
      }
    }))
    const context = Context.make(Router.Router, router).pipe(
      Context.add(Balancer.Balancer, balancer),
      Context.add(Provider.Providers, new Map([["mock", mock.provider]]))
    )
    // the caller's own policy: it names the wait for capacity (the router's defaults give the rest)
    const policy: Router.Policy = { hints: { wait: "3 seconds" }, idleTimeout: "1 second" }

    const complete = () => Effect.provide(Llm.complete(request, policy), context)
    const stream = (call: Call) =>
      Stream.runForEach(
        Stream.provideContext(Llm.stream(request, policy), context),
        (event) =>
          Effect.sync(() => {
            if (event._tag === "Started") {
              call.started = event
              call.streaming = true
              streaming++
            }
          })
      ).pipe(Effect.ensuring(Effect.sync(() => {
        if (call.streaming) streaming--
        call.streaming = false
      })))

    const phaseOf = (call: Call, fiber: Fiber.RuntimeFiber<unknown, unknown>): Phase => {
      if (fiber.unsafePoll() !== null) return "already ended"
      if (call.streaming) return "mid-stream"
      if (call.attempts >= 2) return "during a hedge"
      if (call.attempts === 1) return call.kind === "stream" ? "stream before first token" : "mid-attempt"
      if (call.acquiring > 0) return "waiting for capacity"
      if (now() < call.backoffUntil) return "during back-off"
      return "other"
    }

    // the plan: bursts of arrivals, a quarter of them streams, each interrupted at a random moment
    const rng = mulberry32(seed)
    const supervisor = yield* Supervisor.track
    const rootsBefore = (yield* Fiber.roots).length
    // the router's metrics are global: what the storm adds to them
    const metricsBefore = yield* routerMetrics
    // each call's interrupter hands its exit over; no fiber is kept once it is done
    let running = N
    const allDone = yield* Deferred.make<void>()
    // every 50 ms: no endpoint over its limit; the slots taken are exactly the attempts
    // running on a slot plus the streams being read; and no call waits for a slot while a
    // healthy endpoint has one free (a wake-up lost)
    const sampler = yield* Effect.fork(Effect.forever(Effect.zipRight(
      Effect.sleep("50 millis"),
      Effect.map(real.stats, (stats) => {
        samples.count++
        const active = stats.reduce((n, s) => n + s.active, 0)
        if (stats.some((s, i) => s.active > limits[i])) samples.overLimit++
        if (active !== onSlot + streaming) samples.mismatched++
        if (waiting > 0 && stats.some((s, i) => s.circuit === "closed" && s.active < limits[i])) {
          samples.idleWhileWaiting++
        }
        samples.peakWaiting = Math.max(samples.peakWaiting, waiting)
        samples.peakActive = Math.max(samples.peakActive, active)
      })
    )))

    // the supervisor does see the storm's fibers (calls, attempts, races, timers, waiters)
    let peakTracked = 0
    const tracker = yield* Effect.fork(Effect.forever(Effect.zipRight(
      Effect.sleep("1 second"),
      Effect.map(supervisor.value, (fibers) => {
        peakTracked = Math.max(peakTracked, fibers.length)
      })
    )))
    yield* Effect.supervised(
      Effect.gen(function*() {
        for (let id = 0; id < N; id++) {
          // a burst (a few ms apart) or a pause
          const gap = rng() < 0.75 ? Math.floor(rng() * 4) : Math.floor(-Math.log(1 - rng()) * 220)
          if (gap > 0) yield* Effect.sleep(Duration.millis(gap))
          const call: Call = {
            id,
            kind: rng() < 0.25 ? "stream" : "complete",
            acquiring: 0,
            attempts: 0,
            backoffUntil: -1,
            streaming: false,
            started: undefined,
            events: [],
            releases: [],
            phase: undefined,
            exit: undefined
          }
          calls.push(call)
          const effect: Effect.Effect<unknown, unknown> = call.kind === "stream" ? stream(call) : complete()
          const fiber = yield* Effect.fork(Effect.locally(effect, CallId, id))
          const after = 1 + Math.floor(weather.interruptAfter(rng))
          yield* Effect.fork(Effect.gen(function*() {
            yield* Effect.sleep(Duration.millis(after))
            call.phase = phaseOf(call, fiber)
            // the call's exit, once it is over (at once if it was already)
            call.exit = yield* Fiber.interrupt(fiber)
            if (--running === 0) yield* Deferred.succeed(allDone, undefined)
          }))
        }
        yield* Deferred.await(allDone)
      }),
      supervisor
    )
    yield* Fiber.interrupt(sampler)
    yield* Fiber.interrupt(tracker)
    const metrics = yield* Effect.map(routerMetrics, (after) => diff(after, metricsBefore))
    // a moment for anything that would still be winding down
    yield* Effect.sleep("1 minute")
    const stillRunning = (yield* supervisor.value).filter((f) => f.unsafePoll() === null).length
    const newRoots = (yield* Fiber.roots).length - rootsBefore
    const stats = yield* real.stats
    const summary = yield* real.summary
    const requests = (yield* mock.requests).length
    // and every endpoint serves again (an interrupted probe must not wedge its circuit):
    // each one in turn, waiting for its circuit if it is open
    const serves = yield* Effect.forEach(stats, (s) =>
      Effect.gen(function*() {
        const lease = yield* real.acquire({
          exclude: stats.filter((o) => o.name !== s.name).map((o) => o.name),
          wait: "10 minutes"
        })
        yield* real.release(lease, Outcome.success())
        return lease.endpoint.name
      }).pipe(Effect.timeout("10 minutes"), Effect.option, Effect.map(Option.getOrUndefined)))
    return {
      calls,
      stats,
      summary,
      samples,
      stillRunning,
      unknownCaller,
      requests,
      serves,
      metrics,
      newRoots,
      peakTracked,
      endedAt: now(),
      pendingTimers: (clock as VirtualClock).pending,
      waiting,
      onSlot,
      streaming
    }
  }).pipe(Effect.scoped, Effect.withRandom(Random.make(`storm ${seed}`)))

// --- checks ------------------------------------------------------------------------------

type Attempt = Errors.Attempt

const key = (
  a: { readonly endpoint?: string; readonly name?: string; readonly outcome: string; readonly hedge: boolean }
) => `${a.endpoint ?? a.name}/${a.outcome}/${a.hedge}`
const sameAttempts = (
  reported: ReadonlyArray<Attempt>,
  events: ReadonlyArray<Event.Event & { _tag: "AttemptEnded" }>
) => JSON.stringify(reported.map(key).sort()) === JSON.stringify(events.map(key).sort())

const runStorm = (
  seed: number,
  N: number,
  weather: Weather,
  options: { readonly sameInstant: boolean; readonly minPerPhase: number }
) => {
  const clock = new VirtualClock()
  const startedAt = performance.now()
  const calls: Array<Call> = []
  let exit: Exit.Exit<Effect.Effect.Success<ReturnType<typeof storm>>>
  try {
    // the arrivals take about N / 15 seconds; every call ends within seconds after
    exit = runVirtual(clock, storm(seed, N, weather, calls), options.sameInstant, N * 1000)
  } catch (error) {
    // what the calls that never ended were doing
    const open = calls.filter((c) => c.exit === undefined)
    throw new Error(
      `${error}; ${open.length} call(s) never ended, e.g. ${
        JSON.stringify(open.slice(0, 3).map((c) => ({ ...c, started: c.started?.endpoint.name })))
      }`
    )
  }
  const ms = Math.round(performance.now() - startedAt)
  if (exit._tag === "Failure") throw new Error(Cause.pretty(exit.cause))
  const r = exit.value

  // where the interruptions landed
  const phases = new Map<string, number>()
  for (const call of r.calls) phases.set(call.phase ?? "none", (phases.get(call.phase ?? "none") ?? 0) + 1)
  const outcomes = new Map<string, number>()
  const problems: Array<string> = []
  let bothTwins = 0
  let routingFailed = 0
  r.calls.forEach((call, i) => {
    const exit = call.exit!
    let outcome: string
    if (exit._tag === "Success") outcome = `${call.kind}: success`
    else if (Cause.isInterruptedOnly(exit.cause)) outcome = `${call.kind}: interrupted`
    else {
      const failures = Array.from(Cause.failures(exit.cause)) as Array<{ _tag: string; reason?: string }>
      outcome = `${call.kind}: ${failures.map((e) => e.reason ?? e._tag).join("+") || "defect"}`
      if (failures[0]?._tag === "RoutingFailed") routingFailed++
      if (failures.length !== 1 || Cause.isDie(exit.cause) || Cause.isInterrupted(exit.cause)) {
        problems.push(`call ${i}: not one typed error: ${Cause.pretty(exit.cause)}`)
      }
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
    // interrupted only when we interrupted it (a call that had ended by then ended on its
    // own, with an answer or a typed error), and whenever we did while it ran
    if (exit._tag === "Failure" && Cause.isInterrupted(exit.cause) && call.phase === "already ended") {
      problems.push(`call ${i}: interrupted, though it had ended before we interrupted it`)
    }
    if (
      call.phase !== undefined && call.phase !== "already ended" &&
      !(exit._tag === "Failure" && Cause.isInterruptedOnly(exit.cause))
    ) {
      problems.push(`call ${i}: interrupted ${call.phase}, yet ended ${outcome}`)
    }
    // each attempt reported once, the same in the answer (or error) and on the event stream
    const reported: ReadonlyArray<Attempt> | undefined = exit._tag === "Success"
      ? (call.kind === "complete" ? (exit.value as Chat.Response).attempts : call.started?.attempts)
      : (() => {
        const e = Array.from(Cause.failures(exit.cause))[0] as
          | { _tag: string; attempts?: ReadonlyArray<Attempt> }
          | undefined
        return e?._tag === "RoutingFailed" ? e.attempts : e !== undefined ? call.started?.attempts : undefined
      })()
    if (reported !== undefined && !sameAttempts(reported, call.events)) {
      problems.push(`call ${i}: attempts ${reported.map(key)} but events ${call.events.map(key)}`)
    }
    // answered once: one attempt succeeded, and it gave the answer; two only when a round's
    // attempt and its hedge answered in the same instant (the loser had finished already)
    const successes = call.events.filter((e) => e.outcome === "Success")
    if (successes.length === 2) {
      const [x, y] = successes
      if (x.attempt === y.attempt && x.hedge !== y.hedge && x.at === y.at) bothTwins++
      else problems.push(`call ${i}: two attempts succeeded, not twins of one instant: ${successes.map(key)}`)
    } else if (successes.length > 2) problems.push(`call ${i}: ${successes.length} attempts succeeded`)
    if (exit._tag === "Success") {
      const from = call.kind === "complete" ? (exit.value as Chat.Response).endpoint.name : call.started?.endpoint.name
      if (!successes.some((e) => e.name === from)) {
        problems.push(`call ${i}: answered by ${from}, which did not succeed: ${call.events.map(key)}`)
      }
    }
  })

  // the balancer's counts against the router's reports: an attempt's outcome is its lease's,
  // except a streamed answer's, whose lease ends with its stream (released once, by its scope)
  const perEndpoint = new Map<string, { successes: number; failures: number; cancelled: number }>()
  for (const s of r.stats) perEndpoint.set(s.name, { successes: 0, failures: 0, cancelled: 0 })
  let attemptsReported = 0
  for (const call of r.calls) {
    const detached = call.kind === "stream" && call.events.some((e) => e.outcome === "Success")
    for (const e of call.events) {
      attemptsReported++
      const c = perEndpoint.get(e.name)!
      if (e.outcome === "Success") {
        if (!detached) c.successes++
      } else if (e.outcome === "Cancelled") c.cancelled++
      else c.failures++
    }
    if (detached) {
      if (call.releases.length !== 1) {
        problems.push(`stream ${call.id}: its lease released ${call.releases.length} times`)
      }
      for (const rel of call.releases) {
        const c = perEndpoint.get(rel.endpoint)!
        if (rel.outcome === "Success") c.successes++
        else if (rel.outcome === "Cancelled") c.cancelled++
        else c.failures++
      }
    }
  }
  // leases the strategy chose carry an experiment arm: picked, then settled once each
  // (a half-open circuit's probe is chosen by the balancer itself and has none)
  const arms = r.summary.arms
  const picks = arms.reduce((n, a) => n + a.picks, 0)
  const settled = arms.reduce((n, a) => n + a.successes + a.failures + a.cancelled, 0)
  const reported = [...perEndpoint.values()].reduce(
    (n, c) => ({
      successes: n.successes + c.successes,
      failures: n.failures + c.failures,
      cancelled: n.cancelled + c.cancelled
    }),
    { successes: 0, failures: 0, cancelled: 0 }
  )

  console.log(
    `interruption storm: ${N} calls in ${ms} ms (virtual ${Math.round(r.endedAt / 1000)} s, ${clock.fired} timers)\n` +
      `  interrupted: ${JSON.stringify(Object.fromEntries(phases))}\n` +
      `  ended: ${JSON.stringify(Object.fromEntries(outcomes))}\n` +
      `  attempts reported: ${attemptsReported} (${JSON.stringify(reported)}), provider calls: ${r.requests}, ` +
      `hedged rounds answered twice in one instant: ${bothTwins}\n` +
      `  arms: ${JSON.stringify(arms.map((a) => [a.arm, a.picks, a.successes, a.failures, a.cancelled]))}\n` +
      `  stats: ${JSON.stringify(r.stats.map((s) => [s.name, s.active, s.successes, s.failures, s.circuit]))}\n` +
      `  samples: ${JSON.stringify(r.samples)}, serves: ${JSON.stringify(r.serves)}\n` +
      `  fibers: up to ${r.peakTracked} tracked at once, ${r.stillRunning} still running, ${r.newRoots} new roots\n` +
      `  problems: ${problems.length}\n    ${problems.slice(0, 15).join("\n    ")}`
  )

  // every phase was hit, and no interruption landed in a phase we cannot name
  for (
    const phase of [
      "waiting for capacity",
      "mid-attempt",
      "during a hedge",
      "during back-off",
      "stream before first token",
      "mid-stream"
    ]
  ) {
    expect(phases.get(phase) ?? 0, phase).toBeGreaterThanOrEqual(options.minPerPhase)
  }
  expect(phases.get("other") ?? 0).toBe(0)
  // every call ended once: a success, a typed error, or an interruption we sent; every
  // attempt reported once, alike in the answer (or error) and on the event stream
  expect(problems).toEqual([])
  // no slot leaked, none over its limit, and at every moment the slots taken were the
  // attempts running plus the streams being read (no double release hidden at 0)
  expect(r.stats.map((s) => s.active)).toEqual([0, 0, 0, 0])
  expect(r.samples.overLimit).toBe(0)
  expect(r.samples.mismatched).toBe(0)
  // waiting for capacity: never while a healthy endpoint had a free slot, never past
  // `hints.wait` (3 s, give or take the millisecond a timer may be rounded to)
  expect(r.samples.idleWhileWaiting).toBe(0)
  expect(r.samples.longestWaitMs).toBeLessThan(3001)
  expect([r.waiting, r.onSlot, r.streaming]).toEqual([0, 0, 0])
  // counters: every lease settled exactly once, and each endpoint counted what was reported
  expect(settled).toBe(picks)
  expect(r.stats.map((s) => [s.name, s.successes, s.failures])).toEqual(
    [...perEndpoint].map(([name, c]) => [name, c.successes, c.failures])
  )
  // every attempt that reached a provider was reported, once; the router's metrics agree
  expect(attemptsReported).toBe(r.requests)
  const tally: Record<string, number> = {
    requests: N,
    failedRequests: routingFailed,
    hedges: r.calls.reduce((n, c) => n + c.events.filter((e) => e.hedge).length, 0)
  }
  for (const name of perEndpoint.keys()) {
    for (const outcome of outcomeTags) tally[`${name}/${outcome}`] = 0
  }
  for (const call of r.calls) for (const e of call.events) tally[`${e.name}/${e.outcome}`]++
  expect(r.metrics).toEqual(tally)
  expect(r.unknownCaller).toBe(0)
  expect(r.serves).toEqual(["e0", "e1", "e2", "e3"])
  // no fiber left: none of the storm's still running (the supervisor did see them), no
  // new root fiber, no sleep pending
  expect(r.peakTracked).toBeGreaterThan(100)
  expect(r.stillRunning).toBe(0)
  expect(r.newRoots).toBe(0)
  expect(r.pendingTimers).toBe(0)
}

describe("interruption storm", () => {
  it("10,000 calls through the Router, each interrupted at a random moment: no leak, consistent counts, no stray fiber", () =>
    runStorm(2024, 10_000, squally, { sameInstant: false, minPerPhase: 100 }))

  it("the same with every wake-up of a millisecond at once: interruptions race with resumptions", () =>
    runStorm(7, 5_000, squally, { sameInstant: true, minPerPhase: 50 }))

  // fails (a bug): a call waiting for an open circuit wakes a fraction of a nanosecond
  // before the circuit's reopening, then waits 0 ms over and over at that instant (see the
  // next case); time stands still and the storm never ends
  it("flapping circuits, most calls interrupted early", () =>
    runStorm(124, 3_000, stormy, { sameInstant: true, minPerPhase: 0 }))
})

// Found while building the storm. Both cases fail (bugs in src/, see each).
describe("found by the storm", () => {
  // A waiter sleeps `retryAt - now` ms (src/internal/balancer.ts, acquireWaiting). On a
  // clock at fractional milliseconds (TestClock after a jittered back-off, the storm's or
  // Simulation's clock) that sleep, rounded to whole nanoseconds by `Duration`, can end a
  // hair before `retryAt`: the circuit is not due yet, the gap left (1e-13 ms) rounds to a
  // sleep of 0, and the waiter spins at that instant without ever letting time move on.
  // Under plain TestClock, `TestClock.adjust` then never returns (the test hangs); here
  // the clock refuses zero-length sleeps after 100 of them, so the case ends and fails.
  it.scoped("a call waiting for a circuit to reopen wakes once it has, without spinning on 0 ms sleeps", () =>
    Effect.gen(function*() {
      const testClock = yield* TestClock.testClock()
      let zeroLength = 0
      const clock: Clock.Clock = {
        [Clock.ClockTypeId]: Clock.ClockTypeId,
        unsafeCurrentTimeMillis: () => testClock.unsafeCurrentTimeMillis(),
        currentTimeMillis: testClock.currentTimeMillis,
        unsafeCurrentTimeNanos: () => testClock.unsafeCurrentTimeNanos(),
        currentTimeNanos: testClock.currentTimeNanos,
        sleep: (d) =>
          Duration.toMillis(d) === 0 && ++zeroLength > 100 ? testClock.sleep(Duration.millis(1)) : testClock.sleep(d)
      }
      const balancer = yield* Effect.withClock(
        Effect.orDie(Balancer.make({
          endpoints: [endpoint("a")],
          health: { maxFailures: 1, recoveryTimeout: "1 second" }
        })),
        clock
      )
      // the circuit opens at 0.1 ms, until 1000.1 ms
      yield* TestClock.adjust(Duration.millis(0.1))
      yield* Effect.either(balancer.use(() => Effect.fail(new Error("down"))))
      expect((yield* balancer.stats)[0].unhealthyUntil).toBe(1000.1)
      // at 0.1 + 0.2 ms (0.30000000000000004), a call waits for it: its sleep of
      // 1000.1 - 0.30000000000000004 ms, in whole nanoseconds, ends at 1000.0999999999999
      yield* TestClock.adjust(Duration.millis(0.2))
      const waiter = yield* Effect.fork(Effect.withClock(balancer.acquire({ wait: "5 seconds" }), clock))
      yield* TestClock.adjust("2 seconds")
      const lease = yield* Fiber.join(waiter)
      expect(lease.endpoint.name).toBe("a")
      // fails: 101 (a spin, stopped by the clock above)
      expect(zeroLength).toBe(0)
    }))

  // The storm's calls wait for capacity only because each passes its own `hints.wait`: a
  // router's `defaults.hints` never reach an `Llm` call (src/Llm.ts, withHints, always
  // gives `hints`, and a call's `hints` replace the defaults' as a whole).
  it.scoped("a router's default hints.wait applies to Llm.complete and Llm.stream as to Router.execute", () =>
    Effect.gen(function*() {
      const real = yield* Effect.orDie(Balancer.make({ endpoints: [endpoint("a", { maxConcurrency: 1 })] }))
      const router = yield* Effect.orDie(
        Effect.provideService(Router.make({ defaults: { hints: { wait: "5 seconds" } } }), Balancer.Balancer, real)
      )
      const mock = yield* Effect.orDie(MockProvider.make({ default: { latency: 100 } }))
      const context = Context.make(Router.Router, router).pipe(
        Context.add(Balancer.Balancer, real),
        Context.add(Provider.Providers, new Map([["mock", mock.provider]]))
      )
      // the only slot is taken for a second: each call should wait for it, as the defaults say
      const held = yield* real.acquire()
      const viaExecute = yield* Effect.fork(Effect.either(router.execute(() => Effect.succeed("answer"))))
      const viaComplete = yield* Effect.fork(Effect.either(Effect.provide(Llm.complete(request), context)))
      const viaStream = yield* Effect.fork(
        Effect.either(Stream.runDrain(Stream.provideContext(Llm.stream(request), context)))
      )
      yield* TestClock.adjust("1 second")
      yield* real.release(held, Outcome.success())
      yield* TestClock.adjust("10 seconds")
      const reason = <A, E>(result: Either.Either<A, E>) =>
        Either.isRight(result) ? "answered" : (result.left as { reason?: string }).reason
      const results = {
        execute: reason(yield* Fiber.join(viaExecute)),
        complete: reason(yield* Fiber.join(viaComplete)),
        stream: reason(yield* Fiber.join(viaStream))
      }
      // fails: both Llm calls end with `no-endpoint` at once (the hints Llm makes from the
      // request replace the defaults' as a whole, `wait` included)
      expect(results).toEqual({ execute: "answered", complete: "answered", stream: "answered" })
    }))
})
