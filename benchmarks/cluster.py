#!/usr/bin/env python3
"""Clustering cost: N reports over S distinct stacks (synthetic ``stacks`` + ``incidents`` rows).

    .venv/bin/python benchmarks/cluster.py                 # 1,000,000 reports, 10,000 stacks
    .venv/bin/python benchmarks/cluster.py --reports 100000 --stacks 2000

Prints the seconds of ``triage.cluster.assign_new`` on the full store (cluster every stack and
set ``incidents.cluster_id`` of every report: the bulk path), of an incremental batch on top of
it, of a ``recluster --dry-run``-equivalent batch clustering in memory, the cost of one
pairwise distance, and the peak RSS.
Building the synthetic store is not timed.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from triage.cluster import (ClusterSettings, Scorer, _Interner, _load_stacks,  # noqa: E402
                            assign_new, cluster_stacks)
from triage.store.db import Store, jdump  # noqa: E402

MODULES = ["MetalPerformanceShadersGraph", "ANECompiler", "MILCompiler", "Espresso", "CoreML",
           "AppleNeuralEngine", "Metal", "libBNNS.dylib", "CoreAIBuild", "MPSCore", "MLIRCore",
           "libLLVM.dylib", "TorchScript", "onnxruntime", "libcoremlpython.so"]
ENTRIES = [["coreai-build!main", "coreai-build!CoreAIBuild.CompileCommand.run"],
           ["Python!_PyEval_EvalFrameDefault", "libcoremlpython.so!CoreML::Python::Model::Model"],
           ["ChatPlayground!closure in ChatModel.load", "libswift_Concurrency.dylib!swift_job_run"]]
EXCEPTIONS = ["EXC_BAD_ACCESS/SIGSEGV", "EXC_CRASH/SIGABRT", "EXC_BREAKPOINT/SIGTRAP"]
PREFIX = ["libobjc.A.dylib!objc_release", "libobjc.A.dylib!objc_msgSend", None, None,
          "libsystem_malloc.dylib!_xzm_free"]


def synth_stacks(n_stacks: int, seed: int = 0) -> list[tuple[str, str, str, list[str]]]:
    """(stack_id, signature, proto, frames) rows: bugs with 1-9 variants (entry point, inline,
    deep frames), so clustering has real merges to do."""
    rng = random.Random(seed)
    out = []
    bug = 0
    while len(out) < n_stacks:
        bug += 1
        mod = rng.choice(MODULES)
        fns = [f"{mod}!ns{bug % 97}::Fn{bug}_{k}" for k in range(8)]
        prefix = rng.choice(PREFIX)
        exc = rng.choice(EXCEPTIONS)
        for v in range(rng.randint(1, 9)):
            frames = ([prefix] if prefix else []) + list(fns)
            if v % 3 == 1:  # inlined helper present
                frames.insert(3, f"{mod}!ns{bug % 97}::inlined{bug}")
            frames += ENTRIES[v % len(ENTRIES)] + [f"dyld!start{v % 2}"]
            top = [f.split("!", 1)[1] for f in frames[: (2 if prefix else 1)]]
            sig = " | ".join(top) + f" [{exc}]"
            sid = hashlib.sha1(f"{bug}:{v}".encode()).hexdigest()[:16]
            proto = " | ".join(f.split("!", 1)[1] for f in frames[:12])
            out.append((sid, sig, proto, frames))
            if len(out) >= n_stacks:
                break
    return out


def build_store(path: Path, n_reports: int, stacks) -> None:
    store = Store.open(path)
    rng = random.Random(1)
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(stacks))]   # Zipf-like popularity
    total = sum(weights)
    counts = [max(1, int(n_reports * w / total)) for w in weights]
    counts[0] += n_reports - sum(counts)
    now = "2026-09-01T00:00:00+00:00"
    with store.transaction() as conn:
        conn.executemany("INSERT INTO stacks(stack_id, signature, proto_signature, frames, count)"
                         " VALUES(?,?,?,?,?)",
                         [(s[0], s[1], s[2], jdump(s[3]), c) for s, c in zip(stacks, counts)])

        def rows():
            n = 0
            for s, c in zip(stacks, counts):
                for _ in range(c):
                    n += 1
                    yield (f"I{n:08d}", f"/r/{n}.ips", f"sha{n}", "crash", s[1], s[0], now,
                           1.7e9 + rng.random() * 1e6)
        conn.executemany("INSERT INTO incidents(incident_id, path, sha256, kind, signature, "
                         "stack_id, ingested_at, captured_ts) VALUES(?,?,?,?,?,?,?,?)", rows())
    store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=1_000_000)
    ap.add_argument("--stacks", type=int, default=10_000)
    ap.add_argument("--db", type=Path, default=None, help="store path (default: a temp folder)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="triage-bench-")
    path = args.db or Path(tmp.name) / "bench.db"
    stacks = synth_stacks(args.stacks + 100)
    base, extra = stacks[: args.stacks], stacks[args.stacks:]
    t = time.perf_counter()
    build_store(path, args.reports, base)
    print(f"built store: {args.reports} reports, {len(base)} stacks "
          f"({time.perf_counter() - t:.1f} s, not part of the figures)")
    settings = ClusterSettings()
    store = Store.open(path)
    t = time.perf_counter()
    res = assign_new(store, settings)
    t_full = time.perf_counter() - t
    n_clusters = store.conn.execute("SELECT COUNT(*) FROM clusters").fetchone()[0]
    print(f"assign_new (all {len(base)} stacks, {args.reports} reports): {t_full:.2f} s -> "
          f"{n_clusters} clusters, {res['incidents']} reports assigned")
    # incremental: 100 new stacks, 10,000 new reports
    with store.transaction() as conn:
        conn.executemany("INSERT INTO stacks(stack_id, signature, proto_signature, frames, count)"
                         " VALUES(?,?,?,?,100)", [(s[0], s[1], s[2], jdump(s[3])) for s in extra])
        conn.executemany("INSERT INTO incidents(incident_id, path, sha256, kind, signature, "
                         "stack_id, ingested_at) VALUES(?,?,?,?,?,?,?)",
                         [(f"N{i}", f"/n/{i}", f"nsha{i}", "crash", s[1], s[0], "x")
                          for i, s in enumerate(extra * 100)])
    t = time.perf_counter()
    res2 = assign_new(store, settings)
    print(f"assign_new incremental ({len(extra)} new stacks, {len(extra) * 100} reports): "
          f"{time.perf_counter() - t:.2f} s -> joined {res2['joined']}, "
          f"new clusters {res2['new_clusters']}")
    t = time.perf_counter()
    infos = _load_stacks(store.conn, "", settings, _Interner())
    scorer = Scorer(settings)
    labels = cluster_stacks(infos, settings, scorer)
    print(f"batch cluster_stacks ({len(infos)} stacks, as recluster does): "
          f"{time.perf_counter() - t:.2f} s -> {len(set(labels))} clusters")
    # the pairwise distance alone (rapidfuzz alignment), over same-block compatible pairs
    blocks: dict = {}
    for st in infos:
        blocks.setdefault(st.block, []).append(st)
    pairs = [(a, b) for g in blocks.values() for i, a in enumerate(g[:60]) for b in g[i + 1:60]
             if scorer.compatible(a, b)][:20_000]
    if pairs:
        t = time.perf_counter()
        for a, b in pairs:
            scorer.distance_raw(a, b)
        print(f"distance_raw: {(time.perf_counter() - t) / len(pairs) * 1e6:.1f} us/pair "
              f"({len(pairs)} same-block pairs)")
    store.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {rss / 1024:.0f} MB")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
