#!/usr/bin/env python3
"""Fits what QEMU's own process takes on this host (pagemill's QemuHost, used
by `pagemill migrate --flavor qemu --qemu-host FILE`) from QEMU runs made at
settings that compare.py does not compare (run by hand, after run.py).

  fit.py [--out bench/results/qemu/host.json]

- pageTime, zeroPageTime: the migration thread's time per page sent with
  content and per zero page while the guest runs. Least squares, without an
  intercept, of the time between two of run.py's polls of query-migrate
  against the normal and duplicate pages counted meanwhile, over the polls
  of the first pass (dirty-sync-count 1) of the pre-copy runs without a rate
  limit (fit-precopy-unlimited-run*: max-bandwidth 100 Gbit/s). The first
  pass crosses regions of zero pages and regions of content, which is what
  tells the two apart. Runs with a limit are left out: a window that waits
  for its end would count as the thread's time.
- setupTime: the median setup-time of every fit-precopy-* run (it does not
  depend on the rate).
- switchoverTime: the median, over the XBZRLE and post-copy runs at
  100 Mbit/s (fit-xbzrle-*, fit-postcopy-*), of downtime less the bytes the
  stop moved (downtime-bytes) at the loopback's rate as compare.py models
  it: those stops move almost no RAM, so what is left is the stop itself.

The runs compare.py compares (precopy-1gbit*, the 40 Mbit/s ones) are not
read here, nor the session-8 runs kept in session8/ (QEMU then ran at normal
priority and unpinned; run.py's defaults since session 9 pin the source and
the destination to a CPU each at high priority, and host.json says how the
runs it was fitted on were made).
"""
import argparse, glob, json, os, statistics

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
RESULTS = os.path.join(ROOT, "bench", "results", "qemu")
# compare.py's --link, the loopback's rate (bytes/s)
LOOPBACK = 10e9 / 8


def runs(pattern):
    paths = sorted(glob.glob(os.path.join(RESULTS, pattern)))
    if not paths:
        raise SystemExit(f"no runs {pattern} in {os.path.relpath(RESULTS, ROOT)}: run.py first (see its usage)")
    return [(os.path.basename(p), json.load(open(p))) for p in paths]


def distinct(values):
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def first_pass_intervals(run):
    """(seconds, normal pages, zero pages) between two polls within the first pass."""
    cols = run["series"]["columns"]
    rows = [dict(zip(cols, r)) for r in run["series"]["rows"]]
    out = []
    for a, b in zip(rows, rows[1:]):
        if not all(r["status"] == "active" and r["dirty-sync-count"] == 1 for r in (a, b)):
            continue
        normal, zero = b["normal"] - a["normal"], b["duplicate"] - a["duplicate"]
        if normal + zero > 0:
            out.append(((b["ms"] - a["ms"]) / 1000, normal, zero))
    return out


def page_times(intervals):
    """Least squares of t = normal × pageTime + zero × zeroPageTime."""
    nn = sum(n * n for _, n, _ in intervals)
    nz = sum(n * z for _, n, z in intervals)
    zz = sum(z * z for _, _, z in intervals)
    tn = sum(t * n for t, n, _ in intervals)
    tz = sum(t * z for t, _, z in intervals)
    det = nn * zz - nz * nz
    if det <= 0:
        raise SystemExit("the first passes do not tell zero pages from the others (too few polls)")
    page, zero = (tn * zz - tz * nz) / det, (nn * tz - nz * tn) / det
    if page < 0 or zero < 0:
        raise SystemExit(f"the fit gave a negative time per page ({page}, {zero}): more runs are needed")
    return page, zero


def per_run(run):
    """One run's own fit (µs per page with content, per zero page), to show the spread; None when it cannot tell them apart."""
    try:
        page, zero = page_times(first_pass_intervals(run))
    except SystemExit:
        return None
    return [round(page * 1e6, 2), round(zero * 1e6, 2)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(RESULTS, "host.json"))
    a = ap.parse_args()
    unlimited = runs("fit-precopy-unlimited-run*.json")
    intervals = [i for _, run in unlimited for i in first_pass_intervals(run)]
    page, zero = page_times(intervals)
    precopy = runs("fit-precopy-*.json")
    setup = statistics.median(run["queryMigrate"]["setup-time"] for _, run in precopy) / 1000
    stops = runs("fit-xbzrle-*.json") + runs("fit-postcopy-*.json")
    fixed = [run["queryMigrate"]["downtime"] / 1000 - run["queryMigrate"]["ram"]["downtime-bytes"] / LOOPBACK for _, run in stops]
    switchover = max(0.0, statistics.median(fixed))
    loads = [run["loadAverage"][0] for _, run in precopy + stops if "loadAverage" in run]
    result = {
        "host": {"setupTime": round(setup, 6), "zeroPageTime": round(zero, 9), "pageTime": round(page, 9), "switchoverTime": round(switchover, 6)},
        "fittedOn": {
            "pageTime, zeroPageTime": {"runs": [name for name, _ in unlimited], "polls": len(intervals),
                                       "eachRunAlone µs": {name: per_run(run) for name, run in unlimited}},
            "setupTime": {"runs": [name for name, _ in precopy], "setup-time ms": sorted(r["queryMigrate"]["setup-time"] for _, r in precopy)},
            "switchoverTime": {"runs": [name for name, _ in stops], "downtime ms": [r["queryMigrate"]["downtime"] for _, r in stops]},
        },
        "loadAverage1min": [min(loads), max(loads)] if loads else None,
        # run.py's --nice and --pin for the runs fitted on (one entry per distinct setting; none before session 9)
        "priority": distinct(run.get("priority") for _, run in unlimited + precopy + stops),
        "qemu": precopy[0][1].get("qemu"),
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    h = result["host"]
    print(f"{os.path.relpath(a.out, ROOT)}: setup {h['setupTime'] * 1000:.1f} ms, {h['pageTime'] * 1e6:.2f} µs a page with content, "
          f"{h['zeroPageTime'] * 1e6:.2f} µs a zero page ({len(intervals)} polls of {len(unlimited)} runs), switch-over {h['switchoverTime'] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
