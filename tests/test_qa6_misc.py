"""QA6 items 6, 7, 9, 10: pandas import claim, decoding-noise mask + fixture docs, missing
arguments not stored as errors, flags-fallback encoding keys of `triage inspect`."""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from triage.cli import main

from test_cli_ingest import ips_bytes  # a small JSON crash report

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "DiagnosticReports"


def run(capsys, *argv):
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "store.db"
    monkeypatch.setenv("TRIAGE_DB", str(path))
    return path


def error_rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT path, reason FROM errors ORDER BY path").fetchall()
    finally:
        con.close()




# ---------------------------------------------------------------- 6: pandas import (docs/api.md)

def test_api_md_names_when_pandas_is_imported():
    text = " ".join((ROOT / "docs" / "api.md").read_text(encoding="utf-8").split())
    m = re.search(r"Heavy packages[^.]*\.[^.]*\.", text)
    assert m, "docs/api.md lost its sentence on heavy packages"
    assert "DataFrames" in m.group(0) and "scikit-learn" in m.group(0)


def test_no_pandas_without_dataframes_or_clustering(tmp_path):
    """The documented claim: records methods and an ingest with nothing new import no pandas;
    a DataFrame method does."""
    store = tmp_path / "t.db"
    rep = tmp_path / "r"
    rep.mkdir()
    (rep / "a.ips").write_bytes(ips_bytes(1))
    code = f"""
import sys, triage
t = triage.open({str(store)!r})
t.ingest([{str(rep)!r}])
first = 'pandas' in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    code = f"""
import sys, triage
t = triage.open({str(store)!r})
s = t.ingest([{str(rep)!r}])
assert s['ingested'] == 0, s
t.incidents_records(); t.clusters_records(); t.report()
assert 'pandas' not in sys.modules, 'pandas imported without a DataFrame or clustering'
t.clusters()
assert 'pandas' in sys.modules
t.close()
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- 7: decoding-noise mask

def test_decoding_noise_mask_removes_replacement_characters():
    from triage.signature import mask_message

    clean = "CoreAIBuild/WeightPacker.swift:131: Fatal error: palette index out of range (7 >= 4)"
    noisy = clean.replace("Fatal error", "Fatal \ufffd\ufffd error")
    assert mask_message(noisy) == mask_message(clean)
    assert "\ufffd" not in mask_message("a\ufffdb \ufffd\ufffd\ufffd c")
    from triage.signature import load_siglists

    assert "decoding-noise" in [m[0] for m in load_siglists([]).masks]


def test_invalid_utf8_fixture_signs_like_its_clean_twin(db, capsys):
    bad = FIXTURES / "malformed" / "invalid-utf8-2026-08-20-101506.ips"
    good = FIXTURES / "coreai-build-2026-08-13-160829.ips"   # same swift_trap family
    code, out, err = run(capsys, "ingest", str(bad), str(good), "--format", "json")
    assert code == 0, err
    code, out, err = run(capsys, "incidents", "--format", "json")
    rows = {Path(r["path"]).name: r for r in orjson.loads(out)}
    assert rows[bad.name]["signature"] == rows[good.name]["signature"]
    assert "\ufffd" not in rows[bad.name]["signature"]
    assert rows[bad.name]["cluster_id"] == rows[good.name]["cluster_id"]


def test_fixtures_md_tells_the_demo_truth(db, capsys):
    """docs/fixtures.md's numbers for `triage ingest fixtures/DiagnosticReports && triage report`."""
    code, out, err = run(capsys, "ingest", str(FIXTURES), "--format", "json")
    s = orjson.loads(out)
    doc = " ".join((ROOT / "docs" / "fixtures.md").read_text(encoding="utf-8").split())
    assert f"stores {s['ingested']} reports" in doc
    assert f"skips {s['skipped']} files" in doc
    assert f"reports {len(s['errors'])} errors" in doc
    assert f"**{s['clusters_new']} clusters**" in doc
    code, out, err = run(capsys, "report", "--format", "json")
    rep = orjson.loads(out)
    status = {c["id"]: c["status"] for c in rep["clusters"]}
    counts = {k: list(status.values()).count(k) for k in ("regressed", "ongoing", "gone")}
    assert (f"lists {counts['regressed']} `regressed`, {counts['ongoing']} `ongoing`, "
            f"{counts['gone']} `gone`") in doc
    for cid in ("C-afc23b", "C-60ef64", "C-4f0a06", "C-e67beb"):
        assert f"`{cid}`" in doc and f"`{status[cid]}`" in doc
    assert status["C-afc23b"] == "regressed" and status["C-60ef64"] == "gone"
    ingest_md = (ROOT / "docs" / "ingest.md").read_text(encoding="utf-8")
    assert f"{s['clusters_new']} new clusters (92 files" in ingest_md


# ---------------------------------------------------------------- 9: missing arguments

def test_missing_argument_is_reported_not_stored(tmp_path, db, capsys):
    missing = tmp_path / "nonexist"
    pattern = str(tmp_path / "*.nomatch")
    d = tmp_path / "reports"
    d.mkdir()
    (d / "a.ips").write_bytes(ips_bytes(1))
    (d / "broken.ips").write_bytes(b"{\"bug_type\":\"309\"}\n{\"procName\": ")
    os.symlink(tmp_path / "gone.ips", d / "dangling.ips")   # found by the walk: a bad file
    code, out, err = run(capsys, "ingest", str(missing), pattern, str(d), "--format", "json")
    assert code == 1                       # documented: an argument that does not exist
    s = orjson.loads(out)
    reasons = {e["path"]: e["reason"] for e in s["errors"]}
    assert reasons[str(missing)] == "no such file or folder"
    assert reasons[pattern] == "no files match this pattern"
    assert f"{missing}: no such file or folder" in err
    stored = dict(error_rows(db))
    assert str(missing) not in stored and pattern not in stored
    assert str(d / "broken.ips") in stored and str(d / "dangling.ips") in stored
    code, out, err = run(capsys, "incidents", "--errors", "--format", "json")
    assert {r["path"] for r in orjson.loads(out)} == {str(d / "broken.ips"),
                                                      str(d / "dangling.ips")}


def test_stale_missing_argument_row_is_dropped(tmp_path, db, capsys):
    missing = tmp_path / "nonexist"
    run(capsys, "ingest", str(tmp_path / "nothing-here"))        # creates the store
    con = sqlite3.connect(db)
    with con:
        con.execute("INSERT INTO errors (path, reason, seen_at) VALUES (?, ?, ?)",
                    (str(missing), "no such file or folder", "2026-11-01T00:00:00+00:00"))
    con.close()
    code, _, _ = run(capsys, "ingest", str(missing))
    assert code == 1
    assert error_rows(db) == []


def test_file_vanishing_between_discovery_and_read_is_still_recorded(tmp_path, db, monkeypatch,
                                                                    capsys):
    d = tmp_path / "reports"
    d.mkdir()
    victim = d / "a.ips"
    victim.write_bytes(ips_bytes(1))
    import triage.ingest as ingest_mod
    from triage.reports import discover as disc

    real = disc.discover

    def vanishing(paths):
        for item in real(paths):
            if getattr(item, "path", None) == str(victim):
                victim.unlink()
            yield item

    monkeypatch.setattr(ingest_mod, "discover", vanishing)
    run(capsys, "ingest", str(d), "--format", "json")
    assert [p for p, _ in error_rows(db)] == [str(victim)]


# ---------------------------------------------------------------- 10: inspect flags fallback

def test_inspect_flags_fallback_has_model_read_keys(tmp_path, capsys):
    from triage.context.encoding import _empty, encoding_from_compression

    model = tmp_path / "m.aimodel"
    model.write_bytes(b"not a model")
    code, out, err = run(capsys, "inspect", str(model), "--compression",
                         "4bit_weight_linear_block32", "-f", "json")
    assert code == 0, err
    enc = orjson.loads(out)["encoding"]
    assert set(_empty()) <= set(enc)
    assert enc["compressed_weights"] is None and enc["uncompressed_weights"] is None
    assert enc["source"] == "flags"
    assert (enc["scheme"], enc["nbits"], enc["block_size"]) == ("linear", 4, 32)
    assert set(_empty()) <= set(encoding_from_compression("6bit_palettized"))
    ctx = (ROOT / "docs" / "context.md").read_text(encoding="utf-8")
    assert "| `compressed_weights` |" in ctx and "Both counts are null" in ctx
