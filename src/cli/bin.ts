#!/usr/bin/env node
import { setFlagsFromString } from "node:v8";

// The two ends of a real migration compile every function as their modules load (V8's --no-lazy), and
// every WebAssembly kernel as the module is instantiated, not each at its first call: the switch-over's
// code (the stop, the last dirty-log sync, the record, its decoding, the page states, the resume) first
// runs inside the downtime, and compiling it there took about a millisecond of a post-copy's 23 ms at the
// two ends. Set before the modules below load; they start 0.1 s later for it. Other commands run lazily.
if (process.argv[2] === "send" || process.argv[2] === "receive") setFlagsFromString("--no-lazy --no-wasm-lazy-compilation");
const { main } = await import("./main.js");

process.exitCode = await main(process.argv.slice(2));
