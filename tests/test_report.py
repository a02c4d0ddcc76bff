"""build_report on hand-built rows: statuses, counts, ranges, sorting, renderers, CLI."""

from __future__ import annotations

import csv
import io
import json

import orjson
import pytest

from triage.errors import UserError
from triage.report.build import build_report
from triage.report.synth import open_store

B = ["26A5288h", "26A5316k", "26A5353q", "26A5368g", "26A5378a"]   # beta3 .. rc
T0 = 1_790_000_000.0        # 2026-09-21
WEEK = 7 * 86400.0
CFG_A = {"encoding.scheme": "linear", "encoding.dtype": "int4", "flags.preferred_compute": "ane"}
CFG_B = {"encoding.scheme": "palettized", "encoding.nbits": 4}


def ts(build_index: int, hours: float = 1.0) -> float:
    return T0 + build_index * WEEK + hours * 3600


class Rows:
    def __init__(self, store):
        self.store = store
        self.n = 0

    def crash(self, cluster, bi, *, process="coreai-build", hw="Mac16,1", compile_id=None,
              platform="macOS", hours=1.0, path=None, kind="crash"):
        self.n += 1
        iid = f"00000000-0000-4000-8000-{self.n:012d}"
        frames = [{"module": "libobjc.A.dylib", "symbol": "objc_release",
                   "normalized": "objc_release"},
                  {"module": "MPSGraph", "symbol": f"GPU::{cluster}()",
                   "normalized": f"GPU::{cluster}"}]
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO incidents(incident_id, path, sha256, kind, process, captured_at, "
                "captured_ts, os_build, platform, hardware_model, signal, exception_type, frames, "
                "signature, cluster_id, compile_id, ingested_at) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (iid, path or f"/reports/{iid}.ips", iid, kind, process, "x", ts(bi, hours),
                 B[bi], platform, hw, "SIGSEGV", "EXC_BAD_ACCESS", orjson.dumps(frames).decode(),
                 f"objc_release | GPU::{cluster}", cluster, compile_id, "now"))
            conn.execute("INSERT OR IGNORE INTO clusters(cluster_id, signature, created_at) "
                         "VALUES(?,?,?)", (cluster, f"objc_release | GPU::{cluster}", "now"))
        return iid

    def compile(self, config, bi, exit_code=0, raw=None):
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO compiles(record_key, pid, process, started_ts, ended_ts, exit_code, "
                "config, raw) VALUES(?,?,?,?,?,?,?,?)",
                (f"k{self.n}-{bi}-{exit_code}-{json.dumps(config)}-{id(raw)}", 1, "coreai-build",
                 ts(bi, 0.5), ts(bi, 0.6), exit_code, json.dumps(config),
                 json.dumps(raw or {"argv": ["coreai-build", "compile", "m.mlpackage"]})))
            self.n += 1
            return cur.lastrowid


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "t.db")
    yield s
    s.close()


@pytest.fixture
def four(store):
    """The four fixture families: ongoing, new since beta5, regressed (absent in beta4 with
    compiles of its configuration recorded there), gone."""
    r = Rows(store)
    for bi in range(5):
        r.crash("ongoing", bi)
    for bi in (2, 3, 4):
        r.crash("fresh", bi, process="python3.12")
        r.crash("fresh", bi, hw="Mac15,9")
    for bi in (0, 2, 3, 4):
        cid = r.compile(CFG_A, bi, exit_code=-11)
        r.crash("back", bi, compile_id=cid)
    r.compile(CFG_A, 1, exit_code=0)                # beta4 compiled the same config fine
    for bi in (0, 1):
        r.crash("gone", bi)
    return r


def by_id(rep):
    return {c["id"]: c for c in rep["clusters"]}


def test_statuses_since_beta5(store, four):
    rep = build_report(store, since="26A5353q")
    st = {c["id"]: c["status"] for c in rep["clusters"]}
    assert st == {"ongoing": "ongoing", "fresh": "new", "back": "regressed", "gone": "gone"}
    # sorted by status (new, regressed, ongoing, gone), then count
    assert [c["id"] for c in rep["clusters"]] == ["fresh", "back", "ongoing", "gone"]
    c = by_id(rep)["back"]
    assert c["regression"] == {"absent_in": "26A5316k", "last_before": "26A5288h",
                               "back_in": "26A5353q"}


def test_gap_without_compiles_of_the_same_config_is_not_a_regression(store):
    r = Rows(store)
    for bi in (0, 2, 3):
        cid = r.compile(CFG_A, bi, exit_code=-11)
        r.crash("c", bi, compile_id=cid)
    r.crash("other", 1)                 # the store knows beta4's time span from its reports
    r.compile(CFG_B, 1)                              # beta4 compiled something else only
    assert by_id(build_report(store, since="26A5353q"))["c"]["status"] == "ongoing"
    r.compile(CFG_A, 1)                              # now the same configuration, no crash
    assert by_id(build_report(store, since="26A5353q"))["c"]["status"] == "regressed"


def test_compile_build_from_record_os_build(store):
    r = Rows(store)
    for bi in (0, 2):
        cid = r.compile(CFG_A, bi, exit_code=-11)
        r.crash("c", bi, compile_id=cid)
    # started long after every build's first report, but its record names beta4
    with store.transaction() as conn:
        conn.execute("INSERT INTO compiles(record_key, started_ts, exit_code, config, raw) "
                     "VALUES('x', ?, 0, ?, ?)", (ts(4), json.dumps(CFG_A),
                                                 json.dumps({"os_build": "26A5316k"})))
    assert by_id(build_report(store, since="26A5353q"))["c"]["status"] == "regressed"


def test_counts_builds_processes_and_contract_fields(store, four):
    rep = build_report(store, since="26A5353q")
    assert set(rep) >= {"since", "until", "generated_at", "clusters"}
    assert rep["since"] == "26A5353q" and rep["until"] is None
    f = by_id(rep)["fresh"]
    for key in ("id", "signature", "status", "count", "count_total", "first_seen", "last_seen",
                "first_build", "last_build", "builds", "processes", "hardware_models",
                "incidents", "frames", "encodings", "flags", "configurations", "correlations",
                "finding"):
        assert key in f, key
    assert f["count"] == 6 and f["count_total"] == 6
    assert f["builds"] == {"26A5353q": 2, "26A5368g": 2, "26A5378a": 2}
    assert f["processes"] == {"coreai-build": 3, "python3.12": 3}
    assert f["hardware_models"] == {"Mac16,1": 3, "Mac15,9": 3} or \
        f["hardware_models"] == {"Mac15,9": 3, "Mac16,1": 3}
    assert f["frames"] == ["objc_release", "GPU::fresh"]
    assert f["first_build"] == "26A5353q" and f["last_build"] == "26A5378a"
    assert f["first_seen"].startswith("20") and f["first_seen"] < f["last_seen"]
    assert len(f["incidents"]) == 6
    o = by_id(rep)["ongoing"]
    assert o["count"] == 3 and o["count_total"] == 5 and len(o["incidents"]) == 3
    assert list(o["builds_total"]) == B
    g = by_id(rep)["gone"]
    assert g["count"] == 0 and g["incidents"] == [] and g["builds"] == {}


def test_until_and_dates(store, four):
    rep = build_report(store, since="26A5316k", until="26A5353q")
    o = by_id(rep)["ongoing"]
    assert o["builds"] == {"26A5316k": 1, "26A5353q": 1} and o["count_total"] == 3
    from datetime import datetime, timezone

    day = lambda bi: datetime.fromtimestamp(ts(bi), timezone.utc).date().isoformat()  # noqa
    rep2 = build_report(store, since=day(2), until=day(3))
    o2 = by_id(rep2)["ongoing"]
    assert o2["builds"] == {"26A5353q": 1, "26A5368g": 1}
    assert by_id(rep2)["fresh"]["status"] == "new"
    assert by_id(rep2)["gone"]["status"] == "gone"


def test_inverted_range_is_an_error(store, four):
    # regression: --since after --until gave negative in-range counts ("-1/0")
    with pytest.raises(UserError, match="is after --until"):
        build_report(store, since="2026-09-01", until="2026-08-01")
    with pytest.raises(UserError, match="is after --until"):
        build_report(store, since="26A5368g", until="26A5316k")
    rep = build_report(store, since="26A5353q", until="26A5353q")       # one build: fine
    assert all(c["count"] >= 0 for c in rep["clusters"])


def test_alias_since(store, four, tmp_path, monkeypatch):
    from triage import config

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "triage.toml").write_text('[releases.macOS]\nbeta5 = "26A5353q"\n')
    config._load.cache_clear()
    try:
        rep = build_report(store, since="beta5")
    finally:
        config._load.cache_clear()
    assert rep["since"] == {"alias": "beta5", "builds": {"macOS": "26A5353q"}}
    assert by_id(rep)["fresh"]["status"] == "new"
    with pytest.raises(UserError, match="unknown release alias"):
        build_report(store, since="beta7")


def test_without_since_status_is_against_the_newest_build(store):
    r = Rows(store)
    r.crash("a", 0)
    r.crash("a", 4)
    r.crash("b", 4)
    r.crash("c", 1)
    rep = build_report(store)
    assert rep["status_reference"] == "26A5378a"
    assert {c["id"]: c["status"] for c in rep["clusters"]} == \
        {"a": "ongoing", "b": "new", "c": "gone"}
    assert by_id(rep)["a"]["count"] == 2          # no range: everything counts


def test_filters_process_cluster_kind_platform(store, four):
    rep = build_report(store, process="python3.12")
    assert [c["id"] for c in rep["clusters"]] == ["fresh"]
    assert by_id(build_report(store, cluster="back"))["back"]["count_total"] == 4
    with pytest.raises(UserError, match="unknown cluster"):
        build_report(store, cluster="C-nope")
    four.crash("hang1", 3, kind="hang")
    assert "hang1" not in by_id(build_report(store))
    assert "hang1" in by_id(build_report(store, kind="hang"))
    four.crash("ios", 3, platform="iOS")
    assert [c["id"] for c in build_report(store, platform="iOS")["clusters"]] == ["ios"]


def test_merged_cluster_id_follows_merged_into(store, four):
    with store.transaction() as conn:
        conn.execute("INSERT INTO clusters(cluster_id, signature, created_at, merged_into) "
                     "VALUES('old', 's', 'now', 'ongoing')")
    rep = build_report(store, cluster="old")
    assert [c["id"] for c in rep["clusters"]] == ["ongoing"]


def test_empty_store(store):
    rep = build_report(store, since="26A5353q")
    assert rep["clusters"] == [] and rep["since"] == "26A5353q"


def test_incidents_optional_and_capped(store, four):
    rep = build_report(store, with_incidents=False)
    assert all("incidents" not in c for c in rep["clusters"])
    rep = build_report(store, with_incidents=2)
    assert all(len(c["incidents"]) <= 2 for c in rep["clusters"])


# ----------------------------------------------------------------------------- renderers

def test_table_fits_100_columns(store, four):
    from triage.report.render_text import render_table

    text = render_table(build_report(store, since="26A5353q"), width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    for cid in ("fresh", "back", "ongoing", "gone"):
        assert cid in text


def test_markdown_csv_json(store, four):
    from triage.report.render_text import render_csv, render_json, render_markdown

    rep = build_report(store, since="26A5353q")
    md = render_markdown(rep)
    assert "| status | cluster |" in md and "## regressed: `back`" in md
    assert "objc_release \\| GPU::back" in md         # pipes escaped inside tables
    rows = list(csv.DictReader(io.StringIO(render_csv(rep))))
    assert [r["id"] for r in rows] == ["fresh", "back", "ongoing", "gone"]
    assert json.loads(rows[0]["builds"]) == {"26A5353q": 2, "26A5368g": 2, "26A5378a": 2}
    assert len(rows[0]["incidents"].split()) == 6
    assert json.loads(render_json(rep))["clusters"][0]["id"] == "fresh"


def test_html_is_self_contained(store, four):
    from triage.report.render_html import render_html

    html = render_html(build_report(store, since="26A5353q"))
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    for cid in ("fresh", "back", "ongoing", "gone"):
        assert f'id="cluster-{cid}"' in html
    low = html.lower()
    assert "<script" not in low and "http://" not in low.replace(
        'xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in low
    assert html.count('class="bar"') >= 5


# ----------------------------------------------------------------------------- CLI

def run_cli(args, capsys):
    from triage.cli import main

    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_report_formats_and_errors(store, four, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = str(store.path)
    code, out, err = run_cli(["--db", db, "report", "--since", "26A5353q", "--format", "json"],
                             capsys)
    assert code == 0, err
    assert [c["id"] for c in json.loads(out)["clusters"]] == ["fresh", "back", "ongoing", "gone"]
    for fmt in ("table", "markdown", "csv", "html"):
        code, out, err = run_cli(["--db", db, "report", "--format", fmt], capsys)
        assert code == 0 and "fresh" in out, (fmt, err)
    target = tmp_path / "r.html"
    code, out, err = run_cli(["--db", db, "report", "-f", "html", "--output", str(target)], capsys)
    assert code == 0 and target.read_text().startswith("<!DOCTYPE html>") and out == ""
    code, out, err = run_cli(["--db", db, "report", "--since", "beta9"], capsys)
    assert code == 2 and "unknown release alias 'beta9'" in err and "Traceback" not in err
    # regression: an unknown --kind gave an empty report with exit 0
    for cmd in (["report"], ["releases"]):
        code, out, err = run_cli(["--db", db, *cmd, "--kind", "crashes"], capsys)
        assert code == 2 and out == "" and "--kind crashes: unknown kind" in err, cmd


def test_cli_releases_and_alias(store, four, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    db = str(store.path)
    assert run_cli(["--db", db, "releases", "alias", "beta5", "26A5353q"], capsys)[0] == 0
    assert run_cli(["--db", db, "releases", "alias", "rc", "26A5378a", "--platform", "macOS"],
                   capsys)[0] == 0
    code, out, err = run_cli(["--db", db, "releases", "--format", "json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["build"] for r in rows] == B
    assert rows[2]["aliases"] == ["beta5"] and rows[4]["aliases"] == ["macOS:rc"]
    assert rows[0]["count"] == 3
    code, out, err = run_cli(["--db", db, "report", "--since", "beta5", "-f", "json"], capsys)
    assert code == 0 and json.loads(out)["since"] == {"alias": "beta5", "build": "26A5353q"}
    code, out, err = run_cli(["--db", db, "releases", "alias", "x", "nope"], capsys)
    assert code == 2 and "not an Apple build number" in err


def test_literal_build_carries_over_to_other_platforms(store):
    """macOS and iOS build numbers do not compare; a macOS --since maps to the iOS build that
    appeared at the same time (iOS builds here: 23A5297i with beta3, 23A5318c with beta5)."""
    r = Rows(store)
    for bi in range(5):
        r.crash("mac", bi)
    with store.transaction() as conn:
        for n, (build, bi) in enumerate([("23A5297i", 0), ("23A5318c", 2), ("23A5318c", 3)]):
            conn.execute("INSERT INTO incidents(incident_id, path, sha256, kind, captured_ts, "
                         "os_build, platform, cluster_id, ingested_at) "
                         "VALUES(?,?,?,?,?,?,?,?,?)", (f"ios{n}", f"/r/ios{n}", f"ios{n}",
                                                       "crash", ts(bi, 2), build, "iOS",
                                                       "phone", "now"))
    rep = build_report(store, since="26A5353q")
    assert rep["since_builds"] == {"iOS": "23A5318c", "macOS": "26A5353q"}
    p = by_id(rep)["phone"]
    assert p["status"] == "ongoing" and p["count"] == 2 and p["builds"] == {"23A5318c": 2}
    rep = build_report(store, until="26A5316k")
    assert rep["until_builds"] == {"iOS": "23A5297i", "macOS": "26A5316k"}
    assert by_id(rep)["phone"]["count"] == 1
    # an explicit per-platform alias entry is used as given, never re-mapped
    from triage.report.builds import Bound

    b = Bound("beta5", "build", builds={"": "26A5353q", "iOS": "23A5297i"})
    rep = build_report(store, since=b)
    assert "since_builds" not in rep and by_id(rep)["phone"]["count"] == 3


def test_table_keeps_bracketed_text(store):
    """rich markup must not eat ``[lowercase ...]`` parts of a signature."""
    from triage.report.render_text import render_table

    r = Rows(store)
    r.crash("x", 0)
    with store.transaction() as conn:
        conn.execute("UPDATE clusters SET signature='[closure] in pack [bold]'")
    text = render_table(build_report(store), width=100)
    assert "[closure] in pack [bold]" in text


def test_regressed_also_with_a_cluster_filter(store, four):
    """--cluster must not hide the other reports that place compiles in builds."""
    four.crash("noise", 1)
    assert by_id(build_report(store, since="26A5353q", cluster="back"))["back"]["status"] == \
        "regressed"
    assert by_id(build_report(store, since="26A5353q", process="coreai-build"))["back"][
        "status"] == "regressed"


def test_regression_that_returned_before_since_is_ongoing(store, four):
    # "back": seen beta3, absent beta4 (compiled fine), back in beta5. Since beta6 it is ongoing.
    st = {c["id"]: c["status"] for c in build_report(store, since="26A5368g")["clusters"]}
    assert st["back"] == "ongoing"
    st = {c["id"]: c["status"] for c in build_report(store, since="26A5316k")["clusters"]}
    assert st["back"] == "regressed"


def test_synthetic_benchmark_store(tmp_path):
    """The benchmark's generator: every status appears and counts add up (small n)."""
    from triage.report.synth import make_store

    s = make_store(tmp_path / "s.db", 3000, n_clusters=10)
    rep = build_report(s, since="26A5390c")
    assert sum(c["count_total"] for c in rep["clusters"]) == 3000
    assert sum(c["count"] for c in rep["clusters"]) == sum(len(c["incidents"])
                                                           for c in rep["clusters"])
    assert {c["status"] for c in rep["clusters"]} == {"new", "ongoing", "regressed", "gone"}
