#!/usr/bin/env node
// Measures the shared traces for the workload models' constants
// (CONTENT_MODELS and IMAGE_PROFILES in src/guest/workloads.ts):
//   - image: share of zero pages; share of non-zero pages equal (SHA-1) to an
//     earlier page; deciles of the raw-deflate size (zlib level 1) of every
//     third non-zero page, as a fraction of the page;
//   - writes: every dirty page of every epoch through ContentStats (zeroed,
//     whole, partial bytes / words / runs; mean changed bytes).
//
//   node scripts/calibrate-workloads.js [TRACE.ptrace.gz ...]   (after `npm run build`)

import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { deflateRawSync } from "node:zlib";
import { ContentStats, TraceReader, applyEpoch } from "../dist/index.js";

const shared = fileURLToPath(new URL("../../shared/traces/", import.meta.url));
const paths = process.argv.slice(2);
if (!paths.length) for (const name of ["redis", "node-gc", "memstream"]) paths.push(`${shared}${name}.ptrace.gz`);

const round = (x, digits = 4) => Number(x.toFixed(digits));

for (const path of paths) {
  const reader = await TraceReader.open(path);
  const { pageSize, pageCount } = reader.header;
  const image = reader.image;
  let zero = 0;
  let nonZero = 0;
  let duplicates = 0;
  const seen = new Set();
  const sizes = [];
  for (let p = 0; p < pageCount; p++) {
    const page = image.subarray(p * pageSize, (p + 1) * pageSize);
    if (page.every((x) => x === 0)) {
      zero++;
      continue;
    }
    nonZero++;
    const digest = createHash("sha1").update(page).digest("hex");
    if (seen.has(digest)) duplicates++;
    else seen.add(digest);
    if (p % 3 === 0) sizes.push(deflateRawSync(page, { level: 1 }).length / pageSize);
  }
  sizes.sort((a, b) => a - b);
  const deciles = Array.from({ length: 11 }, (_, i) => round(sizes[Math.round((i / 10) * (sizes.length - 1))] ?? 0, 3));
  const stats = new ContentStats();
  for await (const epoch of reader.epochs()) {
    epoch.pages.forEach((p, k) => stats.add(image.subarray(p * pageSize, (p + 1) * pageSize), epoch.deltas.subarray(k * pageSize, (k + 1) * pageSize)));
    applyEpoch(image, pageSize, epoch);
  }
  const model = stats.model();
  console.log(
    JSON.stringify({
      trace: path.split("/").pop(),
      image: { zeroShare: round(zero / pageCount), duplicateShare: round(duplicates / (nonZero || 1)), deflateDeciles: deciles },
      content: {
        zeroed: round(model.zeroed),
        whole: round(model.whole),
        partialBytes: round(model.partialBytes, 1),
        partialWords: round(model.partialWords, 2),
        partialRuns: round(model.partialRuns, 2),
      },
      dirtyPages: stats.dirtyPages,
      meanChangedBytes: round(stats.meanChangedBytes, 1),
    }),
  );
}
