/**
 * The bucketed sliding window behind rpm / tpm / rpd limits: exact unit cases, then
 * properties checked against a brute-force model (a plain list of every add).
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import * as SlidingWindow from "../src/internal/slidingWindow.js"

const fc = FastCheck
const MINUTE = 60_000
const BUCKET = MINUTE / SlidingWindow.buckets // 1 s

interface Add {
  readonly at: number
  readonly amount: number
}

const sum = (adds: ReadonlyArray<Add>, from: number, to: number, closedFrom: boolean) =>
  adds.reduce((acc, a) => (closedFrom ? a.at >= from : a.at > from) && a.at <= to ? acc + a.amount : acc, 0)

/** The window's own definition: everything added from the start of bucket `floor(now / w) - 60` on. */
const modelUsed = (adds: ReadonlyArray<Add>, now: number, widthMs: number) => {
  const first = (Math.floor(now / widthMs) - SlidingWindow.buckets) * widthMs
  return sum(adds, first, now, true)
}

/** Steps of (time advance, amount): small steps, steps across a bucket, and long pauses. */
const stepArb = fc.record({
  advance: fc.oneof(
    fc.integer({ min: 0, max: 50 }),
    fc.integer({ min: 0, max: 2 * BUCKET }),
    fc.integer({ min: 0, max: 80_000 }),
    fc.constantFrom(BUCKET - 1, BUCKET, BUCKET + 1, MINUTE - 1, MINUTE, MINUTE + 1)
  ),
  amount: fc.integer({ min: 0, max: 20 })
})

/** Absolute times that crowd around minute and bucket boundaries over 5 minutes. */
const timeArb = fc.oneof(
  fc.tuple(fc.integer({ min: 0, max: 5 }), fc.constantFrom(-1, 0, 1, -BUCKET, BUCKET - 1, BUCKET))
    .map(([minute, offset]) => Math.max(0, minute * MINUTE + offset)),
  fc.integer({ min: 0, max: 5 * MINUTE + 2 * BUCKET })
)

describe("SlidingWindow: unit", () => {
  it("make: an empty window of 61 buckets of windowMs / 60", () => {
    const w = SlidingWindow.make(10, MINUTE)
    expect(w.limit).toBe(10)
    expect(w.widthMs).toBe(1_000)
    expect(w.counts.length).toBe(61)
    expect(w.total).toBe(0)
    expect(SlidingWindow.used(w, 0)).toBe(0)
    expect(SlidingWindow.headroom(w, 0)).toBe(1)
    expect(SlidingWindow.make(5, 86_400_000).widthMs).toBe(1_440_000)
  })

  it("add / used: a count stays for the window and leaves one bucket late at most", () => {
    let w = SlidingWindow.make(100, MINUTE)
    w = SlidingWindow.add(w, 500, 3) // bucket 0
    w = SlidingWindow.add(w, 1_500, 4) // bucket 1
    expect(SlidingWindow.used(w, 1_500)).toBe(7)
    expect(SlidingWindow.used(w, 59_999)).toBe(7)
    // at 60_000 the true window (0, 60_000] still holds both; bucket 0 goes at 61_000
    expect(SlidingWindow.used(w, 60_999)).toBe(7)
    expect(SlidingWindow.used(w, 61_000)).toBe(4)
    expect(SlidingWindow.used(w, 61_999)).toBe(4)
    expect(SlidingWindow.used(w, 62_000)).toBe(0)
    // far later, everything has gone, and adding there starts from a clean ring
    expect(SlidingWindow.used(w, 10 * MINUTE)).toBe(0)
    const later = SlidingWindow.add(w, 10 * MINUTE, 2)
    expect(later.total).toBe(2)
    expect(SlidingWindow.used(later, 10 * MINUTE)).toBe(2)
  })

  it("values are immutable: add returns a copy and leaves the old window as it was", () => {
    const w0 = SlidingWindow.make(10, MINUTE)
    const w1 = SlidingWindow.add(w0, 0, 5)
    expect(SlidingWindow.used(w0, 0)).toBe(0)
    expect(w0.counts.every((c) => c === 0)).toBe(true)
    expect(SlidingWindow.used(w1, 0)).toBe(5)
  })

  it("a time before the head counts in the head (a clock stepping back)", () => {
    let w = SlidingWindow.make(10, MINUTE)
    w = SlidingWindow.add(w, 30_000, 1)
    w = SlidingWindow.add(w, 10_000, 1)
    expect(w.head).toBe(30)
    expect(SlidingWindow.used(w, 30_000)).toBe(2)
    // both leave together, with bucket 30
    expect(SlidingWindow.used(w, 90_999)).toBe(2)
    expect(SlidingWindow.used(w, 91_000)).toBe(0)
  })

  it("fits / fitsAt / headroom: exact times for a full window", () => {
    let w = SlidingWindow.make(3, MINUTE)
    for (let i = 0; i < 3; i++) w = SlidingWindow.add(w, 59_999, 1) // bucket 59
    expect(SlidingWindow.fits(w, 59_999, 1)).toBe(false)
    expect(SlidingWindow.fits(w, 59_999, 0)).toBe(true)
    expect(SlidingWindow.headroom(w, 59_999)).toBe(0)
    // bucket 59 leaves the window when bucket 120 starts
    expect(SlidingWindow.fitsAt(w, 60_000, 1)).toBe(120_000)
    expect(SlidingWindow.fits(w, 119_999, 1)).toBe(false)
    expect(SlidingWindow.fits(w, 120_000, 1)).toBe(true)
    expect(SlidingWindow.fitsAt(w, 120_000, 1)).toBe(120_000)
    expect(SlidingWindow.fitsAt(w, 60_000, 4)).toBe(Infinity)
    expect(SlidingWindow.fitsAt(w, 60_000, 3)).toBe(120_000)
  })

  it("fitsAt: waits only until enough has left, oldest bucket first", () => {
    let w = SlidingWindow.make(10, MINUTE)
    w = SlidingWindow.add(w, 0, 4) // bucket 0
    w = SlidingWindow.add(w, 10_000, 3) // bucket 10
    w = SlidingWindow.add(w, 20_000, 3) // bucket 20
    expect(SlidingWindow.fitsAt(w, 30_000, 1)).toBe(61_000)
    expect(SlidingWindow.fitsAt(w, 30_000, 4)).toBe(61_000)
    expect(SlidingWindow.fitsAt(w, 30_000, 5)).toBe(71_000)
    expect(SlidingWindow.fitsAt(w, 30_000, 8)).toBe(81_000)
    expect(SlidingWindow.fitsAt(w, 30_000, 10)).toBe(81_000)
    expect(SlidingWindow.headroom(w, 30_000)).toBe(0)
    expect(SlidingWindow.headroom(w, 61_000)).toBe(0.4)
  })

  it("adjust: corrects the bucket of the reservation, never below 0, and not once it has left", () => {
    let w = SlidingWindow.make(1_000, MINUTE)
    w = SlidingWindow.add(w, 5_000, 500) // an estimate at bucket 5
    w = SlidingWindow.add(w, 7_000, 100) // another call at bucket 7
    const smaller = SlidingWindow.adjust(w, 5_000, -350)
    expect(SlidingWindow.used(smaller, 7_000)).toBe(250)
    expect(smaller.total).toBe(250)
    const larger = SlidingWindow.adjust(w, 5_500, 300)
    expect(SlidingWindow.used(larger, 7_000)).toBe(900)
    // the correction leaves the window with the reservation's bucket
    expect(SlidingWindow.used(larger, 65_999)).toBe(900)
    expect(SlidingWindow.used(larger, 66_000)).toBe(100)
    // a correction below zero stops at zero, in that bucket only
    const clamped = SlidingWindow.adjust(w, 5_000, -10_000)
    expect(clamped.counts[5]).toBe(0)
    expect(SlidingWindow.used(clamped, 7_000)).toBe(100)
    expect(clamped.total).toBe(100)
    expect(SlidingWindow.adjust(w, 5_000, 0)).toBe(w)
    // once the head is more than 60 buckets past it, the reservation cannot be corrected
    const moved = SlidingWindow.add(w, 66_000, 1) // head 66: bucket 5 left the ring
    expect(SlidingWindow.adjust(moved, 5_000, 999)).toBe(moved)
    expect(moved.counts.length).toBe(61)
  })
})

describe("SlidingWindow: properties", () => {
  it("used is exactly the model, at least the true window's count and at most the window plus one bucket", () => {
    FastCheck.assert(
      FastCheck.property(
        fc.array(stepArb, { minLength: 1, maxLength: 150 }),
        fc.array(fc.integer({ min: 0, max: 3 * BUCKET }), { minLength: 1, maxLength: 150 }),
        (steps, probes) => {
          let w = SlidingWindow.make(1_000_000, MINUTE)
          const adds: Array<Add> = []
          let now = 0
          steps.forEach((step, i) => {
            now += step.advance
            w = SlidingWindow.add(w, now, step.amount)
            adds.push({ at: now, amount: step.amount })
            // query right after the add and at a later time (before the next add)
            for (const q of [now, now + probes[i % probes.length]]) {
              const used = SlidingWindow.used(w, q)
              expect(used).toBe(modelUsed(adds, q, BUCKET))
              // conservative: the closed window [q - W, q] is all counted
              expect(used).toBeGreaterThanOrEqual(sum(adds, q - MINUTE, q, true))
              // and it counts nothing older than one bucket before the window
              expect(used).toBeLessThanOrEqual(sum(adds, q - MINUTE - BUCKET, q, false))
            }
            expect(w.counts.length).toBe(SlidingWindow.buckets + 1)
            expect(w.total).toBe(w.counts.reduce((a, b) => a + b, 0))
          })
        }
      ),
      { numRuns: 300 }
    )
  })

  it("a fits-guarded admission loop never lets more than the limit through in any window, bursts at minute boundaries included", () => {
    FastCheck.assert(
      FastCheck.property(
        fc.integer({ min: 1, max: 12 }),
        fc.array(fc.tuple(timeArb, fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 3 })), {
          minLength: 1,
          maxLength: 120
        }),
        (limit, attempts) => {
          const sorted = attempts.slice().sort((a, b) => a[0] - b[0])
          let w = SlidingWindow.make(limit, MINUTE)
          const admitted: Array<Add> = []
          for (const [at, burst, amount] of sorted) {
            // a burst: try `burst` requests of `amount` at the same moment
            for (let i = 0; i < burst; i++) {
              if (!SlidingWindow.fits(w, at, amount)) continue
              w = SlidingWindow.add(w, at, amount)
              admitted.push({ at, amount })
            }
          }
          // every window [s, s + W] that starts at an admission (the worst ones), closed at both ends
          for (const { at } of admitted) {
            expect(sum(admitted, at, at + MINUTE, true)).toBeLessThanOrEqual(limit)
          }
          // and every window ending at a minute boundary
          for (let m = 1; m <= 6; m++) {
            expect(sum(admitted, m * MINUTE - MINUTE, m * MINUTE, true)).toBeLessThanOrEqual(limit)
          }
        }
      ),
      { numRuns: 500 }
    )
  })

  it("bursts on each side of each minute boundary: exactly which are admitted", () => {
    let w = SlidingWindow.make(10, MINUTE)
    const admitted: Array<number> = []
    for (let m = 1; m <= 5; m++) {
      for (const at of [m * MINUTE - 1, m * MINUTE]) {
        for (let i = 0; i < 10; i++) {
          if (SlidingWindow.fits(w, at, 1)) {
            w = SlidingWindow.add(w, at, 1)
            admitted.push(at)
          }
        }
      }
    }
    // 10 at 59_999 (bucket 59) hold the window until bucket 120 starts; 10 at 120_000 until
    // bucket 181 (so 179_999 and 180_000 are refused); 10 at 239_999 (bucket 239) until 300_000
    const ten = (at: number) => Array<number>(10).fill(at)
    expect(admitted).toEqual([...ten(MINUTE - 1), ...ten(2 * MINUTE), ...ten(4 * MINUTE - 1), ...ten(5 * MINUTE)])
    // 20 in 60_001 ms ([239_999, 300_000]), but never more than 10 in any 60 s window
    for (const s of admitted) expect(admitted.filter((t) => t >= s && t <= s + MINUTE).length).toBeLessThanOrEqual(10)
  })

  it("fitsAt returns the first moment fits is true: fits there, not one bucket (nor one ms) earlier", () => {
    FastCheck.assert(
      FastCheck.property(
        fc.integer({ min: 1, max: 50 }),
        fc.array(stepArb, { minLength: 0, maxLength: 80 }),
        fc.integer({ min: 0, max: 3 * BUCKET }),
        fc.integer({ min: 0, max: 60 }),
        (limit, steps, after, amount) => {
          let w = SlidingWindow.make(limit, MINUTE)
          let now = 0
          for (const step of steps) {
            now += step.advance
            // fill without checking: the window can be over its limit (usage above the estimate)
            w = SlidingWindow.add(w, now, step.amount)
          }
          const q = now + after
          const at = SlidingWindow.fitsAt(w, q, amount)
          if (amount > limit) {
            expect(at).toBe(Infinity)
            return
          }
          expect(at).toBeGreaterThanOrEqual(q)
          expect(SlidingWindow.fits(w, at, amount)).toBe(true)
          if (at === q) {
            expect(SlidingWindow.fits(w, q, amount)).toBe(true)
          } else {
            expect(SlidingWindow.fits(w, q, amount)).toBe(false)
            expect(SlidingWindow.fits(w, at - 1, amount)).toBe(false)
            expect(SlidingWindow.fits(w, Math.max(q, at - BUCKET), amount)).toBe(false)
            // it is a bucket boundary
            expect(at % BUCKET).toBe(0)
          }
        }
      ),
      { numRuns: 500 }
    )
  })

  it("adjust matches a per-bucket model, never leaves a bucket below 0, and keeps the memory constant", () => {
    const opArb = fc.oneof(
      fc.record({ _tag: fc.constant("add" as const), advance: stepArb.map((s) => s.advance), amount: fc.nat(50) }),
      fc.record({
        _tag: fc.constant("adjust" as const),
        back: fc.integer({ min: 0, max: 70 * BUCKET }),
        delta: fc.integer({ min: -80, max: 80 })
      })
    )
    FastCheck.assert(
      FastCheck.property(fc.array(opArb, { minLength: 1, maxLength: 150 }), (ops) => {
        let w = SlidingWindow.make(500, MINUTE)
        // the model: absolute bucket -> count, and the head
        const model = new Map<number, number>()
        let head = 0
        let now = 0
        for (const op of ops) {
          if (op._tag === "add") {
            now += op.advance
            w = SlidingWindow.add(w, now, op.amount)
            head = Math.max(head, Math.floor(now / BUCKET))
            const b = Math.max(head, Math.floor(now / BUCKET))
            model.set(b, (model.get(b) ?? 0) + op.amount)
          } else {
            const at = Math.max(0, now - op.back)
            const b = Math.floor(at / BUCKET)
            w = SlidingWindow.adjust(w, at, op.delta)
            if (b <= head && b >= head - SlidingWindow.buckets) {
              model.set(b, Math.max(0, (model.get(b) ?? 0) + op.delta))
            }
          }
          expect(w.counts.every((c) => c >= 0)).toBe(true)
          expect(w.counts.length).toBe(SlidingWindow.buckets + 1)
          expect(w.total).toBe(w.counts.reduce((a, b) => a + b, 0))
          for (const q of [now, now + BUCKET, now + 30 * BUCKET]) {
            const first = Math.floor(q / BUCKET) - SlidingWindow.buckets
            let expected = 0
            for (const [b, c] of model) if (b >= first) expected += c
            expect(SlidingWindow.used(w, q)).toBe(expected)
          }
        }
      }),
      { numRuns: 300 }
    )
  })
})
