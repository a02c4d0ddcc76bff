"""Bug-tracker drafts: formats, fingerprint, filed -> update flow, redaction of the fixtures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from triage.errors import UserError
from triage.report.export import (export_drafts, filed_records, find_fingerprint,
                                  record_filed)
from triage.report.synth import open_store

from test_report import CFG_A, Rows  # noqa: E402  (tests/ is on sys.path under pytest)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "DiagnosticReports"


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "t.db")
    yield s
    s.close()


@pytest.fixture
def bug(store):
    r = Rows(store)
    raw = {"argv": ["coreai-build", "compile", "/Users/jdoe/models/llm.mlpackage",
                    "--preferred-compute", "neural-engine"],
           "cwd": "/Users/jdoe/work", "host": "jdoes-mbp", "user": "jdoe",
           "encoding": {"scheme": "linear", "dtype": "int4", "nbits": 4},
           "flags": {"preferred_compute": "neural-engine"}}
    for bi in (0, 2):
        cid = r.compile(CFG_A, bi, exit_code=-11, raw=raw)
        r.crash("C-3f9a2c", bi, compile_id=cid,
                path=f"/Users/jdoe/Library/Logs/DiagnosticReports/coreai-build-{bi}.ips")
    return r


def test_github_draft(store, bug, tmp_path):
    out = tmp_path / "drafts"
    index = export_drafts(store, "github", out)
    assert [e["id"] for e in index] == ["C-3f9a2c"] and index[0]["kind"] == "new"
    d = json.loads((out / "C-3f9a2c.json").read_text())
    assert set(d) == {"title", "body", "labels"}
    assert d["title"] == "[triage C-3f9a2c] SIGSEGV in objc_release | GPU::C-3f9a2c (coreai-build)"
    assert "triage:C-3f9a2c" in d["labels"]
    body = (out / "C-3f9a2c.md").read_text()
    assert body == d["body"]
    assert "<!-- triage-fingerprint: C-3f9a2c -->" in body
    assert find_fingerprint(body) == "C-3f9a2c"
    for heading in ("### Summary", "### Environment", "### Reproduction", "### Expected vs actual",
                    "### Crashing thread, top frames", "### Counts", "### Correlation",
                    "### Report files"):
        assert heading in body, heading
    assert "coreai-build compile /Users/USER/models/llm.mlpackage" in body
    assert "```\nobjc_release\nGPU::C-3f9a2c\n```" in body
    assert json.loads((out / "index.json").read_text())[0]["id"] == "C-3f9a2c"


def test_jira_and_markdown_drafts(store, bug, tmp_path):
    with pytest.raises(UserError, match="project key"):
        export_drafts(store, "jira", tmp_path / "j")
    export_drafts(store, "jira", tmp_path / "j", project="MLC")
    d = json.loads((tmp_path / "j" / "C-3f9a2c.json").read_text())
    f = d["fields"]
    assert f["project"] == {"key": "MLC"} and f["issuetype"] == {"name": "Bug"}
    assert f["summary"].startswith("[triage C-3f9a2c]") and "triage:C-3f9a2c" in f["labels"]
    assert "h3. Summary" in f["description"] and "{noformat}" in f["description"]
    assert "triage-fingerprint: C-3f9a2c" in f["description"] and "<!--" not in f["description"]
    export_drafts(store, "markdown", tmp_path / "m")
    md = (tmp_path / "m" / "C-3f9a2c.md").read_text()
    assert md.startswith("# [triage C-3f9a2c]") and "triage-fingerprint: C-3f9a2c" in md
    with pytest.raises(UserError, match="--tracker"):
        export_drafts(store, "bugzilla", tmp_path / "b")


def test_filed_then_update_instead_of_new_issue(store, bug, tmp_path):
    export_drafts(store, "github", tmp_path / "e1")
    record_filed(store, "C-3f9a2c", "https://github.com/acme/ml/issues/7")
    assert filed_records(store)[0]["url"] == "https://github.com/acme/ml/issues/7"
    # nothing new: no draft at all
    idx = export_drafts(store, "github", tmp_path / "e2")
    assert idx[0]["kind"] == "unchanged" and not list((tmp_path / "e2").glob("C-*"))
    # new crashes on a new build and a new configuration
    cfg = dict(CFG_A, **{"encoding.dtype": "uint4"})
    cid = bug.compile(cfg, 4, exit_code=-11)
    bug.crash("C-3f9a2c", 4, compile_id=cid, process="python3.12")
    idx = export_drafts(store, "github", tmp_path / "e3")
    e = idx[0]
    assert e["kind"] == "update" and e["url"].endswith("/issues/7")
    assert e["new"]["new_reports"] == 1 and e["new"]["new_builds"] == ["26A5378a"]
    assert e["new"]["new_processes"] == ["python3.12"]
    assert len(e["new"]["new_configurations"]) == 1
    assert not (tmp_path / "e3" / "C-3f9a2c.json").exists()      # never a second issue
    comment = json.loads((tmp_path / "e3" / "C-3f9a2c.comment.json").read_text())
    assert set(comment) == {"body"}
    assert "26A5378a" in comment["body"] and "1 new report" in comment["body"]
    assert "triage-fingerprint: C-3f9a2c" in comment["body"]
    # the snapshot moved on: the next export has nothing new again
    assert export_drafts(store, "github", tmp_path / "e4")[0]["kind"] == "unchanged"


def test_export_into_same_folder_after_filing_removes_the_new_issue_draft(store, bug, tmp_path):
    # regression: the first export's C-ID.json stayed beside the update, ready to be filed twice
    out = tmp_path / "drafts"
    export_drafts(store, "github", out)
    assert (out / "C-3f9a2c.json").exists() and (out / "C-3f9a2c.md").exists()
    record_filed(store, "C-3f9a2c", "https://github.com/acme/ml/issues/7")
    bug.crash("C-3f9a2c", 4)
    idx = export_drafts(store, "github", out)
    assert idx[0]["kind"] == "update"
    assert sorted(p.name for p in out.glob("C-*")) == ["C-3f9a2c.comment.json",
                                                       "C-3f9a2c.comment.md"]


def test_filed_unknown_cluster(store, bug):
    with pytest.raises(UserError, match="unknown cluster"):
        record_filed(store, "C-000000", "https://x/1")


def test_redaction_default_and_no_redact(store, bug, tmp_path):
    export_drafts(store, "github", tmp_path / "r")
    text = "".join(p.read_text() for p in (tmp_path / "r").iterdir())
    assert "jdoe" not in text.lower() and "/Users/USER/" in text
    export_drafts(store, "github", tmp_path / "n", redact=False)
    text = "".join(p.read_text() for p in (tmp_path / "n").iterdir())
    assert "/Users/jdoe/" in text


def test_cli_export_and_filed(store, bug, tmp_path, capsys):
    from triage.cli import main

    db = str(store.path)
    assert main(["--db", db, "export", "--tracker", "github", "--out", str(tmp_path / "o"),
                 "--format", "json"]) == 0
    idx = json.loads(capsys.readouterr().out)
    assert idx[0]["kind"] == "new"
    assert main(["--db", db, "filed", "C-3f9a2c", "https://github.com/acme/ml/issues/9"]) == 0
    assert "C-3f9a2c filed at" in capsys.readouterr().out
    assert main(["--db", db, "filed", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "C-3f9a2c"
    assert main(["--db", db, "filed", "C-nope", "u"]) == 2
    assert "unknown cluster" in capsys.readouterr().err


# ----------------------------------------------------------------------------- fixtures

def fixture_user_names() -> set[str]:
    names = set()
    for p in FIXTURES.rglob("*"):
        if p.is_file():
            text = p.read_text(encoding="utf-8", errors="replace")
            names |= set(re.findall(r"/Users/([^/\"'\s]+)/", text))
            names |= set(re.findall(r"/home/([^/\"'\s]+)/", text))
    names.discard("USER")
    return names


@pytest.fixture(scope="module")
def fixture_store(tmp_path_factory):
    if not FIXTURES.is_dir():
        pytest.skip("fixtures/DiagnosticReports is missing (run fixtures/generate.py)")
    try:
        from triage.ingest import run_ingest  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"ingest stage unavailable: {exc}")
    import triage

    db = tmp_path_factory.mktemp("fx") / "t.db"
    t = triage.open(db)
    t.ingest([FIXTURES])
    yield t.store
    t.close()


def test_no_fixture_user_name_leaks(fixture_store, tmp_path):
    names = fixture_user_names()
    assert names, "the fixtures should contain home folders"
    for tracker in ("github", "jira", "markdown"):
        out = tmp_path / tracker
        idx = export_drafts(fixture_store, tracker, out, project="MLC")
        assert idx, "every fixture cluster should get a draft"
        text = "\n".join(p.read_text() for p in out.iterdir()).lower()
        for n in names:
            assert n.lower() not in text, (tracker, n)
            for part in re.split(r"[._-]", n):
                if len(part) >= 3:
                    assert not re.search(rf"(?<![a-z0-9]){re.escape(part.lower())}(?![a-z0-9])",
                                         text), (tracker, part)
        for host in ("alices-mbp", "bobs-mac-studio", "carol-mbp-m4"):
            assert host not in text
        assert "crashreporterkey" not in text or "<redacted>" in text
    out = tmp_path / "raw"
    export_drafts(fixture_store, "markdown", out, redact=False)
    text = "\n".join(p.read_text() for p in out.iterdir())
    assert any(f"/Users/{n}/" in text for n in names)


def test_new_drafts_come_with_the_newest_report_attached(fixture_store, tmp_path):
    out = tmp_path / "att"
    idx = export_drafts(fixture_store, "github", out, redact=False)
    new = [e for e in idx if e["kind"] == "new"]
    assert new and all(len(e["attachments"]) == 1 for e in new)
    for e in new:
        att = Path(e["attachments"][0])
        assert att.name.startswith(f"{e['id']}.report.") and att.parent == out
        iid = re.search(r"incident ([0-9A-F-]{36})", (out / f"{e['id']}.md").read_text()).group(1)
        path, ts = fixture_store.conn.execute(
            "SELECT path, captured_ts FROM incidents WHERE incident_id=?", (iid,)).fetchone()
        assert att.read_bytes() == Path(path).read_bytes()       # --no-redact: as ingested
        newest = fixture_store.conn.execute(
            "SELECT max(captured_ts) FROM incidents WHERE cluster_id=?", (e["id"],)).fetchone()[0]
        assert ts == newest
        assert "### Attached report" in (out / f"{e['id']}.md").read_text()
    out2 = tmp_path / "noatt"
    idx2 = export_drafts(fixture_store, "markdown", out2, attach=False)
    assert all(e.get("attachments", []) == [] for e in idx2)
    assert not [p for p in out2.iterdir() if ".report." in p.name]
    assert "Attached report" not in "".join(p.read_text() for p in out2.glob("C-*.md"))


def test_attachment_falls_back_to_the_next_newest_report(fixture_store, tmp_path):
    """An older store without a stored copy, whose newest report file is gone: the next newest
    report of the cluster is attached."""
    import shutil
    import sqlite3

    import triage

    db = tmp_path / "copy.db"
    src = sqlite3.connect(fixture_store.path)
    dst = sqlite3.connect(db)
    src.backup(dst)
    src.close()
    dst.execute("DELETE FROM originals")
    dst.commit()
    cid, = dst.execute("SELECT cluster_id FROM incidents WHERE cluster_id IS NOT NULL "
                       "GROUP BY cluster_id "
                       "HAVING COUNT(*) >= 3 ORDER BY cluster_id LIMIT 1").fetchone()
    (newest, n_path), (second, s_path) = dst.execute(
        "SELECT incident_id, path FROM incidents WHERE cluster_id=? "
        "ORDER BY captured_ts DESC LIMIT 2", (cid,)).fetchall()
    moved = tmp_path / "moved"
    moved.mkdir()
    copies = {}
    for p in {n_path, s_path}:
        copies[p] = moved / Path(p).name
        shutil.copy2(p, copies[p])
    # point the two newest incidents at copies, then lose the newest one
    dst.execute("UPDATE incidents SET path=? WHERE incident_id=?", (str(copies[n_path]), newest))
    dst.execute("UPDATE incidents SET path=? WHERE incident_id=?", (str(copies[s_path]), second))
    dst.commit()
    dst.close()
    copies[n_path].unlink()
    with triage.open(db) as t:
        idx = export_drafts(t.store, "markdown", tmp_path / "out", cluster=cid, redact=False)
    (att,) = idx[0]["attachments"]
    assert Path(att).read_bytes() == copies[s_path].read_bytes()
    assert second in (tmp_path / "out" / f"{cid}.md").read_text()


def test_unwritable_output_folder_is_a_one_line_error(store, bug, tmp_path, monkeypatch, capsys):
    from triage.cli import main

    out = tmp_path / "ro"
    out.mkdir()
    real_write = Path.write_bytes

    def refuse(self, data):
        if self.parent == out:
            raise PermissionError(13, "Permission denied")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", refuse)
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: refuse(self, b""))
    with pytest.raises(Exception) as ei:
        export_drafts(store, "github", out)
    assert "cannot write: Permission denied" in str(ei.value)
    monkeypatch.setenv("TRIAGE_DB", str(store.path))
    capsys.readouterr()
    assert main(["export", "--tracker", "github", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot write: Permission denied" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
