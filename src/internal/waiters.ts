import type { Duration } from "effect"
import { Effect, Fiber } from "effect"

interface Waiter {
  resume: () => void
  woken: boolean
}

const noop = () => {}

/**
 * Callers waiting for capacity, grouped by what they ask for (their hints). A freed slot
 * wakes the oldest waiter of each group, not everyone: waiters of one group are
 * interchangeable, so waking more of them would only make them race for one slot (with
 * 10,000 waiters, waking all of them on every release is quadratic). A change that can
 * free many slots (an endpoint added or forced healthy) wakes everyone.
 *
 * A woken waiter that is interrupted before it runs passes its turn to the next one of
 * its group, so a wake-up is never lost.
 */
export class Waiters {
  private readonly groups = new Map<string, Set<Waiter>>()

  /**
   * Suspends until woken or until `timeout` passes; resumes at once if `changed()` says
   * capacity was freed since the caller last looked. The check and the registration are
   * one synchronous step in the caller's own fiber (only the timer runs in another), so
   * no wake-up can slip in between and a waiter never spins on busy traffic.
   */
  wait(key: string, changed: () => boolean, timeout: Duration.Duration): Effect.Effect<void> {
    return Effect.suspend(() => {
      const waiter: Waiter = { resume: noop, woken: false }
      // the timer resumes the waiter itself, so the wait ends on time even when the
      // caller is uninterruptible (inside acquireUseRelease, say)
      const timer = Effect.interruptible(
        Effect.zipRight(
          Effect.sleep(timeout),
          Effect.sync(() => {
            if (this.remove(key, waiter)) waiter.resume()
          })
        )
      )
      return Effect.flatMap(Effect.fork(timer), (fiber) =>
        Effect.ensuring(
          Effect.async<void>((resume) => {
            if (changed()) return resume(Effect.void)
            waiter.resume = () => resume(Effect.void)
            this.add(key, waiter)
            return Effect.sync(() => {
              if (waiter.woken) this.wakeGroup(key)
              else this.remove(key, waiter)
            })
          }),
          Fiber.interrupt(fiber)
        ))
    })
  }

  /** Wakes the oldest waiter of every group. */
  wakeOne(): void {
    if (this.groups.size === 0) return
    for (const key of Array.from(this.groups.keys())) this.wakeGroup(key)
  }

  /** Wakes every waiter. */
  wakeAll(): void {
    if (this.groups.size === 0) return
    const groups = Array.from(this.groups.values())
    this.groups.clear()
    for (const group of groups) {
      for (const waiter of group) {
        waiter.woken = true
        waiter.resume()
      }
    }
  }

  private wakeGroup(key: string): void {
    const group = this.groups.get(key)
    if (group === undefined) return
    const first: Waiter | undefined = group.values().next().value
    if (first === undefined) return
    this.remove(key, first)
    first.woken = true
    first.resume()
  }

  private add(key: string, waiter: Waiter): void {
    let group = this.groups.get(key)
    if (group === undefined) {
      group = new Set()
      this.groups.set(key, group)
    }
    group.add(waiter)
  }

  /** Unregisters a waiter; false if it was not registered (already woken or never added). */
  private remove(key: string, waiter: Waiter): boolean {
    const group = this.groups.get(key)
    if (group === undefined || !group.delete(waiter)) return false
    if (group.size === 0) this.groups.delete(key)
    return true
  }
}
