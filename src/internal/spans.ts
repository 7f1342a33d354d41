/**
 * Spans only where someone collects them. Every Effect program has a tracer: until one is
 * installed (OpenTelemetry, say) it is Effect's native tracer, whose spans go nowhere, yet
 * making one costs more than the rest of a routed call (measured: about 35 µs per span
 * against 60 µs for a whole `Router.execute`). Calls under the native tracer skip them.
 */
import { Context, Effect } from "effect"
import * as Tracer from "effect/Tracer"

/** The tracer of a program that installed none. */
const nativeTracer: Tracer.Tracer = Effect.runSync(Effect.tracer)

const untraced = { captureStackTrace: false } as const

export const withSpan = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  name: string,
  /** Made only when a span is (attributes cost an object per call). */
  options?: () => Tracer.SpanOptions
): Effect.Effect<A, E, R> =>
  Effect.tracerWith((tracer) =>
    tracer === nativeTracer ? effect : Effect.withSpan(effect, name, { ...untraced, ...options?.() })
  )

/** Whether spans are collected: the fiber's tracer is not Effect's native one. */
export const traced = (fiber: { readonly currentTracer: Tracer.Tracer }): boolean =>
  fiber.currentTracer !== nativeTracer

/** `withSpan` inside a step that already has the fiber: no operation of its own. */
export const withSpanIn = <A, E, R>(
  fiber: { readonly currentTracer: Tracer.Tracer },
  effect: Effect.Effect<A, E, R>,
  name: string,
  options?: () => Tracer.SpanOptions
): Effect.Effect<A, E, R> =>
  traced(fiber)
    ? Effect.withSpan(effect, name, options === undefined ? untraced : { ...untraced, ...options() })
    : effect

/**
 * Sets attributes on the current span, if there is one. (`Effect.annotateCurrentSpan`
 * builds and discards a `NoSuchElementException`, stack trace and all, when there is
 * none, which is the common case here since native spans are skipped.)
 */
export const annotate = (attributes: () => Readonly<Record<string, unknown>>): Effect.Effect<void> =>
  annotateThen(attributes, Effect.void)

/** `annotate`, then `then`, in one step. */
export const annotateThen = <A, E>(
  attributes: () => Readonly<Record<string, unknown>>,
  then: Effect.Effect<A, E>
): Effect.Effect<A, E> =>
  Effect.withFiberRuntime<A, E>((fiber) => {
    const span = Context.getOption(fiber.currentContext, Tracer.ParentSpan)
    if (span._tag === "Some" && span.value._tag === "Span") {
      const values = attributes()
      for (const key in values) span.value.attribute(key, values[key])
    }
    return then
  })
