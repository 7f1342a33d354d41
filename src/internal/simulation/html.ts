/**
 * Reports as one self-contained HTML page: inline CSS and SVG, no script, no network, so
 * it opens anywhere and can be attached to an issue or a design review. Deterministic:
 * the same reports give the same page.
 */
import type { Report } from "./report.js"
import { formatCost } from "./text.js"

const escape = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;")

const palette = [
  "#4e79a7",
  "#f28e2b",
  "#59a14f",
  "#e15759",
  "#76b7b2",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ac"
]
const circuitColour = { closed: "#59a14f", "half-open": "#edc948", open: "#e15759" } as const

const W = 760
const H = 180
const PAD = { left: 48, right: 12, top: 10, bottom: 28 }

const fmt = (n: number | null, digits = 0) => n === null ? "-" : n.toFixed(digits)

/** A round tick step (in seconds: 1, 2, 5, 10, 15, 30, 60, ...) giving at most about six ticks. */
const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].map((s) => s * 1000)
const tickStep = (durationMs: number) => {
  const raw = durationMs / 6
  return steps.find((s) => s >= raw) ?? Math.ceil(raw / 3_600_000) * 3_600_000
}

const faultBands = (r: Report, x: (t: number) => number, height: number) =>
  r.faults.map((f) =>
    `<rect x="${x(f.from).toFixed(1)}" y="${PAD.top}" width="${Math.max(1, x(f.to) - x(f.from)).toFixed(1)}" height="${
      height - PAD.top - PAD.bottom
    }" fill="#000" fill-opacity="0.07" stroke="#000" stroke-opacity="0.4" stroke-dasharray="3 3"><title>${
      escape(`${f.type} of ${f.endpoint}`)
    }</title></rect>`
  ).join("")

const timeAxis = (r: Report, x: (t: number) => number, height: number) => {
  const ticks: Array<string> = []
  const step = tickStep(r.durationMs)
  for (let t = 0; t <= r.durationMs; t += step) {
    ticks.push(
      `<text x="${x(t).toFixed(1)}" y="${height - 8}" font-size="10" text-anchor="middle">${
        Math.round(t / 1000)
      } s</text>`
    )
  }
  return ticks.join("")
}

/** Stacked bars: each slice's attempts split by endpoint. */
const shareChart = (r: Report) => {
  const n = r.timeline.length
  const bw = (W - PAD.left - PAD.right) / Math.max(1, n)
  const x = (t: number) => PAD.left + (t / Math.max(1, r.durationMs)) * (W - PAD.left - PAD.right)
  const plot = H - PAD.top - PAD.bottom
  const bars = r.timeline.map((b, i) => {
    const total = b.attempts.reduce((a, v) => a + v, 0)
    if (total === 0) return ""
    let y = PAD.top + plot
    return b.attempts.map((v, e) => {
      const h = (v / total) * plot
      y -= h
      return `<rect x="${(PAD.left + i * bw).toFixed(1)}" y="${y.toFixed(1)}" width="${
        (bw + 0.3).toFixed(1)
      }" height="${h.toFixed(1)}" fill="${palette[e % palette.length]}"/>`
    }).join("")
  }).join("")
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img"><title>traffic share per endpoint</title>${bars}${
    faultBands(r, x, H)
  }<text x="4" y="${PAD.top + 8}" font-size="10">100%</text><text x="4" y="${PAD.top + plot}" font-size="10">0%</text>${
    timeAxis(r, x, H)
  }</svg>`
}

/** p50 and p99 of each slice, on a log scale (tails span decades). */
const latencyChart = (r: Report) => {
  const values = r.timeline.flatMap((b) => [b.p50, b.p99]).filter((v): v is number => v !== null && v > 0)
  if (values.length === 0) return "<p>No successful requests.</p>"
  const lo = Math.log10(Math.max(1, Math.min(...values)) / 1.2)
  const hi = Math.log10(Math.max(...values) * 1.2)
  const plot = H - PAD.top - PAD.bottom
  const x = (t: number) => PAD.left + (t / Math.max(1, r.durationMs)) * (W - PAD.left - PAD.right)
  const y = (v: number) => PAD.top + plot - ((Math.log10(v) - lo) / Math.max(1e-9, hi - lo)) * plot
  const line = (pick: (b: Report["timeline"][number]) => number | null, colour: string) => {
    // A slice without successes lifts the pen (a gap); a lone point gets a dot.
    let d = ""
    let run = 0
    for (const b of r.timeline) {
      const v = pick(b)
      if (v === null || v <= 0) {
        if (run === 1) d += "h0.1"
        run = 0
        continue
      }
      d += `${run > 0 ? "L" : "M"}${x(b.at + r.bucketMs / 2).toFixed(1)},${y(v).toFixed(1)}`
      run++
    }
    if (run === 1) d += "h0.1"
    return `<path d="${d}" fill="none" stroke="${colour}" stroke-width="1.5" stroke-linecap="round"/>`
  }
  // Ticks at 1, 2 and 5 times powers of ten inside the range; only powers of ten if that is too many.
  const round = [-1, 0, 1, 2, 3, 4, 5, 6].flatMap((k) => [1, 2, 5].map((m) => m * 10 ** k))
    .filter((v) => Math.log10(v) >= lo && Math.log10(v) <= hi)
  const marks = round.length > 6 ? round.filter((v) => Number.isInteger(Math.log10(v))) : round
  const ticks = marks.map((v) =>
    `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(v).toFixed(1)}" y2="${
      y(v).toFixed(1)
    }" stroke="#ddd"/><text x="4" y="${(y(v) + 3).toFixed(1)}" font-size="10">${v} ms</text>`
  ).join("")
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img"><title>latency p50 and p99</title>${
    faultBands(r, x, H)
  }${ticks}${line((b) => b.p50, "#4e79a7")}${line((b) => b.p99, "#e15759")}${
    timeAxis(r, x, H)
  }</svg><div class="legend"><span style="color:#4e79a7">━ p50</span> <span style="color:#e15759">━ p99</span></div>`
}

/** One strip per endpoint: its circuit at the end of each slice. */
const circuitStrips = (r: Report) => {
  const rowH = 12
  const height = r.endpoints.length * (rowH + 4) + 4
  const bw = (W - PAD.left - PAD.right) / Math.max(1, r.timeline.length)
  const rows = r.endpoints.map((e, row) =>
    `<text x="4" y="${row * (rowH + 4) + rowH}" font-size="10"><title>${escape(e.name)}</title>${
      escape(e.name.slice(0, 8))
    }</text>` +
    r.timeline.map((b, i) =>
      `<rect x="${(PAD.left + i * bw).toFixed(1)}" y="${row * (rowH + 4) + 2}" width="${
        (bw + 0.3).toFixed(1)
      }" height="${rowH}" fill="${circuitColour[b.circuits[row] ?? "closed"]}"/>`
    ).join("")
  ).join("")
  return `<svg viewBox="0 0 ${W} ${height}" width="${W}" height="${height}" role="img"><title>circuit states</title>${rows}</svg>`
}

const comparison = (reports: ReadonlyArray<Report>) => {
  const head = [
    "router",
    "requests",
    "success %",
    "p50",
    "p95",
    "p99",
    "p99.9",
    "attempts/req",
    "429 share",
    "sent while failing",
    "cost"
  ]
  const rows = reports.map((r) =>
    [
      escape(r.router),
      String(r.requests),
      (r.successRate * 100).toFixed(2),
      fmt(r.latency.p50),
      fmt(r.latency.p95),
      fmt(r.latency.p99),
      fmt(r.latency.p999),
      r.attemptsPerRequest.toFixed(3),
      `${(r.rateLimitedShare * 100).toFixed(2)} %`,
      String(r.sentWhileFailing),
      formatCost(r.cost)
    ].map((c) => `<td>${c}</td>`).join("")
  )
  return `<table><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr>${
    rows.map((r) => `<tr>${r}</tr>`).join("")
  }</table>`
}

const legend = (r: Report) =>
  `<div class="legend">${
    r.endpoints.map((e, i) => `<span><i style="background:${palette[i % palette.length]}"></i>${escape(e.name)}</span>`)
      .join(" ")
  } <span><i style="background:#000;opacity:.15"></i>fault</span></div>`

/** The page: per scenario, a comparison table, then per router its charts. */
export const html = (
  reports: ReadonlyArray<Report>,
  options: { readonly title?: string; readonly generatedAt?: string } = {}
): string => {
  const title = options.title ?? "Simulation report"
  const scenarios = [...new Set(reports.map((r) => r.scenario))]
  const sections = scenarios.map((name) => {
    const group = reports.filter((r) => r.scenario === name)
    const faults = group[0].faults.map((f) =>
      `<li>${escape(f.type)} of ${escape(f.endpoint)} from ${f.from / 1000} s to ${f.to / 1000} s</li>`
    ).join("")
    const runs = group.map((r) =>
      `<h3>${escape(r.router)}</h3><p>Traffic share per endpoint (each slice ${r.bucketMs / 1000} s)</p>${legend(r)}${
        shareChart(r)
      }<p>Latency of successful requests by arrival (ms, log scale)</p>${
        latencyChart(r)
      }<p>Circuits (<span style="color:${circuitColour.closed}">closed</span>, <span style="color:${
        circuitColour["half-open"]
      }">half-open</span>, <span style="color:${circuitColour.open}">open</span>)</p>${circuitStrips(r)}`
    ).join("")
    return `<section><h2>Scenario: ${escape(name)}</h2><p>${group[0].requests} requests over ${
      group[0].durationMs / 1000
    } simulated seconds; seed ${group[0].seed}.</p>${faults === "" ? "" : `<ul>${faults}</ul>`}${
      comparison(group)
    }<p class="note">Latencies in ms, end to end, successful requests; "sent while failing" counts attempts that reached an endpoint while its faults made it fail or hang.</p>${runs}</section>`
  }).join("")
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title><style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;max-width:820px;color:#222}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}.legend span{margin-right:10px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}.note{color:#666;font-size:12px}
svg{display:block;margin:4px 0 12px;max-width:100%;height:auto}
</style></head><body><h1>${escape(title)}</h1>${
    options.generatedAt === undefined ? "" : `<p class="note">Generated ${escape(options.generatedAt)}</p>`
  }${sections}</body></html>
`
}
