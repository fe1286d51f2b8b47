#!/usr/bin/env python3
"""Replays the recorded guest through `pagemill migrate --flavor qemu` with the
settings of each real QEMU run and prints both side by side (run by hand,
after run.py; `npm run build` first).

  compare.py [--trace FILE] [--trace-timing spread|end] [--link 10gbit] [--qemu-host bench/results/qemu/host.json]

The trace is the source guest's RAM recorded by `run.py guest-ram --mode
record` (the same writer, from the same moment after boot as the migrations;
by default where bench/results/qemu/guest-ram.json says it went). The QEMU
host (--qemu-host: setup, the migration thread's time per page, the stop's
fixed part) is what fit.py measured from QEMU runs at other settings; no
run compared here was used to fit it.
Each run's max-bandwidth becomes --max-bandwidth and the link is the loopback
(--link): QEMU rate-limits only its pre-copy iterations, so its stop-and-copy
and post-copy went at loopback speed (precopy-1gbit sent its last 5.8 MB in
4 ms, over 11 Gbit/s). QEMU's figure for a run is the median over its
repeats (NAME.json, NAME-run2.json, ...: run.py NAME-runK), shown with their
range; one run of QEMU varies with the host's load, pagemill's replay does
not. Writes bench/results/qemu/compare.json and compare.md; the target is
issue 14's: total time and transferred within 10%, downtime within an order
of magnitude.
"""
import argparse, glob, json, os, statistics, subprocess
from run import result_path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
RESULTS = os.path.join(ROOT, "bench", "results", "qemu")
PAGEMILL = os.path.join(ROOT, "dist", "cli", "bin.js")

# name, mode, Mbit/s: the runs of bench/qemu/README.md (precopy-40mbit has no
# result file: QEMU did not complete it in 180 s).
RUNS = [
    ("precopy-40mbit", "precopy", 40),
    ("xbzrle-40mbit", "xbzrle", 40),
    ("auto-converge-40mbit", "auto-converge", 40),
    ("postcopy-40mbit", "postcopy", 40),
    ("precopy-1gbit", "precopy", 1000),
]
# QEMU has no iteration cap and was cancelled after 180 s; pagemill's replay
# stops at this many iterations instead (a 40 Mbit/s iteration of this guest
# takes ~0.6 s: well past 180 s), and a run that did not converge by 180 s
# is QEMU's outcome.
MAX_ITERATIONS = 400
QEMU_TIMEOUT_S = 180
METRICS = [
    # label, QEMU's value from query-migrate, pagemill's from --json, checked against
    ("total-time ms", lambda q: q["total-time"], lambda p: p["totalTime"] * 1000, "10%"),
    ("downtime ms", lambda q: q["downtime"], lambda p: p["downtime"] * 1000, "10x"),
    ("transferred B", lambda q: q["ram"]["transferred"], lambda p: p["transferred"], "10%"),
    ("normal", lambda q: q["ram"]["normal"], lambda p: p["normal"], ""),
    ("duplicate", lambda q: q["ram"]["duplicate"], lambda p: p["duplicate"], ""),
    ("dirty-sync-count", lambda q: q["ram"]["dirty-sync-count"], lambda p: p["dirtySyncCount"], ""),
]


def pagemill(trace, timing, link, host, mode, mbit, downtime_ms):
    argv = ["node", PAGEMILL, "migrate", "--trace", trace, "--trace-timing", timing, "--flavor", "qemu", "--json",
            "--strategy", "postcopy" if mode == "postcopy" else "precopy",
            "--bandwidth", link, "--max-bandwidth", f"{mbit}mbit", "--rtt", "0ms",
            "--downtime-limit", f"{downtime_ms}ms", "--codec", "xbzrle" if mode == "xbzrle" else "raw",
            "--max-iterations", str(MAX_ITERATIONS)]
    if mode == "auto-converge":
        argv.append("--auto-converge")
    if host:
        argv += ["--qemu-host", host]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {done.stderr.strip()}")
    return json.loads(done.stdout), argv


def recorded_trace():
    """Where run.py's last recording went (guest-ram.json), else its default place."""
    try:
        path = json.load(open(os.path.join(RESULTS, "guest-ram.json")))["trace"]
    except (OSError, KeyError, ValueError):
        return os.path.join(HERE, "build", "guest-ram.ptrace.gz")
    return path if os.path.isabs(path) else os.path.join(ROOT, path)


def verdict(check, ratio):
    if ratio is None or not check:
        return ""
    if check == "10%":
        return "ok" if abs(ratio - 1) <= 0.10 else "MISS"
    return "ok" if 0.1 <= ratio <= 10 else "MISS"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", default=recorded_trace())
    ap.add_argument("--trace-timing", default="spread", choices=["spread", "end"],
                    help="an epoch's pages over the time since the one before (the recorder's late passes make no quiet gaps), or all at its time")
    ap.add_argument("--link", default="10gbit", help="the loopback's rate (QEMU's stop-and-copy and post-copy are not rate-limited)")
    ap.add_argument("--qemu-host", default=os.path.join(RESULTS, "host.json"), help="fit.py's QEMU host ('' for none)")
    a = ap.parse_args()
    host = a.qemu_host if a.qemu_host and os.path.exists(a.qemu_host) else None
    rows, lines = [], []
    lines.append(f"trace {result_path(a.trace)} (--trace-timing {a.trace_timing}), link {a.link}, flavor qemu, QEMU host {result_path(host) if host else 'none'}; QEMU: median of its runs [range]; ratio = pagemill / QEMU's median\n")
    lines.append("| run | metric | QEMU 7.2 | pagemill | ratio | target |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for name, mode, mbit in RUNS:
        paths = sorted(glob.glob(os.path.join(RESULTS, f"{name}.json")) + glob.glob(os.path.join(RESULTS, f"{name}-run*.json")))
        qemus = [json.load(open(p)) for p in paths]
        downtime_ms = qemus[0]["downtimeLimitMs"] if qemus else 300
        stats, argv = pagemill(a.trace, a.trace_timing, a.link, host, mode, mbit, downtime_ms)
        row = {"name": name, "mode": mode, "mbit": mbit, "qemuRuns": [os.path.basename(p) for p in paths],
               "pagemillArgs": [result_path(x) if x in (a.trace, host) else x for x in argv[2:]], "qemu": {}, "qemuRange": {}, "pagemill": {}, "ratio": {}}
        for label, q_of, p_of, check in METRICS:
            p = p_of(stats)
            values = [q_of(q["queryMigrate"]) for q in qemus]
            q = statistics.median(values) if values else None
            ratio = p / q if q else None
            row["pagemill"][label] = p
            row["qemu"][label] = q
            row["qemuRange"][label] = [min(values), max(values)] if values else None
            shown_p = f"{p:.0f}"
            if q is None:
                shown_q = f"did not complete in {QEMU_TIMEOUT_S} s" if label == "total-time ms" else ""
                if label == "total-time ms" and stats.get("stopReason") == "iteration-limit":
                    shown_p = f"{p:.0f} (did not converge: {MAX_ITERATIONS} iterations)"
                    if p >= QEMU_TIMEOUT_S * 1000:
                        check = f"both ran past {QEMU_TIMEOUT_S} s"
            else:
                shown_q = f"{q:.0f}" + (f" [{min(values):.0f}-{max(values):.0f}]" if len(values) > 1 else "")
            lines.append(f"| {name} | {label} | {shown_q} | {shown_p} | {'' if ratio is None else f'{ratio:.3f}'} | {check} {verdict(check, ratio)} |".replace("  ", " "))
        row["pagemill"]["stopReason"] = stats.get("stopReason")
        if stats.get("xbzrleCache"):
            row["pagemill"]["xbzrleCache"] = stats["xbzrleCache"]
            row["qemu"]["xbzrleCache"] = [q["queryMigrate"].get("xbzrle-cache") for q in qemus]
        rows.append(row)
    text = "\n".join(lines)
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "compare.json"), "w") as f:
        json.dump({"trace": result_path(a.trace), "traceTiming": a.trace_timing, "link": a.link,
                   "qemuHost": json.load(open(host))["host"] if host else None, "runs": rows}, f, indent=2)
    with open(os.path.join(RESULTS, "compare.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
