/**
 * A Redis for a test file, in vitest's hooks. Apart from redisServer.ts, which the benches
 * import too (outside vitest, importing it fails).
 */
import { afterAll, beforeAll } from "vitest"
import type { RedisServer } from "./redisServer.js"
import { redisUrl } from "./redisServer.js"

/**
 * A Redis for the test file: started (or taken from `REDIS_URL`) before its tests, stopped
 * after them. `url` is read once the tests run.
 */
export const useRedis = (): { readonly url: string } => {
  let started: { url: string; server: RedisServer | undefined } | undefined
  beforeAll(async () => {
    started = await redisUrl()
  }, 120_000)
  afterAll(async () => {
    await started?.server?.stop()
  })
  return {
    get url() {
      if (started === undefined) throw new Error("useRedis: the url is read before the tests run")
      return started.url
    }
  }
}
