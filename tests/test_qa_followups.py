"""QA follow-ups: bad [releases] values, read-only commands and a missing --db store, an
unwritable `triage record` journal, a folder given as a rules file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from triage.cli import main

from test_builds import _isolated_config  # noqa: F401 - the shared config isolation

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "fixtures" / "DiagnosticReports" / "ANECompilerService-2026-09-05-115509.ips"


@pytest.fixture(autouse=True)
def _isolated(_isolated_config, tmp_path, monkeypatch):  # noqa: F811 - a fixture argument
    """No user config or store leaks in: test_builds' empty config home and fresh working
    folder, plus a per-user default store inside tmp_path."""
    monkeypatch.delenv("TRIAGE_DB", raising=False)
    monkeypatch.setattr("triage.cli_app.default_db_path",
                        lambda: tmp_path / "default-data" / "triage.db")
    yield _isolated_config


def run(capsys, *argv):
    capsys.readouterr()
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_error_line(err: str) -> str:
    assert err.startswith("triage: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def make_store(path: Path) -> Path:
    from triage.store.db import Store

    Store.open(path).close()
    return path


# ------------------------------------------------------------------ 1. [releases] value types

@pytest.mark.parametrize("toml, expected", [
    ('[releases]\nbeta5 = 5\n', "[releases] beta5 = 5: expected a build number string"),
    ('[releases]\nbeta5 = ["26A5353q"]\n', "[releases] beta5 = an array: expected a build"),
    ('[releases.iOS]\nbeta5 = 5\n', "[releases.iOS] beta5 = 5: expected a build number string"),
    # a table one level too deep: [releases.iOS.beta5] instead of beta5 = "..." under [releases.iOS]
    ('[releases.iOS.beta5]\nbuild = "23A5318c"\n',
     "[releases.iOS] beta5 = a table: expected a build number string"),
    ('releases = "26A5353q"\n', "releases = '26A5353q': expected a [releases] table"),
])
def test_releases_alias_that_is_not_a_string_is_an_error(_isolated, tmp_path, capsys, toml,
                                                         expected):
    cfg = _isolated / "triage.toml"
    cfg.write_text(toml, encoding="utf-8")
    db = make_store(tmp_path / "t.db")
    for argv in (["report", "--since", "beta5"], ["report", "--until", "beta5"],
                 ["releases", "--format", "json"]):
        code, out, err = run(capsys, "--db", db, *argv)
        assert code == 2, (argv, out, err)
        one_error_line(err)
        assert f"{cfg}: {expected}" in err, (argv, err)


def test_releases_error_names_the_file_that_holds_the_bad_value(_isolated, tmp_path, capsys):
    user_cfg = tmp_path / "xdg" / "triage" / "triage.toml"
    user_cfg.parent.mkdir(parents=True)
    user_cfg.write_text('[releases]\nrc = 7\n', encoding="utf-8")
    (_isolated / "triage.toml").write_text('[releases]\nbeta5 = "26A5353q"\n', encoding="utf-8")
    code, _, err = run(capsys, "--db", make_store(tmp_path / "t.db"), "report", "--since", "beta5")
    assert code == 2 and f"{user_cfg}: [releases] rc = 7:" in one_error_line(err)


def test_valid_releases_still_resolve(_isolated, tmp_path, capsys):
    (_isolated / "triage.toml").write_text(
        '[releases]\nbeta5 = "26A5353q"\n[releases.iOS]\nbeta5 = "23A5318c"\n', encoding="utf-8")
    code, out, err = run(capsys, "--db", make_store(tmp_path / "t.db"), "releases", "-f", "json")
    assert code == 0, err
    assert {a for r in json.loads(out) for a in r["aliases"]} == {"beta5",
                                                                              "iOS:beta5"}


# ------------------------------------------------------------- 2. read-only commands and --db

READ_ONLY = [
    ["incidents"], ["incidents", "--errors"], ["clusters"], ["report"], ["releases"],
    ["show", "C-1"], ["frames", "0123abcd"], ["export", "--tracker", "github", "--out", "drafts"],
    ["filed"], ["incidents", "--cluster", "C-1"],
]


@pytest.mark.parametrize("argv", READ_ONLY, ids=lambda a: " ".join(a[:2]))
def test_read_only_command_on_a_missing_db_creates_nothing(tmp_path, capsys, argv):
    db = tmp_path / "new" / "deep" / "t.db"
    code, out, err = run(capsys, "--db", db, *argv)
    assert code == 2 and out == "", (out, err)
    assert f"no triage store at {db}" in one_error_line(err) \
        or err == f"triage: error: {db}: no triage store here (run `triage ingest` first)\n"
    assert not (tmp_path / "new").exists()
    assert not (tmp_path / "cwd" / "drafts").exists()


def test_lookup_on_a_missing_db_names_what_was_looked_up(tmp_path, capsys):
    db = tmp_path / "none.db"
    code, _, err = run(capsys, "--db", db, "incidents", "--cluster", "C-nope")
    assert code == 2 and err == (f"triage: error: C-nope: no such cluster (no triage store at "
                                 f"{db}; run `triage ingest` first)\n")
    assert not db.exists()


def test_missing_db_in_an_existing_folder_is_not_created(tmp_path, capsys):
    db = tmp_path / "t.db"
    code, _, err = run(capsys, "--db", db, "clusters", "--format", "json")
    assert code == 2 and "no triage store here" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "xdg"]


def test_write_commands_still_create_the_store(tmp_path, capsys):
    db = tmp_path / "a" / "b" / "t.db"
    code, out, err = run(capsys, "--db", db, "releases", "alias", "beta5", "26A5353q")
    assert code == 0 and db.is_file(), err
    db2 = tmp_path / "c" / "t.db"
    code, _, err = run(capsys, "--db", db2, "ingest", REPORT)
    assert code == 0 and db2.is_file(), err
    # and a read-only command reads what was written
    code, out, err = run(capsys, "--db", db2, "incidents", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 1, err


def test_first_run_with_the_default_store_gives_an_empty_result(tmp_path, capsys):
    code, out, err = run(capsys, "clusters", "--format", "json")
    assert code == 0 and out.strip() == "[]"
    assert err.startswith("triage: note: nothing ingested yet") and err.count("\n") == 1
    assert (tmp_path / "default-data" / "triage.db").is_file()
    code, out, err = run(capsys, "clusters", "--format", "json")    # second run: no note
    assert code == 0 and out.strip() == "[]" and err == ""


# ------------------------------------------------------------------- 3. record journal problems

TRIAGE = [sys.executable, "-m", "triage.cli"]


def record(tmp_path, journal, status):
    env = {**os.environ, "TRIAGE_DB": str(tmp_path / "store" / "t.db")}
    return subprocess.run(TRIAGE + ["record", "--journal", str(journal), "--", sys.executable,
                                    "-c", f"print('ran'); raise SystemExit({status})"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_record_journal_is_a_folder_still_runs_and_passes_the_status(tmp_path):
    journal = tmp_path / "journals"
    journal.mkdir()
    r = record(tmp_path, journal, 3)
    assert r.returncode == 3 and r.stdout == "ran\n"
    assert r.stderr == (f"triage: warning: {journal}: compile record not written: is a folder, "
                        "not a journal file\n")
    assert list(journal.iterdir()) == []


def test_record_journal_under_a_file_warns_with_the_reason(tmp_path):
    (tmp_path / "plain").write_text("x")
    journal = tmp_path / "plain" / "journal.jsonl"
    r = record(tmp_path, journal, 0)
    assert r.returncode == 0 and r.stdout == "ran\n"
    assert r.stderr == (f"triage: warning: {journal}: compile record not written: "
                        f"{tmp_path / 'plain'} is not a folder\n")


def test_record_unwritable_journal_warns_and_passes_the_status(tmp_path, monkeypatch, capsys):
    from triage.context import record as rec

    def denied(path, record):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rec, "append_record", denied)
    journal = tmp_path / "ro" / "journal.jsonl"
    status = rec.run_and_record([sys.executable, "-c", "raise SystemExit(5)"], journal)
    assert status == 5
    assert capsys.readouterr().err == (f"triage: warning: {journal}: compile record not "
                                       "written: Permission denied\n")
    # a command that cannot be found: 127 all the same
    assert rec.run_and_record(["no-such-command-qa"], journal) == 127
    err = capsys.readouterr().err.splitlines()
    assert err == ["triage: no-such-command-qa: command not found",
                   f"triage: warning: {journal}: compile record not written: Permission denied"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_record_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = record(tmp_path, ro / "journal.jsonl", 4)
    finally:
        ro.chmod(0o755)
    assert r.returncode == 4 and r.stderr == (f"triage: warning: {ro / 'journal.jsonl'}: compile "
                                              "record not written: Permission denied\n")


# ------------------------------------------------------------------------ 4. a rules folder

@pytest.mark.parametrize("argv", [
    ["frames", str(REPORT)], ["ingest", str(REPORT)], ["recluster", "--dry-run"],
    ["incidents"], ["report"], ["symbolicate"],
], ids=lambda a: a[0])
@pytest.mark.parametrize("name", ["rules", "rules.toml", "prefix.txt"])
def test_rules_folder_is_an_error_for_every_command(tmp_path, capsys, argv, name):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "mine.toml").write_text('[[rule]]\nname = "x"\nmatch = "a"\n', encoding="utf-8")
    db = make_store(tmp_path / "t.db")
    code, out, err = run(capsys, "--db", db, "--rules", folder, *argv)
    assert code == 2 and out == ""
    assert err == (f"triage: error: --rules {folder}: is a folder, expected a rules file "
                   "(.toml or .txt)\n")


def test_rules_folder_in_triage_toml_is_an_error(_isolated, tmp_path, capsys):
    (_isolated / "myrules").mkdir()
    (_isolated / "triage.toml").write_text('[rules]\nfiles = ["myrules"]\n', encoding="utf-8")
    code, _, err = run(capsys, "frames", REPORT)
    assert code == 2
    assert err == (f"triage: error: {_isolated / 'myrules'} ([rules] files in triage.toml): "
                   "is a folder, expected a rules file (.toml or .txt)\n")


def test_rules_files_still_work(tmp_path, capsys):
    rules = tmp_path / "mine.toml"
    rules.write_text('[[rule]]\nname = "qa-test-rule"\nmatch = "^__pthread_kill$"\n'
                     'replace = "PTHREAD_KILL"\n', encoding="utf-8")
    code, out, err = run(capsys, "--rules", rules, "frames", REPORT)
    assert code == 0, err
    assert "mine.toml" in out.splitlines()[0]
