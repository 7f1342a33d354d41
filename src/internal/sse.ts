/**
 * Server-sent events (the WHATWG HTML "event stream" format), as OpenAI and Anthropic
 * stream their answers: lines ending in LF, CRLF or CR; `event:` and `data:` fields (data
 * lines joined with LF); `:` comments; a blank line dispatches the event. A stream that
 * ends in the middle of an event drops that event, as the spec says; whether the answer
 * was complete is the provider's call (`[DONE]`, `message_stop`).
 */
import { Chunk, Stream } from "effect"

export interface Event {
  readonly event: string
  readonly data: string
  readonly id: string | undefined
}

/** An incremental parser: feed it text, get the events it completed. */
export class Parser {
  private buffer = ""
  private event = ""
  private data: Array<string> = []
  private id: string | undefined = undefined
  private pendingCR = false

  feed(text: string): Array<Event> {
    const out: Array<Event> = []
    if (text === "") return []
    let input = this.buffer + text
    this.buffer = ""
    // a CR at the end of the last chunk and an LF at the start of this one are one line end
    if (this.pendingCR && input.startsWith("\n")) input = input.slice(1)
    this.pendingCR = false
    let start = 0
    for (let i = 0; i < input.length; i++) {
      const c = input.charCodeAt(i)
      if (c !== 10 && c !== 13) continue
      this.line(input.slice(start, i), out)
      if (c === 13) {
        if (i + 1 < input.length) {
          if (input.charCodeAt(i + 1) === 10) i++
        } else this.pendingCR = true
      }
      start = i + 1
    }
    this.buffer = input.slice(start)
    return out
  }

  private line(line: string, out: Array<Event>): void {
    if (line === "") {
      if (this.data.length > 0) {
        out.push({ event: this.event === "" ? "message" : this.event, data: this.data.join("\n"), id: this.id })
      }
      this.event = ""
      this.data = []
      return
    }
    if (line.startsWith(":")) return
    const colon = line.indexOf(":")
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? "" : line.slice(colon + 1)
    if (value.startsWith(" ")) value = value.slice(1)
    switch (field) {
      case "event":
        this.event = value
        break
      case "data":
        this.data.push(value)
        break
      case "id":
        this.id = value
        break
    }
  }
}

/** Decodes a byte stream (UTF-8, a character split across chunks included) into its events. */
export const parse = <E, R>(bytes: Stream.Stream<Uint8Array, E, R>): Stream.Stream<Event, E, R> =>
  Stream.suspend(() => {
    const parser = new Parser()
    return Stream.mapChunks(
      Stream.decodeText(bytes),
      (chunk) => Chunk.unsafeFromArray(Chunk.toReadonlyArray(chunk).flatMap((text) => parser.feed(text)))
    )
  })
