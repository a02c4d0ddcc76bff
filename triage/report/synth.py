"""Synthetic stores for the report benchmark and tests (rows inserted directly, no parsing).

Distribution: ``n_clusters`` clusters with Zipf-like sizes, ~10 macOS builds in release order,
several processes and hardware models, some clusters that start late (new), stop early (gone) or
skip a build (regressed, with compiles of their configuration recorded in the gap build).
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timezone
from pathlib import Path

import orjson

BUILDS = ["26A5288h", "26A5316k", "26A5353q", "26A5368g", "26A5378a",
          "26A5390c", "26A5402e", "26A5411b", "26A5420d", "26A5433f"]
PROCESSES = ["coreai-build", "python3.12", "coremlcompiler", "ANECompilerService", "xcrun"]
HARDWARE = ["Mac16,1", "Mac15,9", "Mac14,2", "MacBookPro18,3"]
T0 = datetime(2026, 7, 1, tzinfo=timezone.utc).timestamp()
DAY = 86400.0


def frames_for(i: int) -> list[dict]:
    return [
        {"module": "libobjc.A.dylib", "symbol": "objc_release", "normalized": "objc_release"},
        {"module": "MPSGraph", "symbol": f"GPU::op{i}Lower()", "normalized": f"GPU::op{i}Lower"},
        {"module": "MPSGraph", "symbol": "GPU::anePreCompileBinary()",
         "normalized": "GPU::anePreCompileBinary"},
        {"module": "CoreAI", "symbol": "coreai::compile()", "normalized": "coreai::compile"},
        {"module": "coreai-build", "symbol": "main", "normalized": "main"},
    ]


def populate(store, n_incidents: int, n_clusters: int = 50, seed: int = 7,
             batch: int = 50_000) -> dict:
    """Fill ``store`` with ``n_incidents`` synthetic crash incidents; returns a summary."""
    rng = random.Random(seed)
    weights = [1.0 / (k + 1) for k in range(n_clusters)]
    total_w = sum(weights)
    cids = [f"C-{hashlib.sha256(str(k).encode()).hexdigest()[:6]}" for k in range(n_clusters)]
    # per cluster: build window [lo, hi] and optional skipped build
    spans = []
    for k in range(n_clusters):
        r = k % 5
        if r == 0:
            lo, hi, skip = 0, len(BUILDS) - 1, None          # ongoing
        elif r == 1:
            lo, hi, skip = 6, len(BUILDS) - 1, None          # new since build 6
        elif r == 2:
            lo, hi, skip = 0, 4, None                        # gone after build 4
        elif r == 3:
            lo, hi, skip = 0, len(BUILDS) - 1, 5             # regressed: absent in build 5
        else:
            lo, hi, skip = 2, len(BUILDS) - 1, None
        spans.append((lo, hi, skip))
    now = datetime.now(timezone.utc).isoformat()
    with store.transaction() as conn:
        conn.executemany("INSERT OR IGNORE INTO clusters(cluster_id, signature, created_at) "
                         "VALUES(?,?,?)",
                         [(cid, f"EXC_BAD_ACCESS/SIGSEGV objc_release | GPU::op{k}Lower", now)
                          for k, cid in enumerate(cids)])
        # compiles: one per cluster per build of its configuration (config k), so the skipped
        # build has compiles of the same configuration but no crash.
        comp_rows = []
        for k in range(n_clusters):
            for bi, b in enumerate(BUILDS):
                cfg = {"encoding.scheme": "linear" if k % 2 else "palettized", "cfg": k}
                comp_rows.append((f"k{k}-{b}", "synthetic", 1000 + k, "coreai-build",
                                  T0 + bi * 7 * DAY + 3600, T0 + bi * 7 * DAY + 3700,
                                  0 if (k % 5 == 3 and bi == 5) else -11, f"/models/m{k}",
                                  orjson.dumps(cfg).decode(),
                                  orjson.dumps({"os_build": b, "argv": ["coreai-build", "compile",
                                                                        f"/models/m{k}"]}).decode()))
        conn.executemany("INSERT OR IGNORE INTO compiles(record_key, source, pid, process, "
                         "started_ts, ended_ts, exit_code, model, config, raw) "
                         "VALUES(?,?,?,?,?,?,?,?,?,?)", comp_rows)
    frames_json = [orjson.dumps(frames_for(k)).decode() for k in range(n_clusters)]
    done = 0
    linked: set = set()
    while done < n_incidents:
        rows = []
        for j in range(done, min(n_incidents, done + batch)):
            x = rng.random() * total_w
            k = 0
            while x > weights[k] and k < n_clusters - 1:
                x -= weights[k]
                k += 1
            lo, hi, skip = spans[k]
            bi = rng.randint(lo, hi)
            if bi == skip:
                bi = hi
            ts = T0 + bi * 7 * DAY + rng.random() * 6 * DAY
            iid = f"{j:08X}-0000-4000-8000-{k:012X}"
            proc = PROCESSES[0] if rng.random() < 0.6 else rng.choice(PROCESSES)
            # one linked report per compile (cluster k's configuration on build bi)
            comp = k * len(BUILDS) + bi + 1 if (k, bi) not in linked else None
            linked.add((k, bi))
            rows.append((iid, f"/Users/dev/Library/Logs/DiagnosticReports/{proc}-{j}.ips",
                         f"{j:064x}", "ips-json", "309", "crash", proc, 1000 + k,
                         datetime.fromtimestamp(ts, timezone.utc).isoformat(), ts,
                         f"macOS 26.0 ({BUILDS[bi]})", "macOS 26.0", BUILDS[bi], "macOS",
                         rng.choice(HARDWARE), "EXC_BAD_ACCESS", "SIGSEGV", frames_json[k],
                         f"EXC_BAD_ACCESS/SIGSEGV objc_release | GPU::op{k}Lower", cids[k], comp, now))
        with store.transaction() as conn:
            conn.executemany(
                "INSERT INTO incidents(incident_id, path, sha256, format, bug_type, kind, "
                "process, pid, captured_at, captured_ts, os_version, os_train, os_build, "
                "platform, hardware_model, exception_type, signal, frames, signature, "
                "cluster_id, compile_id, ingested_at) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows)
        done += len(rows)
    return {"incidents": n_incidents, "clusters": n_clusters, "builds": len(BUILDS)}


def open_store(path: Path | str):
    """``Store.open``; retried once (an early store version failed its first migration)."""
    from triage.errors import UserError
    from triage.store.db import Store

    try:
        return Store.open(path)
    except UserError:
        return Store.open(path)


def make_store(path: Path | str, n_incidents: int, **kw):
    store = open_store(path)
    populate(store, n_incidents, **kw)
    return store
