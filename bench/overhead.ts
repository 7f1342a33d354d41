/**
 * What the balancer adds to a call: acquire + release of a lease on one of 4 endpoints
 * (least-connections), beside the cheapest way to do the same with Effect by hand (one
 * `Ref.modify` that picks the least active of 4 immutable records and reserves it) and an
 * empty effect. Every case runs in the same fiber of the same process, interleaved.
 */
import { Effect, Ref } from "effect"
import type { Errors } from "effect-llm-balancer"
import { Balancer, Outcome, Strategy } from "effect-llm-balancer"
import type { Case, Sample } from "./harness.js"
import { calibrate, round, runInterleaved } from "./harness.js"

export interface OverheadOptions {
  /** Operations per repetition, at most; a slow case runs fewer (see `maxMsPerRepetition`). */
  readonly ops: number
  /** A case slower than `maxMsPerRepetition / ops` per op runs as many ops as fit in this time instead. */
  readonly maxMsPerRepetition: number
  /** But never fewer than this. */
  readonly minOps: number
  readonly repetitions: number
}

export interface OverheadResult {
  readonly endpoints: number
  readonly strategy: string
  readonly maxOpsPerRepetition: number
  readonly repetitions: number
  readonly samples: {
    readonly effectVoid: Sample
    readonly refModify: Sample
    readonly refModifyTwice: Sample
    readonly acquireRelease: Sample
    readonly use: Sample
  }
  readonly ratios: {
    /** median(acquire + release) / median(Ref.modify pick-and-reserve): the figure with the <= 3x target. */
    readonly acquireReleaseVsRefModify: number
    readonly useVsRefModify: number
    /** The same with the empty loop's cost (the Effect.void case) taken off both sides. */
    readonly acquireReleaseVsRefModifyNetOfLoop: number
    readonly useVsRefModifyNetOfLoop: number
    /** Against reserve + release done by hand as two `Ref.modify`s (for context). */
    readonly acquireReleaseVsRefModifyTwice: number
  }
  readonly target: number
  readonly meetsTarget: { readonly acquireRelease: boolean; readonly use: boolean }
}

/** What the hand-written baseline keeps per endpoint. */
interface Slot {
  readonly name: string
  readonly active: number
}

/** Picks the least active slot (the first on a tie) and reserves it, in a new array. */
const pickAndReserve = (slots: ReadonlyArray<Slot>): readonly [Slot, ReadonlyArray<Slot>] => {
  let best = 0
  for (let i = 1; i < slots.length; i++) {
    if (slots[i].active < slots[best].active) best = i
  }
  const chosen: Slot = { ...slots[best], active: slots[best].active + 1 }
  const next = slots.slice()
  next[best] = chosen
  return [chosen, next]
}

/** Gives the slot back, in a new array. */
const giveBack = (slots: ReadonlyArray<Slot>, name: string): readonly [void, ReadonlyArray<Slot>] => {
  const next = slots.slice()
  for (let i = 0; i < next.length; i++) {
    if (next[i].name === name) {
      next[i] = { ...next[i], active: next[i].active - 1 }
      break
    }
  }
  return [undefined, next]
}

export const TARGET_RATIO = 3

export const runOverhead = (options: OverheadOptions) =>
  Effect.scoped(
    Effect.gen(function*() {
      const names = ["a", "b", "c", "d"]
      const balancer = yield* Balancer.make({
        endpoints: names.map((name) => ({ name, provider: "bench", model: "bench-model" })),
        strategy: Strategy.leastConnections
      })
      const slots = yield* Ref.make<ReadonlyArray<Slot>>(names.map((name) => ({ name, active: 0 })))
      const ok = Outcome.success()
      const noop = () => Effect.void

      const cases: ReadonlyArray<Case<Errors.NoEndpointAvailable>> = [
        { name: "Effect.void", body: () => Effect.void },
        { name: "Ref.modify pick-and-reserve", body: () => Ref.modify(slots, pickAndReserve) },
        {
          name: "Ref.modify reserve + Ref.modify release",
          body: () =>
            Effect.flatMap(
              Ref.modify(slots, pickAndReserve),
              (slot) => Ref.modify(slots, (s) => giveBack(s, slot.name))
            )
        },
        {
          name: "balancer.acquire + balancer.release",
          body: () => Effect.flatMap(balancer.acquire(), (lease) => balancer.release(lease, ok))
        },
        { name: "balancer.use(() => Effect.void)", body: () => balancer.use(noop) }
      ]
      const sized: Array<Case<Errors.NoEndpointAvailable>> = []
      for (const c of cases) {
        sized.push({ ...c, ops: yield* calibrate(c.body, options.maxMsPerRepetition, options.minOps, options.ops) })
      }
      const [effectVoid, refModify, refModifyTwice, acquireRelease, use] = yield* runInterleaved(sized, {
        ops: options.ops,
        repetitions: options.repetitions,
        warmupOps: Number.POSITIVE_INFINITY // one full repetition per case
      })

      // every repetition must have handed its leases back
      const stats = yield* balancer.stats
      const leaked = stats.reduce((n, s) => n + s.active, 0)
      if (leaked !== 0) return yield* Effect.dieMessage(`benchmark leaked ${leaked} leases`)

      const net = (x: Sample) => x.medianNs - effectVoid.medianNs
      const ratio = (a: number, b: number) => round(a / b, 2)
      const result: OverheadResult = {
        endpoints: names.length,
        strategy: balancer.strategy,
        maxOpsPerRepetition: options.ops,
        repetitions: options.repetitions,
        samples: { effectVoid, refModify, refModifyTwice, acquireRelease, use },
        ratios: {
          acquireReleaseVsRefModify: ratio(acquireRelease.medianNs, refModify.medianNs),
          useVsRefModify: ratio(use.medianNs, refModify.medianNs),
          acquireReleaseVsRefModifyNetOfLoop: ratio(net(acquireRelease), net(refModify)),
          useVsRefModifyNetOfLoop: ratio(net(use), net(refModify)),
          acquireReleaseVsRefModifyTwice: ratio(acquireRelease.medianNs, refModifyTwice.medianNs)
        },
        target: TARGET_RATIO,
        meetsTarget: {
          acquireRelease: acquireRelease.medianNs / refModify.medianNs <= TARGET_RATIO,
          use: use.medianNs / refModify.medianNs <= TARGET_RATIO
        }
      }
      return result
    })
  )
