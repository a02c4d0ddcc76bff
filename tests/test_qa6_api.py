"""QA6: the library API gives exactly what the CLI gives, checks its inputs with one-line
UserErrors and never ignores an unknown filter name (items 2-5 of the QA6 report)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import triage
from triage.cli import main
from triage.errors import UserError

from test_builds import _isolated_config  # noqa: F401 - the shared config isolation
from test_report import B, T0, WEEK, Rows  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(_isolated_config, tmp_path, monkeypatch):  # noqa: F811 - a fixture argument
    monkeypatch.delenv("TRIAGE_DB", raising=False)
    monkeypatch.setattr("triage.cli_app.default_db_path",
                        lambda: tmp_path / "default-data" / "triage.db")
    yield _isolated_config


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "t.db"
    t = triage.open(path)
    r = Rows(t.store)
    for bi in range(5):                         # C-aaaaaa on every build, C-bbbbbb on the last
        r.crash("C-aaaaaa", bi)
    r.crash("C-bbbbbb", 4)
    r.crash("C-cccccc", 1, platform="iOS")      # one iOS crash (build numbers do not compare)
    hang = r.crash("C-tmp000", 2, kind="hang")  # a hang: never clustered
    with t.store.transaction() as conn:
        conn.execute("UPDATE incidents SET cluster_id=NULL, signature=NULL WHERE incident_id=?",
                     (hang,))
        conn.execute("DELETE FROM clusters WHERE cluster_id='C-tmp000'")
    t.close()
    return path


@pytest.fixture
def t(db):
    t = triage.open(db)
    yield t
    t.close()


def cli(capsys, *argv):
    capsys.readouterr()
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def cli_json(capsys, db, *argv):
    code, out, err = cli(capsys, "--db", db, *argv)
    assert code == 0, err
    return json.loads(out)


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


# ----------------------------------------------------------------------------- 2. releases

def test_releases_api_equals_cli_json_with_alias_only_rows(t, db, capsys):
    t.set_alias("beta9", "26A9999z")              # an alias of a build with no report yet
    t.set_alias("beta5", B[2])
    cli_rows = cli_json(capsys, db, "releases", "--format", "json")
    assert t.releases_records() == cli_rows
    extra = [r for r in cli_rows if r["build"] == "26A9999z"]
    assert extra == [{"build": "26A9999z", "platforms": {}, "count": 0, "first_seen": None,
                      "last_seen": None, "aliases": ["beta9"], "major": 26, "train": "A",
                      "number": 9999, "suffix": "z", "seed": False, "seen": False}]
    assert all(r["seen"] for r in cli_rows if r["build"] != "26A9999z")
    df = t.releases()
    assert list(df.columns) == list(cli_rows[0])
    assert not df.set_index("build").loc["26A9999z", "seen"]
    assert df.set_index("build").loc["26A9999z", "number"] == 9999
    assert t.releases_records(kind="hang") == \
        cli_json(capsys, db, "releases", "--format", "json", "--kind", "hang")


def test_releases_bad_kind_is_a_user_error(t):
    with pytest.raises(UserError, match=r"kind='bogus': unknown kind \(use one of crash"):
        t.releases_records(kind="bogus")


# ----------------------------------------------------------------------------- 3. filters

@pytest.mark.parametrize("method, bad", [("clusters_records", "id"),
                                         ("clusters_records", "cluster"),
                                         ("clusters", "id"),
                                         ("incidents_records", "bogus"),
                                         ("incidents", "ids"),
                                         ("report", "bogus"),
                                         ("report_frame", "clusters")])
def test_unknown_filter_name_is_a_one_line_user_error(t, method, bad):
    with pytest.raises(UserError) as exc:
        getattr(t, method)(**{bad: "C-aaaaaa"})
    msg = one_line(exc)
    assert f"unknown filter {bad!r}" in msg and "accepted: " in msg


def test_filter_error_lists_the_accepted_names(t):
    with pytest.raises(UserError) as exc:
        t.clusters_records(id="C-aaaaaa")
    assert one_line(exc) == ("clusters_records: unknown filter 'id' (accepted: ids, signature, "
                             "process, since, until, min_count, include_merged, limit)")


def test_clusters_records_equals_cli_json(t, db, capsys):
    assert t.clusters_records() == cli_json(capsys, db, "clusters", "--format", "json")
    assert t.clusters_records(ids=["C-aaaaaa"], min_count=2) == \
        cli_json(capsys, db, "clusters", "--format", "json", "--id", "C-aaaaaa",
                 "--min-count", "2")
    assert [c["id"] for c in t.clusters_records(ids="C-bbbbbb")] == ["C-bbbbbb"]


def test_incidents_records_equals_cli_json(t, db, capsys):
    assert t.incidents_records() == cli_json(capsys, db, "incidents", "--format", "json")
    assert t.incidents_records(kind="hang", limit=1) == \
        cli_json(capsys, db, "incidents", "--format", "json", "--kind", "hang", "--limit", "1")
    assert t.incidents_records(cluster="C-aaaaaa") == \
        cli_json(capsys, db, "incidents", "--format", "json", "--cluster", "C-aaaaaa")


def test_since_until_take_a_build_an_alias_or_a_date(t):
    def counts(**kw):
        return {c["id"]: c["count"] for c in t.clusters_records(**kw)}

    assert counts() == {"C-aaaaaa": 5, "C-bbbbbb": 1, "C-cccccc": 1}
    # a macOS build: macOS crashes compared by build number; the iOS one (seen 2 weeks before
    # 26A5353q was) is carried over like in `triage report`
    assert counts(since=B[2]) == {"C-aaaaaa": 3, "C-bbbbbb": 1}
    assert counts(since=B[2], until=B[3]) == {"C-aaaaaa": 2}
    t.set_alias("beta5", B[2])
    assert counts(since="beta5") == counts(since=B[2])
    # a date: start of the day for since, end of the day for until
    from datetime import datetime, timezone

    day = datetime.fromtimestamp(T0 + 2 * WEEK, tz=timezone.utc).date()
    assert counts(since=day.isoformat()) == {"C-aaaaaa": 3, "C-bbbbbb": 1}
    assert counts(since=day) == counts(since=day.isoformat())
    assert counts(until=day.isoformat()) == {"C-aaaaaa": 3, "C-cccccc": 1}
    # the same bound on incidents (every kind: the hang is on B[2])
    ids = [r["os_build"] for r in t.incidents_records(since="beta5")]
    assert sorted(ids) == sorted([B[2], B[2], B[3], B[4], B[4]])
    assert [r["kind"] for r in t.incidents_records(since="beta5", kind="hang")] == ["hang"]


@pytest.mark.parametrize("kw, match", [
    ({"since": "beta5x"}, r"unknown release alias 'beta5x'"),
    ({"since": 5.0}, r"since=5\.0: expected an OS build"),
    ({"until": "2026-13-45"}, r"not a valid date"),
    ({"since": B[4], "until": B[0]}, r"is after --until"),
    ({"limit": 0}, r"limit=0: expected a whole number >= 1"),
    ({"min_count": -1}, r"min_count=-1"),
    ({"ids": [None]}, r"ids=\[None\]: expected a cluster id"),
    ({"include_merged": "yes"}, r"include_merged='yes'"),
])
def test_bad_cluster_filter_values_are_user_errors(t, kw, match):
    with pytest.raises(UserError, match=match) as exc:
        t.clusters_records(**kw)
    one_line(exc)


@pytest.mark.parametrize("kw, match", [
    ({"since": "beta5x"}, r"unknown release alias 'beta5x'"),
    ({"limit": "3"}, r"limit='3': expected a whole number"),
    ({"cluster": "C-nope00"}, r"C-nope00: no such cluster"),
    ({"cluster": ""}, r"give a cluster id"),
    ({"process": 3}, r"process=3: expected a string"),
])
def test_bad_incident_filter_values_are_user_errors(t, kw, match):
    with pytest.raises(UserError, match=match) as exc:
        t.incidents_records(**kw)
    one_line(exc)


# ----------------------------------------------------------------------------- 4. input checks

def test_report_kind_checks_shared_with_the_cli(t, db, capsys):
    with pytest.raises(UserError, match=r"kind='hang': `triage report` covers crashes only "
                       r".*list them with t\.incidents_records\(kind='hang'\)$"):
        t.report(kind="hang")
    with pytest.raises(UserError, match=r"kind='bogus': unknown kind \(use one of crash, hang"):
        t.report(kind="bogus")
    with pytest.raises(UserError, match=r"kind='bogus': unknown kind"):
        t.report_frame(kind="bogus")
    with pytest.raises(UserError, match=r"kind='bogus': unknown kind"):
        t.incidents_records(kind="bogus")
    code, _out, err = cli(capsys, "--db", db, "report", "--kind", "hang")
    assert code == 2 and "--kind hang: `triage report` covers crashes only" in err
    assert err.rstrip().endswith("list them with `triage incidents --kind hang`")
    code, _out, err = cli(capsys, "--db", db, "report", "--kind", "bogus")
    assert code == 2 and "--kind bogus: unknown kind (use one of crash" in err
    code, _out, err = cli(capsys, "--db", db, "incidents", "--kind", "bogus")
    assert code == 2 and "--kind bogus: unknown kind" in err
    assert t.report(kind="crash")["clusters"]


@pytest.mark.parametrize("value", [None, "", "   ", 7])
def test_show_original_filed_without_an_id_are_user_errors(t, value):
    with pytest.raises(UserError, match=r"show: give a cluster id") as exc:
        t.show(value)
    one_line(exc)
    with pytest.raises(UserError, match=r"original: give an incident id"):
        t.original(value)
    with pytest.raises(UserError, match=r"filed: give a cluster id"):
        t.filed(value, "https://x/1")


def test_filed_url_must_be_a_string(t):
    with pytest.raises(UserError, match="filed: the URL must be a string"):
        t.filed("C-aaaaaa", None)


# ----------------------------------------------------------------------------- 5. filed JSON

def test_filed_format_json_prints_the_api_object(t, db, capsys):
    out = cli_json(capsys, db, "filed", "C-aaaaaa", "https://x/1", "--format", "json")
    assert set(out) == {"id", "url", "filed_at", "also_filed"}
    assert out["id"] == "C-aaaaaa" and out["url"] == "https://x/1" and out["also_filed"] == []
    again = t.filed("C-aaaaaa", "https://x/1")
    assert set(again) == set(out)
    code, text, _err = cli(capsys, "--db", db, "filed", "C-bbbbbb", "https://x/2")
    assert code == 0 and text == "C-bbbbbb filed at https://x/2\n"
    code, text, _err = cli(capsys, "--db", db, "filed", "C-bbbbbb", "https://x/2", "-f", "csv")
    assert code == 0 and text.splitlines()[0] == "id,url,filed_at"


def test_ingest_takes_one_path_as_a_string_and_export_refuses_unknown_options(tmp_path,
                                                                              monkeypatch):
    import triage
    import triage.ingest as ing

    seen = []
    monkeypatch.setattr(ing, "run_ingest", lambda store, paths, **kw: seen.append(
        (paths, kw["journals"])) or {})
    with triage.open(tmp_path / "t.db") as t:
        t.ingest("/some/reports", journals="/some/journal.jsonl")
        t.ingest([Path("/a"), "/b"])
        assert seen == [(["/some/reports"], ["/some/journal.jsonl"]), (["/a", "/b"], [])]
        with pytest.raises(UserError, match="export: unknown option 'clusters'"):
            t.export("github", tmp_path / "x", clusters="C-1")
