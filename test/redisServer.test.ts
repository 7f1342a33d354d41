import { createConnection } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RedisServer } from "./support/redisServer.js"
import { startRedis } from "./support/redisServer.js"

/** Sends `PING` over a raw socket: the first reply line, or the socket error's code. */
const ping = (port: number): Promise<string> =>
  new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port })
    let received = ""
    const done = (result: string) => {
      socket.destroy()
      resolve(result)
    }
    socket.setTimeout(1_000, () => done("timeout"))
    socket.setEncoding("utf8")
    socket.once("connect", () => socket.write("PING\r\n"))
    socket.on("data", (chunk: string) => {
      received += chunk
      const end = received.indexOf("\r\n")
      if (end >= 0) done(received.slice(0, end))
    })
    socket.once("error", (error: NodeJS.ErrnoException) => done(error.code ?? error.message))
  })

describe("redis-server test support", () => {
  let server: RedisServer

  beforeAll(async () => {
    server = await startRedis()
  })

  afterAll(async () => {
    await server?.stop()
  })

  it("starts, dies on kill, comes back on the same port and stops", async () => {
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`)
    expect(await ping(server.port)).toBe("+PONG")

    await server.kill()
    expect(await ping(server.port)).toBe("ECONNREFUSED")

    await server.restart()
    expect(await ping(server.port)).toBe("+PONG")

    await server.stop()
    expect(await ping(server.port)).toBe("ECONNREFUSED")
    await server.stop() // no-op once stopped
  })
})
