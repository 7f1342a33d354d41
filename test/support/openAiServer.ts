/**
 * A loopback server that speaks OpenAI's Chat Completions wire format (JSON answers and
 * SSE streams) and injects the faults a real provider shows, one scripted behaviour per
 * request. It listens on 127.0.0.1 on a random port for as long as its scope is open.
 *
 * ```ts
 * const server = yield* OpenAiServer.make()              // in a scope (it.scoped / it.live)
 * server.enqueue(OpenAiServer.error(503), OpenAiServer.reply({ text: "hi" }))
 * // ... point a client at server.url ("http://127.0.0.1:<port>/v1") ...
 * server.requests[0].headers.authorization               // "Bearer sk-..."
 * ```
 *
 * Each request takes the next behaviour from the queue (`enqueue`), or the default one
 * (`make({ fallback })`, else `reply()`) when the queue is empty. Requests to a path that
 * does not end in `/chat/completions` get a 404 in OpenAI's format unless the behaviour is
 * `custom` (which serves any path, for other APIs such as `/responses`).
 *
 * `reply` answers as the request asks: a `chat.completion` JSON, or with `"stream": true`
 * a stream of `chat.completion.chunk` events (a first chunk with the role, one chunk per
 * text piece, a chunk with the finish reason, the usage chunk with empty `choices` when
 * `stream_options.include_usage` is set) ended by `data: [DONE]`.
 */
import type { Scope } from "effect"
import { Effect } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

/** One request as the server received it. */
export interface RecordedRequest {
  readonly method: string
  /** The path with its query, as sent (`/v1/chat/completions`). */
  readonly path: string
  /** Lower-cased names. */
  readonly headers: Readonly<Record<string, string>>
  /** The body parsed as JSON, or the raw text when it is not JSON. */
  readonly body: any
}

/** A behaviour's handler: answers (or mistreats) one request. */
export type Handler = (request: RecordedRequest, res: ServerResponse) => void

/** How the server treats one request. Build them with the functions below. */
export interface Behaviour {
  readonly name: string
  /** Serves any path, not only `.../chat/completions`. */
  readonly anyPath?: boolean
  readonly handle: Handler
}

export interface ReplyOptions {
  /** The answer; streamed as `chunks` when given, else in pieces of about 4 characters. */
  readonly text?: string
  readonly chunks?: ReadonlyArray<string>
  /** Default `"stop"` (`"tool_calls"` when `toolCalls` are given). */
  readonly finishReason?: string
  /** Default: 10 prompt tokens, one completion token per chunk. */
  readonly usage?: { readonly prompt_tokens: number; readonly completion_tokens: number }
  /** OpenAI-style tool calls: `{ id, type: "function", function: { name, arguments } }`. */
  readonly toolCalls?: ReadonlyArray<unknown>
  /** Extra response headers (rate-limit headers, say). */
  readonly headers?: Readonly<Record<string, string>>
  /** Delay between stream events, in ms. Default 0. */
  readonly chunkDelayMs?: number
}

export interface OpenAiServer {
  /** `http://127.0.0.1:<port>/v1`: the base URL to give a client. */
  readonly url: string
  readonly port: number
  /** Every request received, in order (a live array). */
  readonly requests: ReadonlyArray<RecordedRequest>
  /** Queues behaviours for the next requests, in order. */
  readonly enqueue: (...behaviours: ReadonlyArray<Behaviour>) => void
  /** Replaces the behaviour used when the queue is empty. */
  readonly setFallback: (behaviour: Behaviour) => void
}

// --- the wire format -----------------------------------------------------------------

const json = (res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}) => {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "x-request-id": `req_${Math.random().toString(36).slice(2)}`,
    ...headers
  })
  res.end(text)
}

/** OpenAI's error body. */
export const errorBody = (error: {
  readonly message: string
  readonly type?: string | null
  readonly code?: string | number | null
  readonly param?: string | null
  readonly [key: string]: unknown
}) => ({ error: { type: null, param: null, code: null, ...error } })

const defaultErrors: Record<number, { message: string; type: string; code: string | null }> = {
  400: { message: "Invalid request.", type: "invalid_request_error", code: null },
  401: {
    message:
      "Incorrect API key provided: sk-abc***xyz. You can find your API key at https://platform.openai.com/account/api-keys.",
    type: "invalid_request_error",
    code: "invalid_api_key"
  },
  403: { message: "You are not allowed to sample from this model", type: "invalid_request_error", code: null },
  404: {
    message: "The model does not exist or you do not have access to it.",
    type: "invalid_request_error",
    code: "model_not_found"
  },
  408: { message: "Request timed out.", type: "server_error", code: null },
  429: { message: "Rate limit reached for requests", type: "requests", code: "rate_limit_exceeded" },
  500: {
    message: "The server had an error while processing your request. Sorry about that!",
    type: "server_error",
    code: null
  },
  502: { message: "Bad gateway.", type: "server_error", code: null },
  503: { message: "The engine is currently overloaded, please try again later", type: "server_error", code: null }
}

let nextId = 0

const chunkOf = (
  model: string,
  id: string,
  choices: ReadonlyArray<unknown>,
  usage: unknown | undefined,
  includeUsage: boolean
) => ({
  id,
  object: "chat.completion.chunk",
  created: Math.floor(Date.now() / 1000),
  model,
  system_fingerprint: "fp_loopback",
  choices,
  ...(includeUsage ? { usage: usage ?? null } : {})
})

const piecesOf = (text: string): Array<string> => {
  const pieces: Array<string> = []
  for (let i = 0; i < text.length; i += 4) pieces.push(text.slice(i, i + 4))
  return pieces
}

/** The SSE events of a streamed answer, the usage chunk and `[DONE]` included. */
const streamEvents = (request: RecordedRequest, options: ReplyOptions): Array<string> => {
  const model = String(request.body?.model ?? "unknown")
  const id = `chatcmpl-${++nextId}`
  const includeUsage = request.body?.stream_options?.include_usage === true
  const chunks = options.chunks ?? piecesOf(options.text ?? "Hello from the loopback server.")
  const usage = options.usage ?? { prompt_tokens: 10, completion_tokens: chunks.length }
  const events: Array<string> = [
    chunkOf(
      model,
      id,
      [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }],
      undefined,
      includeUsage
    )
  ].map((c) => JSON.stringify(c))
  for (const content of chunks) {
    events.push(JSON.stringify(
      chunkOf(
        model,
        id,
        [{ index: 0, delta: { content }, logprobs: null, finish_reason: null }],
        undefined,
        includeUsage
      )
    ))
  }
  if (options.toolCalls !== undefined) {
    const calls = options.toolCalls.map((call, index) => ({ index, ...(call as object) }))
    events.push(JSON.stringify(
      chunkOf(
        model,
        id,
        [{ index: 0, delta: { tool_calls: calls }, logprobs: null, finish_reason: null }],
        undefined,
        includeUsage
      )
    ))
  }
  const finish = options.finishReason ?? (options.toolCalls !== undefined ? "tool_calls" : "stop")
  events.push(JSON.stringify(
    chunkOf(model, id, [{ index: 0, delta: {}, logprobs: null, finish_reason: finish }], undefined, includeUsage)
  ))
  if (includeUsage) {
    events.push(JSON.stringify(
      chunkOf(model, id, [], { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens }, true)
    ))
  }
  events.push("[DONE]")
  return events
}

const completionOf = (request: RecordedRequest, options: ReplyOptions) => {
  const text = options.text ?? (options.chunks ?? ["Hello from the loopback server."]).join("")
  const usage = options.usage ?? { prompt_tokens: 10, completion_tokens: Math.max(1, Math.ceil(text.length / 4)) }
  const toolCalls = options.toolCalls
  return {
    id: `chatcmpl-${++nextId}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: String(request.body?.model ?? "unknown"),
    system_fingerprint: "fp_loopback",
    choices: [{
      index: 0,
      message: {
        role: "assistant",
        content: toolCalls !== undefined && options.text === undefined ? null : text,
        refusal: null,
        ...(toolCalls !== undefined ? { tool_calls: toolCalls } : {})
      },
      logprobs: null,
      finish_reason: options.finishReason ?? (toolCalls !== undefined ? "tool_calls" : "stop")
    }],
    usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens }
  }
}

const sseHeaders = (extra: Readonly<Record<string, string>> = {}) => ({
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  connection: "keep-alive",
  ...extra
})

/** Writes events one by one (with a delay between them), then calls `end`. */
const writeEvents = (
  res: ServerResponse,
  events: ReadonlyArray<string>,
  delayMs: number,
  end: (res: ServerResponse) => void
) => {
  let i = 0
  const next = () => {
    if (res.destroyed) return
    if (i >= events.length) return end(res)
    res.write(`data: ${events[i++]}\n\n`)
    if (delayMs > 0) setTimeout(next, delayMs)
    else setImmediate(next)
  }
  next()
}

const isStream = (request: RecordedRequest) => request.body?.stream === true

// --- behaviours ----------------------------------------------------------------------

/** OpenAI's rate-limit headers on a success: 40 of 100 requests and 9,000 of 10,000 tokens left. */
export const rateLimitHeaders: Readonly<Record<string, string>> = {
  "x-ratelimit-limit-requests": "100",
  "x-ratelimit-remaining-requests": "40",
  "x-ratelimit-reset-requests": "30s",
  "x-ratelimit-limit-tokens": "10000",
  "x-ratelimit-remaining-tokens": "9000",
  "x-ratelimit-reset-tokens": "6m0s"
}

/** A good answer: JSON, or a stream when the request asks for one. */
export const reply = (options: ReplyOptions = {}): Behaviour => ({
  name: "reply",
  handle: (request, res) => {
    if (!isStream(request)) return json(res, 200, completionOf(request, options), options.headers)
    res.writeHead(200, sseHeaders(options.headers))
    writeEvents(res, streamEvents(request, options), options.chunkDelayMs ?? 0, (r) => r.end())
  }
})

/**
 * An error answer: `status` with OpenAI's error body (a default one per status, or
 * `body`, or `raw` text as it is) and `headers`.
 */
export const error = (
  status: number,
  options: {
    readonly body?: unknown
    readonly raw?: string
    readonly headers?: Readonly<Record<string, string>>
  } = {}
): Behaviour => ({
  name: `error ${status}`,
  handle: (_request, res) => {
    if (options.raw !== undefined) {
      res.writeHead(status, { "content-type": "text/html", ...options.headers })
      return res.end(options.raw)
    }
    const body = options.body ??
      errorBody(defaultErrors[status] ?? { message: `HTTP ${status}`, type: "server_error", code: null })
    json(res, status, body, options.headers)
  }
})

/**
 * A 429, with the headers that say how long to wait: `{ "retry-after": "2" }`,
 * `{ "retry-after": <HTTP date> }`, `{ "retry-after-ms": "1500" }`,
 * `{ "x-ratelimit-reset-requests": "1s", "x-ratelimit-remaining-requests": "0" }`.
 */
export const rateLimited = (headers: Readonly<Record<string, string>> = {}): Behaviour => error(429, { headers })

/** OpenAI's 400 for a prompt that does not fit. */
export const contextLengthExceeded = (): Behaviour =>
  error(400, {
    body: errorBody({
      message:
        "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens. Please reduce the length of the messages.",
      type: "invalid_request_error",
      param: "messages",
      code: "context_length_exceeded"
    })
  })

/** Azure OpenAI's 400 for a prompt its content filter refused. */
export const contentFiltered = (): Behaviour =>
  error(400, {
    body: errorBody({
      message: "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
      type: null,
      param: "prompt",
      code: "content_filter",
      status: 400,
      innererror: {
        code: "ResponsibleAIPolicyViolation",
        content_filter_result: { hate: { filtered: true, severity: "high" } }
      }
    })
  })

/** A 401 for a refused key; `message` replaces OpenAI's (which masks the key). */
export const unauthorized = (message?: string): Behaviour =>
  message === undefined
    ? error(401)
    : error(401, { body: errorBody({ message, type: "invalid_request_error", code: "invalid_api_key" }) })

/** Closes the connection without an answer (a reset before the status line). */
export const resetBeforeHeaders = (): Behaviour => ({
  name: "reset before headers",
  handle: (_request, res) => {
    res.socket?.destroy()
  }
})

/** Sends the status and half of a JSON body (or of a stream's events), then resets the connection. */
export const resetMidBody = (): Behaviour => ({
  name: "reset mid-body",
  handle: (request, res) => {
    if (isStream(request)) return cutStream({ after: 2, reset: true }).handle(request, res)
    const text = JSON.stringify(completionOf(request, {}))
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
    res.write(text.slice(0, Math.floor(text.length / 2)), () => res.socket?.destroy())
  }
})

/** A 200 whose body is not JSON (or, for a stream, an event whose data is not JSON). */
export const invalidJson = (): Behaviour => ({
  name: "invalid JSON",
  handle: (request, res) => {
    if (!isStream(request)) {
      res.writeHead(200, { "content-type": "application/json" })
      return res.end("{\"id\": \"chatcmpl-1\", \"choices\": [")
    }
    res.writeHead(200, sseHeaders())
    res.end("data: {\"id\": \"chatcmpl-1\", \"choices\": [\n\ndata: [DONE]\n\n")
  }
})

/** A 200 whose JSON is not a chat completion (`{ "object": "list", "data": [] }`). */
export const wrongShape = (): Behaviour => ({
  name: "wrong shape",
  handle: (_request, res) => json(res, 200, { object: "list", data: [] })
})

/**
 * A stream cut before `data: [DONE]`: `after` content chunks (after the role chunk) are
 * sent, then the response ends cleanly (`reset: false`, the default) or the connection is
 * reset (`reset: true`).
 */
export const cutStream = (
  options: { readonly after?: number; readonly reset?: boolean; readonly text?: string } = {}
): Behaviour => ({
  name: "cut stream",
  handle: (request, res) => {
    const events = streamEvents(request, { text: options.text ?? "one two three four five six" })
    res.writeHead(200, sseHeaders())
    writeEvents(res, events.slice(0, 1 + (options.after ?? 1)), 0, (r) => {
      if (options.reset === true) r.socket?.destroy()
      else r.end()
    })
  }
})

/** A stream that sends `after` content chunks, then an OpenAI `error` object, then ends. */
export const streamError = (
  errorObject: Record<string, unknown> = {
    message: "The server had an error while processing your request.",
    type: "server_error",
    code: null
  },
  options: { readonly after?: number } = {}
): Behaviour => ({
  name: "stream error",
  handle: (request, res) => {
    const events = streamEvents(request, { text: "partial answer here" }).slice(0, 1 + (options.after ?? 0))
    res.writeHead(200, sseHeaders())
    writeEvents(res, [...events, JSON.stringify({ error: errorObject })], 0, (r) => r.end())
  }
})

/**
 * No answer: nothing is sent for `ms` (forever by default, until the client gives up or the
 * server closes), then `then` answers, if given.
 */
export const stall = (ms?: number, then?: Behaviour): Behaviour => ({
  name: "stall",
  handle: (request, res) => {
    if (ms === undefined) return
    const timer = setTimeout(() => {
      if (!res.destroyed && then !== undefined) then.handle(request, res)
    }, ms)
    res.on("close", () => clearTimeout(timer))
  }
})

/** Your own handler, for any path (another API's format, say). */
export const custom = (name: string, handle: Handler): Behaviour => ({ name, anyPath: true, handle })

// --- the server ----------------------------------------------------------------------

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const parts: Array<Buffer> = []
    req.on("data", (b: Buffer) => parts.push(b))
    req.on("end", () => resolve(Buffer.concat(parts).toString("utf8")))
    req.on("error", reject)
  })

const headersOf = (req: IncomingMessage): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(req.headers)) {
    if (value !== undefined) out[key.toLowerCase()] = Array.isArray(value) ? value.join(", ") : value
  }
  return out
}

/**
 * Starts a server on 127.0.0.1 (a random port) for the life of the scope; closing the
 * scope closes it and every connection it holds (stalled ones included).
 */
export const make = (
  options: { readonly fallback?: Behaviour } = {}
): Effect.Effect<OpenAiServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ server: ReturnType<typeof createServer>; api: OpenAiServer }>((resume) => {
      const requests: Array<RecordedRequest> = []
      const queue: Array<Behaviour> = []
      let fallback = options.fallback ?? reply()
      const server = createServer((req, res) => {
        readBody(req).then((text) => {
          let body: unknown = text
          try {
            body = text === "" ? undefined : JSON.parse(text)
          } catch {
            // kept as text
          }
          const recorded: RecordedRequest = {
            method: req.method ?? "GET",
            path: req.url ?? "/",
            headers: headersOf(req),
            body
          }
          requests.push(recorded)
          const behaviour = queue.shift() ?? fallback
          const path = recorded.path.split("?")[0]
          if (behaviour.anyPath !== true && !(req.method === "POST" && path.endsWith("/chat/completions"))) {
            return json(
              res,
              404,
              errorBody({ message: `Invalid URL (${recorded.method} ${recorded.path})`, type: "invalid_request_error" })
            )
          }
          behaviour.handle(recorded, res)
        }, () => res.destroy())
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as AddressInfo).port
        resume(Effect.succeed({
          server,
          api: {
            url: `http://127.0.0.1:${port}/v1`,
            port,
            requests,
            enqueue: (...behaviours) => {
              for (const b of behaviours) queue.push(b)
            },
            setFallback: (b) => {
              fallback = b
            }
          }
        }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ api }) => api))
