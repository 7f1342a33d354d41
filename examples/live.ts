/**
^ * A live run on the real clock: a balancer over three in-process endpoints with scripted
 * behaviour, eight callers sending requests for five to six seconds on the real clock.
 *
 * - "fast" answers in about 20 ms, "slow" in about 120 ms; each takes 3 calls at once.
 * - "flaky" answers in about 40 ms but fails 15 % of its calls, so it is now and then
 *   DEGRADED (used only when the healthy endpoints are full), and once in a while three
 *   failures in a row open its circuit by chance. Then it has an outage: its circuit opens,
 *   the half-open probes fail while it is down (each failed probe keeps it open longer),
 *   and the first probe after it comes back closes the circuit again; its share of the
 *   traffic then ramps up over two seconds (slow start).
 * - At the end "slow" is drained for maintenance with `forceUnhealthy`, then brought back.
 *
 * It prints the events as they happen, what went where in each phase, and the stats.
 */
import { Clock, Console, Effect, Random, Ref, Stream } from "effect"
import type { Endpoint, Event } from "effect-llm-balancer"
import { Balancer, Errors } from "effect-llm-balancer"

interface Phase {
  readonly name: string
  readonly seconds: number
  /** How "flaky" behaves in this phase. */
  readonly flaky: "shaky" | "down" | "up"
  /** Drain "slow" for this phase. */
  readonly drainSlow?: boolean
}

const phases: ReadonlyArray<Phase> = [
  { name: "steady, flaky is shaky", seconds: 1.2, flaky: "shaky" },
  { name: "flaky outage", seconds: 2.2, flaky: "down" },
  { name: "flaky is back", seconds: 1.2, flaky: "up" },
  { name: "slow drained for maintenance", seconds: 0.8, flaky: "up", drainSlow: true }
]

const CALLERS = 8

const BalancerLayer = Balancer.layer({
  endpoints: [
    { name: "fast", provider: "openai", model: "gpt-4o-mini", maxConcurrency: 3 },
    { name: "slow", provider: "anthropic", model: "claude-3-5-haiku-latest", maxConcurrency: 3 },
    { name: "flaky", provider: "mistral", model: "mistral-small-latest", maxConcurrency: 3 }
  ],
  strategy: "least-connections",
  // short times, so that the whole story fits in a few seconds
  health: { maxFailures: 3, recoveryTimeout: "1 second", window: "3 seconds", slowStart: "2 seconds" }
})

// --- the scripted endpoints -----------------------------------------------------------

const latency = (min: number, max: number) => Effect.flatMap(Random.nextIntBetween(min, max), Effect.sleep)

const fails = (probability: number) => Effect.map(Random.next, (r) => r < probability)

const respond = (endpoint: Endpoint.Endpoint, phase: Phase): Effect.Effect<string, Errors.Unavailable> => {
  switch (endpoint.name) {
    case "fast":
      return Effect.as(latency(15, 25), "ok")
    case "slow":
      return Effect.as(latency(100, 140), "ok")
    default: {
      if (phase.flaky === "down") {
        return Effect.zipRight(latency(3, 8), Effect.fail(new Errors.Unavailable({ endpoint: "flaky", status: 503 })))
      }
      return Effect.zipRight(
        latency(30, 50),
        Effect.flatMap(
          fails(phase.flaky === "shaky" ? 0.15 : 0.03),
          (failed) =>
            failed ? Effect.fail(new Errors.Unavailable({ endpoint: "flaky", status: 500 })) : Effect.succeed("ok")
        )
      )
    }
  }
}

// --- printing -------------------------------------------------------------------------

const pad = (value: unknown, width: number) => String(value).padStart(width)

const describe = (event: Event.Event, since: (at: number) => string): string => {
  switch (event._tag) {
    case "EndpointUnhealthy":
      return `${event.name} UNHEALTHY (${event.reason})` +
        (event.until === undefined ? "" : `, probe after ${since(event.until)}`)
    case "EndpointProbing":
      return `${event.name} PROBING`
    case "EndpointRecovered":
      return `${event.name} RECOVERED (${event.reason})`
    default:
      return `${event.name} ${event._tag}`
  }
}

const printStats = (stats: ReadonlyArray<Balancer.EndpointStats>) => {
  const header = ["endpoint", "status", "circuit", "ok", "failed", "error %", "avg ms", "recent ms"]
  const rows = stats.map((s) =>
    [
      s.name,
      s.status,
      s.circuit,
      s.successes,
      s.failures,
      (s.errorRate * 100).toFixed(1),
      s.avgLatencyMs?.toFixed(0) ?? "-",
      s.recentLatencyMs?.toFixed(0) ?? "-"
    ].map(String)
  )
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join("  ")
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n")
}

// --- the run --------------------------------------------------------------------------

const program = Effect.gen(function*() {
  const balancer = yield* Balancer.Balancer
  const start = yield* Clock.currentTimeMillis
  const since = (at: number) => `${((at - start) / 1000).toFixed(2)}s`

  // print every event as it happens; subscribed before the fork, so none is missed
  const events = yield* balancer.subscribe
  yield* Effect.forkScoped(
    Stream.runForEach(
      Stream.fromQueue(events),
      (event) => Console.log(`  [${since(event.at)}] ${describe(event, since)}`)
    )
  )

  yield* Console.log(`${CALLERS} callers, strategy ${balancer.strategy}, endpoints fast / slow / flaky\n`)

  // what went where in the current phase: endpoint -> [ok, failed]
  const counts = yield* Ref.make(new Map<string, readonly [number, number]>())
  const count = (name: string, failed: boolean) =>
    Ref.update(counts, (map) => {
      const [ok, bad] = map.get(name) ?? [0, 0]
      return new Map(map).set(name, failed ? [ok, bad + 1] : [ok + 1, bad])
    })

  const request = (phase: Phase) =>
    balancer.use(
      (endpoint) =>
        respond(endpoint, phase).pipe(
          Effect.tapBoth({
            onSuccess: () => count(endpoint.name, false),
            onFailure: () => count(endpoint.name, true)
          })
        ),
      { wait: "1 second" } // wait for a free slot rather than fail at once
    ).pipe(
      Effect.catchTags({
        // Router.execute would fail over to another endpoint (see examples/resilience.ts)
        Unavailable: () => Effect.void,
        NoEndpointAvailable: () => count("(none)", true)
      })
    )

  const caller = (phase: Phase, until: number) =>
    Effect.gen(function*() {
      while ((yield* Clock.currentTimeMillis) < until) {
        yield* request(phase)
        yield* latency(5, 15) // think time
      }
    })

  for (const [i, phase] of phases.entries()) {
    yield* Console.log(`phase ${i + 1}: ${phase.name}`)
    yield* Ref.set(counts, new Map())
    if (phase.drainSlow) yield* balancer.forceUnhealthy("slow")
    const until = (yield* Clock.currentTimeMillis) + phase.seconds * 1000
    yield* Effect.all(Array.from({ length: CALLERS }, () => caller(phase, until)), {
      concurrency: "unbounded",
      discard: true
    })

    const routed = yield* Ref.get(counts)
    const stats = yield* balancer.stats
    const summary = [...stats.map((s) => s.name), ...(routed.has("(none)") ? ["(none)"] : [])].map((name) => {
      const [ok, failed] = routed.get(name) ?? [0, 0]
      return `${name} ${pad(ok + failed, 4)}${failed > 0 ? ` (${failed} failed)` : ""}`
    })
    const statuses = stats.map((s) => `${s.name} ${s.status}`).join(", ")
    yield* Console.log(`  routed: ${summary.join(" | ")}\n  now: ${statuses}`)
    if (phase.drainSlow) {
      yield* balancer.forceHealthy("slow")
      yield* Effect.sleep(0) // let the event printer catch up
    }
    yield* Console.log("")
  }

  yield* Console.log(printStats(yield* balancer.stats))
})

Effect.runPromise(
  program.pipe(
    Effect.scoped,
    Effect.provide(BalancerLayer),
    Effect.withRandom(Random.make("effect-llm-balancer demo"))
  )
).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
