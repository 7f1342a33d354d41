/**
 * Selection cost: acquire + release with each built-in strategy over 10, 100 and 1,000
 * endpoints, all healthy and idle (each lease is released before the next acquire), with
 * weights 1, 2, 3, 1, 2, 3, ... so the weighted strategies have something to weigh.
 */
import { Effect } from "effect"
import type { Errors, Strategy } from "effect-llm-balancer"
import { Balancer, Outcome } from "effect-llm-balancer"
import type { Case, Sample } from "./harness.js"
import { calibrate, round, runInterleaved } from "./harness.js"

export interface SelectionOptions {
  readonly strategies: ReadonlyArray<Strategy.BuiltInName>
  readonly sizes: ReadonlyArray<number>
  readonly repetitions: number
  /** Each repetition is sized to last about this long. */
  readonly targetMsPerRepetition: number
  readonly minOps: number
  readonly maxOps: number
}

export interface SelectionRow {
  readonly strategy: Strategy.BuiltInName
  readonly endpoints: number
  readonly sample: Sample
}

export interface Growth {
  readonly strategy: Strategy.BuiltInName
  /** median ns at each size, in the order of `sizes`. */
  readonly medianNs: ReadonlyArray<number>
  /** median(size[i + 1]) / median(size[i]), e.g. 100/10 and 1000/100. */
  readonly ratios: ReadonlyArray<{ readonly from: number; readonly to: number; readonly ratio: number }>
  /** (median at the largest size - median at the one before) / the endpoints added: the marginal cost. */
  readonly nsPerExtraEndpoint: number
  /** A rough reading of the ratios: "constant", "sub-linear", "linear" or "super-linear". */
  readonly growth: string
}

export interface SelectionResult {
  readonly sizes: ReadonlyArray<number>
  readonly repetitions: number
  readonly targetMsPerRepetition: number
  readonly rows: ReadonlyArray<SelectionRow>
  readonly growth: ReadonlyArray<Growth>
}

const endpointsOf = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    name: `ep-${i}`,
    provider: "bench",
    model: "bench-model",
    weight: 1 + (i % 3)
  }))

/** How the cost grows when the endpoint count is multiplied by `factor`. */
export const classify = (ratio: number, factor: number): string => {
  const exponent = Math.log(ratio) / Math.log(factor)
  return exponent < 0.2
    ? "constant"
    : exponent < 0.8
    ? "sub-linear"
    : exponent < 1.2
    ? "linear"
    : "super-linear"
}

export const runSelection = (options: SelectionOptions) =>
  Effect.scoped(
    Effect.gen(function*() {
      const ok = Outcome.success()
      const configs: Array<{ strategy: Strategy.BuiltInName; endpoints: number }> = []
      const cases: Array<Case<Errors.NoEndpointAvailable>> = []
      for (const strategy of options.strategies) {
        for (const size of options.sizes) {
          const balancer = yield* Balancer.make({ endpoints: endpointsOf(size), strategy })
          const body = () => Effect.flatMap(balancer.acquire(), (lease) => balancer.release(lease, ok))
          const ops = yield* calibrate(body, options.targetMsPerRepetition, options.minOps, options.maxOps)
          configs.push({ strategy, endpoints: size })
          cases.push({ name: `${strategy} x${size}`, body, ops })
        }
      }

      const samples = yield* runInterleaved(cases, {
        ops: options.minOps,
        repetitions: options.repetitions,
        warmupOps: Number.POSITIVE_INFINITY // one full repetition per case
      })
      const rows = configs.map((c, k): SelectionRow => ({ ...c, sample: samples[k] }))

      const growth = options.strategies.map((strategy): Growth => {
        const medianNs = options.sizes.map((size) =>
          rows.find((r) => r.strategy === strategy && r.endpoints === size)!.sample.medianNs
        )
        const ratios = options.sizes.slice(1).map((to, i) => ({
          from: options.sizes[i],
          to,
          ratio: round(medianNs[i + 1] / medianNs[i], 2)
        }))
        const first = medianNs[0]
        const last = medianNs[medianNs.length - 1]
        const factor = options.sizes[options.sizes.length - 1] / options.sizes[0]
        // judge by the last step: at small sizes the fixed per-call cost hides the per-endpoint one
        const lastStep = ratios[ratios.length - 1]
        const prev = medianNs[medianNs.length - 2]
        const prevSize = options.sizes[options.sizes.length - 2]
        return {
          strategy,
          medianNs,
          ratios,
          nsPerExtraEndpoint: prev === undefined
            ? 0
            : round((last - prev) / (options.sizes[options.sizes.length - 1] - prevSize), 1),
          growth: lastStep === undefined
            ? "n/a"
            : `${classify(lastStep.ratio, lastStep.to / lastStep.from)} (x${round(last / first, 1)} over x${factor})`
        }
      })

      const result: SelectionResult = {
        sizes: options.sizes,
        repetitions: options.repetitions,
        targetMsPerRepetition: options.targetMsPerRepetition,
        rows,
        growth
      }
      return result
    })
  )
