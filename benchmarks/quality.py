#!/usr/bin/env python3
"""Clustering quality on the labelled eval set: triage vs Mozilla siggen, side by side.

    .venv/bin/python benchmarks/quality.py                      # fixtures/eval
    .venv/bin/python benchmarks/quality.py --labels DIR/labels.json --sweep

Ingests the labelled reports once into a temporary store (ingest, then peer symbolication and
recluster, as ``triage eval`` does), prints pairwise / B-cubed P/R/F1 and cluster counts for the
tune and holdout splits, and with ``--sweep`` the B-cubed F1 of in-memory re-clusterings over a
grid of thresholds (the table in docs/clustering.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from triage.cluster import ClusterSettings  # noqa: E402
from triage.evaluate import (METRICS, batch_assignment, evaluate, ingest_reports,  # noqa: E402
                             load_labels, score, select)
from triage.store.db import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=ROOT / "fixtures" / "eval" / "labels.json")
    ap.add_argument("--reports", type=Path, default=None)
    ap.add_argument("--sweep", action="store_true", help="threshold sweep on the tune split")
    args = ap.parse_args()
    if not args.labels.exists():
        print(f"{args.labels}: not found (generate it: python fixtures/generate.py --out fixtures)")
        return 1
    reports = args.reports or args.labels.parent / "reports"
    with tempfile.TemporaryDirectory(prefix="triage-quality-") as tmp:
        store = Store.open(Path(tmp) / "q.db")
        t = time.perf_counter()
        summary = ingest_reports(store, reports)
        print(f"ingested {summary['ingested']} reports ({' + '.join(summary['pipeline'])}) "
              f"in {time.perf_counter() - t:.1f} s")
        for split in ("tune", "holdout", "all"):
            res = evaluate(args.labels, split=split, store=store)
            print(f"\n== {split}: {res['reports']} labelled crashes, {res['true_bugs']} true bugs"
                  + (f", {res['missing']} labelled ids not in the store" if res["missing"] else ""))
            print(f"{'metric':<20} {'triage':>8} {'siggen':>8}")
            for m in METRICS:
                print(f"{m:<20} {res['triage'][m]:>8} {res['siggen'][m]:>8}")
        if args.sweep:
            labels, split_of = load_labels(args.labels)
            present = {r[0] for r in store.conn.execute("SELECT incident_id FROM incidents")}
            print("\n== threshold sweep (tune split, batch clustering, other settings default)")
            print(f"{'threshold':>9} {'clusters':>8} {'bcubed_f1':>9} {'pairwise_f1':>11} "
                  f"| holdout bcubed_f1")
            for th in (0.05, 0.1, 0.15, 0.2, 0.22, 0.25, 0.3, 0.35, 0.4):
                st = ClusterSettings.from_mapping({"threshold": th})
                pred = batch_assignment(store, st)
                row = []
                for sp in ("tune", "holdout"):
                    truth = {i: b for i, b in select(labels, split_of, sp).items() if i in present}
                    for i in truth:
                        pred.setdefault(i, f"u:{i}")
                    row.append(score(pred, truth))
                print(f"{th:>9} {row[0]['clusters']:>8} {row[0]['bcubed_f1']:>9} "
                      f"{row[0]['pairwise_f1']:>11} | {row[1]['bcubed_f1']}")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
