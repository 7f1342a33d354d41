/**
 * Runs an effect on simulated time: a `Clock` whose time moves only when every fiber is
 * waiting on a timer, and a scheduler that this driver steps by hand. Nothing waits on a
 * real timer or on the event loop, so an hour of traffic runs in seconds, and the same
 * program with the same seed runs the same way every time (fibers run in the order they
 * were woken, timers that fire at the same instant in the order they were set).
 */
import type { Duration } from "effect"
import { Clock, Duration as D, Effect, Random, Scheduler } from "effect"
import type * as Fiber from "effect/Fiber"
import { ScheduleTaskId } from "../timer.js"

interface Timer {
  readonly at: number
  readonly seq: number
  fire: (() => void) | undefined
}

/** A binary min-heap of timers by (time, order set). */
class Timers {
  private heap: Array<Timer> = []
  private seq = 0

  add(at: number, fire: () => void): Timer {
    const timer: Timer = { at, seq: this.seq++, fire }
    const heap = this.heap
    heap.push(timer)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(heap[i], heap[parent])) break
      ;[heap[i], heap[parent]] = [heap[parent], heap[i]]
      i = parent
    }
    return timer
  }

  cancel(timer: Timer): void {
    if (timer.fire !== undefined) {
      timer.fire = undefined
    }
  }

  /** How many timers are set and not cancelled. */
  pending(): number {
    return this.heap.filter((timer) => timer.fire !== undefined).length
  }

  /** The earliest timer that was not cancelled, removed from the heap. */
  pop(): Timer | undefined {
    const heap = this.heap
    while (heap.length > 0) {
      const top = heap[0]
      const last = heap.pop()!
      if (heap.length > 0) {
        heap[0] = last
        let i = 0
        for (;;) {
          const l = 2 * i + 1
          const r = l + 1
          let m = i
          if (l < heap.length && before(heap[l], heap[m])) m = l
          if (r < heap.length && before(heap[r], heap[m])) m = r
          if (m === i) break
          ;[heap[i], heap[m]] = [heap[m], heap[i]]
          i = m
        }
      }
      if (top.fire !== undefined) {
        return top
      }
    }
    return undefined
  }
}

const before = (a: Timer, b: Timer) => a.at < b.at || (a.at === b.at && a.seq < b.seq)

/** A `Clock` on simulated time, in epoch milliseconds. */
export class SimulatedClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId
  readonly timers = new Timers()

  constructor(public now: number) {}

  unsafeCurrentTimeMillis(): number {
    return this.now
  }
  get currentTimeMillis(): Effect.Effect<number> {
    return Effect.sync(() => this.now)
  }
  unsafeCurrentTimeNanos(): bigint {
    return BigInt(Math.round(this.now * 1_000_000))
  }
  get currentTimeNanos(): Effect.Effect<bigint> {
    return Effect.sync(() => this.unsafeCurrentTimeNanos())
  }
  /** A callback on simulated time, for timeouts that need no sleeping fiber (see timer.ts). */
  [ScheduleTaskId](task: () => void, ms: number): () => void {
    if (!Number.isFinite(ms)) return noCancel
    const timer = this.timers.add(this.now + Math.max(0, ms), task)
    return () => this.timers.cancel(timer)
  }
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    const ms = D.toMillis(duration)
    // an infinite sleep never ends: no timer (the clock would jump to Infinity)
    if (!Number.isFinite(ms)) return waitForever
    return Effect.async<void>((resume) => {
      const timer = this.timers.add(this.now + Math.max(0, ms), () => resume(Effect.void))
      return Effect.sync(() => this.timers.cancel(timer))
    })
  }
}

const noCancel = () => {}

/**
 * Waits until interrupted. (`Effect.never` keeps a real interval timer running to hold the
 * process open, which a simulated program must not touch.)
 */
export const waitForever: Effect.Effect<never> = Effect.async<never>(() => {})

/** The program never finished and nothing is left to wake it: a bug in the model. */
export class Stuck extends Error {
  constructor(readonly at: number) {
    super(`The simulated program is waiting on something other than the clock at ${at} (nothing left to wake it)`)
  }
}

export interface DriverOptions {
  /** Epoch ms at which simulated time starts. */
  readonly start: number
  readonly seed: number
  /** Wall-clock ms to run before giving the real event loop a turn (terminal output). */
  readonly slice?: number | undefined
}

/**
 * Runs `program` to its end on simulated time and returns its exit. The outer fiber
 * yields to the real event loop every `slice` ms of work, so progress can be drawn; if
 * it is interrupted, the simulated program is interrupted and driven to its end too.
 */
export const drive = <A, E>(program: Effect.Effect<A, E>, options: DriverOptions): Effect.Effect<A, E> =>
  Effect.suspend(() => {
    const clock = new SimulatedClock(options.start)
    const scheduler = new Scheduler.ControlledScheduler()
    const fiber: Fiber.RuntimeFiber<A, E> = Effect.runFork(
      program.pipe(Effect.withClock(clock), Effect.withRandom(Random.make(options.seed))),
      { scheduler }
    )
    const slice = options.slice ?? 20

    // when the program waits on nothing that can wake it, it is interrupted (so that its
    // finalizers run) and the run fails with `Stuck`
    let stuck: Stuck | undefined

    /** Runs until the program ends or the slice is spent; true when it ended. */
    const runSlice = (deadline: number): boolean => {
      let steps = 0
      for (;;) {
        while (scheduler.tasks.buckets.length > 0) scheduler.step()
        if (fiber.unsafePoll() !== null) return true
        const timer = clock.timers.pop()
        if (timer === undefined) {
          if (stuck !== undefined) return true
          stuck = new Stuck(clock.now)
          fiber.unsafeInterruptAsFork(fiber.id())
          continue
        }
        clock.now = timer.at
        const fire = timer.fire!
        timer.fire = undefined
        fire()
        if ((++steps & 255) === 0 && Date.now() > deadline) return false
      }
    }

    const loop: Effect.Effect<A, E> = Effect.suspend(() => {
      const ended = runSlice(Date.now() + slice)
      if (!ended) return Effect.zipRight(nextTurn, loop)
      return stuck !== undefined ? Effect.die(stuck) : fiber.unsafePoll() ?? Effect.die(stuck)
    })

    return loop.pipe(
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          fiber.unsafeInterruptAsFork(fiber.id())
          runSlice(Infinity)
        })
      )
    )
  })

// the library is typed without a platform's globals: take the timers from the host
const host = globalThis as unknown as {
  readonly setImmediate?: (f: () => void) => unknown
  readonly clearImmediate?: (handle: unknown) => void
  readonly setTimeout: (f: () => void, ms: number) => unknown
  readonly clearTimeout: (handle: unknown) => void
}

/** A turn of the real event loop (whatever `Clock` the caller runs under). */
const nextTurn: Effect.Effect<void> = Effect.async<void>((resume) => {
  if (host.setImmediate !== undefined && host.clearImmediate !== undefined) {
    const handle = host.setImmediate(() => resume(Effect.void))
    const clear = host.clearImmediate
    return Effect.sync(() => clear(handle))
  }
  const handle = host.setTimeout(() => resume(Effect.void), 0)
  return Effect.sync(() => host.clearTimeout(handle))
})
