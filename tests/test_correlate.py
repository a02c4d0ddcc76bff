"""Correlations, findings and cluster_detail (triage.context.correlate / views)."""
from __future__ import annotations

import json

import pytest

from triage.context.correlate import compute_contexts, fisher_greater
from triage.context.link import link_pending
from triage.context.views import cluster_contexts, cluster_detail
from triage.errors import UserError
from triage.store.db import Store


def cfg(scheme, dtype, nbits, compute, gran=None):
    return {"encoding.scheme": scheme, "encoding.dtype": dtype, "encoding.nbits": nbits,
            "encoding.granularity": gran, "flags.preferred_compute": compute}


def test_fisher_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for a, n1, c, n in [(2, 2, 2, 3), (18, 18, 30, 138), (1, 5, 10, 40), (0, 3, 4, 9),
                        (3, 3, 3, 3)]:
        table = [[a, n1 - a], [c - a, (n - n1) - (c - a)]]
        _, p = stats.fisher_exact(table, alternative="greater")
        assert fisher_greater(a, n1, c, n) == pytest.approx(p, rel=1e-9, abs=1e-12)


def test_small_sample_finding_and_contract():
    compiles = [
        {"id": 1, "exit_code": 139, "config": cfg("linear", "int4", 4, "neural-engine")},
        {"id": 2, "exit_code": 139, "config": cfg("linear", "int4", 4, "neural-engine")},
        {"id": 3, "exit_code": 0, "config": cfg("palettized", "uint4", 4, "neural-engine")},
        {"id": 4, "exit_code": 0, "config": cfg("linear", "int4", 4, "gpu")},
        {"id": 5, "exit_code": 134, "config": cfg("sparse", None, None, "gpu")},
        {"id": 6, "exit_code": 1, "config": cfg("sparse", None, None, "cpu")},
    ]
    links = [(1, "C-a"), (2, "C-a"), (2, "C-a"), (5, "C-b")]
    ctx = compute_contexts(compiles, links, ["C-a", "C-b", "C-none"])
    a = ctx["C-a"]
    f = a["finding"]
    assert f.startswith("crashes only with ")
    assert "encoding.dtype=int4" in f and "flags.preferred_compute=neural-engine" in f
    assert "(2/2 crashed)" in f
    assert "encoding.scheme=palettized" in f and "compiled 1/1" in f
    # 2/2 is reportable even though not significant at 0.05
    top = a["correlations"][0]
    assert set(top) >= {"attribute", "value", "in_cluster", "overall", "score"}
    assert top["in_cluster"] == 1.0 and top["p_value"] > 0.05
    scores = [r["score"] for r in a["correlations"]]
    assert scores == sorted(scores, reverse=True)
    conf = {json.dumps(c["config"], sort_keys=True): c for c in a["configurations"]}
    k = json.dumps({k: v for k, v in cfg("linear", "int4", 4, "neural-engine").items()
                    if v is not None}, sort_keys=True)
    assert (conf[k]["crashed"], conf[k]["succeeded"], conf[k]["crashed_other"]) == (2, 0, 0)
    sparse_gpu = [c for c in a["configurations"] if c["config"].get("encoding.scheme") ==
                  "sparse" and c["config"]["flags.preferred_compute"] == "gpu"][0]
    assert sparse_gpu["crashed_other"] == 1 and sparse_gpu["crashed"] == 0
    sparse_cpu = [c for c in a["configurations"] if c["config"].get(
        "flags.preferred_compute") == "cpu"][0]
    assert sparse_cpu["failed"] == 1 and sparse_cpu["succeeded"] == 0
    assert ctx["C-none"]["finding"].startswith("no linked compiles")
    assert ctx["C-none"]["correlations"] == []


def _store_with_data(tmp_path):
    st = Store.open(tmp_path / "t.db")
    t0 = 1_800_000_000

    def iso(x):
        from datetime import datetime, timezone
        return datetime.fromtimestamp(t0 + x, timezone.utc).isoformat()

    recs = []
    for i, (comp, compute, rc) in enumerate([
            ("int4_linear_block32", "neural-engine", 139), ("int4_linear_block32",
                                                            "neural-engine", 139),
            ("4bit_weight_palettized_group32", "neural-engine", 0),
            ("int4_linear_block32", "gpu", 0)]):
        recs.append({"schema": 1, "pid": 100 + i, "process": "coreai-build",
                     "started_at": iso(i * 100), "ended_at": iso(i * 100 + 50),
                     "argv": ["coreai-build", "compile", "m.mlpackage", "--preferred-compute",
                              compute, "--compression", comp], "cwd": "/", "exit_code": rc})
    (tmp_path / "j.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    for i in range(2):
        st.conn.execute(
            "INSERT INTO incidents(incident_id, path, sha256, kind, process, pid, captured_at, "
            "captured_ts, cluster_id, signature, ingested_at) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
            (f"i{i}", f"/r/i{i}.ips", f"s{i}", "crash", "coreai-build", 100 + i, iso(i * 100 + 49),
             t0 + i * 100 + 49, "C-ane", "objc_release | GPU::anePreCompileBinary", "now"))
    link_pending(st, [tmp_path / "j.jsonl"], [])
    return st


def test_cluster_detail_from_store(tmp_path):
    st = _store_with_data(tmp_path)
    d = cluster_detail(st, "C-ane")
    for k in ("id", "signature", "count", "incidents", "first_seen", "last_seen", "encodings",
              "flags", "configurations", "correlations", "finding"):
        assert k in d
    assert d["count"] == 2 and d["incidents"] == ["i0", "i1"] and d["linked"] == 2
    assert d["encodings"][0]["count"] == 2
    assert d["encodings"][0]["encoding"]["scheme"] == "linear"
    assert d["flags"]["preferred_compute"] == {"neural-engine": 2}
    assert "(2/2 crashed)" in d["finding"] and "compiled 1/1" in d["finding"]
    many = cluster_contexts(st)
    assert many["C-ane"]["finding"] == d["finding"]
    with pytest.raises(UserError, match="no such cluster"):
        cluster_detail(st, "C-nope")
    # merged ids resolve to their successor
    st.conn.execute("INSERT INTO clusters(cluster_id, signature, created_at, merged_into) "
                    "VALUES('C-old', 'x', 'now', 'C-ane')")
    assert cluster_detail(st, "C-old")["id"] == "C-ane"
    st.close()


def test_mostly_with_when_one_crash_differs():
    compiles = [{"id": i, "exit_code": 139, "config": cfg("sparse", None, None, "gpu")}
                for i in range(4)]
    compiles.append({"id": 4, "exit_code": 139, "config": cfg("float16", "float16", 16, "gpu")})
    compiles += [{"id": 10 + i, "exit_code": 0, "config": cfg("linear", "int8", 8, "neural-engine")}
                 for i in range(6)]
    ctx = compute_contexts(compiles, [(i, "C-s") for i in range(5)], ["C-s"])["C-s"]
    f = ctx["finding"]
    assert "only with flags.preferred_compute=gpu (5/5 crashed)" in f
    assert "mostly with encoding.scheme=sparse (4/5)" in f
