"""Linking crash incidents to compile records (triage.context.link)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from triage.context.link import link_pending, names_compatible
from triage.errors import UserError
from triage.store.db import Store

T0 = 1_800_000_000.0


def iso(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def rec(pid, start, end, process="coreai-build", **kw):
    r = {"schema": 1, "pid": pid, "process": process, "started_at": iso(T0 + start),
         "ended_at": iso(T0 + end), "argv": [process, "compile", "m.mlpackage"],
         "cwd": "/src", "exit_code": kw.pop("exit_code", 139), "model": "m.mlpackage",
         "encoding": None, "flags": {"preferred_compute": "neural-engine"}}
    r.update(kw)
    return r


def inc(store, iid, pid, at, process="coreai-build", parent=None, parent_proc=None,
        resp=None, resp_proc=None, path=None, kind="crash", cluster="C-1"):
    store.conn.execute(
        "INSERT INTO incidents(incident_id, path, sha256, kind, process, pid, parent_pid, "
        "parent_process, responsible_pid, responsible_process, captured_ts, cluster_id, "
        "ingested_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (iid, path or f"/reports/{iid}.ips", "sha-" + iid, kind, process, pid, parent,
         parent_proc, resp, resp_proc, T0 + at, cluster, "now"))


def write(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in records))
    return path


def linkmap(store):
    return {r[0]: (r[1], r[2]) for r in store.conn.execute(
        "SELECT incident_id, compile_id, link_note FROM incidents")}


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "db" / "t.db")
    yield s
    s.close()


def test_pid_window_skew_and_helper(store, tmp_path):
    inc(store, "direct", 100, 10)
    inc(store, "skew_ok", 101, 24)          # ends at 20, +4 s: inside the 5 s skew
    inc(store, "skew_bad", 102, 26)         # +6 s: outside
    inc(store, "helper", 555, 12, process="ANECompilerService", resp=200,
        resp_proc="coreai-build")
    inc(store, "parent", 777, 12, process="coremlcompiler", parent=300, parent_proc="xcrun")
    inc(store, "hang", 100, 10, kind="hang")
    j = write(tmp_path / "j.jsonl", [rec(100, 0, 20), rec(101, 0, 20), rec(102, 0, 20),
                                     rec(200, 0, 20), rec(300, 0, 20, process="xcrun")])
    s = link_pending(store, [j], [])
    assert s["records_loaded"] == 5 and s["linked"] == 4 and s["ambiguous"] == 0
    assert s["unlinked"] == 1 and s["problems"] == []
    m = linkmap(store)
    assert m["direct"][0] and m["skew_ok"][0] and m["helper"][0] and m["parent"][0]
    assert m["skew_bad"][0] is None and m["hang"][0] is None
    assert "responsible pid" in m["helper"][1] and "parent pid" in m["parent"][1]
    # idempotent: nothing new the second time
    s2 = link_pending(store, [j], [])
    assert s2["records_loaded"] == 0 and s2["linked"] == 0 and s2["unlinked"] == 1
    assert store.conn.execute("SELECT COUNT(*) FROM compiles").fetchone()[0] == 5


def test_records_added_later_link_next_time(store, tmp_path):
    inc(store, "a", 100, 10)
    j = write(tmp_path / "j.jsonl", [rec(999, 0, 20)])
    assert link_pending(store, [j], [])["linked"] == 0
    write(j, [rec(999, 0, 20), rec(100, 5, 15)])
    s = link_pending(store, [j], [])
    assert s["records_loaded"] == 1 and s["linked"] == 1


def test_ambiguity_reported_not_guessed(store, tmp_path):
    inc(store, "amb", 100, 10)
    inc(store, "strict", 200, 10)
    j = write(tmp_path / "j.jsonl", [rec(100, 0, 20), rec(100, 5, 30, argv=["other"]),
                                     rec(200, 0, 20), rec(200, 11, 30)])  # 2nd needs skew
    s = link_pending(store, [j], [])
    assert s["ambiguous"] == 1 and s["ambiguities"][0]["incident_id"] == "amb"
    assert len(s["ambiguities"][0]["candidates"]) == 2
    m = linkmap(store)
    assert m["amb"][0] is None and m["amb"][1].startswith("ambiguous")
    assert m["strict"][0] is not None


def test_direct_pid_beats_parent(store, tmp_path):
    inc(store, "x", 100, 10, parent=50, parent_proc="zsh")
    j = write(tmp_path / "j.jsonl", [rec(100, 0, 20), rec(50, 0, 60, process="zsh")])
    link_pending(store, [j], [])
    cid, note = linkmap(store)["x"]
    raw = json.loads(store.conn.execute("SELECT raw FROM compiles WHERE id=?",
                                        (cid,)).fetchone()[0])
    assert raw["pid"] == 100 and note is None


def test_process_mismatch_not_linked(store, tmp_path):
    inc(store, "m", 100, 10, process="Safari")
    write(tmp_path / "j.jsonl", [rec(100, 0, 20)])
    s = link_pending(store, [tmp_path / "j.jsonl"], [])
    assert s["linked"] == 0
    assert "process differs" in linkmap(store)["m"][1]


def test_names_compatible():
    assert names_compatible("python3.12", "Python")
    assert names_compatible("xcrun", "coremlcompiler", ["xcrun", "coremlcompiler", "compile"])
    assert names_compatible("ANECompilerServ", "ANECompilerService")   # truncated
    assert names_compatible(None, "x")
    assert not names_compatible("coreai-build", "Safari", ["coreai-build", "compile"])


def test_bad_lines_and_wrong_path(store, tmp_path):
    inc(store, "a", 100, 10)
    j = write(tmp_path / "j.jsonl", ["{oops", json.dumps({"pid": 1}), rec(100, 0, 20)])
    s = link_pending(store, [j], [])
    assert s["linked"] == 1
    assert [p["path"] for p in s["problems"]] == [f"{j}:1", f"{j}:2"]
    s = link_pending(store, [tmp_path / "missing.jsonl"], [])
    assert s["problems"] == [{"path": str(tmp_path / "missing.jsonl"),
                              "reason": "journal not found"}]
    from triage.context.link import check_journals
    with pytest.raises(UserError, match="journal not found"):
        check_journals([tmp_path / "missing.jsonl"])


def test_store_journal_reports_journal_and_sidecar(store, tmp_path):
    root = tmp_path / "reports"
    sub = root / "a" / "b"
    sub.mkdir(parents=True)
    r1 = sub / "coreai-build-1.ips"
    r2 = sub / "python3.12-2.ips"
    r3 = sub / "coreai-build-3.ips"
    for r in (r1, r2, r3):
        r.write_text("{}")
    inc(store, "r1", 100, 10, path=str(r1))
    inc(store, "r2", 4242, 10, process="python3.12", path=str(r2))
    inc(store, "r3", 300, 10, path=str(r3))
    write(root / "triage-journal.jsonl", [rec(100, 0, 20)])            # beside the reports
    write(Path(store.path).parent / "journal.jsonl", [rec(300, 0, 20)])  # beside the store
    (sub / "python3.12-2.json").write_text(json.dumps(
        {"process": "python3.12", "argv": ["python3.12", "-m", "x", "--platform", "iOS"],
         "exit_code": 139}))
    s = link_pending(store, [], [str(r1), str(r2), str(r3)], roots=[str(root)])
    assert s["linked"] == 3, s
    m = linkmap(store)
    assert m["r2"][1].startswith("sidecar ")
    assert str(root / "triage-journal.jsonl") in s["journals"]
    # a journal above the ingest root is not read
    inc(store, "r4", 999, 10, path=str(sub / "z.ips"))
    write(tmp_path / "triage-journal.jsonl", [rec(999, 0, 20)])
    s = link_pending(store, [], [str(sub / "z.ips")], roots=[str(root)])
    assert s["linked"] == 0


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "DiagnosticReports"


@pytest.mark.skipif(not (FIXTURES / "triage-journal.jsonl").is_file(),
                    reason="fixture reports/journal not generated")
def test_fixture_reports_link_end_to_end(tmp_path):
    from triage.ingest import run_ingest
    from triage.store.queries import incident_records

    st = Store.open(tmp_path / "t.db")
    summary = run_ingest(st, [str(FIXTURES)], journals=[], dsym_paths=[], rule_files=[],
                         progress=False, on_problem=None)
    assert summary.get("linked", 0) > 0
    recs = incident_records(st, kind="crash")
    linked = [r for r in recs if r.get("compile")]
    assert len(linked) >= len(recs) // 2
    helper = [r for r in linked if r["process"] == "ANECompilerService"]
    assert helper and all(r["compile"]["process"] != "ANECompilerService" for r in helper)
    for r in linked:
        assert {"pid", "process", "started_at", "argv"} <= set(r["compile"])
    st.close()


def test_journal_read_incrementally(store, tmp_path):
    inc(store, "a", 100, 10)
    inc(store, "b", 200, 10)
    j = write(tmp_path / "j.jsonl", ["{bad", rec(100, 0, 20)])
    s = link_pending(store, [j], [])
    assert s["linked"] == 1 and len(s["problems"]) == 1
    s = link_pending(store, [j], [])
    assert s["problems"] == [] and s["records_loaded"] == 0       # reported once
    with open(j, "a") as fh:                                     # appended: only the tail is read
        fh.write(json.dumps(rec(200, 0, 20)) + "\n{bad again")    # last line without newline
    s = link_pending(store, [j], [])
    assert s["linked"] == 1 and [p["path"] for p in s["problems"]] == [f"{j}:4"]
    # regression: the unfinished last line was reported again on every later read
    assert link_pending(store, [j], [])["problems"] == []
    j.write_text(json.dumps(rec(300, 0, 20)) + "\n")             # rewritten: read from the start
    s = link_pending(store, [j], [])
    assert s["records_loaded"] == 1 and s["problems"] == []


def test_known_journals_reread_without_new_reports(store, tmp_path):
    root = tmp_path / "reports"
    root.mkdir()
    r1 = root / "a.ips"
    r1.write_text("{}")
    inc(store, "a", 100, 10, path=str(r1))
    inc(store, "b", 200, 10, path=str(root / "b.ips"))
    j = write(root / "triage-journal.jsonl", [rec(100, 0, 20)])
    assert link_pending(store, [], [str(r1)])["linked"] == 1
    with open(j, "a") as fh:
        fh.write(json.dumps(rec(200, 0, 20)) + "\n")
    s = link_pending(store, [], [])          # e.g. `triage link`, or a re-ingest with no new file
    assert s["linked"] == 1 and str(j) in s["journals"]


def test_sidecar_added_later_links_on_link_command(store, tmp_path):
    r = tmp_path / "python3.12-9.ips"
    r.write_text("{}")
    inc(store, "late", 4242, 10, process="python3.12", path=str(r))
    assert link_pending(store, [], [str(r)])["linked"] == 0
    (tmp_path / "python3.12-9.json").write_text(json.dumps({"process": "python3.12"}))
    assert link_pending(store, [], [])["linked"] == 0
    assert link_pending(store, [], [], unlinked_sidecars=True)["linked"] == 1
