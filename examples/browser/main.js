// The page's logic: read the file, gunzip it when it is gzip, and survey it
// with pagemill's kernels (surveyImage: the same counting `pagemill scan`
// does). `?image=URL` surveys a file from the server instead of a picked one.

import { init, surveyImage } from "pagemill/browser";

const CODECS = ["lz4", "wkdm", "mecom"];
const status = document.getElementById("status");
const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(2)} MiB`;

async function imageBytes(blob) {
  const head = new Uint8Array(await blob.slice(0, 2).arrayBuffer());
  const stream = head[0] === 0x1f && head[1] === 0x8b ? blob.stream().pipeThrough(new DecompressionStream("gzip")) : blob.stream();
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function show(name, image, report) {
  document.getElementById("pages-total").textContent = report.pages;
  document.getElementById("pages-zero").textContent = `${report.zeroPages} (${((100 * report.zeroPages) / report.pages).toFixed(1)}%)`;
  document.getElementById("pages-duplicate").textContent = report.duplicatePages;
  document.getElementById("pages-bytes").textContent = mib(image.byteLength);
  const rows = document.querySelector("#codecs tbody");
  rows.replaceChildren();
  for (const c of report.codecs) {
    const input = c.pages * report.pageSize;
    const row = rows.insertRow();
    row.dataset.codec = c.codec;
    for (const text of [c.codec.toUpperCase(), c.pages, c.bytes, input ? `${((100 * c.bytes) / input).toFixed(1)}%` : "–", `${(1000 * c.seconds).toFixed(1)} ms`, c.seconds > 0 ? `${(input / 1e6 / c.seconds).toFixed(0)} MB/s` : "–"]) {
      row.insertCell().textContent = text;
    }
  }
  document.getElementById("pages").hidden = false;
  document.getElementById("codecs").hidden = false;
  status.textContent = `${name}: ${report.pages} pages of ${report.pageSize} B`;
}

async function survey(name, blob) {
  status.className = "";
  status.textContent = `Reading ${name}…`;
  document.body.dataset.state = "running";
  try {
    const image = await imageBytes(blob);
    const report = surveyImage(image, CODECS);
    show(name, image, report);
    window.pagemillSurvey = report;
    document.body.dataset.state = "done";
  } catch (err) {
    status.className = "error";
    status.textContent = `${name}: ${err instanceof Error ? err.message : String(err)}`;
    document.body.dataset.state = "error";
  }
}

try {
  await init();
  status.textContent = "Ready: pick a file.";
  document.body.dataset.state = "ready";
  document.getElementById("file").addEventListener("change", (event) => {
    const file = event.target.files?.[0];
    if (file) void survey(file.name, file);
  });
  const url = new URLSearchParams(location.search).get("image");
  if (url) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`cannot fetch ${url}: HTTP ${response.status}`);
    await survey(url, await response.blob());
  }
} catch (err) {
  status.className = "error";
  status.textContent = err instanceof Error ? err.message : String(err);
  document.body.dataset.state = "error";
}
