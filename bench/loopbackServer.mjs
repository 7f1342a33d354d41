/* global Buffer, process */
// A minimal OpenAI Chat Completions server for the HTTP bench, run in its own process so
// that it does not share the client's event loop. It answers every POST at once and prints
// its port on stdout.
import { createServer } from "node:http"

const answer = JSON.stringify({
  id: "chatcmpl-bench",
  object: "chat.completion",
  created: 1700000000,
  model: "bench",
  choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 12, completion_tokens: 1, total_tokens: 13 }
})

const server = createServer((req, res) => {
  req.resume()
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(answer) })
    res.end(answer)
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${server.address().port}\n`)
})
process.on("disconnect", () => process.exit(0))
process.on("SIGTERM", () => process.exit(0))
