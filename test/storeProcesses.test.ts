/**
 * The Redis store across real processes: several Node processes (`support/storeWorker.ts`),
 * each with its own balancer over one redis-server on 127.0.0.1, share a rate limit and a
 * circuit. Real time throughout; every process reads the same system clock, so the times
 * the workers report can be compared with one another.
 */
import { afterEach, describe, expect, it } from "@effect/vitest"
import type { ChildProcessWithoutNullStreams } from "node:child_process"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import type { BreakerResult, Call, ObserverResult, RpmResult, WorkerConfig } from "./support/storeWorker.js"
import { useRedis } from "./support/useRedis.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const workerPath = fileURLToPath(new URL("./support/storeWorker.ts", import.meta.url))

/** How long a worker may take to start (tsx compiles the library) and connect. */
const READY_TIMEOUT_MS = 15_000
/** How long a worker may take, past its load, to print its result and exit. */
const EXIT_TIMEOUT_MS = 10_000
/** The command timeout of the workers' stores: generous, so a busy machine does not make them fall back. */
const STORE_TIMEOUT_MS = 1_000

const redis = useRedis()

const running = new Set<ChildProcessWithoutNullStreams>()
// a test that failed early leaves no worker behind
afterEach(() => {
  for (const child of running) child.kill("SIGKILL")
  running.clear()
})

let runs = 0
/** A fresh namespace per test, so tests never see each other's keys (or an earlier run's). */
const freshPrefix = () => `processes-${process.pid}-${Date.now()}-${runs++}`

interface Worker {
  /** Resolves when the worker has built its balancer and waits for the start time. */
  readonly ready: Promise<void>
  /** Resolves with the worker's result once it has exited with code 0. */
  readonly done: Promise<unknown>
  readonly start: (startAt: number) => void
}

const withTimeout = <A>(promise: Promise<A>, ms: number, what: string): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      }
    )
  })

const spawnWorker = (name: string, config: WorkerConfig): Worker => {
  const child = spawn(process.execPath, ["--import", "tsx", workerPath, JSON.stringify(config)], {
    cwd: root,
    stdio: ["pipe", "pipe", "pipe"]
  })
  running.add(child)
  let stdout = ""
  let stderr = ""
  let result: { readonly value: unknown } | undefined
  let onReady: () => void = () => {}
  let lines = 0
  const ready = new Promise<void>((resolve) => (onReady = resolve))
  child.stdout.setEncoding("utf8")
  child.stderr.setEncoding("utf8")
  child.stdout.on("data", (chunk: string) => {
    stdout += chunk
    const complete = stdout.split("\n")
    for (const line of complete.slice(lines, -1)) {
      const message = JSON.parse(line) as { ready?: boolean; result?: unknown }
      if (message.ready === true) onReady()
      if ("result" in message) result = { value: message.result }
    }
    lines = complete.length - 1
  })
  child.stderr.on("data", (chunk: string) => (stderr += chunk))
  const done = new Promise<unknown>((resolve, reject) => {
    child.once("error", reject)
    child.once("close", (code, signal) => {
      running.delete(child)
      if (code === 0 && result !== undefined) return resolve(result.value)
      reject(
        new Error(
          `worker ${name} exited with code ${code} (signal ${signal})${
            result === undefined ? " without a result" : ""
          }; stderr:\n${stderr.trim()}`
        )
      )
    })
  })
  // a worker that dies before it is ready fails `ready` too
  const readyOrDied = Promise.race([ready, done.then(() => Promise.reject(new Error(`worker ${name} ended early`)))])
  done.catch(() => {}) // reported through `ready` or by the caller
  return {
    ready: readyOrDied,
    done,
    start: (startAt) => {
      child.stdin.end(`${startAt}\n`)
    }
  }
}

/**
 * Spawns the workers, waits until every one is ready, gives them one start time a moment
 * ahead, and returns their results in order.
 */
const runWorkers = async (
  workers: ReadonlyArray<readonly [string, WorkerConfig]>,
  loadMs: number
): Promise<Array<unknown>> => {
  const spawned = workers.map(([name, config]) => spawnWorker(name, config))
  await withTimeout(Promise.all(spawned.map((w) => w.ready)), READY_TIMEOUT_MS, "starting the workers")
  const startAt = Date.now() + 100
  for (const worker of spawned) worker.start(startAt)
  return withTimeout(
    Promise.all(spawned.map((w) => w.done)),
    100 + loadMs + EXIT_TIMEOUT_MS,
    "waiting for the workers to finish"
  )
}

describe("Redis store across processes", () => {
  it("rpm: four processes offering far more than the limit together admit exactly 60", async () => {
    const prefix = freshPrefix()
    const durationMs = 2_500
    const config: WorkerConfig = {
      mode: "rpm",
      url: redis.url,
      prefix,
      timeoutMs: STORE_TIMEOUT_MS,
      fibers: 8,
      durationMs,
      pauseMs: 2
    }
    const results = (await runWorkers(
      Array.from({ length: 4 }, (_, i) => [`rpm-${i}`, config] as const),
      durationMs
    )) as Array<RpmResult>

    expect(results.map((r) => r.failedOther)).toEqual([0, 0, 0, 0])
    // a store that fell back would leave each process to its own 60
    expect(results.map((r) => r.fellBack)).toEqual([0, 0, 0, 0])
    const admitted = results.reduce((sum, r) => sum + r.admitted, 0)
    const refused = results.reduce((sum, r) => sum + r.refused, 0)
    expect(admitted).toBe(60)
    expect(refused).toBeGreaterThan(1_000)
  })

  it("circuit: opened by one process, open for all; one probe in the cluster; its success closes it for all", async () => {
    const prefix = freshPrefix()
    const common = { url: redis.url, prefix, timeoutMs: STORE_TIMEOUT_MS }
    const observers = 2
    const holdMs = 300
    // the breaker opens the circuit at about +250 ms, for 2 s: half-open at about +2.25 s,
    // closed by the probe at about +2.55 s; the observers turned away from the probe (the
    // store tells them to come back in 1 s) are back on x at about +3.25 s, before the end
    const durationMs = 4_000
    const results = await runWorkers([
      ["breaker", { ...common, mode: "breaker", breakAfterMs: 250 }],
      ...Array.from(
        { length: observers },
        (_, i) => [`observer-${i}`, { ...common, mode: "observer", fibers: 3, durationMs, holdMs, pauseMs: 5 }] as const
      )
    ], durationMs)
    const breaker = results[0] as BreakerResult
    const observed = results.slice(1) as Array<ObserverResult>

    expect(breaker.failures).toBe(3)
    expect(breaker.fellBack).toBe(0)
    expect(observed.map((o) => [o.refused, o.failedOther, o.fellBack])).toEqual(
      Array.from({ length: observers }, () => [0, 0, 0])
    )
    const { openedAt, releaseCalledAt, until } = breaker
    expect(until - releaseCalledAt).toBeGreaterThanOrEqual(2_000)
    expect(until - openedAt).toBeLessThanOrEqual(2_000)

    const calls = observed.flatMap((o, observer) => o.calls.map((call) => ({ ...call, observer })))
    const onX = calls.filter((c) => c.endpoint === "x").sort((a, b) => a.admittedAt - b.admittedAt)
    // the observers were on x before the opening
    expect(onX.filter((c) => c.admittedAt < releaseCalledAt).length).toBeGreaterThan(0)

    // open: no call that began once the store had the circuit open is admitted on x before
    // the open period ends, though the observers never saw a failure; they go to y
    const whileOpen = calls.filter((c) => c.startedAt > openedAt && c.admittedAt < until)
    expect(whileOpen.length).toBeGreaterThan(50)
    expect(whileOpen.filter((c) => c.endpoint === "x")).toEqual([])

    // half-open: the first call on x after the opening is the cluster's one probe, soon
    // after the open period ends; no other call is admitted on x until it ends
    const afterOpening = onX.filter((c) => c.startedAt > openedAt)
    expect(afterOpening.length).toBeGreaterThan(0)
    const probe = afterOpening[0]
    expect(probe.admittedAt).toBeGreaterThanOrEqual(until)
    expect(probe.admittedAt).toBeLessThan(until + 500)
    expect(afterOpening.filter((c) => c.admittedAt < probe.releasedAt)).toEqual([probe])
    expect(maxConcurrent(onX, until, probe.releasedAt)).toBe(1)

    // closed by the probe's success for every process: each observer is back on x
    for (let observer = 0; observer < observers; observer++) {
      expect(afterOpening.some((c) => c.observer === observer && c.admittedAt >= probe.releasedAt)).toBe(true)
    }
  })
})

/** The most calls held at once (from admission to release) at any moment in [from, to]. */
const maxConcurrent = (calls: ReadonlyArray<Call>, from: number, to: number): number => {
  const moments = [from, ...calls.map((c) => c.admittedAt).filter((t) => t >= from && t <= to)]
  return Math.max(...moments.map((t) => calls.filter((c) => c.admittedAt <= t && t < c.releasedAt).length))
}
