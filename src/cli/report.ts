// compare --report FILE: one self-contained HTML file (uPlot and the data
// inlined, nothing fetched when opened) with the comparison's charts: bytes
// and dirty pages per round, a timeline per strategy, bytes by encoding, and
// the link and guest it ran on.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { LinkSpec } from "../engine/migrate.js";
import { predictedCell, type CompareRow } from "./rows.js";
import type { InspectReport } from "./inspect.js";

export interface ReportContext {
  /** what was migrated, as the command describes it */
  guest: string;
  link: LinkSpec;
  downtimeLimit: number;
  wallSeconds: number;
  /** `pagemill inspect`'s statistics of the trace, when the guest is one */
  trace?: InspectReport;
}

const require = createRequire(import.meta.url);

function asset(path: string): string {
  return readFileSync(require.resolve(path), "utf8");
}

/** Text safe inside <script> or <style> (no closing tag can appear). */
function inline(text: string): string {
  return text.replace(/<\/(script|style)/gi, "<\\/$1");
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
}

/** The figures the page draws, per row: only what the charts and tables show. */
function reportData(rows: CompareRow[], context: ReportContext) {
  const first = rows.find((r) => r.stats)?.stats;
  return {
    guest: context.guest,
    link: { megabitsPerSecond: context.link.bitsPerSecond / 1e6, rttMs: context.link.rtt * 1000, schedule: context.link.schedule ?? [], channel: context.link.channel ?? "link" },
    downtimeLimitMs: context.downtimeLimit * 1000,
    memory: first ? { bytes: first.total, pageSize: first.pageSize, pages: first.total / first.pageSize } : undefined,
    wallSeconds: context.wallSeconds,
    trace: context.trace && {
      program: context.trace.program,
      epochs: context.trace.epochs,
      intervalMs: context.trace.intervalMicros / 1000,
      duration: context.trace.duration,
      zeroPageShare: context.trace.zeroPageShare,
      dirtyPerEpoch: context.trace.dirtyPerEpoch,
      workingSet: context.trace.workingSet,
      neverWrittenShare: context.trace.neverWrittenShare,
      verdict: context.trace.verdict.line,
    },
    rows: rows.map((r) => ({
      method: r.method,
      codec: r.codec,
      error: r.error,
      verified: r.verified,
      agility: r.agility,
      predicted: r.predicted,
      // as the text table shows them
      predictedText: r.stats && [predictedCell(r.predicted?.totalTime, r.stats.totalTime), predictedCell(r.predicted?.downtime, r.stats.downtime)],
      stats: r.stats && {
        totalTime: r.stats.totalTime,
        downtime: r.stats.downtime,
        remoteUptime: r.stats.remoteUptime,
        transferred: r.stats.transferred,
        pagesTransferred: r.stats.pagesTransferred,
        faults: r.stats.faults,
        postcopyRequests: r.stats.postcopyRequests,
        verifiedPages: r.stats.verifiedPages,
        stopReason: r.stats.stopReason,
        bytesByEncoding: r.stats.codecStats.bytesByEncoding,
        dirtyPagesRate: r.stats.dirtyPagesRate,
        rounds: r.stats.rounds.map((x) => ({ start: x.start, duration: x.duration, bytes: x.bytes, dirtyPages: Math.round(x.dirtyRate * x.duration) })),
      },
    })),
  };
}

/** The report as one HTML document. */
export function compareReport(rows: CompareRow[], context: ReportContext): string {
  const data = JSON.stringify(reportData(rows, context)).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pagemill compare: ${escapeHtml(context.guest)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>${inline(asset("uplot/dist/uPlot.min.css"))}</style>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem auto; max-width: 72rem; padding: 0 1rem; color: #222; }
  h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
  table { border-collapse: collapse; }
  th, td { padding: .2rem .45rem; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
  #results { font-size: 13px; }
  th:first-child, td:first-child, td.text { text-align: left; }
  #setup td { white-space: normal; text-align: left; }
  td.best { font-weight: bold; background: #e8f5e9; }
  td.failed { color: #b00; text-align: left; }
  .charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(33rem, 1fr)); gap: 1rem; }
  .chart { border: 1px solid #eee; padding: .5rem; }
  .note { color: #555; }
</style>
</head>
<body>
<h1>pagemill compare</h1>
<p id="summary" class="note"></p>
<h2>Link and guest</h2>
<table id="setup"></table>
<h2>Every method × codec</h2>
<table id="results"></table>
<p class="note">Bold: best of its column (U among rows that post-copied). T total time, D downtime, U remote uptime (the guest runs at the destination while pages still arrive), in virtual seconds on the simulated link; every page was really encoded, sent, decoded and checked. Γ: restoration agility (seed 001) δT / (D + ΔT), δT = 20 s, ΔT the time the resumed guest takes for δT of its normal work; higher is better.</p>
<h2>Timeline</h2>
<div class="charts" id="timelines"></div>
<h2>Bytes per round</h2>
<div class="charts" id="bytes-per-round"></div>
<h2>Pages dirtied per round</h2>
<div class="charts" id="dirty-per-round"></div>
<h2>Predicted and emulated</h2>
<p class="note">The predictor (src/adaptive, docs/adaptive.md) models a trace's rows with the raw codec, without auto-converge, on a constant link, with a disk trace too (not a disk model); Ada-copy's row is the method it chose.</p>
<div class="charts" id="predictions"></div>
<h2>Bytes by encoding</h2>
<div class="charts" id="encodings"></div>
<script type="application/json" id="data">${data}</script>
<script>${inline(asset("uplot/dist/uPlot.iife.min.js"))}</script>
<script>${inline(PAGE_SCRIPT)}</script>
</body>
</html>
`;
}

// The page's own script (plain browser JavaScript): tables from the data, charts with uPlot.
const PAGE_SCRIPT = String.raw`
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const mib = (b) => (b / 1048576).toFixed(2) + " MiB";
const mibTick = (u, vals) => vals.map((v) => String(+(v / 1048576).toPrecision(3)));
const wholeTicks = [1, 2, 5, 10, 20, 50, 100];
const secs = (s) => (s < 1 ? (s * 1000).toFixed(1) + " ms" : s.toFixed(3) + " s");
const el = (tag, attrs, text) => { const e = document.createElement(tag); Object.assign(e, attrs || {}); if (text !== undefined) e.textContent = text; return e; };
const WIDTH = 520, HEIGHT = 260;
// bars stand on zero
const fromZero = { range: (u, min, max) => [0, max > 0 ? max * 1.08 : 1] };

const link = data.link;
document.getElementById("summary").textContent =
  data.guest + (data.memory ? " (" + data.memory.pages + " pages of " + data.memory.pageSize + " B, " + mib(data.memory.bytes) + ")" : "") +
  "; link " + link.megabitsPerSecond.toFixed(1) + " Mbit/s, RTT " + link.rttMs.toFixed(1) + " ms (" + link.channel + ")" +
  link.schedule.map((s) => ", " + (s.bitsPerSecond / 1e6).toFixed(1) + " Mbit/s from " + secs(s.at)).join("") +
  "; downtime limit " + data.downtimeLimitMs.toFixed(0) + " ms; " + data.rows.length + " migrations in " + data.wallSeconds.toFixed(1) + " s of wall time.";

// What ran: the link and the guest (with inspect's statistics for a trace).
const facts = [
  ["link", link.megabitsPerSecond.toFixed(1) + " Mbit/s, RTT " + link.rttMs.toFixed(1) + " ms, " + link.channel + " channel" + link.schedule.map((s) => ", " + (s.bitsPerSecond / 1e6).toFixed(1) + " Mbit/s from " + secs(s.at)).join("")],
  ["downtime limit", data.downtimeLimitMs.toFixed(0) + " ms"],
  ["guest", data.guest],
];
if (data.memory) facts.push(["memory", data.memory.pages + " pages of " + data.memory.pageSize + " B (" + mib(data.memory.bytes) + ")"]);
const t = data.trace;
if (t) {
  const pct = (x) => (100 * x).toFixed(1) + "%";
  facts.push(
    ["recorded program", t.program || "not named"],
    ["epochs", t.epochs + " of " + t.intervalMs.toFixed(0) + " ms (" + secs(t.duration) + ")"],
    ["zero pages in the image", pct(t.zeroPageShare)],
    ["pages dirtied per epoch", "mean " + t.dirtyPerEpoch.mean.toFixed(0) + ", max " + t.dirtyPerEpoch.max],
    ["working set", "mean " + t.workingSet.mean.toFixed(0) + ", max " + t.workingSet.max.toFixed(0) + " pages over " + t.workingSet.window + " epochs (" + secs(t.workingSet.seconds) + ")"],
    ["never written", pct(t.neverWrittenShare) + " of pages"],
    ["plain pre-copy here", t.verdict],
  );
}
const setup = document.getElementById("setup");
for (const [label, value] of facts) {
  const tr = setup.insertRow();
  tr.appendChild(el("th", {}, label));
  tr.appendChild(el("td", { className: "text" }, value));
}

// The results table, the best (lowest) of each column marked.
const columns = [
  { label: "T", value: (r) => r.stats.totalTime, show: (r) => secs(r.stats.totalTime) },
  { label: "D", value: (r) => r.stats.downtime, show: (r) => secs(r.stats.downtime) },
  { label: "U", value: (r) => (r.stats.remoteUptime > 0 ? r.stats.remoteUptime : undefined), show: (r) => secs(r.stats.remoteUptime) },
  { label: "Γ", value: (r) => r.agility, show: (r) => r.agility.toFixed(4), higher: true },
  { label: "bytes", value: (r) => r.stats.transferred, show: (r) => mib(r.stats.transferred) },
  { label: "pages", value: (r) => r.stats.pagesTransferred, show: (r) => String(r.stats.pagesTransferred) },
  { label: "faults", show: (r) => String(r.stats.faults) },
  { label: "rounds", show: (r) => String(r.stats.rounds.length) },
  { label: "predicted T", show: (r) => r.predictedText[0] },
  { label: "predicted D", show: (r) => r.predictedText[1] },
  { label: "verified", show: (r) => String(r.stats.verifiedPages) },
];
const table = document.getElementById("results");
const head = table.insertRow();
for (const label of ["method", "codec", ...columns.map((c) => c.label)]) head.appendChild(el("th", {}, label));
const best = columns.map((c) => {
  if (!c.value) return undefined;
  const values = data.rows.filter((r) => r.stats).map(c.value).filter((v) => v !== undefined);
  return values.length >= 2 ? (c.higher ? Math.max : Math.min)(...values) : undefined;
});
for (const row of data.rows) {
  const tr = table.insertRow();
  tr.appendChild(el("td", {}, row.method));
  tr.appendChild(el("td", { className: "text" }, row.codec));
  if (!row.stats) { tr.appendChild(el("td", { className: "failed", colSpan: columns.length }, "failed: " + row.error)); continue; }
  columns.forEach((c, i) => {
    const v = c.value ? c.value(row) : undefined;
    tr.appendChild(el("td", { className: v !== undefined && v === best[i] ? "best" : "" }, c.show(row)));
  });
}

function chart(parent, title, opts, aligned) {
  const box = el("div", { className: "chart" });
  document.getElementById(parent).appendChild(box);
  return new uPlot(Object.assign({ title, width: WIDTH, height: HEIGHT }, opts), aligned, box);
}

const codecs = [...new Set(data.rows.map((r) => r.codec))];
const done = data.rows.filter((r) => r.stats);

// Per codec: one line per method over round numbers.
function perRound(parent, title, unit, pick) {
  for (const codec of codecs) {
    const rows = done.filter((r) => r.codec === codec && r.stats.rounds.length);
    if (!rows.length) continue;
    const n = Math.max(...rows.map((r) => r.stats.rounds.length));
    const xs = Array.from({ length: n }, (_, i) => i + 1);
    chart(parent, title + " — codec " + codec, {
      scales: { x: { time: false, range: [0.5, n + 0.5] } },
      axes: [{ label: "round", incrs: wholeTicks }, { label: unit, size: 60, values: unit === "MiB" ? mibTick : undefined }],
      series: [{ label: "round" }, ...rows.map((r, i) => ({ label: r.method, stroke: COLORS[i % COLORS.length], width: 2, points: { show: true }, value: (u, v) => (v == null ? "–" : unit === "MiB" ? mib(v) : v + " pages") }))],
    }, [xs, ...rows.map((r) => xs.map((x) => (x <= r.stats.rounds.length ? pick(r.stats.rounds[x - 1]) : null)))]);
  }
}
perRound("bytes-per-round", "Wire bytes per pre-copy round", "MiB", (round) => round.bytes);
perRound("dirty-per-round", "Pages dirtied during each pre-copy round", "pages", (round) => round.dirtyPages);

// Timeline per codec: a bar per method from 0 to T, pre-copy (rounds) then downtime then post-copy.
const PHASES = [["pre-copy", "#1f77b4"], ["downtime", "#d62728"], ["post-copy", "#ff7f0e"]];
function phases(s) {
  const resume = s.totalTime - s.remoteUptime;
  return [[0, resume - s.downtime], [resume - s.downtime, resume], [resume, s.totalTime]];
}
for (const codec of codecs) {
  const rows = done.filter((r) => r.codec === codec);
  if (!rows.length) continue;
  const xs = [...new Set(rows.flatMap((r) => phases(r.stats).flat()))].sort((a, b) => a - b);
  const series = [{ label: "time" }];
  const ys = [];
  rows.forEach((r, k) => {
    phases(r.stats).forEach(([from, to], p) => {
      if (!(to > from)) return;
      const label = r.method + ": " + PHASES[p][0] + (p === 2 ? " (" + r.stats.faults + " faults)" : p === 0 ? " (" + r.stats.rounds.length + " rounds)" : "");
      series.push({ label, stroke: PHASES[p][1], width: 14, points: { show: false }, value: (u, v) => (v == null ? "–" : secs(to - from)) });
      ys.push(xs.map((x) => (x >= from && x <= to ? rows.length - k : null)));
    });
  });
  chart("timelines", "Timeline per method — codec " + codec + " (blue pre-copy, red downtime, orange post-copy)", {
    scales: { x: { time: false }, y: { range: [0.3, rows.length + 0.7] } },
    legend: { show: false },
    axes: [{ label: "virtual time (s)" }, { size: 160, splits: () => rows.map((_, k) => rows.length - k), values: (u, vals) => vals.map((v) => (rows[rows.length - v] ? rows[rows.length - v].method : "")) }],
    series,
  }, [xs, ...ys]);
}

// Payload bytes per encoding, stacked, one bar per method, per codec.
for (const codec of codecs) {
  const rows = done.filter((r) => r.codec === codec);
  if (!rows.length) continue;
  const encodings = [...new Set(rows.flatMap((r) => Object.keys(r.stats.bytesByEncoding)))].filter((e) => rows.some((r) => r.stats.bytesByEncoding[e] > 0));
  const xs = rows.map((_, i) => i + 1);
  const stacked = encodings.map((_, e) => rows.map((r) => encodings.slice(e).reduce((sum, name) => sum + (r.stats.bytesByEncoding[name] || 0), 0)));
  chart("encodings", "Payload bytes by page encoding — codec " + codec, {
    scales: { x: { time: false, range: [0.4, rows.length + 0.6] }, y: fromZero },
    axes: [{ splits: () => xs, rotate: -15, size: 60, values: (u, vals) => vals.map((v) => (rows[v - 1] ? rows[v - 1].method : "")) }, { label: "MiB", size: 60, values: mibTick }],
    series: [{ label: "method", value: (u, v) => (rows[v - 1] ? rows[v - 1].method : "") }, ...encodings.map((name, e) => ({
      label: name, stroke: COLORS[e % COLORS.length], fill: COLORS[e % COLORS.length] + "cc", width: 1,
      paths: uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false },
      value: (u, v, s, i) => (i == null ? "–" : mib(rows[i].stats.bytesByEncoding[name] || 0)),
    }))],
  }, [xs, ...stacked]);
}
// Predicted against emulated, for the rows the predictor models: T and D side by side.
const modelled = done.filter((r) => r.predicted);
if (modelled.length) {
  const xs = modelled.map((_, i) => i + 1);
  for (const [title, key] of [["Total time T", "totalTime"], ["Downtime D", "downtime"]]) {
    chart("predictions", title + ": predicted and emulated (" + modelled[0].codec + " codec)", {
      scales: { x: { time: false, range: [0.4, modelled.length + 0.6] }, y: fromZero },
      axes: [{ splits: () => xs, values: (u, vals) => vals.map((v) => (modelled[v - 1] ? modelled[v - 1].method : "")) }, { label: "seconds", size: 60 }],
      series: [{ label: "method", value: (u, v) => (modelled[v - 1] ? modelled[v - 1].method : "") },
        { label: "emulated", stroke: "#1f77b4", fill: "#1f77b4cc", paths: uPlot.paths.bars({ size: [0.35, 40], align: -1 }), points: { show: false }, value: (u, v) => (v == null ? "–" : secs(v)) },
        { label: "predicted", stroke: "#ff7f0e", fill: "#ff7f0ecc", paths: uPlot.paths.bars({ size: [0.35, 40], align: 1 }), points: { show: false }, value: (u, v) => (v == null ? "–" : secs(v)) }],
    }, [xs, modelled.map((r) => r.stats[key]), modelled.map((r) => r.predicted[key])]);
  }
}
document.body.dataset.state = "done";
`;
