/**
 * Timeouts and races that fork one fiber, not two.
 *
 * Effect's `timeout` races the call against a sleeping fiber and interrupts whichever
 * loses, on every call; an interruption records a cause on the loser, which Effect compares
 * by structural equality (hashing it), so a won race costs more than a routing decision.
 * These versions set a timer instead: the call runs in one child fiber, which is interrupted
 * only when the timer wins. When the fiber's `Clock` can run a callback after a delay
 * (Effect's default clock, and the simulation's) no other fiber is involved; under any
 * other clock (`TestClock`, a user's own) the timer is a sleeping fiber, as in Effect's.
 */
import type { Clock, Fiber } from "effect"
import { Duration, Effect, Exit, FiberId, Runtime } from "effect"

/** Runs `task` after `ms` on the clock's time; the returned function cancels it. */
export type ScheduleTask = (task: () => void, ms: number) => () => void

/**
 * Marks a `Clock` that can schedule a callback itself (the simulation's clock has it).
 */
export const ScheduleTaskId: unique symbol = Symbol.for("effect-llm-balancer/ScheduleTask")

interface SchedulingClock {
  readonly [ScheduleTaskId]: ScheduleTask
}

/**
 * Effect's default clock keeps its timer scheduler behind a `scheduler()` method that its
 * public type leaves out; it is used when present (looked up once per clock).
 */
interface DefaultClock {
  readonly scheduler: () => Effect.Effect<Clock.ClockScheduler>
}

const fastSchedulers = new WeakMap<Clock.Clock, ScheduleTask | null>()

/** A way to schedule a callback on `clock`'s time without a fiber, if the clock offers one. */
const fastScheduleTaskOf = (clock: Clock.Clock): ScheduleTask | undefined => {
  const known = fastSchedulers.get(clock)
  if (known !== undefined) return known ?? undefined
  let found: ScheduleTask | null = null
  if (typeof (clock as Partial<SchedulingClock>)[ScheduleTaskId] === "function") {
    const scheduling = clock as unknown as SchedulingClock
    found = (task, ms) => scheduling[ScheduleTaskId](task, ms)
  } else if (typeof (clock as Partial<DefaultClock>).scheduler === "function") {
    const scheduler = Effect.runSync((clock as unknown as DefaultClock).scheduler())
    found = (task, ms) => scheduler.unsafeSchedule(task, Duration.millis(ms))
  }
  fastSchedulers.set(clock, found)
  return found ?? undefined
}

/**
 * How to run a callback after a delay on the current fiber's clock: directly when the
 * clock can, otherwise by a detached fiber that sleeps on it (`TestClock` moves it like
 * any sleep), interrupted if the callback is cancelled.
 */
export const scheduleTask: Effect.Effect<ScheduleTask> = Effect.clockWith((clock) => {
  const fast = fastScheduleTaskOf(clock)
  if (fast !== undefined) return Effect.succeed(fast)
  return Effect.map(Effect.runtime<never>(), (runtime): ScheduleTask => {
    const fork = Runtime.runFork(runtime)
    return (task, ms) => {
      // interruptible even when the caller is not (the runtime carries its flags), or
      // cancelling would not stop it
      const sleeper = fork(Effect.interruptible(Effect.zipRight(Effect.sleep(Duration.millis(ms)), Effect.sync(task))))
      return () => sleeper.unsafeInterruptAsFork(FiberId.none)
    }
  })
})

/**
 * Waits for `fiber` to end, or for `ms` to pass: the fiber's exit, or `undefined` when
 * the time ran out first. Nothing is left scheduled or observing when it returns or is
 * interrupted.
 */
const awaitWithin = <A, E>(
  fiber: Fiber.RuntimeFiber<A, E>,
  schedule: ScheduleTask,
  ms: number
): Effect.Effect<Exit.Exit<A, E> | undefined> =>
  Effect.async<Exit.Exit<A, E> | undefined>((resume) => {
    let settled = false
    const onExit = (exit: Exit.Exit<A, E>) => {
      if (settled) return
      settled = true
      cancel()
      resume(Effect.succeed(exit))
    }
    const cancel = schedule(() => {
      if (settled) return
      settled = true
      fiber.removeObserver(onExit)
      resume(Effect.succeed(undefined))
    }, ms)
    fiber.addObserver(onExit)
    return Effect.sync(() => {
      settled = true
      cancel()
      fiber.removeObserver(onExit)
    })
  })

/**
 * `self`, failing with `onTimeout()` if it has not ended within `ms` (then it is
 * interrupted, and waited for, first). Like `Effect.timeoutFail`.
 */
export const timeoutFail = <A, E, R, E2>(
  self: Effect.Effect<A, E, R>,
  ms: number,
  onTimeout: () => E2
): Effect.Effect<A, E | E2, R> =>
  Effect.flatMap(
    scheduleTask,
    (schedule) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(Effect.fork(restore(self)), (child) =>
          Effect.flatMap(
            Effect.onInterrupt(restore(awaitWithin(child, schedule, ms)), () => interruptAndAwait(child)),
            (exit): Effect.Effect<A, E | E2> =>
              exit === undefined
                ? Effect.zipRight(interruptAndAwait(child), Effect.failSync(onTimeout))
                : Exit.isSuccess(exit)
                ? Effect.as(child.inheritAll, exit.value)
                : exit
          ))
      )
  )

/** Interrupts `fiber` and waits until it has ended (its finalizers run). */
export const interruptAndAwait = <A, E>(fiber: Fiber.RuntimeFiber<A, E>): Effect.Effect<void> =>
  Effect.flatMap(Effect.fiberId, (id) => Effect.asVoid(Effect.zipRight(fiber.interruptAsFork(id), fiber.await)))
