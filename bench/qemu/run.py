#!/usr/bin/env python3
"""Migrates the bench guest between two QEMUs on loopback, driven over QMP,
and saves query-migrate's final counters (run by hand; build.sh first).

  run.py NAME [--mode precopy|xbzrle|auto-converge|postcopy] [--mbit 40]
         [--downtime-ms 300] [--accel kvm|tcg] [--writer 64,8,2000] [--boot 15]
  run.py NAME --mode record [--duration 60] [--interval-ms 200] [--sweep 1]

--mode record boots the source alone and, from the same moment a migration
would start (--boot seconds after boot), records its guest RAM (the memfd
mapping only) with `pagemill record` into build/NAME.ptrace.gz: the trace
bench/qemu/compare.py replays through `pagemill migrate --flavor qemu`.

Guest RAM is 393224 KiB (not a multiple of 256 KiB: QEMU 7.2's TCG dirty
bitmap loses writes on such sizes), a memory-backend-memfd with share=on so
`pagemill record --pid` can read it. Writes bench/results/qemu/NAME.json:
the parameters, the source's last query-migrate, and whether the destination
guest still ran (its writer's heartbeat went on after the switch-over).
"""
import argparse, json, os, shutil, socket, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "build")
RESULTS = os.path.join(HERE, "..", "results", "qemu")
RAM_KIB = 393224
PAGEMILL = os.path.join(HERE, "..", "..", "dist", "cli", "bin.js")
# How /proc/PID/maps names the guest RAM of -object memory-backend-memfd.
RAM_MAPPING = "memfd:memory-backend-memfd"


class Qmp:
    def __init__(self, path):
        for _ in range(100):
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"no QMP socket at {path}")
        self.file = self.sock.makefile("rw")
        json.loads(self.file.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.file.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise SystemExit(f"{name}: {reply['error']}")


def boot(tmp, role, accel, writer, incoming=None):
    qmp = os.path.join(tmp, f"{role}.qmp")
    log = os.path.join(tmp, f"{role}.log")
    argv = [
        "qemu-system-x86_64", "-machine", "pc", "-accel", accel, "-smp", "1",
        "-m", f"{RAM_KIB}k",
        "-object", f"memory-backend-memfd,id=ram,size={RAM_KIB}k,share=on",
        "-machine", "memory-backend=ram",
        "-kernel", os.path.join(BUILD, "vmlinuz"), "-initrd", os.path.join(BUILD, "initramfs.cpio.gz"),
        "-append", f"console=ttyS0 quiet writer={writer}",
        "-nodefaults", "-display", "none", "-serial", f"file:{log}",
        "-qmp", f"unix:{qmp},server=on,wait=off",
    ]
    if incoming:
        argv += ["-incoming", "defer"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, f"{role}.err"), "w"))
    return proc, Qmp(qmp), log


def heartbeats(log):
    try:
        with open(log, errors="replace") as f:
            return sum(1 for line in f if line.startswith("writer:"))
    except FileNotFoundError:
        return 0


def result_path(path):
    """`path` as the results name it: relative to the repository, absolute outside it."""
    rel = os.path.relpath(path, os.path.join(HERE, "..", ".."))
    return os.path.abspath(path) if rel.startswith("..") else rel


def record(a, tmp, procs):
    """Boots the source alone and records its guest RAM from --boot seconds on."""
    src, _, slog = boot(tmp, "src", a.accel, a.writer)
    procs.append(src)
    time.sleep(a.boot)
    out = os.path.abspath(a.out or os.path.join(BUILD, f"{a.name}.ptrace.gz"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    argv = ["node", PAGEMILL, "record", "--pid", str(src.pid), "--mapping", RAM_MAPPING,
            "--interval", f"{a.interval_ms}ms", "--duration", f"{a.duration}s", "--sweep", str(a.sweep), "-o", out]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pagemill record failed: {done.stderr.strip()}")
    result = {
        "name": a.name, "mode": "record", "accel": a.accel, "ramKiB": RAM_KIB, "writer": a.writer, "bootSeconds": a.boot,
        "durationSeconds": a.duration, "intervalMs": a.interval_ms, "sweep": a.sweep, "mapping": RAM_MAPPING, "trace": result_path(out),
        "qemu": subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
        "record": done.stdout.strip().replace(out, result_path(out)), "heartbeats": heartbeats(slog),
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{a.name}.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(done.stdout.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--mode", default="precopy", choices=["precopy", "xbzrle", "auto-converge", "postcopy", "record"])
    ap.add_argument("--mbit", type=float, default=40)
    ap.add_argument("--downtime-ms", type=int, default=300)
    # TCG by default: the reference, and on this workplace a KVM guest opens /dev/kvm but never boots.
    ap.add_argument("--accel", default="tcg", choices=["tcg", "kvm"])
    ap.add_argument("--writer", default="64,8,2000", help="WORK_MIB,HOT_MIB,PAGES_PER_S")
    ap.add_argument("--boot", type=float, default=15, help="seconds the guest runs before the migration")
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--duration", type=float, default=60, help="--mode record: seconds to record")
    ap.add_argument("--interval-ms", type=int, default=200, help="--mode record: time between two snapshots")
    ap.add_argument("--out", help="--mode record: where the trace goes (default build/NAME.ptrace.gz; it is ~90 MiB, keep it out of the repository)")
    ap.add_argument("--sweep", type=int, default=1, help="--mode record: each snapshot reads a K-th of the RAM in turn and the pages that changed lately")
    a = ap.parse_args()
    caps = {"xbzrle": ["xbzrle"], "auto-converge": ["auto-converge"], "postcopy": ["postcopy-ram"]}.get(a.mode, [])
    port = 4444 + os.getpid() % 1000
    tmp = tempfile.mkdtemp(prefix="pagemill-qemu-")
    procs = []
    try:
        if a.mode == "record":
            return record(a, tmp, procs)
        src, sq, slog = boot(tmp, "src", a.accel, a.writer)
        procs.append(src)
        dst, dq, dlog = boot(tmp, "dst", a.accel, a.writer, incoming=True)
        procs.append(dst)
        for q in (sq, dq):
            if caps:
                q.cmd("migrate-set-capabilities", capabilities=[{"capability": c, "state": True} for c in caps])
        dq.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
        time.sleep(a.boot)
        sq.cmd("migrate-set-parameters", **{"max-bandwidth": int(a.mbit * 1e6 / 8), "downtime-limit": a.downtime_ms})
        started = time.time()
        sq.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        postcopy_asked = False
        info = {}
        # query-migrate's RAM counters every poll: how fast the migration thread went (bench/qemu/fit.py).
        series = []
        while time.time() - started < a.timeout:
            info = sq.cmd("query-migrate")
            ram = info.get("ram", {})
            series.append([round((time.time() - started) * 1000, 1), info.get("status"), ram.get("transferred"), ram.get("normal"),
                           ram.get("duplicate"), ram.get("dirty-sync-count"), ram.get("remaining"), info.get("cpu-throttle-percentage")])
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            if a.mode == "postcopy" and not postcopy_asked and info.get("ram", {}).get("dirty-sync-count", 0) >= 2:
                sq.cmd("migrate-start-postcopy")
                postcopy_asked = True
            time.sleep(0.05)
        else:
            sq.cmd("migrate_cancel")
            raise SystemExit(f"migration still {info.get('status')} after {a.timeout} s")
        before = heartbeats(dlog)
        time.sleep(3)
        runs = dq.cmd("query-status")
        result = {
            "name": a.name, "mode": a.mode, "mbit": a.mbit, "downtimeLimitMs": a.downtime_ms, "accel": a.accel,
            "ramKiB": RAM_KIB, "writer": a.writer, "bootSeconds": a.boot,
            "qemu": subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
            "queryMigrate": info, "loadAverage": os.getloadavg(),
            "series": {"columns": ["ms", "status", "transferred", "normal", "duplicate", "dirty-sync-count", "remaining", "cpu-throttle-percentage"], "rows": series},
            "destination": {"status": runs.get("status"), "heartbeatsAfter3s": heartbeats(dlog) - before},
        }
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, f"{a.name}.json"), "w") as f:
            json.dump(result, f, indent=2)
        ram = info.get("ram", {})
        print(f"{a.name}: {info.get('status')} total {info.get('total-time')} ms, downtime {info.get('downtime')} ms, "
              f"transferred {ram.get('transferred')}, normal {ram.get('normal')}, duplicate {ram.get('duplicate')}, "
              f"syncs {ram.get('dirty-sync-count')}; destination {runs.get('status')}, {result['destination']['heartbeatsAfter3s']} heartbeats in 3 s")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
