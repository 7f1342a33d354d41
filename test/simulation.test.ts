import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import { Errors, Simulation } from "effect-llm-balancer"

const small: Simulation.ScenarioInput = {
  name: "small",
  traffic: { rate: 20, duration: "90 seconds" },
  faults: [
    { type: "outage", endpoint: "west", from: "20 seconds", to: "50 seconds" },
    { type: "brownout", endpoint: "east", from: "40 seconds", to: "70 seconds", factor: 5 }
  ],
  endpoints: ["east", "west", "north"].map((name) => ({
    name,
    provider: "simulated",
    model: "chat",
    simulate: { latency: { median: "400 millis", p99: "2 seconds" }, tokensPerSecond: 200 }
  }))
}

describe("Simulation", () => {
  it.effect("the same seed gives the same report, byte for byte; another seed another one", () =>
    Effect.gen(function*() {
      const a = yield* Simulation.run(small, Simulation.balancer("default"), { seed: 42 })
      const b = yield* Simulation.run(small, Simulation.balancer("default"), { seed: 42 })
      const c = yield* Simulation.run(small, Simulation.balancer("default"), { seed: 43 })
      expect(JSON.stringify(a)).toBe(JSON.stringify(b))
      expect(JSON.stringify(a)).not.toBe(JSON.stringify(c))
      expect(a.requests).toBeGreaterThan(1500)
      expect(a.records).toHaveLength(a.requests)
    }))

  it.effect("every router sees the same traffic", () =>
    Effect.gen(function*() {
      const reports = yield* Simulation.compare(small, [
        Simulation.balancer("default"),
        Simulation.baseline("round-robin"),
        Simulation.baseline("oracle")
      ], { seed: 7 })
      const arrivals = reports.map((r) => r.records.map((x) => x.at).join(","))
      expect(new Set(arrivals).size).toBe(1)
      // the round robin without health keeps hitting the dead endpoint; ours does not
      const [ours, roundRobin, oracle] = reports
      expect(roundRobin.sentWhileFailing).toBeGreaterThan(100)
      expect(ours.sentWhileFailing).toBeLessThan(15)
      expect(oracle.sentWhileFailing).toBe(0)
      // a request is never lost: each ends as an answer or a failure with a reason
      for (const r of reports) {
        expect(r.succeeded + r.failed).toBe(r.requests)
        for (const record of r.records) if (!record.ok) expect(record.error).toBeDefined()
      }
    }))

  it.effect("the timeline covers the run and counts every attempt", () =>
    Effect.gen(function*() {
      const r = yield* Simulation.run(small, Simulation.balancer("default"), { seed: 3, bucket: "10 seconds" })
      expect(r.timeline).toHaveLength(9)
      const counted = r.timeline.reduce((n, b) => n + b.attempts.reduce((m, x) => m + x, 0), 0)
      expect(counted).toBe(r.attempts)
      // the outage of "west" opened its circuit during the outage
      const west = 1
      expect(r.timeline.slice(2, 5).some((b) => b.circuits[west] !== "closed")).toBe(true)
      expect(r.timeline[0].circuits[west]).toBe("closed")
    }))

  it.effect("progress is reported once per slice", () =>
    Effect.gen(function*() {
      const seen: Array<Simulation.Progress> = []
      yield* Simulation.run(small, Simulation.balancer("default"), {
        seed: 3,
        bucket: "30 seconds",
        onProgress: (p) => seen.push(p)
      })
      expect(seen.map((p) => p.elapsedMs)).toEqual([30_000, 60_000, 90_000])
      expect(Simulation.progressLine(seen[1])).toContain("67%")
    }))

  it.effect("a bad scenario names every bad field, the endpoints' too when the rest is bad", () =>
    Effect.gen(function*() {
      const endpoints = [
        {
          name: "east",
          provider: "simulated",
          model: "chat",
          simulate: { latency: { median: "2 seconds", p99: "1 second" } }
        },
        { name: "west", provider: "simulated", model: "chat" }
      ]
      const faults = [{ type: "outage", endpoint: "nowhere", from: "1 second", to: "2 seconds" }]
      const paths = (error: Errors.InvalidConfig) => error.issues.map((i) => i.path)
      // a bad traffic section does not hide the endpoints' problems
      const badHead = yield* Effect.flip(Simulation.run(
        { ...small, traffic: { rate: -1, duration: "1 minute" }, endpoints } as never,
        Simulation.balancer("default")
      ))
      expect(badHead).toBeInstanceOf(Errors.InvalidConfig)
      expect(paths(badHead)).toEqual(expect.arrayContaining([
        "traffic.rate",
        "endpoints[0].simulate.latency",
        "endpoints[1].simulate"
      ]))
      const badFleet = yield* Effect.flip(Simulation.decode({ ...small, faults, endpoints }))
      expect(paths(badFleet)).toEqual(["endpoints[0].simulate.latency", "endpoints[1].simulate", "faults[0].endpoint"])
      expect(badFleet.message).toContain("names no endpoint of the fleet: \"nowhere\" (known: none valid, or \"*\")")
    }))
})

describe("Simulation: bad input and the caller's callbacks", () => {
  it.effect("bad run options and a bad routing policy are an InvalidConfig naming each", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Simulation.run(
        small,
        Simulation.balancer("default", { routing: { maxAttempts: 0 } }),
        { bucket: "soon" as never, drain: Infinity, seed: -1 }
      ))
      expect(error).toBeInstanceOf(Errors.InvalidConfig)
      expect(error.issues.map((i) => i.path)).toEqual(["bucket", "drain", "seed", "routing (default)"])
      // not even an object: still a typed error, not a throw
      const notAScenario = yield* Effect.flip(Simulation.run(null as never, Simulation.balancer("default")))
      expect(notAScenario).toBeInstanceOf(Errors.InvalidConfig)
    }))

  it.effect("a progress callback that throws fails the run with its error (the timeline is not silently lost)", () =>
    Effect.gen(function*() {
      let calls = 0
      const exit = yield* Effect.exit(Simulation.run(small, Simulation.balancer("default"), {
        bucket: "10 seconds",
        onProgress: () => {
          if (++calls === 3) throw new Error("drawing failed")
        }
      }))
      expect(Exit.isFailure(exit) && String(Cause.squash(exit.cause))).toContain("drawing failed")
      // it is not called again after it threw
      expect(calls).toBe(3)
    }))

  it.effect("a rate limit that starts mid-run counts the minute before it", () =>
    Effect.gen(function*() {
      const r = yield* Simulation.run(
        {
          name: "limit drops",
          traffic: { rate: 10, duration: "90 seconds" },
          faults: [{ type: "rate-limit", endpoint: "only", from: "60 seconds", to: "90 seconds", rpm: 60 }],
          endpoints: [{
            name: "only",
            provider: "simulated",
            model: "chat",
            simulate: { latency: { median: "100 millis", p99: "200 millis" } }
          }]
        },
        Simulation.baseline("round-robin"),
        { bucket: "1 second" }
      )
      // about 600 calls in the minute before: the limit of 60 is spent at once
      expect(r.timeline[60].failed).toBeGreaterThan(5)
      expect(r.timeline[59].failed).toBe(0)
    }))
})

/**
 * The bars of the default configuration, on shorter versions of the built-in scenarios
 * (the bench runs the full ones against every router).
 */
describe("built-in scenarios: the default configuration clears its bars", () => {
  // a brownout or a flap shortened further says more about how fast it is noticed than how it is handled
  const scales: Partial<Record<keyof typeof Simulation.builtIns, number>> = { brownout: 1, flapping: 1, stalls: 1 }
  for (const [name, builtIn] of Object.entries(Simulation.builtIns)) {
    const scale = scales[name as keyof typeof Simulation.builtIns] ?? 2
    it.effect(name, () =>
      Effect.gen(function*() {
        // only the routers the bars compare: ours, its variants, the oracle (the demo: all)
        const contenders = builtIn.contenders.filter((c) =>
          name === "demo" || c._tag === "Balancer" || c.name === "oracle"
        )
        const reports = yield* Simulation.compare(builtIn.scenario(scale), contenders, { seed: 1 })
        const bars = builtIn.bars(reports)
        expect(bars.length).toBeGreaterThan(0)
        for (const bar of bars) expect(bar, bar.name).toMatchObject({ pass: true })
      }), { timeout: 120_000 })
  }
})
