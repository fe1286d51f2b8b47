// Receives the program's memory from source.mjs and runs the program on.
import { listenChannel, receiveMemory } from "pagemill";
import { compile, reach, start, steps } from "./program.mjs";

const listener = await listenChannel("127.0.0.1", Number(process.argv[2] ?? 7010));
console.error(`listening on 127.0.0.1:${listener.port}`);
const channel = await listener.accept();
listener.refuseNew();
const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
await receiveMemory(channel, { into: memory });
await channel.finished;
listener.close();
const resumedAt = steps(memory);
console.log(`resumed at step ${resumedAt}`);
const program = start(compile(), memory);
await reach(memory, resumedAt + 100_000);
await program.stop();
console.log(`ran on here to step ${steps(memory)}`);
