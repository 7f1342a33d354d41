import type { Usage } from "../Outcome.js"

/**
 * The most tokens one call can report: no model reads or writes a billion. A count past it
 * (or negative, or not finite) is a provider's garbage, which would poison the counters,
 * the token windows and the budgets if it were believed.
 */
const maxTokens = 1e9

/** A provider's token count, whole, or `undefined` when it is not a believable one. */
export const tokenCount = (n: unknown): number | undefined =>
  typeof n === "number" && Number.isFinite(n) && n >= 0 && n <= maxTokens ? Math.round(n) : undefined

/** A call's usage when both counts are believable; otherwise none (the answer still stands). */
export const usageOf = (input: unknown, output: unknown): Usage | undefined => {
  const inputTokens = tokenCount(input)
  const outputTokens = tokenCount(output)
  return inputTokens === undefined || outputTokens === undefined ? undefined : { inputTokens, outputTokens }
}

/** Usage reported through `Outcome` or `Lease.report`, kept only when believable. */
export const believable = (usage: Usage | undefined): Usage | undefined =>
  usage === undefined ? undefined : usageOf(usage.inputTokens, usage.outputTokens)
