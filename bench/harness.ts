/**
 * Timing helpers shared by the benchmarks: every measurement runs as a loop inside one
 * running fiber (no `Effect.runSync` per operation) and is timed with
 * `process.hrtime.bigint()` around the whole loop.
 */
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import * as os from "node:os"

/** The median of a non-empty list (the mean of the two middle values for an even count). */
export const median = (values: ReadonlyArray<number>): number => {
  if (values.length === 0) throw new RangeError("median of an empty list")
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/**
 * Runs `body` `ops` times in a row with `Effect.whileLoop` in the current fiber and returns
 * the elapsed nanoseconds per operation.
 */
export const timeLoop = <E, R = never>(
  ops: number,
  body: () => Effect.Effect<unknown, E, R>
): Effect.Effect<number, E, R> =>
  Effect.suspend(() => {
    let i = 0
    // read when the fiber reaches this step, i.e. right before the loop starts
    const start = process.hrtime.bigint()
    return Effect.map(
      Effect.whileLoop({
        while: () => i < ops,
        body,
        step: () => {
          i++
        }
      }),
      () => Number(process.hrtime.bigint() - start) / ops
    )
  })

/** One benchmarked operation: a name and a thunk that builds one iteration's effect. */
export interface Case<E = never> {
  readonly name: string
  readonly body: () => Effect.Effect<unknown, E>
  /** Operations per repetition for this case; `RunOptions.ops` when absent. */
  readonly ops?: number
}

export interface Sample {
  readonly name: string
  readonly ops: number
  /** ns/op of each repetition, in the order they ran. */
  readonly runs: ReadonlyArray<number>
  readonly medianNs: number
  readonly minNs: number
  readonly maxNs: number
}

export interface RunOptions {
  readonly ops: number
  readonly repetitions: number
  /** Operations run (and thrown away) per case before the first measured repetition. */
  readonly warmupOps: number
}

/**
 * Warms every case up, then measures them interleaved (rep 1 of every case, then rep 2,
 * ...) so that drift in the machine or the JIT affects every case alike.
 */
export const runInterleaved = <E>(
  cases: ReadonlyArray<Case<E>>,
  options: RunOptions
): Effect.Effect<ReadonlyArray<Sample>, E> =>
  Effect.gen(function*() {
    const opsOf = (c: Case<E>) => c.ops ?? options.ops
    for (const c of cases) yield* timeLoop(Math.min(options.warmupOps, opsOf(c)), c.body)
    const runs: Array<Array<number>> = cases.map(() => [])
    for (let rep = 0; rep < options.repetitions; rep++) {
      for (let k = 0; k < cases.length; k++) runs[k].push(yield* timeLoop(opsOf(cases[k]), cases[k].body))
    }
    return cases.map((c, k): Sample => summarize(c.name, opsOf(c), runs[k]))
  })

export const summarize = (name: string, ops: number, runs: ReadonlyArray<number>): Sample => ({
  name,
  ops,
  runs: runs.map((r) => round(r, 2)),
  medianNs: round(median(runs), 2),
  minNs: round(Math.min(...runs), 2),
  maxNs: round(Math.max(...runs), 2)
})

/**
 * How many operations make one repetition last about `targetMs`, clamped to [min, max].
 * Probes of growing length run until one lasts at least `probeMs` (which also warms the
 * JIT up, so the estimate is not taken on cold code).
 */
export const calibrate = <E>(
  body: () => Effect.Effect<unknown, E>,
  targetMs: number,
  min: number,
  max: number,
  probeMs: number = 50
): Effect.Effect<number, E> =>
  Effect.gen(function*() {
    let probe = 16
    let ns = yield* timeLoop(probe, body)
    while (ns * probe < probeMs * 1e6 && probe < max) {
      probe = Math.min(max, probe * 4)
      ns = yield* timeLoop(probe, body)
    }
    const ops = Math.round((targetMs * 1e6) / ns)
    return Math.max(min, Math.min(max, ops))
  })

export const round = (n: number, digits: number): number => {
  const f = 10 ** digits
  return Math.round(n * f) / f
}

export interface Machine {
  readonly cpu: string
  readonly cores: number
  readonly totalMemoryBytes: number
  readonly totalMemoryGiB: number
  readonly os: string
  readonly node: string
  readonly effect: string
  /** 1, 5 and 15 minute load averages when the run started: other work on the machine skews the figures. */
  readonly loadAverage: ReadonlyArray<number>
}

export const machine = (): Machine => {
  const effectPackage = JSON.parse(
    readFileSync(new URL("../node_modules/effect/package.json", import.meta.url), "utf8")
  ) as { readonly version: string }
  const cpus = os.cpus()
  return {
    cpu: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    totalMemoryBytes: os.totalmem(),
    totalMemoryGiB: round(os.totalmem() / 2 ** 30, 1),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    effect: effectPackage.version,
    loadAverage: os.loadavg().map((l) => round(l, 2))
  }
}

/** A plain-text table with right-aligned columns except the first. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const all = [header, ...rows]
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? "").length)))
  const line = (r: ReadonlyArray<string>) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ")
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n")
}

export const ns = (n: number): string => (n >= 1000 ? `${(n / 1000).toFixed(2)} µs` : `${n.toFixed(1)} ns`)
