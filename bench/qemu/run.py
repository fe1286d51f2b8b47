#!/usr/bin/env python3
"""Migrates the bench guest between two QEMUs on loopback, driven over QMP,
and saves query-migrate's final counters (run by hand; build.sh first).

  run.py NAME [--mode precopy|xbzrle|auto-converge|postcopy] [--mbit 40]
         [--downtime-ms 300] [--accel kvm|tcg] [--writer 64,8,2000] [--boot 15] [--nice -15]
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

Both QEMUs run at high priority by default (--nice -15; 0 runs them as any
other process, in run.py's session): each in a session of its own, with that nice value for the
process and for the session's autogroup. With autogroups on (Linux's default
for desktops, and this machine's), a process's nice only weighs against the
processes of its own session: every other shell command on the machine is a
group of its own that gets an equal share of the CPU whatever its nice, so the
group's nice is what keeps other work on the cores from bending QEMU's timings.
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


def prioritize(pid, nice):
    """Gives a QEMU started in a session of its own the nice value `nice`, for its autogroup too; says what was set."""
    if nice == 0:
        return {"nice": 0, "session": "run.py's"}
    out = {"nice": nice}
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(nice))
        out["autogroupNice"] = nice
    except OSError as e:  # no autogroups in this kernel: the process's nice is all there is
        out["autogroupNice"] = f"not set: {e.strerror}"
    return out


def place(nice, cpus):
    """In the QEMU child before exec: its nice value and the CPUs it may run on."""
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    if cpus:
        os.sched_setaffinity(0, cpus)


class CpuTime:
    """A QEMU's CPU time (user + system, /proc/PID/task/*/stat) per thread name since `start()`.
    Threads that end (the migration thread, at completion) keep what the last `sample()` saw."""
    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, pid):
        self.pid, self.first, self.last = pid, {}, {}

    def read(self):
        out = {}
        try:
            tids = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return out
        for tid in tids:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
            out[tid] = (name, (int(rest[11]) + int(rest[12])) / self.TICK)
        return out

    def start(self):
        self.first = self.last = self.read()

    def sample(self):
        self.last = {**self.last, **self.read()}

    def seconds(self):
        """{thread name: CPU seconds since start()}; threads started meanwhile count from 0."""
        out = {}
        for tid, (name, t) in self.last.items():
            out[name] = round(out.get(name, 0) + t - self.first.get(tid, (name, 0))[1], 2)
        return out


def machine_cpu():
    """(busy, total) jiffies of all CPUs from /proc/stat, for how busy the machine was over a run."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def boot(tmp, role, accel, writer, nice, cpus=None, incoming=None):
    qmp = os.path.join(tmp, f"{role}.qmp")
    log = os.path.join(tmp, f"{role}.log")
    argv = [
        "qemu-system-x86_64", "-machine", "pc", "-accel", accel, "-smp", "1",
        "-name", f"{role},debug-threads=on",  # threads named (live_migration, CPU 0/TCG) for CpuTime
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
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, f"{role}.err"), "w"),
                            start_new_session=nice != 0, preexec_fn=lambda: place(nice, cpus))
    proc.priority = {**prioritize(proc.pid, nice), "cpus": sorted(os.sched_getaffinity(proc.pid))}
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
    src, _, slog = boot(tmp, "src", a.accel, a.writer, a.nice)
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
        "record": done.stdout.strip().replace(out, result_path(out)), "heartbeats": heartbeats(slog), "priority": src.priority,
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
    ap.add_argument("--nice", type=int, default=-15, help="the QEMUs' nice value, for their sessions' autogroups too (0: as any process)")
    ap.add_argument("--pin", default="0:1", help="SOURCE_CPUS:DESTINATION_CPUS (comma-separated lists), '' for no pinning")
    a = ap.parse_args()
    cpus = [[int(c) for c in side.split(",") if c] for side in a.pin.split(":")] if a.pin else [[], []]
    a.source_cpus, a.destination_cpus = cpus[0], cpus[-1]
    caps = {"xbzrle": ["xbzrle"], "auto-converge": ["auto-converge"], "postcopy": ["postcopy-ram"]}.get(a.mode, [])
    port = 4444 + os.getpid() % 1000
    tmp = tempfile.mkdtemp(prefix="pagemill-qemu-")
    procs = []
    try:
        if a.mode == "record":
            return record(a, tmp, procs)
        src, sq, slog = boot(tmp, "src", a.accel, a.writer, a.nice, cpus=a.source_cpus)
        procs.append(src)
        dst, dq, dlog = boot(tmp, "dst", a.accel, a.writer, a.nice, cpus=a.destination_cpus, incoming=True)
        procs.append(dst)
        for q in (sq, dq):
            if caps:
                q.cmd("migrate-set-capabilities", capabilities=[{"capability": c, "state": True} for c in caps])
        dq.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
        time.sleep(a.boot)
        sq.cmd("migrate-set-parameters", **{"max-bandwidth": int(a.mbit * 1e6 / 8), "downtime-limit": a.downtime_ms})
        load_start, busy_start = os.getloadavg(), machine_cpu()
        cpus = {"source": CpuTime(src.pid), "destination": CpuTime(dst.pid)}
        for c in cpus.values():
            c.start()
        started = time.time()
        sq.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        postcopy_asked, timed_out = False, False
        info = {}
        # query-migrate's RAM counters every poll: how fast the migration thread went (bench/qemu/fit.py).
        series = []
        while time.time() - started < a.timeout:
            info = sq.cmd("query-migrate")
            for c in cpus.values():
                c.sample()
            ram = info.get("ram", {})
            series.append([round((time.time() - started) * 1000, 1), info.get("status"), ram.get("transferred"), ram.get("normal"),
                           ram.get("duplicate"), ram.get("dirty-sync-count"), ram.get("remaining"), info.get("cpu-throttle-percentage"),
                           ram.get("mbps"), info.get("expected-downtime")])
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            if a.mode == "postcopy" and not postcopy_asked and info.get("ram", {}).get("dirty-sync-count", 0) >= 2:
                sq.cmd("migrate-start-postcopy")
                postcopy_asked = True
            time.sleep(0.05)
        else:
            # Kept with its counters at the timeout (a run that does not converge is an outcome to compare too).
            sq.cmd("migrate_cancel")
            timed_out = True
        load_end, busy_end = os.getloadavg(), machine_cpu()
        before = heartbeats(dlog)
        if not timed_out:
            time.sleep(3)
        # The destination QEMU quits when its incoming migration is cancelled.
        runs = {"status": "quit (migration cancelled)"} if timed_out else dq.cmd("query-status")
        result = {
            "name": a.name, "mode": a.mode, "mbit": a.mbit, "downtimeLimitMs": a.downtime_ms, "accel": a.accel,
            "ramKiB": RAM_KIB, "writer": a.writer, "bootSeconds": a.boot,
            "qemu": subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
            "queryMigrate": info, "timedOutAfterSeconds": a.timeout if timed_out else None,
            "priority": {"source": src.priority, "destination": dst.priority},
            # 1, 5 and 15 min load averages when `migrate` was sent and when the migration ended, and the share of
            # both CPUs busy meanwhile (any process): how loaded the machine was around QEMU.
            "loadAverageStart": load_start, "loadAverage": load_end,
            "machineBusy": round((busy_end[0] - busy_start[0]) / max(1, busy_end[1] - busy_start[1]), 3),
            # CPU seconds per thread name, from `migrate` to the end (live_migration is the migration thread, CPU 0/TCG the vCPU).
            "cpuSeconds": {role: c.seconds() for role, c in cpus.items()},
            # mbps: the bandwidth QEMU measured over its last window, what its threshold (× downtime-limit) comes from
            "series": {"columns": ["ms", "status", "transferred", "normal", "duplicate", "dirty-sync-count", "remaining", "cpu-throttle-percentage",
                                   "mbps", "expected-downtime"], "rows": series},
            "destination": {"status": runs.get("status"), "heartbeatsAfter3s": heartbeats(dlog) - before},
        }
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, f"{a.name}.json"), "w") as f:
            json.dump(result, f, indent=2)
        ram = info.get("ram", {})
        print(f"{a.name}: {info.get('status')} total {info.get('total-time')} ms, downtime {info.get('downtime')} ms, "
              f"transferred {ram.get('transferred')}, normal {ram.get('normal')}, duplicate {ram.get('duplicate')}, "
              f"syncs {ram.get('dirty-sync-count')}, setup {info.get('setup-time')} ms; destination {runs.get('status')}, "
              f"{result['destination']['heartbeatsAfter3s']} heartbeats in 3 s; load {load_start[0]:.1f}-{load_end[0]:.1f}, "
              f"migration thread {result['cpuSeconds']['source'].get('live_migration')} s CPU")
        if timed_out:
            raise SystemExit(f"{a.name}: migration still {info.get('status')} after {a.timeout} s (cancelled; its counters are kept)")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
