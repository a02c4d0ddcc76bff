"""Benchmark the context stage on a big synthetic store (prints figures; not a test).

    .venv/bin/python benchmarks/context.py [N_INCIDENTS] [N_COMPILES]

Builds a store with N incidents (default 1,000,000; ~50 clusters, 2/3 crashes whose pid/time
match a compile record) and a journal of N_COMPILES records (default 20,000), then times:
first link_pending (load journal + link), a second link_pending (nothing new), and
cluster_contexts for every cluster (what `triage report` calls).
"""
from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from triage.context.link import link_pending  # noqa: E402
from triage.context.views import cluster_contexts  # noqa: E402
from triage.store.db import Store  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
NC = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
T0 = 1_780_000_000.0
rng = random.Random(1)


def iso(ts):
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def main():
    tmp = Path(tempfile.mkdtemp(prefix="triage-bench-ctx-"))
    st = Store.open(tmp / "t.db")
    schemes = [("linear", "int4", 4, "per_block"), ("palettized", "uint4", 4, "per_grouped_channel"),
               ("linear", "int8", 8, "per_channel"), ("sparse", None, None, None),
               ("float16", "float16", 16, None)]
    computes = ["neural-engine", "gpu", "all", "cpu-only"]
    recs = []
    for i in range(NC):
        s, d, b, g = rng.choice(schemes)
        recs.append({"schema": 1, "pid": 10_000 + i, "process": "coreai-build",
                     "started_at": iso(T0 + i * 100), "ended_at": iso(T0 + i * 100 + 60),
                     "argv": ["coreai-build", "compile", "m.mlpackage"], "cwd": "/",
                     "exit_code": rng.choice([0, 0, 139]), "model": "m.mlpackage",
                     "encoding": {"scheme": s, "dtype": d, "nbits": b, "granularity": g},
                     "flags": {"platform": "macOS", "preferred_compute": rng.choice(computes),
                               "architecture": rng.choice(["h16g", "h18p"]),
                               "compression": None}})
    j = tmp / "journal-big.jsonl"
    j.write_text("".join(json.dumps(r) + "\n" for r in recs))
    t = time.perf_counter()
    rows = []
    for k in range(N):
        # a third of the crashes come from recorded compiles (a few reports per compile, the
        # cluster decided by the compile), the rest from processes no journal knows
        linked = k % 3 != 0
        c = rng.randrange(NC)
        pid = 10_000 + c if linked else 900_000 + k
        ts = T0 + c * 100 + 30
        cluster = f"C-{c % 50:02d}" if linked else f"C-{k % 50:02d}"
        rows.append((f"I{k}", f"/r/{k}.ips", f"s{k}", "crash", "coreai-build", pid, ts,
                     cluster, "now"))
    with st.transaction() as conn:
        conn.executemany("INSERT INTO incidents(incident_id, path, sha256, kind, process, pid, "
                         "captured_ts, cluster_id, ingested_at) VALUES(?,?,?,?,?,?,?,?,?)", rows)
    print(f"built store: {N} incidents, {NC} journal records in {time.perf_counter() - t:.1f} s")
    for label in ("link_pending (first: load + link)", "link_pending (again: nothing new)"):
        t = time.perf_counter()
        s = link_pending(st, [j], [])
        print(f"{label}: {time.perf_counter() - t:.2f} s  "
              f"loaded={s['records_loaded']} linked={s['linked']} unlinked={s['unlinked']} "
              f"ambiguous={s['ambiguous']}")
    # a new batch of 1,000 reports (ingest calls link_pending after each batch)
    with st.transaction() as conn:
        conn.executemany("INSERT INTO incidents(incident_id, path, sha256, kind, process, pid, "
                         "captured_ts, cluster_id, ingested_at) VALUES(?,?,?,?,?,?,?,?,?)",
                         [(f"N{k}", f"/r/n{k}.ips", f"n{k}", "crash", "coreai-build",
                           10_000 + k, T0 + k * 100 + 30, "C-00", "now") for k in range(1000)])
    t = time.perf_counter()
    s = link_pending(st, [j], [])
    print(f"link_pending (after a 1,000-report batch): {time.perf_counter() - t:.2f} s  "
          f"linked={s['linked']}")
    t = time.perf_counter()
    ctx = cluster_contexts(st)
    print(f"cluster_contexts (all {len(ctx)} clusters): {time.perf_counter() - t:.2f} s")
    print("example finding:", next(iter(ctx.values()))["finding"][:160])
    st.close()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
