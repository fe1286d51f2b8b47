// pagemill record: a running process's memory (or a file) as a pagetrace.

import { MIN_INTERVAL_MICROS } from "../guest/pagetrace.js";
import { WARM_SECONDS, recordFile, recordProcess, type PassInfo, type RecordOptions } from "../guest/recorder.js";
import { UsageError, durationOption, formatBytes, intOption, pageSizeOption, noPositionals, parse, pathOption } from "./args.js";

export const summary = "Records a process's writable memory (or a file) every interval as a pagetrace (Linux).";
export const usage = `usage: pagemill record (--pid PID | --file PATH) [--interval 200ms] [--duration 10s] -o OUT.ptrace.gz [--page-size 4096] [--level 6] [--spool DIR]
         [--include-file-mappings] [--mapping NAME] [--sweep K]

  Records the process's private writable memory and its shared memory (anonymous, SysV, memfd,
  /dev/shm); shared mappings of files on disk only with --include-file-mappings. The trace's
  meta lists every region with its kind.
  --mapping    only the mappings whose /proc/PID/maps name contains NAME: a VM's guest RAM alone,
               e.g. 'memfd:memory-backend-memfd' for QEMU's guest RAM as -object memory-backend-memfd,share=on
  --interval   time between two snapshots (epochs), ${MIN_INTERVAL_MICROS / 1000}ms at least: trace readers refuse shorter ones
  --sweep      each snapshot after the image reads a K-th of the pages in turn, and every page that changed in the
               last ${WARM_SECONDS} s (1, every page, by default): a snapshot costs about that fraction of a full one, so the
               interval can be that much shorter; a page that changes after ${WARM_SECONDS} s unchanged is seen within K snapshots`;

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    pid: { type: "string" },
    file: { type: "string" },
    interval: { type: "string" },
    duration: { type: "string" },
    out: { type: "string", short: "o" },
    "page-size": { type: "string" },
    level: { type: "string" },
    spool: { type: "string" },
    "include-file-mappings": { type: "boolean" },
    mapping: { type: "string" },
    sweep: { type: "string" },
  });
  noPositionals(positionals);
  if ((values.pid === undefined) === (values.file === undefined)) throw new UsageError("give either --pid PID or --file PATH");
  const out = pathOption("-o OUT.ptrace.gz", values.out);
  const interval = durationOption("interval", values.interval, 0.2);
  const duration = durationOption("duration", values.duration, 10);
  if (Math.round(interval * 1e6) < MIN_INTERVAL_MICROS) {
    throw new UsageError(`--interval must be at least ${MIN_INTERVAL_MICROS / 1000}ms (the shortest interval a trace may have), got '${values.interval}'`);
  }
  const pageSize = pageSizeOption(values["page-size"]);
  const level = intOption("level", values.level, 6, 1, 9);
  const sweep = intOption("sweep", values.sweep, 1, 1, 2 ** 20);
  const epochs = Math.floor(duration / interval + 1e-9);
  const onPass = (info: PassInfo): void => {
    const what = info.epoch === 0 ? "image" : `epoch ${info.epoch}/${epochs}: ${info.dirty} dirty pages`;
    process.stderr.write(`\rrecord: ${what}, pass ${(info.seconds * 1000).toFixed(0)} ms\x1b[K`);
  };
  const spoolDir = values.spool === undefined ? undefined : pathOption("--spool DIR", values.spool, undefined, "a directory");
  const includeFileMappings = values["include-file-mappings"] === true;
  if (includeFileMappings && values.pid === undefined) throw new UsageError("--include-file-mappings is for --pid (a process's shared file mappings)");
  const mapping = values.mapping as string | undefined;
  if (mapping !== undefined && values.pid === undefined) throw new UsageError("--mapping is for --pid (one of a process's mappings)");
  if (mapping === "") throw new UsageError("--mapping needs part of a mapping's name, got an empty string");
  const options: RecordOptions = { interval, duration, out, pageSize, level, sweep, spoolDir, includeFileMappings, mapping, onPass: process.stderr.isTTY ? onPass : undefined };
  const result =
    values.pid !== undefined
      ? await recordProcess(intOption("pid", values.pid, 0, 1, 2 ** 22), options)
      : await recordFile(values.file as string, options);
  if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
  if (result.endedEarly) console.error(`pagemill record: ${result.endedEarly}`);
  console.log(
    `${result.out}: ${result.pages} pages (${formatBytes(result.pages * pageSize)}), ${result.epochs} epochs, ${formatBytes(result.bytes)}; ` +
      `${result.pagesHashed} pages hashed in ${result.busySeconds.toFixed(2)} s busy` +
      (result.unreadablePages ? `, ${result.unreadablePages} unreadable page reads (as zero)` : ""),
  );
  return 0;
}
