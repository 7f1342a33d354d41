/**
 * Providers: chat calls through `Llm.complete` and `Llm.stream`, served by
 * `OpenAiCompatible` endpoints over `FetchHttpClient`, with the `Router` failing over and
 * the `Balancer` keeping the usage and the rate limits the provider's headers report.
 *
 * The file starts two OpenAI-compatible servers of its own on 127.0.0.1 (no network is
 * needed): "primary" is overloaded (503) for its first two calls, "backup" answers and
 * sends OpenAI's rate-limit headers.
 *
 *   npx tsx --tsconfig tsconfig.examples.json examples/providers.ts
 *
 * docs/providers.md quotes trimmed copies of the sections below.
 */
import { FetchHttpClient } from "@effect/platform"
import { Console, Effect, Layer, Stream } from "effect"
import { Balancer, Llm, OpenAiCompatible, Provider, Router } from "effect-llm-balancer"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"

// --- the wiring ------------------------------------------------------------------------

/** Endpoints name their provider; the registry maps those names to implementations. */
const ProvidersLive = Provider.layer({
  openai: OpenAiCompatible.make(),
  // Azure OpenAI's deployment URLs: the key goes in an `api-key` header
  azure: OpenAiCompatible.make({ auth: "api-key", path: "/chat/completions?api-version=2024-10-21" })
}).pipe(Layer.provide(FetchHttpClient.layer))

const AppLive = (primaryUrl: string, backupUrl: string) =>
  Layer.mergeAll(Router.layer(), ProvidersLive).pipe(
    Layer.provideMerge(Balancer.layer({
      endpoints: [
        // each endpoint's `baseUrl` wins over the provider's default (api.openai.com)
        { name: "primary", provider: "openai", model: "gpt-4o-mini", baseUrl: primaryUrl, apiKey: "sk-primary" },
        { name: "backup", provider: "openai", model: "llama-3.1-8b", baseUrl: backupUrl, apiKey: "sk-backup" }
      ],
      strategy: "round-robin"
    }))
  )

// --- the calls -------------------------------------------------------------------------

const program = Effect.gen(function*() {
  const answer = yield* Llm.complete({
    system: "You answer in one sentence.",
    messages: [{ role: "user", content: "What is a circuit breaker?" }],
    maxTokens: 60
  }, { timeout: "10 seconds", attemptTimeout: "3 seconds" })
  yield* Console.log(`complete: "${answer.text}" from ${answer.endpoint.name}`)
  yield* Console.log(`  attempts: ${answer.attempts.map((a) => `${a.endpoint} ${a.outcome}`).join(", ")}`)
  yield* Console.log(`  usage: ${answer.usage?.inputTokens} in, ${answer.usage?.outputTokens} out`)

  yield* Console.log("stream:")
  yield* Stream.runForEach(
    Llm.stream({ messages: [{ role: "user", content: "Count to three" }], maxTokens: 20 }),
    (event) => {
      switch (event._tag) {
        case "Started":
          return Console.log(`  started on ${event.endpoint.name} after ${event.attempts.length} attempt(s)`)
        case "Delta":
          return Console.log(`  delta "${event.text}"`)
        case "Finish":
          return Console.log(`  finish ${event.finishReason}, ${event.usage?.outputTokens} tokens out`)
      }
    }
  )

  for (const s of yield* Balancer.stats) {
    yield* Console.log(
      `${s.name}: ${s.successes} ok, ${s.failures} failed, ${s.inputTokens}+${s.outputTokens} tokens, headroom ${s.headroom}`
    )
  }
})

// --- two local stand-ins for OpenAI-compatible servers ----------------------------------------

/**
 * A minimal Chat Completions server: JSON answers, or SSE chunks ending with the usage
 * chunk and `data: [DONE]` when the request asks for a stream. Its first `failures` calls
 * get a 503 in OpenAI's error format.
 */
const localServer = (reply: string, failures: number) =>
  Effect.acquireRelease(
    Effect.async<ReturnType<typeof createServer>>((resume) => {
      let calls = 0
      const server = createServer((req, res) => {
        let text = ""
        req.on("data", (b: Buffer) => (text += b.toString("utf8")))
        req.on("end", () => {
          const body = JSON.parse(text) as { model: string; stream?: boolean }
          if (++calls <= failures) {
            res.writeHead(503, { "content-type": "application/json" })
            return res.end(JSON.stringify({ error: { message: "overloaded", type: "server_error", code: null } }))
          }
          const usage = { prompt_tokens: 20, completion_tokens: 8, total_tokens: 28 }
          const limits = {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "450",
            "x-ratelimit-reset-requests": "12s"
          }
          const base = { id: `chatcmpl-${calls}`, created: Math.floor(Date.now() / 1000), model: body.model }
          if (body.stream !== true) {
            res.writeHead(200, { "content-type": "application/json", ...limits })
            return res.end(JSON.stringify({
              ...base,
              object: "chat.completion",
              choices: [{ index: 0, message: { role: "assistant", content: reply }, finish_reason: "stop" }],
              usage
            }))
          }
          res.writeHead(200, { "content-type": "text/event-stream", ...limits })
          const chunk = (choices: Array<unknown>, u: unknown = null) =>
            `data: ${JSON.stringify({ ...base, object: "chat.completion.chunk", choices, usage: u })}\n\n`
          for (const word of ["one", " two", " three"]) {
            res.write(chunk([{ index: 0, delta: { content: word }, finish_reason: null }]))
          }
          res.write(chunk([{ index: 0, delta: {}, finish_reason: "stop" }]))
          res.write(chunk([], usage))
          res.end("data: [DONE]\n\n")
        })
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`))

const main = Effect.scoped(Effect.gen(function*() {
  const primary = yield* localServer("A circuit breaker stops calls to a failing service.", 2)
  const backup = yield* localServer("It trips after failures and lets a probe through later.", 0)
  yield* Effect.provide(program, AppLive(primary, backup))
}))

Effect.runPromise(main).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
