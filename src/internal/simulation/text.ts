/**
 * Reports as plain text: a comparison table and a one-line progress bar for terminals.
 */
import type { Report } from "./report.js"
import type { Progress } from "./run.js"

const ms = (v: number | null) => v === null ? "-" : `${Math.round(v)}`

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
    r.cost.toFixed(2)
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join("  ")
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n")
}

const marker = { closed: "●", "half-open": "◐", open: "○" } as const

/** `[#####.....]  50%  6:00 / 12:00  7,012 requests (3 failed)  east 26% ● west 2% ○ ...` */
export const progressLine = (p: Progress, width = 20): string => {
  const done = p.durationMs === 0 ? 1 : Math.min(1, p.elapsedMs / p.durationMs)
  const filled = Math.round(done * width)
  const clock = (t: number) => {
    const s = Math.round(t / 1000)
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`
  }
  const shares = p.endpoints.map((e) =>
    `${e.name} ${String(Math.round(e.share * 100)).padStart(2)}% ${marker[e.circuit]}`
  )
  return `${p.router.padEnd(12)} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${
    String(Math.round(done * 100)).padStart(3)
  }%  ${clock(p.elapsedMs)} / ${clock(p.durationMs)}  ${p.requests} requests (${p.failed} failed)  ${shares.join("  ")}`
}
