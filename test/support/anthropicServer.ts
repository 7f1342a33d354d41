/**
 * A loopback HTTP server that speaks Anthropic's Messages API (`POST /v1/messages`, JSON
 * and server-sent events) and injects faults, for tests over a real socket.
 *
 * Which behaviour a request gets: the next one of the scripted queue (`script`), else
 * the one its model names (`"fault:overloaded"`), else the server's `behavior` (default
 * `"ok"`). Every request is recorded with its headers and parsed body.
 *
 * Like the real API, it checks what it is sent: a request without a key (`x-api-key`, or
 * `Authorization: Bearer`, as the official SDK sends it) is a 401 `authentication_error`
 * (and a wrong one, when `apiKey` is set); a missing
 * `anthropic-version`, `max_tokens`, `model` or `messages`, a `system` role in
 * `messages` (with version 2023-06-01) or a body that is not JSON is a 400 `invalid_request_error`; another path a
 * 404 `not_found_error`.
 */
import { Effect } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"

/**
 * - `ok`: a text answer ("Hello from {name}"), `end_turn`.
 * - `tool-use`: a text block and a `tool_use` block, `stop_reason: "tool_use"`.
 * - `max-tokens`: the answer with `stop_reason: "max_tokens"`.
 * - `rate-limit-retry-after`: 429 `rate_limit_error` with `retry-after` (seconds) and
 *   far-off `anthropic-ratelimit-*-reset` headers.
 * - `rate-limit-reset`: 429 `rate_limit_error` with only the reset headers: requests
 *   exhausted (remaining 0), resetting in `rateLimitResetMs`.
 * - `spend-limit`: 429 `rate_limit_error` with `details.error_code:
 *   "enforced_spend_limit_reached"` and no `retry-after`.
 * - `server-error`: 500 `api_error`. `overloaded`: 529 `overloaded_error`.
 * - `prompt-too-long`: 400 `invalid_request_error`, "prompt is too long: ...".
 * - `context-limit`: 400 `invalid_request_error`, "input length and `max_tokens` exceed context limit: ...".
 * - `unauthorized`: 401 `authentication_error`. `forbidden`: 403 `permission_error`.
 * - `billing`: 402 `billing_error`. `request-too-large`: 413 `request_too_large`.
 * - `echo-key`: 400 whose message repeats the `x-api-key` it was sent (a careless proxy).
 * - `reset`: the connection is destroyed before any answer.
 * - `reset-mid-body`: 200 headers and half the JSON body (or, streaming, the first
 *   token), then the connection is destroyed.
 * - `invalid-json`: 200 with a body that is not JSON. `wrong-shape`: 200 JSON without `content`.
 * - `stall`: nothing at all, until the client gives up or the server closes.
 * - `stream-cut`: streaming, the first token, then the response ends without
 *   `message_stop` (for a JSON request: half the body, ended cleanly).
 * - `stream-error`: streaming, the first token, then an `error` event (`overloaded_error`)
 *   (for a JSON request: a 529).
 * - `stream-garbage`: streaming, the first token, then a `content_block_delta` whose data
 *   is not JSON (for a JSON request: `invalid-json`).
 */
export type Behavior =
  | "ok"
  | "tool-use"
  | "max-tokens"
  | "rate-limit-retry-after"
  | "rate-limit-reset"
  | "spend-limit"
  | "server-error"
  | "overloaded"
  | "prompt-too-long"
  | "context-limit"
  | "unauthorized"
  | "forbidden"
  | "billing"
  | "request-too-large"
  | "echo-key"
  | "reset"
  | "reset-mid-body"
  | "invalid-json"
  | "wrong-shape"
  | "stall"
  | "stream-cut"
  | "stream-error"
  | "stream-garbage"

/** Every behaviour the server has, in the order of `Behavior`. */
export const allBehaviors: ReadonlyArray<Behavior> = [
  "ok",
  "tool-use",
  "max-tokens",
  "rate-limit-retry-after",
  "rate-limit-reset",
  "spend-limit",
  "server-error",
  "overloaded",
  "prompt-too-long",
  "context-limit",
  "unauthorized",
  "forbidden",
  "billing",
  "request-too-large",
  "echo-key",
  "reset",
  "reset-mid-body",
  "invalid-json",
  "wrong-shape",
  "stall",
  "stream-cut",
  "stream-error",
  "stream-garbage"
]

const behaviors: ReadonlySet<string> = new Set<string>(allBehaviors)

export interface Options {
  /** Named in the answer: "Hello from {name}". Default "anthropic". */
  readonly name?: string
  /** What requests get when neither the script nor the model chooses. Default "ok". */
  readonly behavior?: Behavior
  /** When set, any other `x-api-key` is refused with 401. */
  readonly apiKey?: string
  /** Usage reported by answers. Default 25 in, 15 out. */
  readonly usage?: { readonly input: number; readonly output: number }
  /** The rate-limit headers of every answer (limits, remaining, reset from now). */
  readonly rateLimit?: {
    readonly requestsLimit: number
    readonly requestsRemaining: number
    readonly tokensLimit: number
    readonly tokensRemaining: number
    readonly resetInMs: number
  }
  /** `retry-after` of `rate-limit-retry-after`, in seconds. Default 2. */
  readonly retryAfterSeconds?: number
  /** When the exhausted limit of `rate-limit-reset` resets, from now. Default 1,500 ms. */
  readonly rateLimitResetMs?: number
  /** The pause between two events of a stream. Default 5 ms. */
  readonly eventDelayMs?: number
}

export interface Recorded {
  readonly method: string
  readonly path: string
  /** Lower-cased names, as node gives them. */
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  /** The parsed JSON body (`undefined` when it was not JSON). */
  readonly body: any
  readonly behavior: Behavior
  readonly stream: boolean
}

export interface AnthropicServer {
  /** `http://127.0.0.1:{port}`: an endpoint's `baseUrl` or the SDK's `baseURL`. */
  readonly url: string
  readonly requests: ReadonlyArray<Recorded>
  /** Queues behaviours for the next requests, in order. */
  readonly script: (...next: ReadonlyArray<Behavior>) => void
  /** Changes what requests get when neither the script nor the model chooses. */
  readonly setBehavior: (behavior: Behavior) => void
  /** Requests whose connection the client closed before the answer ended. */
  readonly aborted: () => number
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

let ids = 0
const nextId = (prefix: string) => `${prefix}_${(++ids).toString().padStart(6, "0")}`

const errorBody = (type: string, message: string, details?: Record<string, unknown>) =>
  JSON.stringify({
    type: "error",
    error: details === undefined ? { type, message } : { type, message, details },
    request_id: nextId("req")
  })

/**
 * Starts the server on 127.0.0.1 (a free port) for the scope; closing the scope closes
 * every connection, stalled ones included.
 */
export const make = (options: Options = {}) =>
  Effect.acquireRelease(
    Effect.async<{ server: http.Server; handle: AnthropicServer }>((resume) => {
      const name = options.name ?? "anthropic"
      const usage = options.usage ?? { input: 25, output: 15 }
      const limits = options.rateLimit ?? {
        requestsLimit: 50,
        requestsRemaining: 49,
        tokensLimit: 40_000,
        tokensRemaining: 39_000,
        resetInMs: 30_000
      }
      const requests: Array<Recorded> = []
      const queue: Array<Behavior> = []
      let fallback: Behavior = options.behavior ?? "ok"
      let aborted = 0
      const eventDelay = options.eventDelayMs ?? 5

      const rateLimitHeaders = (
        overrides: Partial<typeof limits> = {}
      ): Record<string, string> => {
        const l = { ...limits, ...overrides }
        const reset = new Date(Date.now() + l.resetInMs).toISOString()
        return {
          "anthropic-ratelimit-requests-limit": String(l.requestsLimit),
          "anthropic-ratelimit-requests-remaining": String(l.requestsRemaining),
          "anthropic-ratelimit-requests-reset": reset,
          "anthropic-ratelimit-tokens-limit": String(l.tokensLimit),
          "anthropic-ratelimit-tokens-remaining": String(l.tokensRemaining),
          "anthropic-ratelimit-tokens-reset": reset,
          "anthropic-ratelimit-input-tokens-limit": String(l.tokensLimit),
          "anthropic-ratelimit-input-tokens-remaining": String(l.tokensRemaining),
          "anthropic-ratelimit-input-tokens-reset": reset,
          "anthropic-ratelimit-output-tokens-limit": String(l.tokensLimit),
          "anthropic-ratelimit-output-tokens-remaining": String(l.tokensRemaining),
          "anthropic-ratelimit-output-tokens-reset": reset
        }
      }

      const sendJson = (
        res: http.ServerResponse,
        status: number,
        body: string,
        headers: Record<string, string> = {}
      ) => {
        res.writeHead(status, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          "request-id": nextId("req"),
          ...headers
        })
        res.end(body)
      }

      const chunks = [`Hello`, ` from`, ` ${name}`]
      const text = chunks.join("")

      const message = (model: string, behavior: Behavior) => {
        const content: Array<unknown> = [{ type: "text", text, citations: null }]
        if (behavior === "tool-use") {
          content.push({ type: "tool_use", id: "toolu_01", name: "get_weather", input: { city: "Paris" } })
        }
        return {
          id: nextId("msg"),
          type: "message",
          role: "assistant",
          model,
          content,
          stop_reason: behavior === "tool-use" ? "tool_use" : behavior === "max-tokens" ? "max_tokens" : "end_turn",
          stop_sequence: null,
          usage: {
            input_tokens: usage.input,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
            output_tokens: usage.output,
            service_tier: "standard"
          }
        }
      }

      /** Answers an error the API documents; `true` when the behaviour was one. */
      const apiError = (res: http.ServerResponse, behavior: Behavior, apiKey: string): boolean => {
        switch (behavior) {
          case "rate-limit-retry-after":
            sendJson(
              res,
              429,
              errorBody("rate_limit_error", "Number of requests has exceeded your per-minute rate limit"),
              {
                "retry-after": String(options.retryAfterSeconds ?? 2),
                ...rateLimitHeaders({ requestsRemaining: 0, resetInMs: 30_000 })
              }
            )
            return true
          case "rate-limit-reset":
            sendJson(
              res,
              429,
              errorBody("rate_limit_error", "Number of requests has exceeded your per-minute rate limit"),
              rateLimitHeaders({ requestsRemaining: 0, resetInMs: options.rateLimitResetMs ?? 1_500 })
            )
            return true
          case "spend-limit":
            sendJson(
              res,
              429,
              errorBody("rate_limit_error", "Your organization has reached its monthly spend limit", {
                error_code: "enforced_spend_limit_reached"
              })
            )
            return true
          case "server-error":
            sendJson(res, 500, errorBody("api_error", "Internal server error"))
            return true
          case "overloaded":
          case "stream-error":
            sendJson(res, 529, errorBody("overloaded_error", "Overloaded"))
            return true
          case "prompt-too-long":
            sendJson(res, 400, errorBody("invalid_request_error", "prompt is too long: 208656 tokens > 200000 maximum"))
            return true
          case "context-limit":
            sendJson(
              res,
              400,
              errorBody(
                "invalid_request_error",
                "input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000, decrease input length or `max_tokens` and try again"
              )
            )
            return true
          case "unauthorized":
            sendJson(res, 401, errorBody("authentication_error", "invalid x-api-key"))
            return true
          case "forbidden":
            sendJson(res, 403, errorBody("permission_error", "Your API key does not have permission to use this model"))
            return true
          case "billing":
            sendJson(res, 402, errorBody("billing_error", "Your credit balance is too low to access the API"))
            return true
          case "request-too-large":
            sendJson(res, 413, errorBody("request_too_large", "Request exceeds the maximum allowed number of bytes"))
            return true
          case "echo-key":
            sendJson(res, 400, errorBody("invalid_request_error", `unexpected key ${apiKey} for this workspace`))
            return true
          default:
            return false
        }
      }

      const event = (type: string, data: unknown) => `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`

      const streamAnswer = async (res: http.ServerResponse, model: string, behavior: Behavior) => {
        res.writeHead(200, {
          "content-type": "text/event-stream; charset=utf-8",
          "cache-control": "no-cache",
          "request-id": nextId("req"),
          ...rateLimitHeaders()
        })
        const send = async (type: string, data: unknown) => {
          if (res.destroyed || res.writableEnded) return false
          res.write(event(type, data))
          await sleep(eventDelay)
          return !res.destroyed
        }
        const start = message(model, behavior)
        const ok = (await send("message_start", {
          type: "message_start",
          message: {
            ...start,
            content: [],
            stop_reason: null,
            usage: { ...start.usage, output_tokens: 1 }
          }
        })) &&
          (await send("content_block_start", {
            type: "content_block_start",
            index: 0,
            content_block: { type: "text", text: "", citations: null }
          })) &&
          (await send("ping", { type: "ping" })) &&
          (await send("content_block_delta", {
            type: "content_block_delta",
            index: 0,
            delta: { type: "text_delta", text: chunks[0] }
          }))
        if (!ok) return
        if (behavior === "stream-cut") return void res.end()
        if (behavior === "reset-mid-body") return void res.socket?.destroy()
        if (behavior === "stream-garbage") {
          if (!res.destroyed) {
            res.write("event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"delta\": \n\n")
          }
          await sleep(eventDelay)
          return void res.end()
        }
        if (behavior === "stream-error") {
          await send("error", { type: "error", error: { type: "overloaded_error", message: "Overloaded" } })
          return void res.end()
        }
        for (const chunk of chunks.slice(1)) {
          if (
            !(await send("content_block_delta", {
              type: "content_block_delta",
              index: 0,
              delta: { type: "text_delta", text: chunk }
            }))
          ) return
        }
        if (!(await send("content_block_stop", { type: "content_block_stop", index: 0 }))) return
        if (behavior === "tool-use") {
          const tool = start.content[1] as { id: string; name: string }
          const steps: Array<[string, unknown]> = [
            ["content_block_start", {
              type: "content_block_start",
              index: 1,
              content_block: { type: "tool_use", id: tool.id, name: tool.name, input: {} }
            }],
            ["content_block_delta", {
              type: "content_block_delta",
              index: 1,
              delta: { type: "input_json_delta", partial_json: "{\"city\": \"Par" }
            }],
            ["content_block_delta", {
              type: "content_block_delta",
              index: 1,
              delta: { type: "input_json_delta", partial_json: "is\"}" }
            }],
            ["content_block_stop", { type: "content_block_stop", index: 1 }]
          ]
          for (const [type, data] of steps) if (!(await send(type, data))) return
        }
        if (
          !(await send("message_delta", {
            type: "message_delta",
            delta: { stop_reason: start.stop_reason, stop_sequence: null },
            usage: { output_tokens: usage.output }
          }))
        ) return
        if (!(await send("message_stop", { type: "message_stop" }))) return
        res.end()
      }

      const jsonAnswer = async (res: http.ServerResponse, model: string, behavior: Behavior) => {
        const body = JSON.stringify(message(model, behavior))
        const headers = { "request-id": nextId("req"), ...rateLimitHeaders() }
        switch (behavior) {
          case "reset-mid-body":
          case "stream-cut": {
            // a reset announces the whole length and breaks off; a cut is a whole (chunked) answer of half the body
            res.writeHead(200, {
              "content-type": "application/json",
              ...(behavior === "reset-mid-body" ? { "content-length": String(Buffer.byteLength(body)) } : {}),
              ...headers
            })
            res.write(body.slice(0, Math.floor(body.length / 2)))
            await sleep(20)
            if (behavior === "reset-mid-body") res.socket?.destroy()
            else res.end()
            return
          }
          case "invalid-json":
          case "stream-garbage":
            return sendJson(res, 200, "{\"id\": \"msg_1\", \"type\": \"message\", \"content\": [", headers)
          case "wrong-shape":
            return sendJson(res, 200, JSON.stringify({ id: "msg_1", type: "message", role: "assistant" }), headers)
          default:
            return sendJson(res, 200, body, headers)
        }
      }

      const handle = async (req: http.IncomingMessage, res: http.ServerResponse, raw: string) => {
        let body: any
        try {
          body = JSON.parse(raw)
        } catch {
          body = undefined
        }
        const model = typeof body?.model === "string" ? body.model : ""
        const byModel = model.startsWith("fault:") && behaviors.has(model.slice(6))
          ? model.slice(6) as Behavior
          : undefined
        const behavior = queue.shift() ?? byModel ?? fallback
        const stream = body?.stream === true
        requests.push({
          method: req.method ?? "",
          path: req.url ?? "",
          headers: { ...req.headers },
          body,
          behavior,
          stream
        })
        res.on("close", () => {
          if (!res.writableFinished) aborted++
        })
        if (req.method !== "POST" || req.url !== "/v1/messages") {
          return sendJson(res, 404, errorBody("not_found_error", `Not found: ${req.method} ${req.url}`))
        }
        // the documented header; the official SDK (1.x) sends an API key as a bearer token instead
        const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1]
        const apiKey = req.headers["x-api-key"] ?? bearer
        if (typeof apiKey !== "string" || apiKey === "") {
          return sendJson(res, 401, errorBody("authentication_error", "x-api-key header is required"))
        }
        if (options.apiKey !== undefined && apiKey !== options.apiKey) {
          return sendJson(res, 401, errorBody("authentication_error", "invalid x-api-key"))
        }
        if (typeof req.headers["anthropic-version"] !== "string") {
          return sendJson(res, 400, errorBody("invalid_request_error", "anthropic-version: header is required"))
        }
        if (body === undefined || typeof body !== "object") {
          return sendJson(res, 400, errorBody("invalid_request_error", "There was an issue with the JSON body"))
        }
        for (const field of ["model", "max_tokens", "messages"]) {
          if (body[field] === undefined) {
            return sendJson(res, 400, errorBody("invalid_request_error", `${field}: Field required`))
          }
        }
        // API version 2026-10-21 also takes system messages; 2023-06-01 only the top-level `system`
        const roles = req.headers["anthropic-version"] === "2023-06-01"
          ? ["user", "assistant"]
          : ["user", "assistant", "system"]
        if (!Array.isArray(body.messages) || body.messages.some((m: any) => !roles.includes(m?.role))) {
          return sendJson(
            res,
            400,
            errorBody(
              "invalid_request_error",
              "messages: Unexpected role. The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role."
            )
          )
        }
        if (behavior === "stall") return
        if (behavior === "reset") return void req.socket.destroy()
        if (behavior === "stream-error" && stream) return streamAnswer(res, model, behavior)
        if (apiError(res, behavior, apiKey)) return
        return stream ? streamAnswer(res, model, behavior) : jsonAnswer(res, model, behavior)
      }

      const server = http.createServer((req, res) => {
        const parts: Array<Buffer> = []
        req.on("data", (chunk: Buffer) => parts.push(chunk))
        req.on("end", () => {
          handle(req, res, Buffer.concat(parts).toString("utf8")).catch(() => res.socket?.destroy())
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({
          server,
          handle: {
            url: `http://127.0.0.1:${port}`,
            requests,
            script: (...next) => {
              for (const behavior of next) queue.push(behavior)
            },
            setBehavior: (behavior) => {
              fallback = behavior
            },
            aborted: () => aborted
          }
        }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ handle }) => handle))

/** A URL nothing listens on: a port that was free a moment ago. */
export const refusedUrl = Effect.async<string>((resume) => {
  const server = http.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(`http://127.0.0.1:${port}`)))
  })
})
