"""QA follow-ups (2): commands that change existing data never create a missing --db store,
`triage frames FILE` refuses a file above the ingest size limit before reading it, an output
option never overwrites the store, the README's `triage show` line says what show prints."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest


from test_builds import _isolated_config  # noqa: F401 - the shared config isolation
from test_qa_followups import _isolated, one_error_line, run  # noqa: F401 - shared fixture and helpers

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "fixtures" / "DiagnosticReports"
REPORT = REPORTS / "ANECompilerService-2026-09-05-115509.ips"


def ingested_store(capsys, path: Path) -> Path:
    code, _, err = run(capsys, "--db", path, "ingest", REPORT)
    assert code == 0, err
    return path


def first(capsys, db: Path, what: str) -> str:
    code, out, err = run(capsys, "--db", db, what, "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    return rows[0]["incident_id" if what == "incidents" else "id"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------- 1. commands that change data and a missing --db

CHANGING = [
    ["recluster", "--dry-run"], ["recluster"], ["recluster", "--full", "--format", "json"],
    ["symbolicate"], ["symbolicate", "--incident", "0123abcd"], ["link"],
    ["merge", "C-1", "C-2"], ["split", "C-1", "--incident", "0123abcd"],
    ["filed", "C-1", "https://example.com/issues/1"],
]


@pytest.mark.parametrize("argv", CHANGING, ids=lambda a: " ".join(a[:3]))
def test_changing_command_on_a_missing_db_creates_nothing(tmp_path, capsys, argv):
    db = tmp_path / "x" / "missing" / "none.db"
    code, out, err = run(capsys, "--db", db, *argv)
    assert code == 2 and out == "", (out, err)
    one_error_line(err)
    assert f"{db}: no triage store here (run `triage ingest` first)" in err \
        or f"no triage store at {db}; run `triage ingest` first" in err, err
    assert not (tmp_path / "x").exists()


def test_missing_db_in_an_existing_folder_is_not_created_then_works(tmp_path, capsys):
    db = tmp_path / "s.db"
    code, _, err = run(capsys, "--db", db, "recluster", "--dry-run")
    assert code == 2
    assert err == f"triage: error: {db}: no triage store here (run `triage ingest` first)\n"
    assert not db.exists() and not Path(f"{db}-wal").exists()
    # once something was ingested, the same commands work on that store
    ingested_store(capsys, db)
    cid = first(capsys, db, "clusters")
    code, out, err = run(capsys, "--db", db, "recluster", "--dry-run", "--format", "json")
    assert code == 0 and json.loads(out)["dry_run"] is True, err
    code, out, err = run(capsys, "--db", db, "link", "--format", "json")
    assert code == 0, err
    code, out, err = run(capsys, "--db", db, "filed", cid, "https://example.com/issues/7")
    assert code == 0 and out == f"{cid} filed at https://example.com/issues/7\n", err
    code, out, err = run(capsys, "--db", db, "filed", "--format", "json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [cid]


@pytest.mark.parametrize("argv", [["merge", "C-nope", "C-2"],
                                  ["split", "C-nope", "--signature", "x"],
                                  ["filed", "C-nope", "https://example.com/1"]],
                         ids=lambda a: a[0])
def test_cluster_lookup_on_a_missing_db_names_the_cluster(tmp_path, capsys, argv):
    db = tmp_path / "none.db"
    code, _, err = run(capsys, "--db", db, *argv)
    assert code == 2 and err == (f"triage: error: C-nope: no such cluster (no triage store at "
                                 f"{db}; run `triage ingest` first)\n")
    assert not db.exists()


def test_recluster_on_the_default_store_first_run_still_works(tmp_path, capsys):
    code, out, err = run(capsys, "recluster", "--dry-run", "--format", "json")
    assert code == 0 and json.loads(out)["incidents"] == 0, err
    assert err.startswith("triage: note: nothing ingested yet")


@pytest.mark.parametrize("argv", [["recluster", "--dry-run"], ["symbolicate"]],
                         ids=lambda a: a[0])
def test_bad_rule_file_is_refused_before_the_default_store_is_opened(tmp_path, capsys, argv):
    rules = tmp_path / "missing-rules.txt"
    code, out, err = run(capsys, "--rules", rules, *argv)
    assert code == 2 and out == ""
    assert err == f"triage: error: {rules}: rule file not found\n"     # and no first-run note
    assert not (tmp_path / "default-data").exists()


# --------------------------------------------- 2. frames FILE above the ingest size limit

def test_frames_refuses_a_file_above_the_size_limit_without_reading_it(tmp_path, capsys,
                                                                       monkeypatch):
    from triage.reports.discover import MAX_REPORT_BYTES, too_large_reason

    big = tmp_path / "big.ips"
    with open(big, "wb") as fh:          # sparse: no disk space used
        fh.truncate(MAX_REPORT_BYTES + 1)

    def no_reading(self, *a, **k):
        raise AssertionError("the file was read")

    with monkeypatch.context() as m:
        m.setattr(Path, "read_bytes", no_reading)
        code, out, err = run(capsys, "frames", big)
    assert code == 2 and out == ""
    assert err == f"triage: error: {big}: {too_large_reason(MAX_REPORT_BYTES + 1)}\n"
    # a report file below the limit is still read
    code, out, err = run(capsys, "frames", REPORT, "--format", "json")
    assert code == 0 and json.loads(out), err


def test_frames_gives_the_reason_ingest_gives(tmp_path, capsys, monkeypatch):
    from triage.reports import discover

    monkeypatch.setattr(discover, "MAX_REPORT_BYTES", 1000)   # the fixture is ~20 KB
    size = REPORT.stat().st_size
    code, out, err = run(capsys, "frames", REPORT)
    assert code == 2 and out == ""
    reason = discover.too_large_reason(size)
    assert err == f"triage: error: {REPORT}: {reason}\n"
    # ingest gives the same reason for the same file
    code, _, err = run(capsys, "--db", tmp_path / "s.db", "ingest", REPORT)
    assert f"{REPORT}: {reason}\n" in err


# --------------------------------------------------- 3. an output path that is the store

def _store_intact(capsys, db: Path, before: str) -> None:
    assert digest(db) == before
    code, out, err = run(capsys, "--db", db, "incidents", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 1, err


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
@pytest.mark.parametrize("command", ["original", "report"])
def test_output_option_refuses_the_store(tmp_path, capsys, command, suffix):
    db = ingested_store(capsys, tmp_path / "s.db")
    argv = ["original", first(capsys, db, "incidents")] if command == "original" else ["report"]
    before = digest(db)
    target = Path(f"{db}{suffix}")
    existed = target.exists()
    for option in ("-o", "--output"):
        code, out, err = run(capsys, "--db", db, *argv, option, target)
        assert code == 2 and out == "", err
        what = "the triage store itself" if not suffix else f"the triage store's {suffix} file"
        assert one_error_line(err).startswith(f"triage: error: --output {target}: is {what} ")
    assert target.exists() == existed
    _store_intact(capsys, db, before)


@pytest.mark.parametrize("how", ["relative", "symlink", "hardlink", "dotdot"])
def test_output_option_refuses_the_store_under_another_name(tmp_path, capsys, monkeypatch, how):
    db = ingested_store(capsys, tmp_path / "s.db")
    before = digest(db)
    if how == "relative":
        monkeypatch.chdir(tmp_path)
        target = Path("s.db")
    elif how == "symlink":
        target = tmp_path / "link.db"
        target.symlink_to(db)
    elif how == "hardlink":
        target = tmp_path / "hard.db"
        os.link(db, target)
    else:
        (tmp_path / "sub").mkdir()
        target = tmp_path / "sub" / ".." / "s.db"
    code, _, err = run(capsys, "--db", db, "report", "-o", target)
    assert code == 2 and "is the triage store itself" in one_error_line(err)
    _store_intact(capsys, db, before)


def test_export_out_refuses_the_store(tmp_path, capsys):
    db = ingested_store(capsys, tmp_path / "s.db")
    before = digest(db)
    code, _, err = run(capsys, "--db", db, "export", "--tracker", "github", "--out", db)
    assert code == 2
    assert one_error_line(err).startswith(f"triage: error: --out {db}: is the triage store "
                                          "itself ")
    _store_intact(capsys, db, before)


def test_export_out_refuses_a_folder_where_it_would_overwrite_the_store(tmp_path, capsys):
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    db = ingested_store(capsys, drafts / "index.json")
    before = digest(db)
    code, _, err = run(capsys, "--db", db, "export", "--tracker", "github", "--out", drafts)
    assert code == 2
    assert one_error_line(err).startswith(f"triage: error: --out {drafts}: the triage store {db}"
                                          " is in this folder")
    assert sorted(p.name for p in drafts.iterdir()) == ["index.json"]
    _store_intact(capsys, db, before)
    # outputs beside the store still work: drafts in the store's own folder (no draft is named
    # like the store), a report and an original file
    store = tmp_path / "s.db"
    db.rename(store)
    code, _, err = run(capsys, "--db", store, "export", "--tracker", "github", "--out", tmp_path)
    assert code == 0 and (tmp_path / "index.json").is_file(), err
    code, _, err = run(capsys, "--db", store, "report", "-o", tmp_path / "report.md",
                       "--format", "markdown")
    assert code == 0 and (tmp_path / "report.md").is_file(), err
    iid = first(capsys, store, "incidents")
    code, _, err = run(capsys, "--db", store, "original", iid, "-o", tmp_path / "crash.ips")
    assert code == 0 and (tmp_path / "crash.ips").is_file(), err


@pytest.mark.parametrize("explicit", [True, False])
def test_record_journal_that_is_the_store_is_refused_before_running(tmp_path, capsys, explicit):
    if explicit:
        db = ingested_store(capsys, tmp_path / "s.db")
        argv = ["--db", db, "record", "--journal", db]
        name = f"--journal {db}"
    else:
        db = ingested_store(capsys, tmp_path / "journal.jsonl")   # the default journal's name
        argv = ["--db", db, "record"]
        name = f"journal {db}"
    before = digest(db)
    marker = tmp_path / "ran"
    code, out, err = run(capsys, *argv, "--", sys.executable, "-c",
                         f"open({str(marker)!r}, 'w').close()")
    assert code == 2 and out == ""
    assert one_error_line(err).startswith(f"triage: error: {name}: is the triage store itself ")
    assert not marker.exists()
    _store_intact(capsys, db, before)


# --------------------------------------------------------- 4. README: what `triage show` prints

#: words the README may use for `triage show`, and the show JSON field that backs each
_SHOW_WORDS = {"signature": "signature", "count": "count", "first": "first_seen",
               "last": "last_seen", "encoding": "encodings", "flag": "flags",
               "correlation": "correlations", "configuration": "configurations",
               "finding": "finding", "frame": "frames", "build": "os_builds",
               "incident": "incidents"}


def test_readme_show_line_only_claims_what_show_prints(tmp_path, capsys):
    lines = [ln for ln in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
             if ln.startswith("triage show ")]
    assert len(lines) == 1, lines
    claim = lines[0].split("#", 1)[1].lower()
    db = ingested_store(capsys, tmp_path / "s.db")
    cid = first(capsys, db, "clusters")
    code, out, err = run(capsys, "--db", db, "show", cid, "--format", "json")
    assert code == 0, err
    detail = json.loads(out)
    code, table, err = run(capsys, "--db", db, "show", cid)
    assert code == 0, err
    claimed = [w for w in _SHOW_WORDS if w in claim]
    assert claimed, claim
    for word in claimed:
        assert _SHOW_WORDS[word] in detail, (word, claim)
    # and the table shows them too (the header line carries the signature)
    if "signature" in claimed:
        assert detail["signature"] in table
