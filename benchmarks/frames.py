"""Benchmark: frame normalization throughput and its share of parse + normalize time.

    .venv/bin/python benchmarks/frames.py [--repeat N] [PATH ...]

Input: PATHs, else fixtures/DiagnosticReports when present, else the shared corpus
(../shared/corpus). Every report is parsed once per repeat; normalization runs with a fresh rule
set (cold memo cache) on the first repeat and a warm one afterwards, as in one ingest run.
Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from triage.frames.normalize import FrameRules, load_rules, normalize_report  # noqa: E402
from triage.reports.detect import parse_bytes  # noqa: E402


def _inputs(paths: list[str]) -> list[Path]:
    if paths:
        roots = [Path(p) for p in paths]
    elif (ROOT / "fixtures" / "DiagnosticReports").is_dir():
        roots = [ROOT / "fixtures" / "DiagnosticReports"]
    else:
        roots = [ROOT.parent / "shared" / "corpus"]
    files = []
    for r in roots:
        files += [r] if r.is_file() else sorted(p for p in r.rglob("*") if p.is_file()
                                                and p.suffix in (".ips", ".crash", ".txt"))
    return files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    files = _inputs(args.paths)
    blobs = [(str(p), p.read_bytes()) for p in files]
    shipped = load_rules([])
    rules = FrameRules(rules=shipped.rules, files=shipped.files)  # fresh memo cache
    t_parse = t_norm = 0.0
    n_frames = n_reports = 0
    distinct: set[str] = set()
    t_cold = None
    for rep in range(args.repeat):
        t_rep = 0.0
        for path, data in blobs:
            sha = hashlib.sha256(data).hexdigest()
            t0 = time.perf_counter()
            try:
                report = parse_bytes(data, path, sha)
            except Exception:  # noqa: BLE001
                continue
            t1 = time.perf_counter()
            normalize_report(report, rules)
            t2 = time.perf_counter()
            t_parse += t1 - t0
            t_norm += t2 - t1
            t_rep += t2 - t1
            n_reports += 1
            for t in report.threads:
                n_frames += len(t.frames)
                if rep == 0:
                    distinct.update(f.symbol or "" for f in t.frames)
            n_frames += len(report.last_exception_backtrace or ())
        if rep == 0:
            t_cold = t_rep
    per_rep = n_frames / max(args.repeat, 1)
    print(f"input: {len(files)} files ({files[0].parent if files else '-'}), "
          f"{n_reports // max(args.repeat, 1)} parsed reports, {int(per_rep)} frames, "
          f"{len(distinct)} distinct symbols; repeat {args.repeat}")
    print(f"normalize, cold cache (first pass): {per_rep / t_cold:,.0f} frames/s "
          f"({t_cold * 1000:.1f} ms)")
    print(f"normalize, all passes:              {n_frames / t_norm:,.0f} frames/s")
    print(f"parse:                              {n_frames / t_parse:,.0f} frames/s")
    print(f"normalization share of parse+normalize: {100 * t_norm / (t_norm + t_parse):.1f} %")
    info = rules._cache.cache_info()
    print(f"memo cache: {info.hits} hits, {info.misses} misses")
    # uncached worst case: every symbol distinct
    syms = [f"mlir::detail::OpToOpPassAdaptor::run{i}(mlir::Pass*, mlir::Operation*, "
            f"llvm::function_ref<void (mlir::Operation*)>, bool, unsigned int)" for i in range(20000)]
    t0 = time.perf_counter()
    for s in syms:
        rules.process(s)
    dt = time.perf_counter() - t0
    print(f"uncached C++ symbols (20,000 distinct): {len(syms) / dt:,.0f} symbols/s")
    _ingest_share(files)


def _ingest_share(files: list[Path]) -> None:
    """Share of a real `triage ingest` run (into a throw-away store) spent normalizing."""
    import tempfile

    import triage.frames.normalize as norm
    from triage.ingest import run_ingest
    from triage.store.db import Store

    spent = [0.0]
    real = norm.normalize_report

    def timed(report, rules):
        t0 = time.perf_counter()
        real(report, rules)
        spent[0] += time.perf_counter() - t0

    norm.normalize_report = timed
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(Path(tmp) / "bench.db")
            t0 = time.perf_counter()
            summary = run_ingest(store, [str(f) for f in files])
            total = time.perf_counter() - t0
            store.close()
    finally:
        norm.normalize_report = real
    print(f"ingest of {summary['ingested']} reports: {total * 1000:.0f} ms, normalization "
          f"{spent[0] * 1000:.1f} ms = {100 * spent[0] / total:.1f} % of ingest time")


if __name__ == "__main__":
    main()
