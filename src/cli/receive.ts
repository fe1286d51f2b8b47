// pagemill receive: the destination end of a real migration from
// `pagemill send`: listens, receives one migration, verifies it, and writes
// the memory only when every page is verified.

import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { downtimeOf, receiveMigration, type MigrationInfo } from "../engine/remote.js";
import { listenChannel } from "../net/tcp.js";
import { writeAtomically } from "../files.js";
import { UsageError, addressOption, formatBytes, keyFileOption, noPositionals, parse, pathOption, type OptionValue } from "./args.js";
import { WORKLOAD_OPTIONS, workloadFactory } from "./migrate.js";
import { DISK_PROGRAM_OPTIONS, diskSetup } from "./disk.js";
import type { Workload } from "../guest/guest.js";
import type { WorkloadSpec } from "../guest/threaded.js";
import { cpuSeconds, printRecoveries, recoveryTimes, waitOptions } from "./send.js";

export const summary = "Receives one live migration from `pagemill send` over TCP, verifies it, and writes the memory.";
export const usage = `usage: pagemill receive --listen HOST:PORT [--key-file FILE] [-o DIR] [--timeout 10s]
         [--recover-timeout 60s] [--encrypt] [--prealloc] [--json]
  Waits for one source (without --key-file: loopback addresses only), runs the program here after a
  post-copy switch-over, and writes DIR/memory.bin (and DIR/disk.bin when a disk came with it) once
  every page and block is verified (exit 0; 1 otherwise).
  After the switch-over a cut connection waits up to --recover-timeout for the source to come back.
  --encrypt (needs --key-file) has the pages encrypted on the wire whatever the source asks.
  --prealloc maps and touches memory for the whole guest before answering the source (for at most
  half of --timeout), so pages do not fault as they arrive (QEMU's -mem-prealloc): the migration
  starts later and runs faster; the time it took is printed.
  Port 0 picks a free port and prints it.`;

/** The options of the program the source names, as the migrate command takes them. */
function programOptions(program: unknown, info: MigrationInfo): Record<string, OptionValue> {
  if (typeof program !== "object" || program === null) throw new UsageError(`the source runs ${info.strategy} but names no program to run here`);
  const values: Record<string, OptionValue> = {};
  for (const name of [...WORKLOAD_OPTIONS, ...DISK_PROGRAM_OPTIONS]) {
    const value = (program as Record<string, unknown>)[name];
    if (typeof value === "string") values[name] = value;
  }
  return values;
}

/** The program the source names, started here as the migrate command would start it. */
function startProgram(program: unknown, info: MigrationInfo): Promise<Workload> {
  return workloadFactory(programOptions(program, info)).open();
}

/** The program the source names, opened in a thread of its own (demand paging). */
function programThread(program: unknown, info: MigrationInfo): WorkloadSpec {
  return { module: new URL("./migrate.js", import.meta.url).href, name: "openWorkload", args: [programOptions(program, info)] };
}

/** The program's disk, likewise. */
async function startDisk(program: unknown, info: MigrationInfo): Promise<Workload> {
  const disk = await diskSetup(programOptions(program, info));
  if (!disk) throw new UsageError(`the source migrates a disk with ${info.strategy} but names no disk to run here`);
  return disk.open();
}

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    listen: { type: "string" },
    "key-file": { type: "string" },
    timeout: { type: "string" },
    "recover-timeout": { type: "string" },
    encrypt: { type: "boolean" },
    prealloc: { type: "boolean" },
    output: { type: "string", short: "o" },
    json: { type: "boolean" },
  });
  noPositionals(positionals);
  const { host, port } = addressOption("--listen", values.listen);
  const out = values.output === undefined ? undefined : pathOption("-o DIR", values.output, undefined, "a directory");
  const { timeout, recoverTimeout } = waitOptions(values);
  const key = await keyFileOption(values["key-file"]);
  if (values.encrypt && key === undefined) throw new UsageError("--encrypt needs --key-file: the record keys come from the shared key");
  let listener;
  try {
    listener = await listenChannel(host, port, { key, timeout, recoverTimeout, encrypt: values.encrypt === true });
  } catch (err) {
    if (err instanceof RangeError) throw new UsageError(`--listen: ${err.message}`);
    throw err;
  }
  // Scripts read the port from here when they asked for port 0.
  console.error(`listening on ${host}:${listener.port}`);
  let result;
  let channel;
  let cpu: NodeJS.CpuUsage | undefined;
  try {
    channel = await listener.accept();
    cpu = process.cpuUsage();
    // Listening on, for this source only: it dials here again after a cut.
    listener.refuseNew();
    try {
      result = await receiveMigration(channel, { startProgram, startDisk, programThread, ...(values.prealloc && { prealloc: timeout / 2 }) });
      cpu = process.cpuUsage(cpu);
      // Verified; the source may still need the report again after a cut.
      await channel.finished.catch(() => {});
    } catch (err) {
      channel.destroy();
      throw err;
    }
  } finally {
    listener.close();
  }
  const { info, report, pages, disk, prealloc } = result;
  if (out !== undefined) {
    await mkdir(out, { recursive: true });
    await writeAtomically(join(out, "memory.bin"), (temporary) => writeFile(temporary, result.memory));
    if (disk) await writeAtomically(join(out, "disk.bin"), (temporary) => writeFile(temporary, disk));
  }
  if (values.json) {
    const fields = { strategy: info.strategy, pageSize: info.pageSize, pageCount: info.pageCount, cpuSeconds: cpuSeconds(cpu!), recoveries: recoveryTimes(channel), ...(prealloc && { prealloc }) };
    console.log(JSON.stringify({ ...report, ...fields }, null, 2));
  }
  else {
    const downtime = downtimeOf(report);
    const uptime = report.completeWallTime - report.resumeWallTime;
    console.log(`received ${info.strategy}: ${report.pages} pages of ${info.pageSize} B verified (${formatBytes(pages.byteLength)})`);
    if (info.disk) console.log(`disk: ${info.disk.blockCount} blocks of ${info.disk.blockSize} B verified, misses ${report.diskCounters?.blockMisses ?? 0}, prefetched ${report.diskCounters?.prefetchedBlocks ?? 0}`);
    console.log(`downtime ${(downtime * 1000).toFixed(1)} ms (and ${(report.replayWait * 1000).toFixed(1)} ms replaying the program to the stop), remote uptime ${(uptime * 1000).toFixed(1)} ms, faults ${report.counters.faults}, requests ${report.counters.postcopyRequests}`);
    if (prealloc) console.log(`memory mapped before the migration: ${formatBytes(prealloc.bytes)} in ${(prealloc.seconds * 1000).toFixed(0)} ms`);
    printRecoveries(channel);
    if (out !== undefined) console.log(`memory written to ${join(out, "memory.bin")}${disk ? `, disk to ${join(out, "disk.bin")}` : ""}`);
  }
  return 0;
}
