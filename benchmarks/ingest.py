"""Ingest benchmark: cold ingest speed, unchanged re-run, peak memory, ratio to the orjson floor.

    .venv/bin/python benchmarks/ingest.py                 # N=10,000 (and N/4 for memory)
    .venv/bin/python benchmarks/ingest.py --n 2000 --dir /tmp/bench-reports   # reuse files

Reports come from the fixture generator (``fixtures/generate.py: write_bulk``: realistic crash
reports of 20-200 KB with many threads and 300-600 images). Each ingest runs in a fresh
subprocess with a fresh store, so its peak RSS (``ru_maxrss`` of the process, and of its parser
workers via ``RUSAGE_CHILDREN``) is measured on its own. The floor is the time to read every
file and ``orjson``-decode its header and body, nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from triage.store.db import Store
import triage.ingest as ing
from triage.ingest import run_ingest
_pipeline_rss = []
_orig_cluster = ing._after_cluster
def _after_cluster(*a, **kw):  # peak RSS of discover+parse+store, before clustering starts
    _pipeline_rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return _orig_cluster(*a, **kw)
ing._after_cluster = _after_cluster
db, folder, workers = sys.argv[1], sys.argv[2], sys.argv[3]
store = Store.open(db)
t1 = time.perf_counter()
s = run_ingest(store, [folder], workers=None if workers == "auto" else int(workers))
t2 = time.perf_counter()
store.close()
out = {k: s.get(k) for k in ("files_seen", "ingested", "already_known", "skipped", "timings",
                              "seconds", "workers")}
out["errors"] = len(s["errors"])
out["import_s"] = t1 - t0
out["run_s"] = t2 - t1
out["rss_pipeline_mb"] = _pipeline_rss[0] if _pipeline_rss else None
out["rss_self_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out["rss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
_ru, _rc = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
out["cpu"] = {"main": _ru.ru_utime + _ru.ru_stime, "children": _rc.ru_utime + _rc.ru_stime}
print("RESULT " + json.dumps(out))
"""


def generate(folder: Path, n: int, seed: int) -> list[Path]:
    existing = sorted(folder.glob("*.ips")) if folder.is_dir() else []
    if len(existing) >= n:
        return existing[:n]
    sys.path.insert(0, str(REPO / "fixtures"))
    import generate as gen  # fixtures/generate.py

    t = time.perf_counter()
    paths = gen.write_bulk(folder, n, seed=seed)
    print(f"generated {len(paths)} reports in {time.perf_counter() - t:.0f} s", flush=True)
    return sorted(paths)[:n]


def subset(files: list[Path], folder: Path) -> Path:
    """A folder holding hard links to ``files`` (no copy)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for p in files:
        try:
            os.link(p, folder / p.name)
        except OSError:
            shutil.copy2(p, folder / p.name)
    return folder


def orjson_floor(files: list[Path]) -> float:
    import orjson

    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        for p in files:
            data = p.read_bytes()
            head, _, body = data.partition(b"\n")
            orjson.loads(head)
            try:
                orjson.loads(body)
            except orjson.JSONDecodeError:
                pass
        best = min(best, time.perf_counter() - t)
    return best


def run_child(db: Path, folder: Path, workers: str) -> tuple[dict, float]:
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, str(db), str(folder), workers],
                         capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if res.returncode != 0 or line is None:
        sys.exit(f"ingest subprocess failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):]), wall


def bench(folder: Path, files: list[Path], workdir: Path, workers: str, label: str) -> dict:
    db = workdir / f"bench-{label}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    size = sum(p.stat().st_size for p in files)
    n = len(files)
    print(f"\n== N={n} reports, {size / 1e9:.2f} GB (avg {size / n / 1024:.0f} KB)", flush=True)
    floor = orjson_floor(files)
    print(f"orjson floor (read + decode header and body): {floor:.2f} s "
          f"({n / floor:.0f} files/s)", flush=True)
    cold, cold_wall = run_child(db, folder, workers)
    tm = cold["timings"]
    peers = tm.get("peers", 0.0)
    pipeline = tm["store"] + peers
    print(f"cold ingest: {cold['ingested']} stored, {cold['errors']} errors; "
          f"{cold['run_s']:.2f} s in run_ingest = {n / cold['run_s']:.0f} reports/s "
          f"(workers={cold['workers']}; {cold_wall:.1f} s wall incl. interpreter start)")
    print(f"  of which discover+parse+enrich+store {tm['store']:.2f} s = "
          f"{n / tm['store']:.0f} reports/s ({tm['store'] / floor:.1f}x floor), "
          f"peer symbols {peers:.2f} s, cluster {tm['cluster']:.2f} s, link {tm['link']:.2f} s")
    print(f"  ratio to the orjson floor: {cold['run_s'] / floor:.1f}x overall, "
          f"{pipeline / floor:.1f}x without clustering/linking (target 2x)")
    cpu = cold.get("cpu") or {}
    if cpu:
        print(f"  CPU seconds: main process {cpu['main']:.2f} (incl. clustering), "
              f"parser workers {cpu['children']:.2f} "
              f"(= {1000 * (cpu['main'] + cpu['children']) / n:.2f} ms per report)")
    print(f"  peak RSS: main process {cold['rss_self_mb']:.0f} MB ({cold['rss_pipeline_mb']:.0f} MB "
          f"before clustering), largest parser worker {cold['rss_children_mb']:.0f} MB",
          flush=True)
    again, again_wall = run_child(db, folder, workers)
    assert again["ingested"] == 0 and again["already_known"] == cold["ingested"], again
    print(f"unchanged re-run: {again['run_s']:.3f} s in run_ingest "
          f"(discover + skip {again['timings']['store']:.3f} s; {again_wall:.2f} s wall incl. "
          f"interpreter start and imports; target < 1 s)", flush=True)
    return {"n": n, "floor_s": floor, "cold": cold, "rerun": again}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="reports for the main run")
    ap.add_argument("--n-small", type=int, default=None,
                    help="second N for the memory comparison (default N/4)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="keep generated reports here and reuse them next time")
    ap.add_argument("--workers", default="auto", help="parser processes (auto = CPU count)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    n_small = a.n_small or max(1, a.n // 4)
    tmp = Path(tempfile.mkdtemp(prefix="triage-bench-"))
    try:
        src = a.dir or (tmp / "reports")
        files = generate(src, max(a.n, n_small), a.seed)
        big = subset(files[:a.n], tmp / f"n{a.n}")
        small = subset(files[:n_small], tmp / f"n{n_small}")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        r_small = bench(small, files[:n_small], tmp, a.workers, f"{n_small}")
        r_big = bench(big, files[:a.n], tmp, a.workers, f"{a.n}")
        print("\n== summary")
        for r in (r_small, r_big):
            c = r["cold"]
            tm = c["timings"]
            print(f"N={r['n']:>6}: {r['n'] / c['run_s']:.0f} reports/s cold, "
                  f"ratio {c['run_s'] / r['floor_s']:.1f}x floor "
                  f"({(tm['store'] + tm.get('peers', 0)) / r['floor_s']:.1f}x without "
                  f"clustering, {tm['store'] / r['floor_s']:.1f}x parse+store only), "
                  f"re-run {r['rerun']['run_s']:.2f} s, peak RSS main "
                  f"{c['rss_self_mb']:.0f} MB (pipeline {c['rss_pipeline_mb']:.0f} MB) / "
                  f"worker {c['rss_children_mb']:.0f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
