/**
 * Reports as plain text, for terminals and CI logs: a comparison table with aligned
 * columns, and a one-line progress bar a runner can redraw with `\r`. Pure functions, no
 * ANSI codes, so the output is the same wherever it is printed.
 */
import type { Report } from "./report.js"
import type { Progress } from "./run.js"

const ms = (v: number | null) => v === null ? "-" : `${Math.round(v)}`

/** Costs span fractions of a cent to thousands: four decimals below 1, two above. */
export const formatCost = (c: number): string => c >= 1 || c === 0 ? c.toFixed(2) : c.toFixed(4)

/** One row per report, columns aligned. */
export const table = (reports: ReadonlyArray<Report>): string => {
  const header = [
    "router",
    "success %",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "attempts/req",
    "429s",
    "sent while failing",
    "cost"
  ]
  const rows = reports.map((r) => [
    r.router,
    (r.successRate * 100).toFixed(2),
    ms(r.latency.p50),
    ms(r.latency.p99),
    ms(r.latency.p999),
    r.attemptsPerRequest.toFixed(3),
    String(r.rateLimited),
    String(r.sentWhileFailing),
    formatCost(r.cost)
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join("  ").trimEnd()
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n")
}

const marker = { closed: "●", "half-open": "◐", open: "○" } as const

const clock = (t: number) => {
  const s = Math.round(t / 1000)
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`
}

/**
 * `default      [##########..........]  50%  6:00 / 12:00  7012 req, 3 failed, 4 in flight  east 26% ● west  2% ○`
 * (● closed, ◐ half-open, ○ open).
 */
export const progressLine = (p: Progress, width = 20): string => {
  const done = p.durationMs <= 0 ? 1 : Math.min(1, Math.max(0, p.elapsedMs / p.durationMs))
  const cells = Math.max(1, Math.round(width))
  const filled = Math.round(done * cells)
  const shares = p.endpoints.map((e) =>
    `${e.name} ${String(Math.round(e.share * 100)).padStart(2)}% ${marker[e.circuit]}`
  )
  return `${p.router.padEnd(12)} [${"#".repeat(filled)}${".".repeat(cells - filled)}] ${
    String(Math.round(done * 100)).padStart(3)
  }%  ${clock(p.elapsedMs)} / ${clock(p.durationMs)}  ${p.requests} req, ${p.failed} failed, ${p.inFlight} in flight  ${
    shares.join("  ")
  }`.trimEnd()
}
