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

export const withSpan = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  name: string,
  /** Made only when a span is (attributes cost an object per call). */
  options?: () => Tracer.SpanOptions
): Effect.Effect<A, E, R> =>
  Effect.tracerWith((tracer) =>
    tracer === nativeTracer ? effect : Effect.withSpan(effect, name, { captureStackTrace: false, ...options?.() })
  )

/** Whether spans are collected: the fiber's tracer is not Effect's native one. */
export const traced = (fiber: { readonly currentTracer: Tracer.Tracer }): boolean =>
  fiber.currentTracer !== nativeTracer

/**
 * Sets attributes on the current span, if there is one. (`Effect.annotateCurrentSpan`
 * builds and discards a `NoSuchElementException`, stack trace and all, when there is
 * none, which is the common case here since native spans are skipped.)
 */
export const annotate = (attributes: () => Readonly<Record<string, unknown>>): Effect.Effect<void> =>
  Effect.withFiberRuntime<void>((fiber) => {
    const span = Context.getOption(fiber.currentContext, Tracer.ParentSpan)
    if (span._tag === "Some" && span.value._tag === "Span") {
      // made only when there is a span to take them (the common case has none)
      const values = attributes()
      for (const key in values) span.value.attribute(key, values[key])
    }
    return Effect.void
  })

/** One attribute on the fiber's current span, if there is one, inside a step already running. */
export const annotateIn = (fiber: { readonly currentContext: Context.Context<never> }, key: string, value: unknown) => {
  const span = Context.getOption(fiber.currentContext, Tracer.ParentSpan)
  if (span._tag === "Some" && span.value._tag === "Span") span.value.attribute(key, value)
}

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
