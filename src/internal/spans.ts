/**
 * Spans only where someone collects them. Every Effect program has a tracer: until one is
 * installed (OpenTelemetry, say) it is Effect's native tracer, whose spans go nowhere, yet
 * making one costs more than the rest of a routed call (measured: about 35 µs per span
 * against 60 µs for a whole `Router.execute`). Calls under the native tracer skip them.
 */
import { Effect } from "effect"
import type * as Tracer from "effect/Tracer"

/** The tracer of a program that installed none. */
const nativeTracer: Tracer.Tracer = Effect.runSync(Effect.tracer)

export const withSpan = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  name: string,
  options?: Tracer.SpanOptions
): Effect.Effect<A, E, R> =>
  Effect.tracerWith((tracer) =>
    tracer === nativeTracer ? effect : Effect.withSpan(effect, name, { captureStackTrace: false, ...options })
  )
