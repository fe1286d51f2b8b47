// pagemill send: the source end of a real migration to `pagemill receive`
// in another process, over TCP, on the real clock.

import { isAbsolute, resolve } from "node:path";
import { STRATEGY_NAMES } from "../engine/migrate.js";
import type { StrategyName } from "../engine/metrics.js";
import { sendMigration } from "../engine/remote.js";
import { withoutPriorityLane } from "../net/channel.js";
import { connectChannel, DEFAULT_RECOVER_TIMEOUT, DEFAULT_TIMEOUT, type TcpChannel } from "../net/tcp.js";
import { ThreadedWorkload } from "../guest/threaded.js";
import { pipelineEntries } from "../wire/pipeline.js";
import { UsageError, addressOption, durationOption, intOption, keyFileOption, noPositionals, parse, positiveDurationOption, rateOption, sizeOption } from "./args.js";
import { WORKLOAD_ARGS, WORKLOAD_OPTIONS, printDetail, workloadFactory } from "./migrate.js";
import { DISK_ARGS, DISK_PROGRAM_OPTIONS, DISK_USAGE, diskSetup } from "./disk.js";

export const summary = "Migrates a running guest (trace or model) to `pagemill receive` in another process over TCP.";
export const usage = `usage: pagemill send --to HOST:PORT [--key-file FILE] [--trace FILE | --workload MODEL ...]
         [--strategy precopy|postcopy|hybrid] [--bandwidth CAP] [--codec raw] [--downtime-limit 300ms]
         [--rounds N] [--state SIZE] [--batch N] [--timeout 10s] [--recover-timeout 60s]
         [--no-priority-lane] [--encrypt] [--json]
  The guest runs here, in a thread of its own on the real clock, until the switch-over. --bandwidth
  caps the sending rate (default: as fast as the connection takes). A connection cut after the
  switch-over is dialled again for up to --recover-timeout; one cut before it fails the migration,
  the guest intact here.
  Post-copy sends a page the destination asks for at once, ahead of the push (the priority lane);
  --no-priority-lane serves requests between push frames instead. --encrypt (needs --key-file)
  encrypts the pages on the wire, not only authenticates them; either end may ask.
  MODEL options as for pagemill migrate. A disk goes with the memory as in pagemill migrate (its
  program runs here in the main thread, beside the guest's):
${DISK_USAGE}`;

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    to: { type: "string" },
    "key-file": { type: "string" },
    timeout: { type: "string" },
    "recover-timeout": { type: "string" },
    ...WORKLOAD_ARGS,
    ...DISK_ARGS,
    strategy: { type: "string" },
    bandwidth: { type: "string" },
    codec: { type: "string" },
    "downtime-limit": { type: "string" },
    rounds: { type: "string" },
    state: { type: "string" },
    batch: { type: "string" },
    "no-priority-lane": { type: "boolean" },
    encrypt: { type: "boolean" },
    json: { type: "boolean" },
  });
  noPositionals(positionals);
  const { host, port } = addressOption("--to", values.to);
  if (port === 0) throw new UsageError("--to needs the receiver's port, not 0");
  const strategy = (typeof values.strategy === "string" ? values.strategy : "precopy") as StrategyName;
  if (!STRATEGY_NAMES.includes(strategy)) throw new UsageError(`--strategy must be one of ${STRATEGY_NAMES.join(", ")}, got '${String(values.strategy)}'`);
  const codec = typeof values.codec === "string" ? values.codec : "raw";
  try {
    pipelineEntries(codec);
  } catch (err) {
    throw new UsageError(`--codec: ${(err as Error).message}`);
  }
  const cap = values.bandwidth === undefined ? undefined : rateOption("bandwidth", values.bandwidth, 0);
  const { timeout, recoverTimeout } = waitOptions(values);
  // The receiver starts the same program for post-copy: a trace by its absolute path, a model by its options.
  const program: Record<string, string> = {};
  for (const name of [...WORKLOAD_OPTIONS, ...DISK_PROGRAM_OPTIONS]) if (typeof values[name] === "string") program[name] = values[name] as string;
  for (const name of ["trace", "disk"]) if (program[name] !== undefined && !isAbsolute(program[name])) program[name] = resolve(program[name]);
  const factory = workloadFactory(values);
  const diskSpec = await diskSetup(values);
  const options = {
    codec,
    downtimeLimit: durationOption("downtime-limit", values["downtime-limit"], 0.3),
    precopyRounds: intOption("rounds", values.rounds, 1, 1, 1e6),
    stateBytes: sizeOption("state", values.state, 256 * 1024),
    batchPages: intOption("batch", values.batch, 256, 1, 16384),
    program,
    ...(diskSpec && (await diskSpec.options())),
  };
  const key = await keyFileOption(values["key-file"]);
  if (values.encrypt && key === undefined) throw new UsageError("--encrypt needs --key-file: the record keys come from the shared key");
  // Checked here (a bad trace fails before anything starts), then run in a thread of its own on the real clock.
  await factory.open().then(async (w) => {
    await w.close();
    w.guest.dispose();
  });
  const spec = { module: new URL("./migrate.js", import.meta.url).href, name: "openWorkload", args: [program] };
  const workload = await ThreadedWorkload.start(spec);
  const disk = await diskSpec?.open();
  try {
    const channel = await connectChannel(host, port, { key, bitsPerSecond: cap, timeout, recoverTimeout, encrypt: values.encrypt === true });
    const cpu = process.cpuUsage();
    let stats;
    try {
      stats = await sendMigration(strategy, workload, values["no-priority-lane"] ? withoutPriorityLane(channel) : channel, { ...options, disk });
      // The receiver hears that its report arrived before this process goes.
      await channel.finished;
    } catch (err) {
      channel.destroy();
      // The guest carries on here.
      workload.resume();
      throw err;
    }
    if (values.json) console.log(JSON.stringify({ ...stats, verified: true, cpuSeconds: cpuSeconds(process.cpuUsage(cpu)), recoveries: recoveryTimes(channel), timeUnit: "s" }, null, 2));
    else {
      console.log(`${factory.describe}${diskSpec ? ` with ${diskSpec.describe}` : ""} → ${host}:${port}, ${strategy}, codec ${codec}${cap ? `, capped at ${(cap / 1e6).toFixed(1)} Mbit/s` : ""}\n`);
      printDetail(stats);
      printRecoveries(channel);
    }
    return 0;
  } finally {
    await workload.close();
    if (disk) {
      await disk.close();
      disk.guest.dispose();
    }
  }
}

/** --timeout and --recover-timeout, checked (both ends take them). */
export function waitOptions(values: Record<string, unknown>): { timeout: number; recoverTimeout: number } {
  const timeout = positiveDurationOption("timeout", values.timeout as string | undefined, DEFAULT_TIMEOUT);
  const recoverTimeout = positiveDurationOption("recover-timeout", values["recover-timeout"] as string | undefined, DEFAULT_RECOVER_TIMEOUT);
  return { timeout, recoverTimeout };
}

/**
 * CPU seconds this process spent (user and system, every thread: the guest's
 * or the program's too) over `usage`, a process.cpuUsage() difference. On a
 * shared machine a process's CPU per byte says more than its wall time.
 */
export function cpuSeconds(usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1e6;
}

/** Each resumption after a cut: seconds from the cut to the new connection, and from it to the first record. */
export function recoveryTimes(channel: TcpChannel): { reconnect: number; resume: number | null; cause: string }[] {
  return channel.recoveries.map((r) => ({
    reconnect: (r.reconnectedAt - r.cutAt) / 1000,
    resume: r.resumedAt === undefined ? null : (r.resumedAt - r.reconnectedAt) / 1000,
    cause: r.cause,
  }));
}

export function printRecoveries(channel: TcpChannel): void {
  for (const r of recoveryTimes(channel)) {
    const resume = r.resume === null ? "no record since" : `resumed ${(r.resume * 1000).toFixed(1)} ms later`;
    console.log(`link cut (${r.cause}); reconnected after ${(r.reconnect * 1000).toFixed(1)} ms, ${resume}`);
  }
}
