/**
 * The shared store bench: what the Redis store (`RedisStore`, a real redis-server on
 * 127.0.0.1) adds to a call, beside no store (local state only) and `Store.memory`, in the
 * same run.
 *
 * 1. Latency: one balancer over one endpoint (an rpm limit of 10,000,000, so the admission
 *    script really checks and counts a window; and the same with no limits), sequential
 *    acquire + release pairs with a plain success, each pair timed on its own with
 *    `process.hrtime.bigint()`. The configurations run interleaved in rounds, so that drift
 *    on the machine hits them alike; an ioredis `PING` on its own connection runs in the
 *    same rounds as the floor of one round trip. "Added" is the Redis store's quantile less
 *    the no-store one's.
 * 2. Throughput: a closed loop of 32 fibers doing acquire + release, in this process (no
 *    store, `Store.memory`, Redis), then in four worker processes at once
 *    (bench/storeWorker.ts) over the same Redis and prefix, and the same four with no
 *    store for reference. Redis and every process share the machine's cores.
 *
 * Writes `bench/results/store.json`. Runs as part of `npm run bench`, or alone (and then
 * rebuilds docs/benchmarks.md):
 *
 *   npx tsx --tsconfig tsconfig.examples.json bench/store.ts
 */
import { Effect } from "effect"
import { Redis } from "ioredis"
import { spawn } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import * as os from "node:os"
import { resolve } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import type { RedisServer } from "../test/support/redisServer.js"
import { startRedis } from "../test/support/redisServer.js"
import { machine, round, table } from "./harness.js"
import { STORE_ADDED_P99_TARGET_MS, writeReport } from "./report.js"
import type { LoadResult, StoreHealth, StoreKind, WorkerConfig, WorkerResult } from "./storeWorker.js"
import { BENCH_RPM, benchBalancer, pair, runLoad, storeContext, untilStoreUp, watchStore } from "./storeWorker.js"

export interface StoreOptions {
  /** Measured pairs per configuration, split evenly over `rounds`. */
  readonly ops: number
  /** Pairs per configuration run and thrown away before the first round. */
  readonly warmupOps: number
  readonly rounds: number
  /** Fibers per process in the throughput runs. */
  readonly concurrency: number
  readonly throughputMs: number
  readonly throughputWarmupMs: number
  /**
   * The Redis store's timeout in the throughput runs. Closed loops on every core starve Redis
   * of CPU; past the default 50 ms a process falls back to local state, and its figure is no
   * longer the store's.
   */
  readonly throughputTimeoutMs: number
  readonly processes: number
}

export const defaultStoreOptions: StoreOptions = {
  ops: 20_000,
  warmupOps: 2_000,
  rounds: 10,
  concurrency: 32,
  throughputMs: 3_000,
  throughputWarmupMs: 500,
  throughputTimeoutMs: 1_000,
  processes: 4
}

/** Quantiles of one configuration's per-pair durations, in µs. */
export interface Latency {
  readonly p50Us: number
  readonly p90Us: number
  readonly p99Us: number
  readonly p999Us: number
  readonly meanUs: number
  readonly maxUs: number
}

export interface LatencyCase extends Latency {
  readonly name: string
  readonly store: StoreKind | "ping"
  /** The endpoint's rpm limit, `null` for none (and for the PING). */
  readonly rpm: number | null
  readonly ops: number
  /** p50 and p99 of each round (in the order they ran): how far single rounds stray. */
  readonly rounds: ReadonlyArray<{ readonly p50Us: number; readonly p99Us: number }>
  /** What the balancer said about its store during the case (no fallback, or the figures are not the store's). */
  readonly health: StoreHealth | null
}

export interface Added {
  readonly p50Us: number
  readonly p99Us: number
  readonly p999Us: number
  readonly meanUs: number
}

export interface ThroughputCase extends LoadResult {
  readonly name: string
  readonly store: StoreKind
  readonly health: StoreHealth | null
  /** EVALSHA calls per measured pair (Redis only): 1 when every acquire went to the store. */
  readonly evalshaPerPair: number | null
  /** Cores that other work on the machine kept busy, on average, during the measured run. */
  readonly otherCores: number
}

export interface MultiProcess {
  readonly name: string
  readonly store: "none" | "redis"
  readonly processes: ReadonlyArray<WorkerResult>
  readonly totalOpsPerSecond: number
  /** How long all processes ran at the same time, against the intended `durationMs`. */
  readonly overlapMs: number
  /** Redis's CPU seconds (user + sys) per wall second over the measured run. */
  readonly redisCpu: number | null
  /** EVALSHA calls per pair over the measured run (1 admission per acquire, nothing to settle). */
  readonly evalshaPerPair: number | null
  /**
   * What the shared rpm window in Redis counted over the measured run, against the pairs the
   * processes completed in it: equal when every acquire was admitted by the store.
   */
  readonly sharedWindow: { readonly counted: number; readonly pairs: number } | null
  /** Cores that other work on the machine (not Redis, not the bench's processes) kept busy, on average. */
  readonly otherCores: number
}

export interface StoreResult {
  readonly redisVersion: string
  readonly cores: number
  readonly endpoint: string
  readonly latency: {
    readonly ops: number
    readonly warmupOps: number
    readonly rounds: number
    readonly cases: ReadonlyArray<LatencyCase>
    /** Redis store less no store, with the rpm limit (the headline) and with no limits. */
    readonly added: { readonly rpm: Added; readonly noLimits: Added }
    /** EVALSHA calls per Redis-store pair over the whole latency run. */
    readonly evalshaPerPair: number
    /** Cores that other work on the machine kept busy, on average, during the latency run. */
    readonly otherCores: number
  }
  readonly throughput: {
    readonly concurrency: number
    readonly durationMs: number
    readonly warmupMs: number
    /** The Redis store's timeout in these runs. */
    readonly storeTimeoutMs: number
    readonly oneProcess: ReadonlyArray<ThroughputCase>
    readonly multiProcess: ReadonlyArray<MultiProcess>
  }
  readonly targetMs: number
  readonly meetsTarget: boolean
  /** 1, 5 and 15 minute load averages when the bench ended (the file's machine has those of the start). */
  readonly loadAverageAtEnd: ReadonlyArray<number>
}

export const storeTiming = "process.hrtime.bigint() around each sequential acquire + release (latency); " +
  "pairs completed by a closed loop of fibers per wall second (throughput)"

// --- helpers -------------------------------------------------------------------------------

/** Nearest-rank quantile of an ascending array. */
const quantile = (sorted: Float64Array, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]

const latencyOf = (ns: Float64Array): Latency => {
  const sorted = Float64Array.from(ns).sort()
  let sum = 0
  for (const v of sorted) sum += v
  const us = (v: number) => round(v / 1000, 2)
  return {
    p50Us: us(quantile(sorted, 0.5)),
    p90Us: us(quantile(sorted, 0.9)),
    p99Us: us(quantile(sorted, 0.99)),
    p999Us: us(quantile(sorted, 0.999)),
    meanUs: us(sum / sorted.length),
    maxUs: us(sorted[sorted.length - 1])
  }
}

/** Runs `body` `count` times in a row, writing each run's ns into `into` from `offset`. */
const timeEach = (body: () => Effect.Effect<unknown, unknown>, count: number, into: Float64Array, offset: number) =>
  Effect.suspend(() => {
    let i = 0
    let start = 0n
    return Effect.whileLoop({
      while: () => i < count,
      body: () =>
        Effect.suspend(() => {
          start = process.hrtime.bigint()
          return body()
        }),
      step: () => {
        into[offset + i] = Number(process.hrtime.bigint() - start)
        i++
      }
    })
  })

/** `INFO` as a map of its `key:value` lines. */
const info = async (client: Redis, section: string) => {
  const text = await client.info(section)
  const out = new Map<string, string>()
  for (const line of text.split("\r\n")) {
    const at = line.indexOf(":")
    if (at > 0) out.set(line.slice(0, at), line.slice(at + 1))
  }
  return out
}

const evalshaCalls = async (client: Redis) => {
  const stat = (await info(client, "commandstats")).get("cmdstat_evalsha")
  return Number(/calls=(\d+)/.exec(stat ?? "")?.[1] ?? 0)
}

const redisCpuSeconds = async (client: Redis) => {
  const cpu = await info(client, "cpu")
  return Number(cpu.get("used_cpu_user") ?? 0) + Number(cpu.get("used_cpu_sys") ?? 0)
}

/** The rpm window's count for the bench endpoint under `prefix` (the store's key layout). */
const windowCount = async (client: Redis, prefix: string) => {
  const values = await client.hvals(`{${prefix}}:rpm:bench`)
  return values.reduce((sum, v) => sum + Number(v), 0)
}

/** CPU ms the whole machine spent busy so far (every core, from boot). */
const machineBusyMs = () =>
  os.cpus().reduce((sum, cpu) => sum + cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.irq, 0)

/**
 * Starts measuring how much of the machine other work takes: the machine's busy CPU time
 * less this process's, Redis's and (given to `stop`) the bench's other processes'. Returns
 * the cores it kept busy, on average.
 */
const otherWork = async (client: Redis) => {
  const machineBefore = machineBusyMs()
  const own = process.cpuUsage()
  const redisBefore = await redisCpuSeconds(client)
  const from = performance.now()
  return async (othersOfOursMs = 0): Promise<number> => {
    const wallMs = performance.now() - from
    const redisMs = ((await redisCpuSeconds(client)) - redisBefore) * 1000
    const ownUsage = process.cpuUsage(own)
    const ownMs = (ownUsage.user + ownUsage.system) / 1000
    const other = machineBusyMs() - machineBefore - ownMs - redisMs - othersOfOursMs
    return round(Math.max(0, other) / wallMs, 2)
  }
}

const added = (redis: Latency, none: Latency): Added => ({
  p50Us: round(redis.p50Us - none.p50Us, 2),
  p99Us: round(redis.p99Us - none.p99Us, 2),
  p999Us: round(redis.p999Us - none.p999Us, 2),
  meanUs: round(redis.meanUs - none.meanUs, 2)
})

// --- 1. latency ----------------------------------------------------------------------------

interface TimedCase {
  readonly name: string
  readonly store: StoreKind | "ping"
  readonly rpm: number | null
  readonly body: () => Effect.Effect<unknown, unknown>
  readonly health: (() => StoreHealth) | null
}

const runLatency = (url: string, prefix: string, client: Redis, options: StoreOptions) =>
  Effect.scoped(Effect.gen(function*() {
    const cases: Array<TimedCase> = []
    for (const limited of [true, false]) {
      for (const store of ["none", "memory", "redis"] as const) {
        const context = yield* storeContext(store, { url, prefix: `${prefix}-latency-${limited ? "rpm" : "open"}` })
        const balancer = yield* benchBalancer(context, limited)
        const label = store === "none" ? "no store" : store === "memory" ? "Store.memory" : "Redis store"
        cases.push({
          name: `${label}, ${limited ? "rpm limit" : "no limits"}`,
          store,
          rpm: limited ? BENCH_RPM : null,
          body: () => pair(balancer),
          health: store === "none" ? null : yield* watchStore(balancer)
        })
      }
    }
    cases.push({
      name: "ioredis PING (one round trip)",
      store: "ping",
      rpm: null,
      body: () => Effect.promise(() => client.ping()),
      health: null
    })

    const perRound = Math.ceil(options.ops / options.rounds)
    const ops = perRound * options.rounds
    const scratch = new Float64Array(options.warmupOps)
    for (const c of cases) yield* timeEach(c.body, options.warmupOps, scratch, 0)

    const evalshaBefore = yield* Effect.promise(() => evalshaCalls(client))
    const meter = yield* Effect.promise(() => otherWork(client))
    const samples = cases.map(() => new Float64Array(ops))
    const rounds: Array<Array<Latency>> = cases.map(() => [])
    for (let r = 0; r < options.rounds; r++) {
      // rotate the order, so that no case always runs first or right after the same one
      for (let k = 0; k < cases.length; k++) {
        const index = (k + r) % cases.length
        yield* timeEach(cases[index].body, perRound, samples[index], r * perRound)
        rounds[index].push(latencyOf(samples[index].subarray(r * perRound, (r + 1) * perRound)))
      }
    }
    const otherCores = yield* Effect.promise(() => meter())
    const evalshaAfter = yield* Effect.promise(() => evalshaCalls(client))
    const redisPairs = cases.filter((c) => c.store === "redis").length * ops

    const results = cases.map((c, k): LatencyCase => ({
      name: c.name,
      store: c.store,
      rpm: c.rpm,
      ops,
      ...latencyOf(samples[k]),
      rounds: rounds[k].map((l) => ({ p50Us: l.p50Us, p99Us: l.p99Us })),
      health: c.health === null ? null : c.health()
    }))
    const find = (store: StoreKind, limited: boolean) =>
      results.find((c) => c.store === store && (c.rpm !== null) === limited)!
    return {
      ops,
      warmupOps: options.warmupOps,
      rounds: options.rounds,
      cases: results,
      added: {
        rpm: added(find("redis", true), find("none", true)),
        noLimits: added(find("redis", false), find("none", false))
      },
      evalshaPerPair: round((evalshaAfter - evalshaBefore) / redisPairs, 3),
      otherCores
    }
  }))

// --- 2. throughput -------------------------------------------------------------------------

const runOneProcess = (url: string, prefix: string, client: Redis, options: StoreOptions) =>
  Effect.forEach(["none", "memory", "redis"] as const, (store) =>
    Effect.scoped(Effect.gen(function*() {
      const context = yield* storeContext(store, {
        url,
        prefix: `${prefix}-one-process`,
        timeoutMs: options.throughputTimeoutMs
      })
      const balancer = yield* benchBalancer(context, true)
      const health = store === "none" ? null : yield* watchStore(balancer)
      yield* runLoad(balancer, options.concurrency, options.throughputWarmupMs)
      if (health !== null) yield* untilStoreUp(health)
      const evalshaBefore = yield* Effect.promise(() => evalshaCalls(client))
      const meter = yield* Effect.promise(() => otherWork(client))
      const load = yield* runLoad(balancer, options.concurrency, options.throughputMs)
      const otherCores = yield* Effect.promise(() => meter())
      const evalshaAfter = yield* Effect.promise(() => evalshaCalls(client))
      return {
        name: store === "none" ? "no store" : store === "memory" ? "Store.memory" : "Redis store",
        store,
        ...load,
        health: health === null ? null : health(),
        evalshaPerPair: store === "redis" ? round((evalshaAfter - evalshaBefore) / load.ops, 3) : null,
        otherCores
      } satisfies ThroughputCase
    })))

const workerPath = fileURLToPath(new URL("./storeWorker.ts", import.meta.url))
const tsconfigPath = fileURLToPath(new URL("../tsconfig.examples.json", import.meta.url))

/** Redis's counters at one moment. */
interface Snapshot {
  /** CPU seconds, user + sys. */
  readonly cpu: number
  readonly evalsha: number
  /** The bench endpoint's rpm window under the run's prefix. */
  readonly window: number
}

const snapshot = async (client: Redis, prefix: string): Promise<Snapshot> => ({
  cpu: await redisCpuSeconds(client),
  evalsha: await evalshaCalls(client),
  window: await windowCount(client, prefix)
})

interface WorkersRun {
  readonly results: ReadonlyArray<WorkerResult>
  /** Redis's counters at the common start and once every worker reported, and the time between. */
  readonly before: Snapshot
  readonly after: Snapshot
  readonly spanMs: number
  /** Cores that other work kept busy over the run (see `otherWork`). */
  readonly otherCores: number
}

/**
 * Starts `n` workers, waits until all are warm, starts them together, and collects their
 * results; takes Redis's counters at the common start and once all are done.
 */
const runWorkers = async (n: number, config: WorkerConfig, client: Redis): Promise<WorkersRun> => {
  const children = Array.from(
    { length: n },
    () =>
      spawn(process.execPath, ["--import", "tsx", workerPath, JSON.stringify(config)], {
        stdio: ["pipe", "pipe", "inherit"],
        env: { ...process.env, TSX_TSCONFIG_PATH: tsconfigPath }
      })
  )
  const timeout = setTimeout(() => {
    for (const child of children) child.kill("SIGKILL")
  }, 120_000)
  try {
    const ready: Array<Promise<void>> = []
    const results = children.map((child, i) =>
      new Promise<WorkerResult>((resolveResult, reject) => {
        let result: WorkerResult | undefined
        ready.push(
          new Promise<void>((onReady, notReady) => {
            createInterface({ input: child.stdout! }).on("line", (line) => {
              if (line === "READY") onReady()
              else if (line.startsWith("RESULT ")) result = JSON.parse(line.slice("RESULT ".length)) as WorkerResult
            })
            child.once("exit", (code, signal) => {
              notReady(new Error(`worker ${i} exited before it was ready (${code ?? signal})`))
              if (result !== undefined) resolveResult(result)
              else reject(new Error(`worker ${i} exited with no result (${code ?? signal})`))
            })
          })
        )
      })
    )
    // no unhandled rejection while another promise is awaited
    for (const r of results) r.catch(() => {})
    await Promise.all(ready)
    // the workers are idle until they start: the counters taken now are those of the start
    const before = await snapshot(client, config.prefix)
    const meter = await otherWork(client)
    const startAt = Date.now() + 200
    for (const child of children) child.stdin!.write(`${startAt}\n`)
    const done = await Promise.all(results)
    const otherCores = await meter(done.reduce((sum, r) => sum + r.cpuMs, 0))
    const after = await snapshot(client, config.prefix)
    return { results: done, before, after, spanMs: Date.now() - startAt, otherCores }
  } finally {
    clearTimeout(timeout)
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
}

const runMultiProcess = (url: string, prefix: string, client: Redis, options: StoreOptions) =>
  Effect.forEach(["redis", "none"] as const, (store) =>
    Effect.promise(async (): Promise<MultiProcess> => {
      const runPrefix = `${prefix}-${options.processes}-processes`
      const run = await runWorkers(options.processes, {
        store,
        url,
        prefix: runPrefix,
        timeoutMs: options.throughputTimeoutMs,
        limited: true,
        concurrency: options.concurrency,
        warmupMs: options.throughputWarmupMs,
        durationMs: options.throughputMs
      }, client)
      const processes = run.results
      const measured = processes.reduce((n, p) => n + p.ops, 0)
      const overlapMs = Math.max(
        0,
        Math.min(...processes.map((p) => p.endedAt)) - Math.max(...processes.map((p) => p.startedAt))
      )
      return {
        name: `${options.processes} processes, ${store === "redis" ? "Redis store (shared)" : "no store"}`,
        store,
        processes,
        totalOpsPerSecond: processes.reduce((sum, p) => sum + p.opsPerSecond, 0),
        overlapMs,
        redisCpu: store === "redis" ? round((run.after.cpu - run.before.cpu) / (run.spanMs / 1000), 2) : null,
        evalshaPerPair: store === "redis" ? round((run.after.evalsha - run.before.evalsha) / measured, 3) : null,
        sharedWindow: store === "redis" ? { counted: run.after.window - run.before.window, pairs: measured } : null,
        otherCores: run.otherCores
      }
    }))

// --- the whole bench -----------------------------------------------------------------------

export const runStore = (options: StoreOptions = defaultStoreOptions): Effect.Effect<StoreResult, unknown> =>
  Effect.scoped(Effect.gen(function*() {
    const server: RedisServer = yield* Effect.acquireRelease(
      Effect.promise(() => startRedis()),
      (s) => Effect.promise(() => s.stop())
    )
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 })),
      (c) => Effect.promise(() => c.quit().then(() => undefined, () => c.disconnect()))
    )
    yield* Effect.promise(() => client.connect())
    const redisVersion = (yield* Effect.promise(() => info(client, "server"))).get("redis_version") ?? "unknown"
    const prefix = `bench-store-${process.pid}`

    const latency = yield* runLatency(server.url, prefix, client, options)
    const oneProcess = yield* runOneProcess(server.url, prefix, client, options)
    const multiProcess = yield* runMultiProcess(server.url, prefix, client, options)
    return {
      redisVersion,
      cores: os.cpus().length,
      endpoint:
        `one endpoint; limits { rpm: ${BENCH_RPM} } (or none); release with Outcome.success() (nothing to settle)`,
      latency,
      throughput: {
        concurrency: options.concurrency,
        durationMs: options.throughputMs,
        warmupMs: options.throughputWarmupMs,
        storeTimeoutMs: options.throughputTimeoutMs,
        oneProcess,
        multiProcess
      },
      targetMs: STORE_ADDED_P99_TARGET_MS,
      meetsTarget: latency.added.rpm.p99Us <= STORE_ADDED_P99_TARGET_MS * 1000,
      loadAverageAtEnd: os.loadavg().map((n) => round(n, 2))
    }
  }))

/** Every process's store health, added up. */
export const sumHealth = (all: ReadonlyArray<StoreHealth>): StoreHealth => ({
  fallbacks: all.reduce((n, h) => n + h.fallbacks, 0),
  resumed: all.reduce((n, h) => n + h.resumed, 0),
  reasons: all.flatMap((h) => h.reasons).slice(0, 3)
})

const healthCell = (h: StoreHealth | null) =>
  h === null ? "-" : h.fallbacks === 0 ? "0" : `${h.fallbacks} (${h.reasons.join("; ")})`

const us = (n: number) => `${n.toFixed(1)} µs`
const int = (n: number) => Math.round(n).toLocaleString("en-US")

/** The figures as text, for the console. */
export const describeStore = (s: StoreResult): string => {
  const l = s.latency
  const lines = [
    `Shared store: Redis ${s.redisVersion} on 127.0.0.1 (its own process), ${s.endpoint}.`,
    `Latency: ${int(l.ops)} sequential acquire + release pairs per configuration (after ${int(l.warmupOps)} ` +
    `warm-up), each timed alone, interleaved in ${l.rounds} rounds`,
    table(
      ["configuration", "p50", "p90", "p99", "p99.9", "mean", "max", "fallbacks"],
      l.cases.map((c) => [
        c.name,
        us(c.p50Us),
        us(c.p90Us),
        us(c.p99Us),
        us(c.p999Us),
        us(c.meanUs),
        us(c.maxUs),
        healthCell(c.health)
      ])
    ),
    "",
    `Added by the Redis store (rpm limit): p50 ${us(l.added.rpm.p50Us)}, p99 ${us(l.added.rpm.p99Us)}, ` +
    `p99.9 ${us(l.added.rpm.p999Us)}, mean ${us(l.added.rpm.meanUs)} ` +
    `(${s.meetsTarget ? "meets" : "MISSES"} the <= ${s.targetMs} ms p99 target); no limits: p50 ` +
    `${us(l.added.noLimits.p50Us)}, p99 ${us(l.added.noLimits.p99Us)}. EVALSHA per Redis pair: ${l.evalshaPerPair}. ` +
    `Other work on the machine kept ${l.otherCores} of ${s.cores} cores busy meanwhile.`,
    "",
    `Throughput: ${s.throughput.concurrency} fibers per process doing acquire + release for ` +
    `${s.throughput.durationMs / 1000} s after ${s.throughput.warmupMs} ms of warm-up, the Redis store's timeout ` +
    `at ${s.throughput.storeTimeoutMs} ms. The machine has ${s.cores} cores, shared by Redis and every bench process.`,
    table(
      ["run", "pairs/s", "per process", "EVALSHA/pair", "fallbacks", "other work (cores)"],
      [
        ...s.throughput.oneProcess.map((t) => [
          `1 process, ${t.name}`,
          int(t.opsPerSecond),
          "",
          t.evalshaPerPair === null ? "-" : String(t.evalshaPerPair),
          healthCell(t.health),
          String(t.otherCores)
        ]),
        ...s.throughput.multiProcess.map((m) => [
          m.name,
          int(m.totalOpsPerSecond),
          m.processes.map((p) => int(p.opsPerSecond)).join(" / "),
          m.evalshaPerPair === null ? "-" : String(m.evalshaPerPair),
          healthCell(m.store === "none" ? null : sumHealth(m.processes.map((p) => p.store))),
          String(m.otherCores)
        ])
      ]
    )
  ]
  for (const m of s.throughput.multiProcess) {
    const notes = [`all ${m.processes.length} ran together for ${int(m.overlapMs)} ms of ${s.throughput.durationMs}`]
    if (m.redisCpu !== null) notes.push(`Redis used ${m.redisCpu} CPU seconds per second`)
    if (m.evalshaPerPair !== null) notes.push(`EVALSHA per pair ${m.evalshaPerPair}`)
    if (m.sharedWindow !== null) {
      notes.push(`the shared rpm window counted ${int(m.sharedWindow.counted)} of ${int(m.sharedWindow.pairs)} pairs`)
    }
    lines.push(`${m.name}: ${notes.join("; ")}.`)
  }
  return lines.join("\n")
}

// --- run alone -----------------------------------------------------------------------------

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)

if (isMain) {
  const date = new Date().toISOString()
  const facts = machine()
  console.log(`effect-llm-balancer shared store bench, ${date}`)
  console.log(
    `${facts.cpu}, ${facts.cores} cores, ${facts.os}, node ${facts.node}, effect ${facts.effect}, ` +
      `load average ${facts.loadAverage.join(" ")}\n`
  )
  Effect.runPromise(runStore(defaultStoreOptions)).then(
    (store) => {
      console.log(describeStore(store))
      const dir = new URL("./results/", import.meta.url)
      mkdirSync(dir, { recursive: true })
      const file = new URL("store.json", dir)
      writeFileSync(file, JSON.stringify({ date, machine: facts, timing: storeTiming, store }, null, 2) + "\n")
      console.log(`\nwrote ${fileURLToPath(file)}`)
      console.log(`wrote ${writeReport()}`)
    },
    (error) => {
      console.error(error)
      process.exitCode = 1
    }
  )
}
