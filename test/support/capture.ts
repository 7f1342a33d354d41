/**
 * Captures everything a program emits, as text, to search it for a secret
 * (test/secrets.test.ts): values handed to `add` (rendered as `JSON.stringify`, `String`
 * and `util.inspect`), every log line at every level (message, annotations, spans, cause)
 * and every span (name, attributes, events, links, status with its exit).
 */
import type { Exit } from "effect"
import { Cause, HashMap, Layer, List, Logger, LogLevel, Option, Tracer } from "effect"
import * as util from "node:util"

export interface Emitted {
  /** Where it came from: `"log"`, `"span"`, or the label given to `add`. */
  readonly source: string
  readonly text: string
}

const replacer = () => {
  const seen = new WeakSet<object>()
  return (_key: string, value: unknown) => {
    if (typeof value === "bigint") return `${value}n`
    if (typeof value === "object" && value !== null) {
      if (seen.has(value)) return "[Circular]"
      seen.add(value)
    }
    return value
  }
}

/** Every rendering of a value a program might print: JSON, `String`, `util.inspect`. */
export const renderings = (value: unknown): Array<string> => {
  if (typeof value === "string") return [value]
  const out: Array<string> = []
  try {
    out.push(JSON.stringify(value, replacer()) ?? "undefined")
  } catch (error) {
    out.push(`<JSON.stringify threw: ${String(error)}>`)
  }
  try {
    out.push(String(value))
  } catch (error) {
    out.push(`<String threw: ${String(error)}>`)
  }
  out.push(util.inspect(value, { depth: 12, showHidden: true, maxArrayLength: 1_000, maxStringLength: 100_000 }))
  return out
}

export class Sink {
  readonly emitted: Array<Emitted> = []
  readonly spans: Array<RecordingSpan> = []
  logs = 0

  add(source: string, value: unknown): void {
    for (const text of renderings(value)) this.emitted.push({ source, text })
  }

  /** An exit, every way it can be shown: its error's message, the error, the cause, the exit. */
  exit(source: string, exit: Exit.Exit<unknown, unknown>): void {
    if (exit._tag === "Success") {
      this.add(`${source}: value`, exit.value)
      return
    }
    const error = Cause.squash(exit.cause)
    this.add(`${source}: error`, error)
    if (error instanceof Error) {
      this.add(`${source}: error.message`, error.message)
      this.add(`${source}: error.stack`, error.stack ?? "")
    }
    this.add(`${source}: Cause.pretty`, Cause.pretty(exit.cause, { renderErrorCause: true }))
    this.add(`${source}: cause`, exit.cause)
    this.add(`${source}: exit`, exit)
  }

  /** Every span recorded so far, rendered. */
  flushSpans(): void {
    for (const span of this.spans) {
      this.add(`span ${span.name}`, span.snapshot())
      if (span.status._tag === "Ended") this.exit(`span ${span.name} exit`, span.status.exit)
    }
    this.spans.length = 0
  }

  /**
   * Where the needles occur: one line per source (the first hit's needle and a little
   * context), so that a leak through many calls reads as one line.
   */
  hits(needles: ReadonlyArray<string>, only: (source: string) => boolean = () => true): Array<string> {
    this.flushSpans()
    const bySource = new Map<string, string>()
    for (const { source, text } of this.emitted) {
      if (bySource.has(source) || !only(source)) continue
      for (const needle of needles) {
        const at = text.indexOf(needle)
        if (at >= 0) {
          const context = text.slice(Math.max(0, at - 60), at + needle.length + 10).replace(/\s+/g, " ")
          bySource.set(source, `${source} contains "${needle}": ...${context}...`)
          break
        }
      }
    }
    return [...bySource.values()]
  }
}

/** A logger that keeps every message, annotation, span and cause. */
export const captureLogger = (sink: Sink): Logger.Logger<unknown, void> =>
  Logger.make(({ annotations, cause, date, logLevel, message, spans }) => {
    sink.logs++
    sink.add(`log ${logLevel.label}`, {
      date: date.toISOString(),
      level: logLevel.label,
      message,
      annotations: Object.fromEntries(HashMap.toEntries(annotations)),
      spans: List.toArray(spans).map((s) => s.label),
      cause: Cause.isEmpty(cause) ? undefined : Cause.pretty(cause, { renderErrorCause: true })
    })
  })

let ids = 0

export class RecordingSpan implements Tracer.Span {
  readonly _tag = "Span"
  readonly spanId = `span-${++ids}`
  readonly traceId: string
  readonly attributes = new Map<string, unknown>()
  readonly events: Array<{ readonly name: string; readonly attributes: Record<string, unknown> | undefined }> = []
  readonly links: Array<Tracer.SpanLink>
  readonly sampled = true
  status: Tracer.SpanStatus
  constructor(
    readonly name: string,
    readonly parent: Option.Option<Tracer.AnySpan>,
    readonly context: Tracer.Span["context"],
    links: ReadonlyArray<Tracer.SpanLink>,
    startTime: bigint,
    readonly kind: Tracer.SpanKind
  ) {
    this.traceId = Option.isSome(parent) ? parent.value.traceId : `trace-${ids}`
    this.links = Array.from(links)
    this.status = { _tag: "Started", startTime }
  }
  end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
    this.status = { _tag: "Ended", startTime: this.status.startTime, endTime, exit }
  }
  attribute(key: string, value: unknown): void {
    this.attributes.set(key, value)
  }
  event(name: string, _startTime: bigint, attributes?: Record<string, unknown>): void {
    this.events.push({ name, attributes })
  }
  addLinks(links: ReadonlyArray<Tracer.SpanLink>): void {
    for (const link of links) this.links.push(link)
  }
  snapshot() {
    return {
      name: this.name,
      kind: this.kind,
      attributes: Object.fromEntries(this.attributes),
      events: this.events,
      links: this.links.map((l) => ({ span: l.span.spanId, attributes: l.attributes })),
      status: this.status._tag
    }
  }
}

/** A tracer that records every span into the sink. */
export const recordingTracer = (sink: Sink): Tracer.Tracer =>
  Tracer.make({
    span: (name, parent, context, links, startTime, kind) => {
      const span = new RecordingSpan(name, parent, context, links, startTime, kind)
      sink.spans.push(span)
      return span
    },
    context: (f) => f()
  })

/** The logger (at every level) and the tracer, for a program under audit. */
export const captureLayer = (sink: Sink): Layer.Layer<never> =>
  Layer.mergeAll(
    Logger.replace(Logger.defaultLogger, captureLogger(sink)),
    Logger.minimumLogLevel(LogLevel.All),
    Layer.setTracer(recordingTracer(sink))
  )
