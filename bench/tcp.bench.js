// Migration between two processes over loopback TCP, uncapped: `pagemill
// receive` and `pagemill send` as separate processes, pre-copy of an idle
// synthetic guest (the redis image profile: 45% zero pages), raw and MECOM.
// Wire MB/s is bytes on the wire over the source's total time; guest MB/s is
// guest memory over the same time. Medians of PAGEMILL_TCP_RUNS (3) runs.
//
// Target (issue 17): raw >= 500 MB/s on the wire between two processes here.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { check, save } from "./lib.js";

const BIN = fileURLToPath(new URL("../dist/cli/bin.js", import.meta.url));
const PAGES = Number(process.env.PAGEMILL_TCP_PAGES ?? 65536);
const RUNS = Number(process.env.PAGEMILL_TCP_RUNS ?? 3);
const dir = mkdtempSync(join(tmpdir(), "pagemill-tcp-bench-"));
const key = join(dir, "key");
writeFileSync(key, new Uint8Array(32).fill(9));

function run(args, onStderr) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args]);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => {
      stderr += d;
      onStderr?.(stderr);
    });
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

async function once(codec) {
  let ready;
  const port = new Promise((resolve) => (ready = resolve));
  const receiver = run(["receive", "--listen", "127.0.0.1:0", "--key-file", key], (text) => {
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(text);
    if (m) ready(Number(m[1]));
  });
  const sent = await run(["send", "--to", `127.0.0.1:${await port}`, "--key-file", key, "--workload", "idle", "--pages", String(PAGES), "--codec", codec, "--json"]);
  const received = await receiver;
  check(sent.code === 0 && received.code === 0, `send/receive ${codec} exited ${sent.code}/${received.code}: ${sent.stderr}${received.stderr}`);
  const s = JSON.parse(sent.stdout);
  check(s.verifiedPages === PAGES, `${codec}: verified ${s.verifiedPages} of ${PAGES}`);
  return { wire: s.transferred / s.totalTime / 1e6, guest: s.total / s.totalTime / 1e6, seconds: s.totalTime };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const results = {};
console.log(`pre-copy of an idle ${PAGES}-page guest between two processes over loopback TCP, uncapped (${RUNS} runs, median)`);
try {
  for (const codec of ["raw", "mecom"]) {
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await once(codec));
    const r = { wireMBps: median(runs.map((x) => x.wire)), guestMBps: median(runs.map((x) => x.guest)), seconds: median(runs.map((x) => x.seconds)) };
    results[codec] = r;
    const target = codec === "raw" ? ` (target >= 500: ${r.wireMBps >= 500 ? "met" : "not met"})` : "";
    console.log(`  ${codec.padEnd(6)} wire ${r.wireMBps.toFixed(0).padStart(5)} MB/s${target}, guest ${r.guestMBps.toFixed(0)} MB/s, total ${r.seconds.toFixed(3)} s`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
save("tcp", results);
