"""Benchmark: `triage report` end to end on a store of 1,000,000 crash incidents.

    .venv/bin/python benchmarks/report.py [--n 1000000] [--db /tmp/triage-bench-report.db]

Builds (once, then reuses) a synthetic store with ``triage.report.synth`` (~50 clusters with
Zipf-like sizes, 10 builds, 5 processes, 4 hardware models, 500 compiles), then times
`triage report` as a subprocess in several formats and prints the figures. Target: table under
2 s on a 2-core machine. Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def triage_bin() -> list[str]:
    exe = Path(sys.executable).with_name("triage")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "triage.cli"]


def ensure_store(db: Path, n: int) -> None:
    from triage.errors import UserError
    from triage.report.synth import open_store, populate

    if db.exists():
        try:    # a cached store from an older triage (schema) is rebuilt, not reused
            store = open_store(db)
        except UserError as exc:
            print(f"rebuilding the cached store: {exc}")
        else:
            have = store.conn.execute("SELECT count(*) FROM incidents").fetchone()[0]
            store.close()
            if have == n:
                return
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    t = time.perf_counter()
    store = open_store(db)
    populate(store, n)
    store.close()
    print(f"built synthetic store: {n:,} incidents in {time.perf_counter() - t:.1f} s -> {db}")


def run(db: Path, args: list[str], repeat: int) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(repeat):
        t = time.perf_counter()
        p = subprocess.run(triage_bin() + ["--db", str(db), "report", *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t)
        if p.returncode != 0:
            print(f"  FAILED ({p.returncode}): {p.stderr.decode()[:300]}")
        size = len(p.stdout)
    return min(times), statistics.median(times), size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--db", type=Path, default=Path("/tmp/triage-bench-report.db"))
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    ensure_store(a.db, a.n)
    # warm the page cache and create the report indexes on a store that predates them
    run(a.db, ["--format", "csv", "--cluster", "C-5feceb"], 1)
    cases = [
        ("table (all)", []),
        ("table --since 26A5390c", ["--since", "26A5390c"]),
        ("table --since 2026-08-01 --until 2026-08-31", ["--since", "2026-08-01",
                                                          "--until", "2026-08-31"]),
        ("table --cluster C-5feceb --since 26A5390c", ["--cluster", "C-5feceb",
                                                       "--since", "26A5390c"]),
        ("markdown --since 26A5390c", ["--since", "26A5390c", "--format", "markdown"]),
        ("html --since 26A5390c", ["--since", "26A5390c", "--format", "html"]),
        ("json --since 26A5390c (all incident ids)", ["--since", "26A5390c", "--format", "json"]),
        ("json (all, 1M incident ids)", ["--format", "json"]),
    ]
    print(f"triage report on {a.n:,} incidents, {os.cpu_count()} CPUs, best/median of "
          f"{a.repeat}:")
    for label, args in cases:
        best, med, size = run(a.db, args, a.repeat)
        print(f"  {label:45s} {best:6.2f} s  (median {med:5.2f} s, {size / 1e6:6.2f} MB out)")


if __name__ == "__main__":
    main()
