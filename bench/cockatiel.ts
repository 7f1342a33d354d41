/**
 * Peer comparison: the per-call cost of `cockatiel` (retry + circuit breaker around an
 * async no-op) beside our `Router.execute` (failover + circuit breaking over a balancer
 * with one endpoint) around `Effect.succeed(1)`, with two baselines, in one process.
 *
 * - `await noop()`: the no-op alone, awaited (the cost of the awaited loop itself).
 * - `Effect.runPromise(Effect.succeed(1))`: starting a fiber and a promise for nothing.
 * - cockatiel: `wrap(retry(handleAll, { maxAttempts: 2, backoff: new ConstantBackoff(0) }),
 *   circuitBreaker(handleAll, { halfOpenAfter: 5000, breaker: new ConsecutiveBreaker(3) }))`
 *   executing `async () => 1`, one awaited call after another.
 * - Router, one promise per call: `Runtime.runPromise(runtime)(Router.execute(...))`,
 *   awaited one after another; the fair comparison, since every cockatiel call is a promise.
 * - Router, one fiber: the same effect run N times in an `Effect.whileLoop` inside a single
 *   `runPromise` (how calls look inside an Effect program).
 *
 * The runtime (Router over `Balancer.layer` with one endpoint) is built once. Every case is
 * warmed up, sized to last about `targetMsPerRepetition`, then measured interleaved
 * (repetition 1 of every case, then 2, ...); figures are medians in ns per call.
 *
 * Run alone (writes `bench/results/cockatiel-comparison.json`):
 *
 *   npx tsx --tsconfig tsconfig.examples.json bench/cockatiel.ts
 */
import { circuitBreaker, ConsecutiveBreaker, ConstantBackoff, handleAll, retry, wrap } from "cockatiel"
import { Effect, Layer, Runtime } from "effect"
import { Balancer, Router } from "effect-llm-balancer"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { resolve } from "node:path"
import { fileURLToPath } from "node:url"
import type { Sample } from "./harness.js"
import { machine, ns, round, summarize, table, timeLoop } from "./harness.js"

export interface CockatielOptions {
  readonly repetitions: number
  /** Calls run (and thrown away) per case before sizing and measuring. */
  readonly warmupOps: number
  /** Each repetition of a case is sized to last about this long... */
  readonly targetMsPerRepetition: number
  /** ...but runs at least `minOps` and at most `maxOps` calls. */
  readonly minOps: number
  readonly maxOps: number
}

export const defaultCockatielOptions: CockatielOptions = {
  repetitions: 9,
  warmupOps: 20_000,
  targetMsPerRepetition: 150,
  minOps: 20_000,
  maxOps: 1_000_000
}

export interface CockatielResult {
  readonly cockatielVersion: string
  readonly policies: {
    readonly cockatiel: string
    readonly router: string
  }
  readonly repetitions: number
  readonly targetMsPerRepetition: number
  /** Calls per repetition, at least (a slow case's repetitions last longer than the target). */
  readonly minOpsPerRepetition: number
  readonly samples: {
    /** `await noop()`: one promise per call. */
    readonly awaitNoop: Sample
    /** `await Effect.runPromise(Effect.succeed(1))`: one promise per call. */
    readonly effectRunPromise: Sample
    /** `await policy.execute(noop)`: one promise per call. */
    readonly cockatiel: Sample
    /** `await Runtime.runPromise(runtime)(Router.execute(...))`: one promise per call. */
    readonly routerPromisePerCall: Sample
    /** `Router.execute(...)` N times in one fiber inside one `runPromise`. */
    readonly routerOneFiber: Sample
  }
  readonly ratios: {
    /** median(Router, one promise per call) / median(cockatiel): the headline figure. */
    readonly routerPromisePerCallVsCockatiel: number
    /** median(Router, one fiber) / median(cockatiel). */
    readonly routerOneFiberVsCockatiel: number
    /**
     * What each policy adds over its own bare call: (Router per call - Effect.runPromise)
     * / (cockatiel - await noop).
     */
    readonly routerVsCockatielNetOfBaselines: number
  }
  /** The per-call cost each policy adds over its bare call, in ns. */
  readonly addedNs: {
    readonly cockatiel: number
    readonly routerPromisePerCall: number
  }
}

/** One measured case: its key in the result, its label and how one repetition runs. */
interface Case {
  readonly key: keyof CockatielResult["samples"]
  readonly name: string
  readonly style: string
  /** Runs `ops` calls and resolves with the ns per call. */
  readonly round: (ops: number) => Promise<number>
}

/** `ops` awaited calls in a row, timed around the whole loop; ns per call. */
const timeAwaited = async (ops: number, call: () => Promise<unknown>): Promise<number> => {
  const start = process.hrtime.bigint()
  for (let i = 0; i < ops; i++) await call()
  return Number(process.hrtime.bigint() - start) / ops
}

/** Grows a probe until it lasts `probeMs`, then sizes a repetition to last about `targetMs`. */
const calibrate = async (c: Case, options: CockatielOptions, probeMs = 50): Promise<number> => {
  let probe = 1_000
  let perCall = await c.round(probe)
  while (perCall * probe < probeMs * 1e6 && probe < options.maxOps) {
    probe = Math.min(options.maxOps, probe * 4)
    perCall = await c.round(probe)
  }
  const ops = Math.round((options.targetMsPerRepetition * 1e6) / perCall)
  return Math.max(options.minOps, Math.min(options.maxOps, ops))
}

const cockatielVersion = (): string =>
  (JSON.parse(readFileSync(new URL("../node_modules/cockatiel/package.json", import.meta.url), "utf8")) as {
    readonly version: string
  }).version

export const runCockatiel = (options: CockatielOptions): Effect.Effect<CockatielResult> =>
  Effect.scoped(
    Effect.gen(function*() {
      // --- the two policies, built once ---
      const policy = wrap(
        retry(handleAll, { maxAttempts: 2, backoff: new ConstantBackoff(0) }),
        circuitBreaker(handleAll, { halfOpenAfter: 5000, breaker: new ConsecutiveBreaker(3) })
      )
      const runtime = yield* Layer.toRuntime(
        Router.layer().pipe(
          Layer.provideMerge(Balancer.layer({
            endpoints: [{ name: "only", provider: "bench", model: "bench-model" }]
          }))
        )
      ).pipe(Effect.orDie)
      const runRouted = Runtime.runPromise(runtime)

      const noop = async () => 1
      const succeed = () => Effect.succeed(1)
      const routed = () => Router.execute(succeed, { maxAttempts: 2 })
      const one = Effect.succeed(1)

      const perCall = "one promise per call"
      const cases: ReadonlyArray<Case> = [
        {
          key: "awaitNoop",
          name: "await noop()",
          style: perCall,
          round: (ops) => timeAwaited(ops, noop)
        },
        {
          key: "effectRunPromise",
          name: "Effect.runPromise(Effect.succeed(1))",
          style: perCall,
          round: (ops) => timeAwaited(ops, () => Effect.runPromise(one))
        },
        {
          key: "cockatiel",
          name: "cockatiel wrap(retry, circuitBreaker)",
          style: perCall,
          round: (ops) => timeAwaited(ops, () => policy.execute(noop))
        },
        {
          key: "routerPromisePerCall",
          name: "Router.execute",
          style: perCall,
          round: (ops) => timeAwaited(ops, () => runRouted(routed()))
        },
        {
          key: "routerOneFiber",
          name: "Router.execute",
          style: "one fiber, Effect loop",
          round: (ops) => runRouted(timeLoop(ops, routed))
        }
      ]

      const measured = yield* Effect.promise(async () => {
        const sized: Array<number> = []
        for (const c of cases) {
          await c.round(options.warmupOps)
          sized.push(await calibrate(c, options))
        }
        const runs: Array<Array<number>> = cases.map(() => [])
        for (let rep = 0; rep < options.repetitions; rep++) {
          for (let k = 0; k < cases.length; k++) runs[k].push(await cases[k].round(sized[k]))
        }
        return cases.map((c, k) => summarize(`${c.name} (${c.style})`, sized[k], runs[k]))
      })
      const [awaitNoop, effectRunPromise, cockatiel, routerPromisePerCall, routerOneFiber] = measured

      // the calls must have left the balancer as they found it
      const stats = yield* Effect.provide(
        Effect.flatMap(Balancer.Balancer, (balancer) => balancer.stats),
        runtime.context
      )
      const leaked = stats.reduce((n, s) => n + s.active, 0)
      if (leaked !== 0) return yield* Effect.dieMessage(`benchmark leaked ${leaked} leases`)

      const ratio = (a: number, b: number) => round(a / b, 2)
      const added = {
        cockatiel: round(cockatiel.medianNs - awaitNoop.medianNs, 2),
        routerPromisePerCall: round(routerPromisePerCall.medianNs - effectRunPromise.medianNs, 2)
      }
      const result: CockatielResult = {
        cockatielVersion: cockatielVersion(),
        policies: {
          cockatiel: "wrap(retry(handleAll, { maxAttempts: 2, backoff: new ConstantBackoff(0) }), " +
            "circuitBreaker(handleAll, { halfOpenAfter: 5000, breaker: new ConsecutiveBreaker(3) }))" +
            ".execute(async () => 1)",
          router: "Router.execute(() => Effect.succeed(1), { maxAttempts: 2 }) over Router.layer() + " +
            "Balancer.layer({ endpoints: [one endpoint] }), runtime built once"
        },
        repetitions: options.repetitions,
        targetMsPerRepetition: options.targetMsPerRepetition,
        minOpsPerRepetition: options.minOps,
        samples: { awaitNoop, effectRunPromise, cockatiel, routerPromisePerCall, routerOneFiber },
        ratios: {
          routerPromisePerCallVsCockatiel: ratio(routerPromisePerCall.medianNs, cockatiel.medianNs),
          routerOneFiberVsCockatiel: ratio(routerOneFiber.medianNs, cockatiel.medianNs),
          routerVsCockatielNetOfBaselines: ratio(added.routerPromisePerCall, added.cockatiel)
        },
        addedNs: added
      }
      return result
    })
  )

/** How the JSON file describes the timing. */
export const cockatielTiming =
  "process.hrtime.bigint() around a loop of sequentially awaited calls (or, for the one-fiber case, " +
  "an Effect.whileLoop in one fiber); ns per call"

/** The table and the ratios, as printed. */
export const describeCockatiel = (result: CockatielResult): string => {
  const s = result.samples
  const r = result.ratios
  const x = (r: number) => `${r.toFixed(2)}x`
  const rows = [s.awaitNoop, s.effectRunPromise, s.cockatiel, s.routerPromisePerCall, s.routerOneFiber]
  return [
    `Peer comparison: cockatiel ${result.cockatielVersion} retry + circuit breaker vs Router.execute ` +
    `(maxAttempts 2, one endpoint) around a no-op, sequential calls, median of ${result.repetitions} ` +
    `repetitions of ~${result.targetMsPerRepetition} ms (but at least ` +
    `${result.minOpsPerRepetition.toLocaleString("en-US")} calls) each after warm-up`,
    table(
      ["case", "calls/rep", "median", "min", "max", "vs cockatiel"],
      rows.map((row) => [
        row.name,
        row.ops.toLocaleString("en-US"),
        ns(row.medianNs),
        ns(row.minNs),
        ns(row.maxNs),
        x(row.medianNs / s.cockatiel.medianNs)
      ])
    ),
    "",
    `Router / cockatiel, one promise per call (the fair comparison): ${x(r.routerPromisePerCallVsCockatiel)}; ` +
    `Router in one fiber / cockatiel: ${x(r.routerOneFiberVsCockatiel)}`,
    `Added over the bare call: cockatiel ${ns(result.addedNs.cockatiel)} (over await noop()), ` +
    `Router ${ns(result.addedNs.routerPromisePerCall)} (over Effect.runPromise), ` +
    `ratio ${x(r.routerVsCockatielNetOfBaselines)}`
  ].join("\n")
}

// --- run alone -----------------------------------------------------------------------------

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)

if (isMain) {
  const date = new Date().toISOString()
  const facts = machine()
  console.log(`effect-llm-balancer vs cockatiel, ${date}`)
  console.log(
    `${facts.cpu}, ${facts.cores} cores, ${facts.os}, node ${facts.node}, effect ${facts.effect}, ` +
      `load average ${facts.loadAverage.join(" ")}\n`
  )
  Effect.runPromise(runCockatiel(defaultCockatielOptions)).then(
    (comparison) => {
      console.log(describeCockatiel(comparison))
      const dir = new URL("./results/", import.meta.url)
      mkdirSync(dir, { recursive: true })
      const file = new URL("cockatiel-comparison.json", dir)
      writeFileSync(
        file,
        JSON.stringify({ date, machine: facts, timing: cockatielTiming, comparison }, null, 2) + "\n"
      )
      console.log(`\nwrote ${fileURLToPath(file)}`)
    },
    (error) => {
      console.error(error)
      process.exitCode = 1
    }
  )
}
