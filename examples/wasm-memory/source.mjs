// Live-migrates a running WebAssembly program's memory to destination.mjs.
//   node examples/wasm-memory/destination.mjs 7010 &
//   node examples/wasm-memory/source.mjs 127.0.0.1:7010
import { connectChannel, sendMemory } from "pagemill";
import { compile, newMemory, reach, start, steps } from "./program.mjs";

const [host, port] = (process.argv[2] ?? "127.0.0.1:7010").split(":");
const memory = newMemory(64 * 2 ** 20, 512 * 1024);
const program = start(compile(), memory);
await reach(memory, 200_000);
console.log(`program running: ${steps(memory)} steps so far`);

const channel = await connectChannel(host, Number(port));
const stats = await sendMemory(memory, channel, { pause: program.pause, resume: program.resume, codec: "lz4" });
console.log(`migrated ${stats.total / 2 ** 20} MiB in ${stats.totalTime.toFixed(3)} s, downtime ${(stats.downtime * 1000).toFixed(1)} ms, ${stats.dirtySyncCount} rounds, ${stats.scans} scans found ${stats.changedPages} changed pages`);
console.log(`paused at step ${steps(memory)}`);
await program.stop();
