// pagemill scan FILE: how many pages of a memory dump or disk image are zero.

import { ImageSurvey } from "../codecs/survey.js";
import { fileProgress, formatBytes, onePositional, pageSizeOption, parse } from "./args.js";
import { openPageFile } from "./pagefile.js";

export const summary = "Counts the zero and duplicate pages of a memory dump or disk image (plain or gzip), and what dedup would save.";
export const usage = "usage: pagemill scan FILE [--page-size N] [--json]";

export interface ScanReport {
  file: string;
  pageSize: number;
  pages: number;
  zeroPages: number;
  zeroShare: number;
  /** non-zero pages whose content an earlier page already had (by XXH3-64) */
  duplicatePages: number;
  /** bytes deduplication would not send: duplicatePages × pageSize */
  dedupSavedBytes: number;
  bytes: number;
  paddedBytes: number;
  seconds: number;
}

export async function scanFile(path: string, pageSize: number, onProgress?: (readBytes: number) => void): Promise<ScanReport> {
  const file = await openPageFile(path, pageSize);
  const survey = new ImageSurvey(pageSize);
  const started = performance.now();
  try {
    for await (const chunk of file.chunks()) {
      survey.add(chunk.pages);
      onProgress?.(file.readBytes());
    }
  } finally {
    survey.dispose();
  }
  const { pages, zeroPages, duplicatePages } = survey.report();
  return {
    file: path,
    pageSize,
    pages,
    zeroPages,
    zeroShare: pages ? zeroPages / pages : 0,
    duplicatePages,
    dedupSavedBytes: duplicatePages * pageSize,
    bytes: pages * pageSize - file.padding,
    paddedBytes: file.padding,
    seconds: (performance.now() - started) / 1000,
  };
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    "page-size": { type: "string" },
    json: { type: "boolean" },
  });
  const path = onePositional(positionals, "FILE");
  const pageSize = pageSizeOption(values["page-size"]);
  const progress = await fileProgress("scan", path);
  const report = await scanFile(path, pageSize, (n) => progress.update(n));
  progress.done();
  if (values.json) {
    console.log(JSON.stringify(report, null, 2));
    return 0;
  }
  console.log(`${report.file}: ${report.pages} pages of ${report.pageSize} B (${formatBytes(report.bytes)})`);
  console.log(`  zero pages   ${report.zeroPages} (${(100 * report.zeroShare).toFixed(1)}%)`);
  console.log(`  duplicates   ${report.duplicatePages} non-zero pages repeat earlier content; dedup would save ${formatBytes(report.dedupSavedBytes)}`);
  if (report.paddedBytes) console.log(`  last page    short by ${report.paddedBytes} B, read as zero-padded`);
  const mbs = report.bytes / 2 ** 20 / Math.max(report.seconds, 1e-9);
  console.log(`  scanned in   ${report.seconds.toFixed(3)} s (${mbs.toFixed(0)} MiB/s)`);
  return 0;
}
