import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, FastCheck, Stream } from "effect"
import * as Sse from "../src/internal/sse.js"

const events = (text: string, cuts: ReadonlyArray<number>) => {
  const parser = new Sse.Parser()
  const out: Array<Sse.Event> = []
  let last = 0
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    for (const event of parser.feed(text.slice(last, cut))) out.push(event)
    last = cut
  }
  for (const event of parser.feed(text.slice(last))) out.push(event)
  return out
}

describe("server-sent events", () => {
  const text = ": keep-alive\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\n" +
    "data: line one\ndata: line two\n\n" +
    "event:ping\rdata:x\r\r" +
    "data: [DONE]\n\n" +
    "data: cut off"

  const expected: ReadonlyArray<Sse.Event> = [
    { event: "message_start", data: "{\"a\":1}", id: undefined },
    { event: "message", data: "line one\nline two", id: undefined },
    { event: "ping", data: "x", id: undefined },
    { event: "message", data: "[DONE]", id: undefined }
  ]

  it("parses events, comments, multi-line data and every line ending; drops an unfinished event", () => {
    expect(events(text, [])).toEqual(expected)
  })

  it("gives the same events however the bytes are cut into chunks", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(FastCheck.integer({ min: 0, max: text.length }), { maxLength: 12 }),
        (cuts) => {
          expect(events(text, cuts)).toEqual(expected)
        }
      ),
      { numRuns: 500 }
    )
  })

  it.effect("parse decodes UTF-8 split across chunks", () =>
    Effect.gen(function*() {
      const bytes = new TextEncoder().encode("data: héllo ✓\n\n")
      const chunks = [bytes.slice(0, 8), bytes.slice(8, 15), bytes.slice(15)]
      const out = yield* Stream.runCollect(Sse.parse(Stream.fromIterable(chunks)))
      expect(Chunk.toReadonlyArray(out)).toEqual([{ event: "message", data: "héllo ✓", id: undefined }])
    }))
})
