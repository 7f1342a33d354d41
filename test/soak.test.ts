/**
 * Soak: long runs stay bounded and a closed stack leaves nothing behind.
 *
 * - A simulated day (24 h, about 86,000 requests through the Router, with outages, 429
 *   bursts and brownouts) on simulated time: the heap after each hour stays flat.
 * - 60 s of real-time load through the whole layer stack (both HTTP providers, the
 *   balancer with health checks and the Redis store, the router, an event subscriber)
 *   against loopback servers: no call fails, the heap stays flat, and once the layer's
 *   scope is closed nothing is left open: the process exits by itself.
 *
 * Both run in child processes started with `--expose-gc`, so the heap is measured after
 * full collections and the handles are only the stack's. `SOAK_SECONDS` shortens the
 * real-time run for a quick local check.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as AnthropicServer from "./support/anthropicServer.js"
import * as OpenAiServer from "./support/openAiServer.js"
import { useRedis } from "./support/useRedis.js"

/** Heap growth allowed over a run, in MB (measured: about 0.5 MB over the simulated day). */
const HEAP_GROWTH_BOUND_MB = 4
const SECONDS = Number(process.env.SOAK_SECONDS ?? 60)

interface Finished {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  /** From the result line to the process's exit. */
  readonly exitAfterMs: number
}

/** Runs a worker to its natural end: no kill, unless it outlives `timeoutMs`. */
const runWorker = (args: ReadonlyArray<string>, timeoutMs: number) =>
  new Promise<Finished>((resolve, reject) => {
    const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", ...args], {
      cwd: new URL("..", import.meta.url).pathname,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    let resultAt = 0
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
      if (resultAt === 0 && stdout.includes("\n")) resultAt = Date.now()
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`worker ${args[0]} did not exit within ${timeoutMs} ms: ${stderr.slice(-2000)}`))
    }, timeoutMs)
    child.on("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr, exitAfterMs: resultAt === 0 ? -1 : Date.now() - resultAt })
    })
  })

const resultOf = (finished: Finished) => {
  expect(finished.stderr.slice(-2000)).toBe("")
  expect(finished.code).toBe(0)
  return JSON.parse(finished.stdout.trim().split("\n").at(-1)!)
}

describe("soak", () => {
  it("a simulated day of traffic with faults: every call ends, no slot leaks, the heap stays flat", async () => {
    const result = resultOf(await runWorker(["test/support/soakWorker.ts", "24"], 240_000))
    expect(result.requests).toBeGreaterThan(80_000)
    expect(result.success + result.failed).toBe(result.requests)
    expect(result.active).toEqual([0, 0, 0, 0])
    // one sample at the start of each simulated hour from the second on, and one at the end
    expect(result.heapMb).toHaveLength(24)
    const growth = Math.max(...result.heapMb.slice(1)) - result.heapMb[0]
    expect(growth).toBeLessThan(HEAP_GROWTH_BOUND_MB)
  }, 300_000)

  describe("the whole stack in real time", () => {
    const redis = useRedis()

    it.live(
      `${SECONDS} s of load, then the scope closes and the process exits by itself`,
      () =>
        Effect.scoped(Effect.gen(function*() {
          const openai = yield* OpenAiServer.make()
          const anthropic = yield* AnthropicServer.make()
          const config = { openai: openai.url, anthropic: anthropic.url, redis: redis.url, seconds: SECONDS }
          const finished = yield* Effect.promise(() =>
            runWorker(["test/support/stackWorker.ts", JSON.stringify(config)], (SECONDS + 60) * 1000)
          )
          const result = resultOf(finished)
          expect(result.completed).toBeGreaterThan(SECONDS * 10)
          expect(result.streamed).toBeGreaterThan(SECONDS * 10)
          expect(result.failed).toBe(0)
          expect(result.active).toEqual([0, 0, 0])
          expect(result.endHeapMb - result.warmHeapMb).toBeLessThan(HEAP_GROWTH_BOUND_MB)
          // nothing the stack opened is left: no socket, no timer, no Redis connection
          expect(result.open).toEqual([])
          expect(result.sockets).toEqual([])
          // and so the process ends on its own, at once
          expect(finished.exitAfterMs).toBeGreaterThanOrEqual(0)
          expect(finished.exitAfterMs).toBeLessThan(2_000)
        })),
      (SECONDS + 120) * 1000
    )
  })
})
