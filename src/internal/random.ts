/**
 * A small deterministic generator (mulberry32) seeded from one draw of Effect's `Random`,
 * so a strategy can take several random numbers inside one synchronous update and a
 * seeded run still repeats exactly.
 */
export const fromSeed = (seed: number): () => number => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
