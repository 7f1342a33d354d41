/**
 * src/internal/timer.ts: the one-fiber timeout the router gives each attempt, on the three
 * kinds of clock it meets: Effect's default clock (a callback on a real timer), the
 * simulation's (a callback on simulated time) and any other (`TestClock`: a sleeping fiber).
 * Each must behave like `Effect.timeoutFail`: the answer if it comes in time, otherwise the
 * call interrupted (its finalizers run) before the timeout error; an interrupted caller
 * interrupts the call; nothing left scheduled or running afterwards.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, FiberRef, Layer, Scheduler, TestClock, TestContext } from "effect"
import { Balancer, Router } from "../src/index.js"
import type { SimulatedClock } from "../src/internal/simulation/driver.js"
import { drive } from "../src/internal/simulation/driver.js"
import * as timer from "../src/internal/timer.js"
import { endpoint, makeRouter } from "./helpers.js"

class TimedOut {
  readonly _tag = "TimedOut"
}

/** Real timers pending in this process. */
const realTimers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length

const annotation = FiberRef.unsafeMake("unset")

/** The same checks, run on whichever clock the caller's `advance` moves. */
const contract = (
  advance: (ms: number) => Effect.Effect<void>,
  /** Timers set on the clock and not cancelled (TestClock keeps no such count). */
  pendingTimers?: Effect.Effect<number>
) => ({
  answerInTime: Effect.gen(function*() {
    const fiber = yield* Effect.fork(
      timer.timeoutFail(Effect.as(Effect.sleep("10 millis"), "done"), 1_000, () => new TimedOut())
    )
    yield* advance(10)
    expect(yield* Fiber.join(fiber)).toBe("done")
  }),
  failureInTime: Effect.gen(function*() {
    const exit = yield* Effect.exit(timer.timeoutFail(Effect.fail("boom" as const), 1_000, () => new TimedOut()))
    expect(exit).toEqual(Exit.fail("boom"))
  }),
  timeoutInterruptsFirst: Effect.gen(function*() {
    const finalized: Array<string> = []
    const fiber = yield* Effect.fork(
      timer.timeoutFail(
        Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => finalized.push("call interrupted")))),
        50,
        () => {
          finalized.push("timeout reported")
          return new TimedOut()
        }
      )
    )
    yield* advance(50)
    const exit = yield* Fiber.await(fiber)
    expect(exit).toEqual(Exit.fail(new TimedOut()))
    expect(finalized).toEqual(["call interrupted", "timeout reported"])
  }),
  callerInterrupted: Effect.gen(function*() {
    const pending = pendingTimers ?? Effect.succeed(-1)
    const timersBefore = yield* pending
    const started = yield* Deferred.make<void>()
    let callInterrupted = false
    let timedOut = false
    const fiber = yield* Effect.fork(
      timer.timeoutFail(
        // not Effect.never, which sets a real interval timer of its own
        Effect.zipRight(Deferred.succeed(started, undefined), Effect.async<never>(() => {})).pipe(
          Effect.onInterrupt(() => Effect.sync(() => (callInterrupted = true)))
        ),
        50,
        () => {
          timedOut = true
          return new TimedOut()
        }
      )
    )
    yield* Deferred.await(started)
    if (pendingTimers !== undefined) expect(yield* pending).toBe(timersBefore + 1)
    yield* Fiber.interrupt(fiber)
    expect(callInterrupted).toBe(true)
    // the timer was cancelled: nothing is left set, and its time passing reports nothing
    if (pendingTimers !== undefined) expect(yield* pending).toBe(timersBefore)
    yield* advance(100)
    expect(timedOut).toBe(false)
  }),
  fiberRefsInherited: Effect.gen(function*() {
    yield* timer.timeoutFail(FiberRef.set(annotation, "set in the call"), 1_000, () => new TimedOut())
    expect(yield* FiberRef.get(annotation)).toBe("set in the call")
  })
})

describe("timer.timeoutFail on Effect's default clock (a real timer, no sleeping fiber)", () => {
  const checks = contract((ms) => Effect.sleep(ms + 20), Effect.sync(realTimers))
  it.live("the answer, when it comes in time", () => checks.answerInTime)
  it.live("the call's own failure, when it comes in time", () => checks.failureInTime)
  it.live("on time out the call is interrupted (finalizers run) before the error", () => checks.timeoutInterruptsFirst)
  it.live("an interrupted caller interrupts the call, and the timer is cancelled", () => checks.callerInterrupted)
  it.live("FiberRefs the call set are kept, as with Effect.timeout", () => checks.fiberRefsInherited)
})

describe("timer.timeoutFail on TestClock (the timer is a sleeping fiber)", () => {
  // TestClock keeps an interrupted sleep in its list: the cancelled timer shows only in
  // its callback doing nothing (and in the interruption storm, in no fiber left behind)
  const checks = contract((ms) => TestClock.adjust(ms))
  it.effect("the answer, when it comes in time", () => checks.answerInTime)
  it.effect("the call's own failure, when it comes in time", () => checks.failureInTime)
  it.effect("on time out the call is interrupted (finalizers run) before the error", () =>
    checks.timeoutInterruptsFirst)
  it.effect("an interrupted caller interrupts the call, and the timer is cancelled", () => checks.callerInterrupted)
  it.effect("FiberRefs the call set are kept, as with Effect.timeout", () => checks.fiberRefsInherited)
})

describe("timer.scheduleTask on TestClock (a detached sleeping fiber)", () => {
  it.effect("a cancelled timer never runs, even when set from an uninterruptible region", () =>
    Effect.gen(function*() {
      let ran = 0
      for (const region of [(e: Effect.Effect<void>) => e, Effect.uninterruptible]) {
        yield* region(Effect.flatMap(timer.scheduleTask, (schedule) =>
          Effect.sync(() => {
            const cancel = schedule(() => ran++, 100)
            cancel()
          })))
      }
      yield* TestClock.adjust(200)
      expect(ran).toBe(0)
    }))
})

describe("timer.timeoutFail on the simulation's clock (a callback on simulated time)", () => {
  const checks = contract(
    (ms) => Effect.sleep(ms),
    Effect.clockWith((clock) => Effect.sync(() => (clock as SimulatedClock).timers.pending()))
  )
  const simulated = <A, E>(effect: Effect.Effect<A, E>) => drive(effect, { start: 0, seed: 1 })
  it.effect("the answer, when it comes in time", () => simulated(checks.answerInTime))
  it.effect("the call's own failure, when it comes in time", () => simulated(checks.failureInTime))
  it.effect("on time out the call is interrupted (finalizers run) before the error", () =>
    simulated(checks.timeoutInterruptsFirst))
  it.effect("an interrupted caller interrupts the call, and the timer is cancelled", () =>
    simulated(checks.callerInterrupted))
  it.effect("FiberRefs the call set are kept, as with Effect.timeout", () => simulated(checks.fiberRefsInherited))
})

describe("hedging on Effect's default clock (the state machine with real timers)", () => {
  it.scopedLive(
    "a slow primary is hedged after the delay, the twin wins, the primary is interrupted",
    () =>
      Effect.gen(function*() {
        const { context } = yield* makeRouter({
          endpoints: [endpoint("slow"), endpoint("fast")],
          strategy: "round-robin"
        })
        let slowInterrupted = false
        const call = (e: { readonly name: string }) =>
          e.name === "slow"
            ? Effect.as(Effect.sleep("5 seconds"), "slow").pipe(
              Effect.onInterrupt(() => Effect.sync(() => (slowInterrupted = true)))
            )
            : Effect.as(Effect.sleep("10 millis"), "fast")
        const result = yield* Router.execute(call, { hedge: { delay: "30 millis" } }).pipe(Effect.provide(context))
        expect(result.value).toBe("fast")
        expect(result.attempts.map((a) => [a.endpoint, a.hedge, a.outcome])).toEqual([
          ["fast", true, "Success"],
          ["slow", false, "Cancelled"]
        ])
        expect(slowInterrupted).toBe(true)
        const stats = yield* Effect.flatMap(Balancer.Balancer, (b) => b.stats).pipe(Effect.provide(context))
        expect(stats.map((s) => s.active)).toEqual([0, 0])
      }),
    10_000
  )

  it.scopedLive(
    "a primary that answers before the delay starts no twin, and leaves no timer",
    () =>
      Effect.gen(function*() {
        const { context } = yield* makeRouter({ endpoints: [endpoint("a"), endpoint("b")], strategy: "round-robin" })
        const timersBefore = realTimers()
        const result = yield* Router.execute(
          (e) => Effect.as(Effect.sleep("5 millis"), e.name),
          { hedge: { delay: "10 seconds" } }
        ).pipe(Effect.provide(context))
        expect(result.attempts.map((a) => [a.endpoint, a.hedge, a.outcome])).toEqual([["a", false, "Success"]])
        // the 10 s hedge timer was cancelled when the primary answered
        expect(realTimers()).toBeLessThanOrEqual(timersBefore)
      }),
    10_000
  )
})

describe("hedging on TestClock (the timer is a sleeping fiber)", () => {
  it("a hedge timer that fires while the round is getting ready to wait is not lost", () => {
    // under TestClock a 0 ms hedge fires inside the primary's start; if the round's fiber
    // yields (every `maxOps` operations) between its check and its wait, the timer has fired
    // before the round listens: every offset of that yield is tried
    const maxOps = 64
    const program = (before: number) =>
      Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(
          Router.layer().pipe(
            Layer.provideMerge(Balancer.layer({ endpoints: [endpoint("a"), endpoint("b")], strategy: "round-robin" }))
          )
        ).pipe(Effect.orDie)
        for (let i = 0; i < before; i++) yield* Effect.sync(() => {})
        return yield* Context.get(context, Router.Router).execute(
          (e) => e.name === "a" ? Effect.async<string>(() => {}) : Effect.succeed("b"),
          { hedge: { delay: "0 millis" }, maxAttempts: 1 }
        )
      })).pipe(Effect.provide(TestContext.TestContext), Effect.locally(FiberRef.currentMaxOpsBeforeYield, maxOps))
    const hung: Array<number> = []
    for (let before = 0; before < maxOps + 8; before++) {
      const scheduler = new Scheduler.ControlledScheduler()
      const fiber = Effect.runFork(program(before), { scheduler })
      for (let steps = 0; steps < 20_000 && scheduler.tasks.buckets.length > 0; steps++) scheduler.step()
      const exit = fiber.unsafePoll()
      if (exit === null) {
        hung.push(before)
        fiber.unsafeInterruptAsFork(fiber.id())
      } else {
        expect(Exit.isSuccess(exit) && exit.value.value).toBe("b")
      }
    }
    expect(hung).toEqual([])
  })
})
