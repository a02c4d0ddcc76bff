"""QA round 4 (exports): filed clusters after merge/recluster/split, stale drafts, redaction
(JSON-escaped and spaced home folders, service-account names), --label checks, duplicate
configurations in updates, the Jira fingerprint line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from triage.errors import UserError
from triage.report.export import (canonical_config, diff_snapshot, export_drafts,
                                  filed_records, find_fingerprint, record_filed, snapshot_of,
                                  update_lines)
from triage.report.redact import Redactor, json_escaped, redactor_for, user_names_in

from test_report import CFG_A, Rows  # noqa: E402  (tests/ is on sys.path under pytest)
from test_export import store  # noqa: F401 - the same synthetic store fixture

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "DiagnosticReports"


def _sql_merge(store, keep: str, other: str) -> None:
    """What `triage merge KEEP OTHER` leaves behind (rows without stacks are not moved by the
    real merge, so the hand-built stores do it by hand)."""
    with store.transaction() as conn:
        conn.execute("UPDATE clusters SET merged_into=? WHERE cluster_id=?", (keep, other))
        conn.execute("UPDATE incidents SET cluster_id=? WHERE cluster_id=?", (keep, other))


def _cli(db, *args):
    from triage.cli import main

    return main(["--db", str(db), *args])


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory):
    if not FIXTURES.is_dir():
        pytest.skip("fixtures/DiagnosticReports is missing (run fixtures/generate.py)")
    import triage

    path = tmp_path_factory.mktemp("qa4x") / "t.db"
    with triage.open(path) as t:
        t.ingest([FIXTURES])
    return path


@pytest.fixture
def fx(fixture_db, tmp_path):
    """A private copy of the fixture store (the tests merge, file and recluster)."""
    db = tmp_path / "fx.db"
    src = sqlite3.connect(fixture_db)
    dst = sqlite3.connect(db)
    src.backup(dst)
    src.close()
    dst.close()
    return db


def _index(capsys) -> list[dict]:
    return json.loads(capsys.readouterr().out)


# ----------------------------------------------------------------------------- bug 1

def test_merge_into_unfiled_cluster_updates_the_filed_issue(fx, tmp_path, capsys):
    """repro 4: file C-e4084b, merge it into C-4f0a06: the next export is an update of issue 7,
    never a new issue holding the crashes already filed there."""
    assert _cli(fx, "export", "--tracker", "github", "--out", str(tmp_path / "x")) == 0
    assert _cli(fx, "filed", "C-e4084b", "https://github.com/acme/ml/issues/7") == 0
    assert _cli(fx, "merge", "C-4f0a06", "C-e4084b") == 0
    capsys.readouterr()
    out = tmp_path / "x2"
    assert _cli(fx, "export", "--tracker", "github", "--out", str(out), "-f", "json") == 0
    idx = {e["id"]: e for e in _index(capsys)}
    e = idx["C-4f0a06"]
    assert e["kind"] == "update" and e["url"].endswith("/issues/7")
    assert e["filed_as"] == "C-e4084b" and e["also_filed"] == []
    assert not (out / "C-4f0a06.json").exists() and not (out / "C-4f0a06.md").exists()
    assert not [x for x in idx.values() if x["kind"] == "new" and x["id"] in
                ("C-4f0a06", "C-e4084b")]
    comment = (out / "C-4f0a06.comment.md").read_text()
    assert "`C-e4084b` (the cluster filed here) was merged into `C-4f0a06`" in comment
    assert _cli(fx, "filed", "-f", "json") == 0
    (rec,) = _index(capsys)
    assert rec["id"] == "C-e4084b" and rec["cluster"] == "C-4f0a06"
    assert rec["snapshot"]["cluster"] == "C-4f0a06"          # the update moved it on
    # nothing new since: unchanged, nothing written
    assert _cli(fx, "export", "--tracker", "github", "--out", str(out), "-f", "json") == 0
    idx = {e["id"]: e for e in _index(capsys)}
    assert idx["C-4f0a06"]["kind"] == "unchanged"
    assert not list(out.glob("C-4f0a06.*"))
    # the table and csv listings name the current cluster too
    assert _cli(fx, "filed", "-f", "csv") == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        "id,cluster,url,filed_at", rec["id"] + ",C-4f0a06," + rec["url"] + "," + rec["filed_at"]]


def test_recluster_merge_of_filed_cluster_updates_the_filed_issue(fx, tmp_path, capsys):
    """repro 4, second half: recluster merges the filed C-4f0a06 into C-e4084b."""
    assert _cli(fx, "export", "--tracker", "github", "--out", str(tmp_path / "x")) == 0
    assert _cli(fx, "filed", "C-4f0a06", "https://github.com/acme/ml/issues/9") == 0
    rules = tmp_path / "r2.txt"
    rules.write_text("[irrelevant]\nGPU::anePreCompileBinary\nGPU::RegionOps::lowerSliceUpdate\n")
    assert _cli(fx, "--rules", str(rules), "recluster") == 0
    assert "C-4f0a06 -> C-e4084b" in capsys.readouterr().out
    out = tmp_path / "x"
    assert _cli(fx, "export", "--tracker", "github", "--out", str(out), "-f", "json") == 0
    idx = {e["id"]: e for e in _index(capsys)}
    e = idx["C-e4084b"]
    assert e["kind"] == "update" and e["url"].endswith("/issues/9") and e["filed_as"] == "C-4f0a06"
    # the first export's new-issue draft of C-e4084b is gone from the folder
    assert sorted(p.name for p in out.glob("C-e4084b.*")) == ["C-e4084b.comment.json",
                                                             "C-e4084b.comment.md"]


def test_two_filed_clusters_merged_update_the_earliest_filed_issue(store, tmp_path):
    r = Rows(store)
    r.crash("C-aaaaaa", 0)
    r.crash("C-bbbbbb", 1)
    export_drafts(store, "github", tmp_path / "a")
    record_filed(store, "C-aaaaaa", "https://t/issues/1")
    record_filed(store, "C-bbbbbb", "https://t/issues/2")
    with store.transaction() as conn:                    # filed in this order, a second apart
        conn.execute("UPDATE filed SET filed_at='2026-10-01T00:00:00+00:00' "
                     "WHERE cluster_id='C-aaaaaa'")
        conn.execute("UPDATE filed SET filed_at='2026-10-01T00:00:01+00:00' "
                     "WHERE cluster_id='C-bbbbbb'")
    _sql_merge(store, "C-bbbbbb", "C-aaaaaa")           # the later-filed one survives
    idx = export_drafts(store, "github", tmp_path / "b")
    (e,) = idx
    assert e["id"] == "C-bbbbbb" and e["kind"] == "update"
    assert e["url"] == "https://t/issues/1" and e["filed_as"] == "C-aaaaaa"
    assert e["also_filed"] == [{"id": "C-bbbbbb", "url": "https://t/issues/2"}]
    body = (tmp_path / "b" / "C-bbbbbb.comment.md").read_text()
    assert "also filed at https://t/issues/2" in body
    assert [(f["id"], f["cluster"]) for f in filed_records(store)] == [
        ("C-aaaaaa", "C-bbbbbb"), ("C-bbbbbb", "C-bbbbbb")]


def test_filing_a_cluster_that_absorbed_a_filed_one_says_so(store, capsys):
    from triage.cli import main

    r = Rows(store)
    r.crash("C-aaaaaa", 0)
    r.crash("C-bbbbbb", 1)
    record_filed(store, "C-aaaaaa", "https://t/issues/1")
    _sql_merge(store, "C-bbbbbb", "C-aaaaaa")
    assert main(["--db", str(store.path), "filed", "C-bbbbbb", "https://t/issues/2"]) == 0
    err = capsys.readouterr().err
    assert "C-aaaaaa (merged into C-bbbbbb) was filed earlier at https://t/issues/1" in err


def test_a_cluster_split_off_a_filed_one_names_the_filed_issue(store, tmp_path):
    r = Rows(store)
    r.crash("C-aaaaaa", 0)
    r.crash("C-cccccc", 1)
    record_filed(store, "C-aaaaaa", "https://t/issues/1")
    with store.transaction() as conn:
        conn.execute("INSERT INTO cluster_overrides(action, cluster_id, selector, new_id, "
                     "created_at) VALUES('split', 'C-aaaaaa', '{}', 'C-cccccc', 'now')")
    idx = {e["id"]: e for e in export_drafts(store, "github", tmp_path / "o")}
    assert idx["C-cccccc"]["kind"] == "new"
    assert idx["C-cccccc"]["split_from"] == [{"id": "C-aaaaaa", "url": "https://t/issues/1"}]
    body = (tmp_path / "o" / "C-cccccc.md").read_text()
    assert "### Related" in body and "Split from `C-aaaaaa`, filed at https://t/issues/1" in body


# ----------------------------------------------------------------------------- bug 5

def test_unchanged_reexport_leaves_no_stale_comment(store, tmp_path):
    r = Rows(store)
    r.crash("C-3f9a2c", 0)
    out = tmp_path / "x"
    export_drafts(store, "github", out)
    (out / "notes.txt").write_text("mine")                 # not a draft: left alone
    record_filed(store, "C-3f9a2c", "https://t/issues/3")
    r.crash("C-3f9a2c", 2)
    removed: list[str] = []
    idx = export_drafts(store, "github", out, removed=removed)
    assert idx[0]["kind"] == "update"
    assert "C-3f9a2c.report.ips" not in {p.name for p in out.iterdir()} or \
        "C-3f9a2c.report.ips" in removed
    assert sorted(p.name for p in out.iterdir()) == [
        "C-3f9a2c.comment.json", "C-3f9a2c.comment.md", "index.json", "notes.txt"]
    idx = export_drafts(store, "github", out)
    assert idx[0]["kind"] == "unchanged" and idx[0]["files"] == []
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "notes.txt"]


def test_filing_removes_the_attached_report_too(fixture_db, tmp_path, fx):
    import triage

    with triage.open(fx) as t:
        out = tmp_path / "x"
        idx = export_drafts(t.store, "github", out, cluster="C-73eec4")
        assert (out / "C-73eec4.report.ips").exists() and idx[0]["kind"] == "new"
        record_filed(t.store, "C-73eec4", "https://t/issues/3")
        idx = export_drafts(t.store, "github", out, cluster="C-73eec4")
        assert idx[0]["kind"] == "unchanged"
        assert sorted(p.name for p in out.iterdir()) == ["index.json"]


def test_folder_matches_the_index_after_switching_tracker(store, tmp_path, capsys):
    from triage.cli import main

    r = Rows(store)
    r.crash("C-3f9a2c", 0)
    out = tmp_path / "x"
    export_drafts(store, "github", out)
    assert main(["--db", str(store.path), "export", "--tracker", "markdown", "--out", str(out),
                 "-f", "json"]) == 0
    cap = capsys.readouterr()
    idx = json.loads(cap.out)
    listed = {Path(f).name for e in idx for f in e["files"] + e.get("attachments", [])}
    assert {p.name for p in out.iterdir()} == listed | {"index.json"}
    assert "removed 1 stale draft file(s)" in cap.err and "C-3f9a2c.json" in cap.err


# ----------------------------------------------------------------------------- bug 6

def test_json_escaped_home_folder_and_name():
    r = Redactor().learn(["/Users/zoë.müller/Developer/tool"])
    text = ('"procPath" : "\\/Users\\/zo\\u00eb.m\\u00fcller\\/Developer\\/coreai-build",\n'
            '"owner": "zo\\u00EB", "name": "m\\u00fcller", raw /Users/zoë.müller/x')
    out = r(text)
    assert "\\/Users\\/USER\\/Developer\\/coreai-build" in out
    assert "/Users/USER/x" in out
    low = out.lower()
    for leaked in ("zo\\u00eb", "m\\u00fcller", "zoë", "müller"):
        assert leaked not in low, leaked
    # a store whose paths were decoded learns the name; the escaped copy is redacted
    assert user_names_in("\\/Users\\/zo\\u00eb.m\\u00fcller\\/x") == {"zoë.müller"}
    assert json_escaped("zoë") == "zo\\u00eb"


def test_home_folder_with_spaces():
    r = Redactor()
    out = r("cwd /Users/John Smith/work, model '/Users/John Smith/m.mlpackage'; "
            "signed John Smith")
    assert "/Users/USER/work" in out and "/Users/USER/m.mlpackage" in out
    assert "john" not in out.lower() and "smith" not in out.lower()
    # without a following slash a space ends the name
    assert r("see /Users/bob and more") == "see /Users/USER and more"


def test_service_account_names_are_not_redacted_as_words(store, tmp_path):
    r = Redactor().learn(["/Users/build/Developer/coreai-tools/.build/release/coreai-build"])
    out = r("title (coreai-build) on build 26A5353q, /Users/build/x, OS builds")
    assert out == "title (coreai-build) on build 26A5353q, /Users/USER/x, OS builds"
    rows = Rows(store)
    rows.crash("C-3f9a2c", 0)
    with store.transaction() as c:
        c.execute("UPDATE incidents SET process_path="
                  "'/Users/build/Developer/coreai-tools/.build/release/coreai-build'")
    (e,) = export_drafts(store, "github", tmp_path / "o")
    assert e["title"].endswith("(coreai-build)")
    body = (tmp_path / "o" / "C-3f9a2c.md").read_text()
    assert "coreai-USER" not in body and "Processes: coreai-build" in body


def test_personal_names_are_still_removed_from_host_and_file_names():
    r = Redactor().learn(["/Users/carol.diaz/x"])
    out = r("ANECompilerService_2026-07-24-151025_carol-mbp-m4.crash, com.caroldiaz.App")
    assert "carol" not in out.lower()
    assert r("kimono") == "kimono" and Redactor().learn(["/Users/kim/x"])("kimono") == "kimono"


def test_redactor_for_store_with_spaced_home(store):
    with store.transaction() as c:
        c.execute("INSERT INTO compiles(record_key, raw) VALUES('k', ?)",
                  (json.dumps({"cwd": "/Users/John Smith/work"}),))
    r = redactor_for(store)
    assert "John Smith" in r.names or "John" in " ".join(r.names)
    assert "smith" not in r("by John Smith").lower()


# ----------------------------------------------------------------------------- bug 7

@pytest.mark.parametrize("tracker,labels,msg", [
    ("jira", ["needs triage"], "Jira labels cannot contain spaces"),
    ("jira", [""], "empty label"),
    ("github", [""], "empty label"),
    ("markdown", ["  "], "empty label"),
    ("github", ["x" * 51], "longer than 50"),
    ("github", [" padded"], "leading or trailing spaces"),
])
def test_bad_labels_are_one_line_errors(store, tmp_path, tracker, labels, msg):
    Rows(store).crash("C-3f9a2c", 0)
    with pytest.raises(UserError, match=msg):
        export_drafts(store, tracker, tmp_path / "o", project="ML",
                      labels=["triage", "crash", *labels])
    assert not (tmp_path / "o").exists()                  # refused before writing anything


def test_label_checks_from_the_cli(store, tmp_path, capsys):
    from triage.cli import main

    Rows(store).crash("C-3f9a2c", 0)
    db = str(store.path)
    assert main(["--db", db, "export", "--tracker", "jira", "--project", "ML", "--out",
                 str(tmp_path / "x"), "--label", "needs triage"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'needs triage'" in err and "needs-triage" in err
    # GitHub allows spaces; duplicates are dropped
    assert main(["--db", db, "export", "--tracker", "github", "--out", str(tmp_path / "g"),
                 "--label", "needs triage", "--label", "crash", "-f", "json"]) == 0
    (e,) = json.loads(capsys.readouterr().out)
    assert e["labels"] == ["triage", "crash", "needs triage", "triage:C-3f9a2c",
                           "status:new"]


# ----------------------------------------------------------------------------- bug 13

def test_one_configuration_is_listed_once():
    full = {"encoding.dtype": None, "flags.platform": "macOS", "flags.compression": None}
    c = {"id": "C-1", "count_total": 2, "builds_total": {"26A5353q": 2},
         "configurations": [{"config": full, "crashed": 2}]}
    snap = snapshot_of(c, [{"_config": {"flags.platform": "macOS"}}])
    assert snap["configurations"] == ['{"flags.platform":"macOS"}']
    # an old snapshot holding the duplicate pair: neither form is new, nothing listed twice
    old = {"count_total": 1, "builds": {}, "configurations": [
        canonical_config({"flags.platform": "macOS"}),
        json.dumps(full, sort_keys=True, separators=(",", ":"))]}
    d = diff_snapshot(old, {**snap, "configurations": [json.dumps(full), '{"a":1}',
                                                       '{"a":1,"b":null}']})
    assert d["new_configurations"] == ['{"a":1}']
    line = [x for x in update_lines({"id": "C-1", "count_total": 2, "status": "ongoing"}, d,
                                    None) if "configurations" in x]
    assert line == ['- new configurations: {"a":1}']


def test_update_after_new_configuration_lists_it_once(store, tmp_path):
    r = Rows(store)
    cid = r.compile(CFG_A, 0, exit_code=-11)
    r.crash("C-3f9a2c", 0, compile_id=cid)
    export_drafts(store, "github", tmp_path / "a")
    record_filed(store, "C-3f9a2c", "https://t/issues/3")
    cfg = {"flags.platform": "macOS"}
    cid = r.compile(cfg, 2, exit_code=-11)
    r.crash("C-3f9a2c", 2, compile_id=cid)
    (e,) = export_drafts(store, "github", tmp_path / "b")
    assert e["new"]["new_configurations"] == ['{"flags.platform":"macOS"}']
    (f,) = filed_records(store)
    confs = f["snapshot"]["configurations"]
    assert len(confs) == len({canonical_config(x) for x in confs}) == 2


# ----------------------------------------------------------------------------- Jira fingerprint

def test_jira_fingerprint_is_a_labelled_footer_not_an_html_comment(store, tmp_path):
    r = Rows(store)
    r.crash("C-3f9a2c", 0)
    export_drafts(store, "jira", tmp_path / "j", project="ML")
    desc = json.loads((tmp_path / "j" / "C-3f9a2c.json").read_text())["fields"]["description"]
    assert "<!--" not in desc
    assert desc.rstrip().endswith("{color:#97a0af}triage-fingerprint: C-3f9a2c{color}")
    assert find_fingerprint(desc) == "C-3f9a2c"
    record_filed(store, "C-3f9a2c", "ML-12")
    r.crash("C-3f9a2c", 2)
    export_drafts(store, "jira", tmp_path / "j", project="ML")
    body = json.loads((tmp_path / "j" / "C-3f9a2c.comment.json").read_text())["body"]
    assert "<!--" not in body and find_fingerprint(body) == "C-3f9a2c"
    # GitHub and markdown keep the hidden HTML comment
    record_filed(store, "C-3f9a2c", "u")
    with store.transaction() as c:
        c.execute("DELETE FROM filed")
    export_drafts(store, "github", tmp_path / "g")
    assert "<!-- triage-fingerprint: C-3f9a2c -->" in (tmp_path / "g" / "C-3f9a2c.md").read_text()


def test_bounded_export_shows_only_compiles_and_exceptions_in_range(tmp_path):
    """--until: the draft's Reproduction is the compile of a crash in range, not the cluster's
    newest compile (fixture cluster C-4f94f9: compiles with --output build/vit-sparse-beta5/ in
    August, build/vit-sparse-rc/ in late September)."""
    from triage.ingest import run_ingest
    from triage.store.db import Store

    st = Store.open(tmp_path / "f.db")
    run_ingest(st, [str(FIXTURES)])
    try:
        export_drafts(st, "markdown", tmp_path / "all", cluster="C-4f94f9")
        export_drafts(st, "markdown", tmp_path / "aug", cluster="C-4f94f9", until="2026-08-22")
    finally:
        st.close()
    every = (tmp_path / "all" / "C-4f94f9.md").read_text()
    aug = (tmp_path / "aug" / "C-4f94f9.md").read_text()
    assert "--output build/vit-sparse-rc/" in every
    assert "--output build/vit-sparse-beta5/" in aug and "vit-sparse-rc" not in aug
