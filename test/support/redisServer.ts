/**
 * A throwaway `redis-server` for tests: started on 127.0.0.1 on a free port, with no
 * persistence, and stopped afterwards. Only Node builtins are used (raw sockets, no Redis
 * client), so this file can be imported anywhere in the test suite.
 *
 * ```ts
 * const { url, server } = await redisUrl()   // REDIS_URL when set, else a fresh server
 * // ... point a client at url ("redis://127.0.0.1:<port>") ...
 * await server?.kill()                       // simulate a crash (SIGKILL)
 * await server?.restart()                    // same port, waits until it answers PING
 * await server?.stop()                       // SIGTERM, SIGKILL after 3 s
 * ```
 *
 * `ensureRedisBinary` finds `redis-server` on PATH (or in /usr/bin, /usr/sbin) and, when it
 * is missing and the process runs as root, installs Debian's package with apt-get. Every
 * server started here is killed when the process exits (or gets SIGTERM/SIGINT), so no
 * server outlives the test run even when a test forgets to stop it.
 */
import type { ChildProcess } from "node:child_process"
import { execFileSync, spawn } from "node:child_process"
import { accessSync, closeSync, constants, openSync, statSync } from "node:fs"
import { createConnection, createServer } from "node:net"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"
import { isMainThread } from "node:worker_threads"

const HOST = "127.0.0.1"
const READY_TIMEOUT_MS = 10_000
const POLL_INTERVAL_MS = 20
const STOP_GRACE_MS = 3_000
const APT_TIMEOUT_MS = 5 * 60_000
const OUTPUT_TAIL_CHARS = 4_000

const NOT_INSTALLED = "redis-server is not installed: run \"sudo apt-get install redis-server\" (Debian/Ubuntu) " +
  "or set REDIS_URL to a Redis 7 server"

// ---------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------

const isExecutableFile = (path: string): boolean => {
  try {
    if (!statSync(path).isFile()) return false
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

const findRedisBinary = (): string | undefined => {
  const dirs = (process.env.PATH ?? "").split(delimiter).filter((dir) => dir !== "")
  for (const dir of [...dirs, "/usr/bin", "/usr/sbin", "/usr/local/bin"]) {
    const candidate = join(dir, "redis-server")
    if (isExecutableFile(candidate)) return candidate
  }
  return undefined
}

let binaryPath: string | undefined

/**
 * The path of `redis-server`. When it is missing and the process runs as root, installs
 * Debian's `redis-server` package (`apt-get update` then `apt-get install`, output in a log
 * file under the temp dir); otherwise throws an error with a one-line hint.
 */
export const ensureRedisBinary = (): string => {
  if (binaryPath !== undefined) return binaryPath
  const found = findRedisBinary()
  if (found !== undefined) return (binaryPath = found)
  if (process.getuid?.() !== 0) throw new Error(NOT_INSTALLED)

  // The package's postinst may start a system redis on 6379; it is left alone (we always
  // use our own port).
  const logPath = join(tmpdir(), "redis-server-apt-install.log")
  const log = openSync(logPath, "a")
  try {
    const options = {
      stdio: ["ignore", log, log] as Array<"ignore" | number>,
      timeout: APT_TIMEOUT_MS,
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
    }
    execFileSync("apt-get", ["update", "-qq"], options)
    execFileSync("apt-get", ["install", "-y", "-qq", "redis-server"], options)
  } catch (error) {
    const reason = error instanceof Error ? error.message.split("\n")[0] : String(error)
    throw new Error(`${NOT_INSTALLED} (installing it with apt-get failed: ${reason}; see ${logPath})`)
  } finally {
    closeSync(log)
  }
  const installed = findRedisBinary()
  if (installed === undefined) throw new Error(NOT_INSTALLED)
  return (binaryPath = installed)
}

// ---------------------------------------------------------------------------------------
// Ports and PING
// ---------------------------------------------------------------------------------------

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once("error", reject)
    server.listen(0, HOST, () => {
      const { port } = server.address() as AddressInfo
      server.close((error) => (error ? reject(error) : resolve(port)))
    })
  })

/**
 * One `PING` (followed by `INFO server`) over a fresh connection: true when the server
 * answers `+PONG` and is the process `pid` (not another server that holds the port).
 */
const pingOnce = (port: number, pid: number | undefined, timeoutMs: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = createConnection({ host: HOST, port })
    let received = ""
    let settled = false
    const done = (ok: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    socket.setEncoding("utf8")
    socket.once("connect", () => socket.write("PING\r\nINFO server\r\n"))
    socket.on("data", (chunk: string) => {
      received += chunk
      if (!received.includes("\r\n")) return
      if (!received.startsWith("+PONG\r\n")) return done(false) // e.g. -LOADING: try again later
      const match = /process_id:(\d+)\r\n/.exec(received)
      if (match !== null) done(Number(match[1]) === pid)
    })
    socket.once("error", () => done(false))
    socket.once("close", () => done(false))
  })

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------
// Cleanup of servers left running
// ---------------------------------------------------------------------------------------

const running = new Set<ChildProcess>()
let hooksInstalled = false

const killAllNow = () => {
  for (const child of running) {
    try {
      child.kill("SIGKILL")
    } catch {
      // already gone
    }
  }
  running.clear()
}

const installExitHooks = () => {
  if (hooksInstalled) return
  hooksInstalled = true
  process.on("exit", killAllNow)
  // A signal's default action ends the process without "exit" (vitest's fork pool ends its
  // workers with SIGTERM): kill the servers, then re-raise the signal when nobody else
  // handles it, so the process still dies of it. Workers threads get no signals.
  if (!isMainThread) return
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const onSignal = () => {
      killAllNow()
      process.off(signal, onSignal)
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
    }
    process.on(signal, onSignal)
  }
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

export interface RedisServer {
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** Graceful: SIGTERM, then waits for the exit (SIGKILL after 3 s). No-op when not running. */
  stop(): Promise<void>
  /** SIGKILL (a crash), then waits for the exit. No-op when not running. */
  kill(): Promise<void>
  /** Starts again on the same port (stopping first when running) and waits until it is ready. */
  restart(): Promise<void>
}

interface Instance {
  readonly child: ChildProcess
  readonly exited: Promise<void>
  readonly output: () => string
  readonly hasExited: () => boolean
}

const spawnInstance = (binary: string, port: number): Instance => {
  const child = spawn(binary, [
    "--port",
    String(port),
    "--bind",
    HOST,
    "--save",
    "",
    "--appendonly",
    "no",
    "--protected-mode",
    "no",
    "--daemonize",
    "no",
    "--loglevel",
    "warning"
  ], { stdio: ["ignore", "pipe", "pipe"] })
  installExitHooks()
  running.add(child)

  let output = ""
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-OUTPUT_TAIL_CHARS)
  }
  child.stdout?.on("data", collect)
  child.stderr?.on("data", collect)

  let exited = false
  const exitPromise = new Promise<void>((resolve) => {
    const onGone = () => {
      exited = true
      running.delete(child)
      resolve()
    }
    child.once("exit", onGone)
    child.once("error", (error) => {
      collect(Buffer.from(`\nspawn error: ${error.message}\n`))
      onGone()
    })
  })
  return { child, exited: exitPromise, output: () => output, hasExited: () => exited }
}

/** Waits until the instance answers PING; throws with its output tail when it exits or times out. */
const waitReady = async (instance: Instance, port: number): Promise<void> => {
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    if (instance.hasExited()) {
      throw new Error(
        `redis-server on ${HOST}:${port} exited before it was ready (code ${instance.child.exitCode}, ` +
          `signal ${instance.child.signalCode}); output:\n${instance.output().trim()}`
      )
    }
    if (await pingOnce(port, instance.child.pid, 500)) return
    if (Date.now() >= deadline) {
      instance.child.kill("SIGKILL")
      await instance.exited
      throw new Error(
        `redis-server on ${HOST}:${port} did not answer PING within ${READY_TIMEOUT_MS} ms; output:\n` +
          instance.output().trim()
      )
    }
    await sleep(POLL_INTERVAL_MS)
  }
}

const startInstance = async (binary: string, port: number): Promise<Instance> => {
  const instance = spawnInstance(binary, port)
  await waitReady(instance, port)
  return instance
}

const terminate = async (instance: Instance, signal: "SIGTERM" | "SIGKILL"): Promise<void> => {
  if (instance.hasExited()) return
  const escalate = signal === "SIGTERM"
    ? setTimeout(() => instance.child.kill("SIGKILL"), STOP_GRACE_MS)
    : undefined
  instance.child.kill(signal)
  await instance.exited
  if (escalate !== undefined) clearTimeout(escalate)
}

/**
 * Starts `redis-server` on 127.0.0.1 (on `options.port`, else a free port) without
 * persistence, and resolves once it answers PING.
 */
export const startRedis = async (options?: { readonly port?: number }): Promise<RedisServer> => {
  const binary = ensureRedisBinary()
  let port: number
  let instance: Instance
  if (options?.port !== undefined) {
    port = options.port
    instance = await startInstance(binary, port)
  } else {
    // Another process may take the free port before redis binds it: try a few ports.
    for (let attempt = 1;; attempt++) {
      port = await freePort()
      try {
        instance = await startInstance(binary, port)
        break
      } catch (error) {
        if (attempt >= 3) throw error
      }
    }
  }

  let current = instance
  return {
    port,
    url: `redis://${HOST}:${port}`,
    stop: () => terminate(current, "SIGTERM"),
    kill: () => terminate(current, "SIGKILL"),
    restart: async () => {
      await terminate(current, "SIGTERM")
      current = await startInstance(binary, port)
    }
  }
}

/**
 * The Redis to test against: `REDIS_URL` when set (no server to manage), else a fresh
 * `redis-server` (the caller stops it).
 */
export const redisUrl = async (): Promise<{ url: string; server: RedisServer | undefined }> => {
  const fromEnv = process.env.REDIS_URL
  if (fromEnv !== undefined && fromEnv !== "") return { url: fromEnv, server: undefined }
  const server = await startRedis()
  return { url: server.url, server }
}
