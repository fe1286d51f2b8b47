import { afterAll, describe, expect, it } from "vitest";
import { spawn, execFileSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtempSync, openSync, writeSync, closeSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { TraceReader, applyEpoch } from "../src/guest/pagetrace.js";
import { RecordError, recordFile, recordProcess, writableMappings } from "../src/guest/recorder.js";
import { run } from "../src/cli/record.js";
import { UsageError } from "../src/cli/args.js";
import { SHARED } from "./helpers/traces.js";

const dir = mkdtempSync(join(tmpdir(), "pagemill-record-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const PAGES = 64;

// The target: maps 64 private anonymous pages, prints their address, then
// writes what it is told on stdin and answers "ok":
//   p N...  flips byte 100 of pages N...      (a partial write)
//   f N V   fills page N with byte V           (a whole-page write)
//   z N     zeroes page N
//   x       exits
const TARGET = `
import ctypes, mmap, sys
m = mmap.mmap(-1, ${PAGES} * 4096, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(${PAGES}):
    m[i * 4096] = 1
print(hex(ctypes.addressof(ctypes.c_char.from_buffer(m))), flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "x":
        sys.exit(0)
    if cmd == "p":
        for n in args:
            m[int(n) * 4096 + 100] ^= 0xFF
    elif cmd == "f":
        m[int(args[0]) * 4096:(int(args[0]) + 1) * 4096] = bytes([int(args[1])]) * 4096
    elif cmd == "z":
        m[int(args[0]) * 4096:(int(args[0]) + 1) * 4096] = bytes(4096)
    print("ok", flush=True)
`;

interface Target {
  child: ChildProcessWithoutNullStreams;
  address: bigint;
  send(command: string): Promise<void>;
}

/** A python3 child running `script`, and the next line of its stdout each time `line` is called. */
function python(script: string): { child: ChildProcessWithoutNullStreams; line: () => Promise<string> } {
  const child = spawn("python3", ["-c", script]);
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return { child, line: async () => (await lines.next()).value as string };
}

async function startTarget(): Promise<Target> {
  const { child, line } = python(TARGET);
  const address = BigInt(await line());
  return {
    child,
    address,
    async send(command) {
      child.stdin.write(`${command}\n`);
      if (command === "x") return;
      expect(await line()).toBe("ok");
    },
  };
}

/** Index in the trace of the target's page 0, from the regions in meta. */
function firstTracePage(regions: { start: string; pages: number }[], address: bigint): number {
  let index = 0;
  for (const r of regions) {
    const start = BigInt(r.start);
    if (address >= start && address < start + BigInt(r.pages * 4096)) return index + Number((address - start) / 4096n);
    index += r.pages;
  }
  throw new Error(`address ${address.toString(16)} is in no recorded region`);
}

describe("pagemill record", () => {
  it("records a child process: exactly the pages it wrote, in the epochs it wrote them", async () => {
    const target = await startTarget();
    const out = join(dir, "child.ptrace.gz");
    // Commands sent after pass e (0 = the image), before pass e + 1 reads.
    const plan: Record<number, string[]> = { 0: ["p 3 7"], 2: ["f 20 66"], 3: ["p 3", "z 5"], 5: ["p 63"] };
    const expected = [[3, 7], [], [20], [3, 5], [], [63]];
    try {
      const result = await recordProcess(target.child.pid!, {
        interval: 0.1,
        duration: 0.6,
        out,
        onPass: async ({ epoch }) => {
          for (const command of plan[epoch] ?? []) await target.send(command);
        },
      });
      expect(result).toMatchObject({ epochs: 6, endedEarly: undefined });
      expect(result.pagesHashed).toBe(7 * result.pages);
    } finally {
      target.child.kill();
    }
    execFileSync("python3", [`${SHARED}tools/check-pagetrace`, out]);
    const reader = await TraceReader.open(out);
    const { regions } = reader.header.meta;
    expect(reader.header).toMatchObject({ pageSize: 4096, epochCount: 6, intervalMicros: 100_000 });
    const base = firstTracePage(regions!, target.address);
    const image = reader.image;
    for (let p = 0; p < PAGES; p++) expect(image[(base + p) * 4096]).toBe(1);
    let e = 0;
    let lastElapsed = 0;
    for await (const epoch of reader.epochs()) {
      const mine = Array.from(epoch.pages).filter((p) => p >= base && p < base + PAGES);
      expect(mine.map((p) => p - base), `epoch ${e + 1}`).toEqual(expected[e]);
      // Passes start on a fixed grid (one late pass does not shift the next).
      expect(epoch.elapsedMicros).toBeGreaterThanOrEqual((e + 1) * 100_000 - 2000);
      expect(epoch.elapsedMicros).toBeGreaterThanOrEqual(lastElapsed);
      lastElapsed = epoch.elapsedMicros;
      for (const p of mine) {
        const k = epoch.pages.indexOf(p);
        const delta = epoch.deltas.subarray(k * 4096, (k + 1) * 4096);
        const changed = delta.reduce((n, x) => n + (x !== 0 ? 1 : 0), 0);
        if (p - base === 20) expect(changed).toBe(4096);
        else if (p - base === 5) expect([changed, delta[0]]).toEqual([1, 1]); // zeroed: only byte 0 was set
        else {
          expect(changed).toBe(1);
          expect(delta[100]).toBe(0xff);
        }
      }
      applyEpoch(image, 4096, epoch);
      e++;
    }
    expect(image[(base + 20) * 4096 + 4000]).toBe(66);
    expect(image.subarray((base + 5) * 4096, (base + 6) * 4096).every((x) => x === 0)).toBe(true);
  });

  it("keeps what it recorded when the process exits, and says so", async () => {
    const target = await startTarget();
    const out = join(dir, "exits.ptrace.gz");
    const exited = new Promise((resolve) => target.child.on("exit", resolve));
    const result = await recordProcess(target.child.pid!, {
      interval: 0.1,
      duration: 2,
      out,
      onPass: async ({ epoch }) => {
        if (epoch === 1) await target.send("p 9");
        if (epoch === 2) {
          await target.send("x");
          await exited;
        }
      },
    });
    expect(result.epochs).toBe(2);
    expect(result.endedEarly).toMatch(/process \d+ exited during epoch 3; kept the image and 2 epochs/);
    const reader = await TraceReader.open(out);
    expect(reader.header.epochCount).toBe(2);
    expect(reader.header.meta.recorder).toMatchObject({ endedEarly: result.endedEarly });
    const base = firstTracePage(reader.header.meta.regions!, target.address);
    const dirty: number[][] = [];
    for await (const epoch of reader.epochs()) dirty.push(Array.from(epoch.pages).filter((p) => p >= base && p < base + PAGES));
    expect(dirty).toEqual([[], [base + 9]]);
  });

  it("names a missing process, and a file that is not there", async () => {
    // Linux pids stop at 2^22.
    await expect(recordProcess(2 ** 22 + 5, { interval: 0.1, duration: 0.1, out: join(dir, "none.gz") })).rejects.toMatchObject({
      code: "no-process",
      message: `no process ${2 ** 22 + 5}`,
    });
    await expect(recordFile(join(dir, "absent.img"), { interval: 0.1, duration: 0.1, out: join(dir, "none.gz") })).rejects.toThrow(RecordError);
    await expect(recordProcess(0, { interval: 0.1, duration: 0.1, out: join(dir, "none.gz") })).rejects.toThrow(/pid/);
  });

  it("records a file the same way (storage traces)", async () => {
    const disk = join(dir, "disk.img");
    writeFileSync(disk, Buffer.alloc(10 * 4096 + 100, 7));
    const out = join(dir, "disk.ptrace.gz");
    const result = await recordFile(disk, {
      interval: 0.05,
      duration: 0.1,
      out,
      onPass: ({ epoch }) => {
        if (epoch !== 0) return;
        const fd = openSync(disk, "r+");
        writeSync(fd, Buffer.from([1, 2, 3]), 0, 3, 4 * 4096 + 10);
        writeSync(fd, Buffer.from([9]), 0, 1, 10 * 4096 + 50);
        closeSync(fd);
      },
    });
    expect(result).toMatchObject({ pages: 11, epochs: 2 });
    const reader = await TraceReader.open(out);
    expect(reader.image[10 * 4096 + 99]).toBe(7);
    expect(reader.image[10 * 4096 + 100]).toBe(0);
    const dirty: number[][] = [];
    for await (const epoch of reader.epochs()) dirty.push(Array.from(epoch.pages));
    expect(dirty).toEqual([[4, 10], []]);
  });

  it("parses /proc/PID/maps into the writable private mappings", () => {
    const maps = [
      "55d0c0000000-55d0c0002000 rw-p 00000000 00:00 0          [heap]",
      "7f0000000000-7f0000001000 r--p 00000000 08:01 123        /usr/lib/libc.so.6",
      "7f0000001000-7f0000003000 rw-s 00000000 00:01 5          /dev/shm/x",
      "7f0000003000-7f0000004000 rw-p 00002000 08:01 123        /usr/lib/libc.so.6",
      "7ffc00000000-7ffc00004000 rw-p 00000000 00:00 0          [stack]",
      "7ffc00010000-7ffc00012000 r--p 00000000 00:00 0          [vvar]",
      "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]",
    ].join("\n");
    expect(writableMappings(maps, 4096)).toEqual([
      { start: "0x55d0c0000000", pages: 2, perms: "rw-p", name: "[heap]", kind: "private" },
      { start: "0x7f0000001000", pages: 2, perms: "rw-s", name: "/dev/shm/x", kind: "shmem" },
      { start: "0x7f0000003000", pages: 1, perms: "rw-p", name: "/usr/lib/libc.so.6", kind: "private" },
      { start: "0x7ffc00000000", pages: 4, perms: "rw-p", name: "[stack]", kind: "private" },
    ]);
  });

  it("tells shared memory from shared files by the mapping's name; files only when asked", () => {
    const maps = [
      "7f0000000000-7f0000001000 rw-s 00000000 00:01 1  /dev/zero (deleted)",
      "7f0000001000-7f0000002000 rw-s 00000000 00:01 2  /SYSV0052e2c1 (deleted)",
      "7f0000002000-7f0000003000 rw-s 00000000 00:01 3  /memfd:pc.ram (deleted)",
      "7f0000003000-7f0000004000 rw-s 00000000 08:01 4  /var/lib/data.bin",
      "7f0000004000-7f0000005000 rw-s 00000000 00:01 5  [anon_shmem:buffers]",
      "7f0000005000-7f0000006000 r--s 00000000 08:01 6  /usr/share/readonly",
    ].join("\n");
    const kinds = (include: boolean) => writableMappings(maps, 4096, include).map((r) => `${r.start} ${r.kind}`);
    expect(kinds(false)).toEqual(["0x7f0000000000 shared-anonymous", "0x7f0000001000 shared-anonymous", "0x7f0000002000 shmem", "0x7f0000004000 shared-anonymous"]);
    expect(kinds(true)).toContain("0x7f0000003000 file-shared");
    expect(kinds(true)).toHaveLength(5);
  });

  it("records shared anonymous, memfd and private memory of a child exactly; a shared file only with --include-file-mappings", async () => {
    const file = join(dir, "mapped.bin");
    writeFileSync(file, new Uint8Array(8 * 4096));
    // Three mappings of 8 pages (shared anonymous, memfd, private) and a shared file mapping;
    // "w K N V" fills page N of mapping K with byte V.
    const { child, line } = python(`
import ctypes, mmap, os, sys
shared = mmap.mmap(-1, 8 * 4096)
fd = os.memfd_create("pagemill-test")
os.ftruncate(fd, 8 * 4096)
memfd = mmap.mmap(fd, 8 * 4096)
private = mmap.mmap(-1, 8 * 4096, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
f = open(${JSON.stringify(file)}, "r+b")
filemap = mmap.mmap(f.fileno(), 8 * 4096)
maps = [shared, memfd, private, filemap]
for m in maps:
    m[0] = 1
print(" ".join(hex(ctypes.addressof(ctypes.c_char.from_buffer(m))) for m in maps), flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "x":
        sys.exit(0)
    k, n, v = map(int, args)
    maps[k][n * 4096:(n + 1) * 4096] = bytes([v]) * 4096
    print("ok", flush=True)
`);
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += String(d)));
    const addresses = (await line()).split(" ").map((a) => BigInt(a));
    const send = async (command: string) => {
      child.stdin.write(`${command}\n`);
      expect(await line(), stderr).toBe("ok");
    };
    try {
      for (const include of [false, true]) {
        const out = join(dir, `shared-${include}.ptrace.gz`);
        await recordProcess(child.pid!, {
          interval: 0.1,
          duration: 0.2,
          out,
          includeFileMappings: include,
          onPass: async ({ epoch }) => {
            if (epoch === 0) for (const k of [0, 1, 2, 3]) await send(`w ${k} ${k + 1} ${0x40 + k}`);
          },
        });
        const reader = await TraceReader.open(out);
        const regions = reader.header.meta.regions!;
        const image = reader.image;
        for await (const epoch of reader.epochs()) applyEpoch(image, 4096, epoch);
        for (const [k, kind] of ["shared-anonymous", "shmem", "private", "file-shared"].entries()) {
          const region = regions.find((r) => BigInt(r.start) === addresses[k]);
          if (kind === "file-shared" && !include) {
            expect(region, "a shared file mapping is left out by default").toBeUndefined();
            continue;
          }
          expect(region?.kind, `mapping ${k}`).toBe(kind);
          const base = firstTracePage(regions, addresses[k]!);
          const page = image.subarray((base + k + 1) * 4096, (base + k + 2) * 4096);
          expect(page.every((b) => b === 0x40 + k), `${kind}: page ${k + 1} as written`).toBe(true);
          expect(image[base * 4096], `${kind}: page 0`).toBe(1);
        }
      }
    } finally {
      child.stdin.write("x\n");
      child.kill();
    }
  });

  it("records one mapping alone with --mapping (a VM's guest RAM), and names the pid and the pattern when none matches", async () => {
    // A memfd "guest RAM" of 8 pages next to private memory of the same size; "w N V" fills memfd page N with byte V.
    const { child, line } = python(`
import ctypes, mmap, os, sys
fd = os.memfd_create("ram")
os.ftruncate(fd, 8 * 4096)
ram = mmap.mmap(fd, 8 * 4096)
heap = mmap.mmap(-1, 8 * 4096, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
ram[0] = 1
heap[0] = 2
print(hex(ctypes.addressof(ctypes.c_char.from_buffer(ram))), flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "x":
        sys.exit(0)
    n, v = map(int, args)
    ram[n * 4096:(n + 1) * 4096] = bytes([v]) * 4096
    print("ok", flush=True)
`);
    const address = BigInt(await line());
    try {
      const out = join(dir, "mapping.ptrace.gz");
      const result = await recordProcess(child.pid!, {
        interval: 0.1,
        duration: 0.1,
        out,
        mapping: "memfd:ram",
        onPass: async ({ epoch }) => {
          if (epoch !== 0) return;
          child.stdin.write("w 5 77\n");
          expect(await line()).toBe("ok");
        },
      });
      expect(result).toMatchObject({ pages: 8, epochs: 1 });
      const reader = await TraceReader.open(out);
      expect(reader.header.meta.regions).toEqual([{ start: `0x${address.toString(16)}`, pages: 8, perms: "rw-s", name: "/memfd:ram (deleted)", kind: "shmem" }]);
      expect(reader.image[0]).toBe(1);
      const epochs = [];
      for await (const epoch of reader.epochs()) epochs.push(Array.from(epoch.pages));
      expect(epochs).toEqual([[5]]);

      const none = recordProcess(child.pid!, { interval: 0.1, duration: 0.1, out: join(dir, "none.gz"), mapping: "memfd:nothing" });
      await expect(none).rejects.toMatchObject({ code: "no-mapping" });
      await expect(none).rejects.toThrow(new RegExp(`process ${child.pid}.*'memfd:nothing'.*/memfd:ram`));
      await expect(recordProcess(child.pid!, { interval: 0.1, duration: 0.1, out: join(dir, "none.gz"), mapping: "" })).rejects.toThrow(RangeError);
    } finally {
      child.stdin.write("x\n");
      child.kill();
    }
  });

  /** A child whose memfd "ram" of `pages` pages (each first byte 1) is the mapping recorded; `write(n, v)` fills page n with v. */
  async function memfdChild(pages: number) {
    const { child, line } = python(`
import ctypes, mmap, os, sys
fd = os.memfd_create("ram")
os.ftruncate(fd, ${pages} * 4096)
ram = mmap.mmap(fd, ${pages} * 4096)
for i in range(${pages}):
    ram[i * 4096] = 1
print("ready", flush=True)
for line in sys.stdin:
    n, v = map(int, line.split())
    ram[n * 4096:(n + 1) * 4096] = bytes([v]) * 4096
    print("ok", flush=True)
`);
    expect(await line()).toBe("ready");
    return {
      child,
      async write(n: number, v: number) {
        child.stdin.write(`${n} ${v}\n`);
        expect(await line()).toBe("ok");
      },
    };
  }

  it("with a sweep of K, reads a K-th of the pages in turn and every page that changed lately, each pass", async () => {
    const { child, write } = await memfdChild(64);
    const out = join(dir, "sweep.ptrace.gz");
    try {
      // 4 slices of 16 pages: pass e reads slice (e - 1) mod 4. Page 40 (slice 2) is cold until pass 3
      // sees it change, then read every pass; page 5 (slice 0), cold, waits for pass 5.
      const result = await recordProcess(child.pid!, {
        interval: 0.1,
        duration: 0.5,
        sweep: 4,
        mapping: "memfd:ram",
        out,
        onPass: async ({ epoch }) => {
          if (epoch === 0) await write(40, 7);
          if (epoch === 3) {
            await write(40, 8);
            await write(5, 9);
          }
        },
      });
      // The image and the full pass settling it (nothing changed), 3 slices, slice 3 with page 40 joined
      // to it (pages 40-63), slice 0 and page 40.
      expect(result).toMatchObject({ epochs: 5, pagesHashed: 64 * 2 + 16 * 3 + 24 + 17 });
    } finally {
      child.kill();
    }
    const reader = await TraceReader.open(out);
    expect(reader.header.meta.recorder).toMatchObject({ sweep: 4 });
    const epochs = [];
    for await (const epoch of reader.epochs()) epochs.push(Array.from(epoch.pages));
    expect(epochs).toEqual([[], [], [40], [40], [5]]);
  });

  it("with a sweep, reads the pages that changed during the image pass again before time 0, and every pass after", async () => {
    // 32768 pages (128 MiB, slices of 8192 with a sweep of 4); page 30000, in the last slice, changes every millisecond.
    const { child, line } = python(`
import mmap, os, time
fd = os.memfd_create("ram")
os.ftruncate(fd, 32768 * 4096)
ram = mmap.mmap(fd, 32768 * 4096)
for i in range(32768):
    ram[i * 4096] = 1
print("ready", flush=True)
k = 0
while True:
    k = k % 250 + 1
    ram[30000 * 4096 + 8] = k
    time.sleep(0.001)
`);
    expect(await line()).toBe("ready");
    const out = join(dir, "settled.ptrace.gz");
    try {
      await recordProcess(child.pid!, { interval: 0.1, duration: 0.3, sweep: 4, mapping: "memfd:ram", out });
    } finally {
      child.kill();
    }
    const reader = await TraceReader.open(out);
    expect((reader.header.meta.recorder as { settleSeconds: number[] }).settleSeconds.length).toBe(2);
    const epochs = [];
    for await (const epoch of reader.epochs()) epochs.push(Array.from(epoch.pages));
    // Without the settling, page 30000 would wait for pass 4, its slice's turn, to be seen changing.
    expect(epochs).toEqual([[30000], [30000], [30000]]);
  });

  it("starts the first pass after the image on time, while the image is still being spooled", async () => {
    // 32768 pages (128 MiB): spooling the image takes longer than the interval.
    const { child } = await memfdChild(32768);
    const out = join(dir, "on-time.ptrace.gz");
    try {
      await recordProcess(child.pid!, { interval: 0.1, duration: 0.2, mapping: "memfd:ram", out });
    } finally {
      child.kill();
    }
    const reader = await TraceReader.open(out);
    const passSeconds = (reader.header.meta.recorder as { passSeconds: number[] }).passSeconds;
    const first = (await reader.epochs().next()).value!;
    // On the grid, or right after the image pass when that took longer (with room for a busy machine).
    expect(first.elapsedMicros / 1e6).toBeLessThan(Math.max(0.1, passSeconds[0]!) + 0.2);
  });

  it("reports command-line mistakes as usage errors", async () => {
    await expect(run(["-o", join(dir, "x.gz")])).rejects.toThrow(UsageError);
    await expect(run(["--pid", "1", "--file", "x", "-o", "y"])).rejects.toThrow(/either --pid/);
    await expect(run(["--pid", "1"])).rejects.toThrow(/missing -o/);
    await expect(run(["--pid", "abc", "-o", "y"])).rejects.toThrow(/--pid/);
    await expect(run(["--pid", "1", "--interval", "fast", "-o", "y"])).rejects.toThrow(/--interval/);
    await expect(run(["--file", "x", "--mapping", "ram", "-o", "y"])).rejects.toThrow(/--mapping is for --pid/);
    await expect(run(["--pid", "1", "--mapping", "", "-o", "y"])).rejects.toThrow(/--mapping needs/);
    await expect(run(["--pid", "1", "--sweep", "0", "-o", "y"])).rejects.toThrow(/--sweep must be an integer from 1/);
    writeFileSync(join(dir, "swept.bin"), new Uint8Array(4096));
    await expect(recordFile(join(dir, "swept.bin"), { interval: 0.1, duration: 0.1, sweep: 1.5, out: join(dir, "y.gz") })).rejects.toThrow(/sweep a whole number/);
  });
});
