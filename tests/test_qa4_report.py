"""QA round 4 (reports): --until leaks, status under --cluster, cross-platform bounds with
--platform, one signature rule, regressions before --since, report --kind, date-like alias
names, "last seen" builds, ids after merge + split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pytest

from triage.errors import UserError
from triage.report.build import build_report
from triage.report.synth import open_store

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "DiagnosticReports"

MAC = ["26A5288h", "26A5316k", "26A5353q", "26A5368g", "26A5378a"]
IOS = ["23A5297i", "23A5318c", "23A5336a"]
T0 = 1_790_000_000.0            # 2026-09-21T...
DAY = 86400.0
from test_builds import _isolated_config  # noqa: E402,F401 - autouse: no user config leaks in

CFG_A = {"encoding.scheme": "linear", "encoding.dtype": "int4", "flags.preferred_compute": "ane"}
CFG_B = {"encoding.scheme": "palettized", "encoding.nbits": 4, "flags.preferred_compute": "gpu"}


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "t.db")
    yield s
    s.close()


class Rows:
    def __init__(self, store):
        self.store = store
        self.n = 0

    def crash(self, cluster, build, t, *, platform="macOS", process="coreai-build",
              compile_id=None, kind="crash", signature=None, stack=None):
        self.n += 1
        iid = f"00000000-0000-4000-8000-{self.n:012d}"
        sig = signature or f"objc_release | GPU::{cluster}"
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO incidents(incident_id, path, sha256, kind, process, captured_at, "
                "captured_ts, os_build, platform, hardware_model, signal, frames, signature, "
                "stack_id, cluster_id, compile_id, ingested_at) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (iid, f"/r/{iid}.ips", iid, kind, process, "x", t, build, platform, "Mac16,1",
                 "SIGSEGV", orjson.dumps([{"normalized": "objc_release"}]).decode(), sig,
                 stack, cluster, compile_id, "now"))
            conn.execute("INSERT OR IGNORE INTO clusters(cluster_id, signature, created_at) "
                         "VALUES(?,?,?)", (cluster, sig, "now"))
        return iid

    def compile(self, config, t, exit_code=0):
        self.n += 1
        with self.store.transaction() as conn:
            return conn.execute(
                "INSERT INTO compiles(record_key, pid, process, started_ts, ended_ts, exit_code, "
                "config, raw) VALUES(?,?,?,?,?,?,?,?)",
                (f"k{self.n}", 1, "coreai-build", t - 60, t - 30, exit_code,
                 json.dumps(config), json.dumps({"argv": ["coreai-build", "compile"]}))
            ).lastrowid


def by_id(rep):
    return {c["id"]: c for c in rep["clusters"]}


def iso(t):
    from triage.report.builds import iso_ts

    return iso_ts(t)


def run_cli(args, capsys):
    from triage.cli import main

    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# ----------------------------------------------------------------------------- bug 2: --until

def test_until_time_hides_later_crashes_everywhere(store):
    r = Rows(store)
    early, late = T0, T0 + 2 * DAY           # same cluster, same build: one aggregate group
    ca = r.compile(CFG_A, early, exit_code=-11)
    r.crash("c", MAC[0], early, compile_id=ca)
    for k in range(3):
        cb = r.compile(CFG_B, late + k, exit_code=-11)
        r.crash("c", MAC[0], late + k, compile_id=cb)
    until = iso(T0 + DAY)
    c = by_id(build_report(store, until=until))["c"]
    assert c["count"] == c["count_total"] == 1
    assert c["last_seen"] == iso(early) and c["last_seen_build"] == MAC[0]
    # context: only the compile of the crash up to --until
    assert [e["count"] for e in c["encodings"]] == [1]
    assert c["encodings"][0]["encoding"]["scheme"] == "linear"
    assert c["flags"] == {"preferred_compute": {"ane": 1}}
    crashed = {json.dumps(cf["config"], sort_keys=True): cf["crashed"]
               for cf in c["configurations"]}
    assert sum(crashed.values()) == 1
    assert "palettized" not in (c["finding"] or "")
    # without the bound everything counts
    full = by_id(build_report(store))["c"]
    assert full["count_total"] == 4 and sum(e["count"] for e in full["encodings"]) == 4


def test_until_build_hides_context_of_later_builds(store):
    r = Rows(store)
    ca = r.compile(CFG_A, T0, exit_code=-11)
    r.crash("c", MAC[0], T0, compile_id=ca)
    cb = r.compile(CFG_B, T0 + 9 * DAY, exit_code=-11)
    r.crash("c", MAC[2], T0 + 9 * DAY, compile_id=cb)
    c = by_id(build_report(store, until=MAC[1]))["c"]
    assert c["count_total"] == 1 and c["last_seen"] == iso(T0)
    assert [e["encoding"]["scheme"] for e in c["encodings"]] == ["linear"]


# ----------------------------------------------------------------------------- bug 3: status

def test_cluster_filter_keeps_the_unfiltered_status(store):
    r = Rows(store)
    for i, b in enumerate(MAC):
        r.crash("always", b, T0 + i * 7 * DAY)
    r.crash("old", MAC[0], T0 + 1)
    r.crash("old", MAC[1], T0 + 7 * DAY + 1, process="python3")
    full = build_report(store)
    assert by_id(full)["old"]["status"] == "gone"
    for kw in ({"cluster": "old"}, {"process": "python3"}, {"cluster": "old", "until": MAC[4]}):
        rep = build_report(store, **kw)
        assert by_id(rep)["old"]["status"] == "gone", kw
        assert rep["status_reference"] == full["status_reference"] == MAC[4], kw
    # --until moves the reference to the newest build up to the bound, for everyone
    rep = build_report(store, cluster="old", until=MAC[1])
    assert rep["status_reference"] == MAC[1] and by_id(rep)["old"]["status"] == "ongoing"


def test_status_reference_is_per_platform(store):
    r = Rows(store)
    for i, b in enumerate(MAC):
        r.crash("mac", b, T0 + i * 7 * DAY)
    for i, b in enumerate(IOS):
        r.crash("ios", b, T0 + i * 14 * DAY, platform="iOS")
    rep = build_report(store)
    # iOS builds never compare with macOS ones: the iOS bug on the newest iOS build is not gone
    assert by_id(rep)["ios"]["status"] == "ongoing"
    assert rep["status_references"] == {"iOS": IOS[-1], "macOS": MAC[-1]}
    assert rep["status_reference"] == MAC[-1]
    ios = build_report(store, platform="iOS")
    assert ios["status_reference"] == IOS[-1] and by_id(ios)["ios"]["status"] == "ongoing"


def test_export_label_matches_unfiltered_status(store, tmp_path):
    from triage.report.export import export_drafts

    r = Rows(store)
    for i, b in enumerate(MAC):
        r.crash("always", b, T0 + i * 7 * DAY)
    r.crash("old", MAC[0], T0 + 1)
    index = export_drafts(store, "github", tmp_path / "x", cluster="old", attach=False)
    assert index[0]["status"] == "gone" and "status:gone" in index[0]["labels"]


# ----------------------------------------------------------------------------- bug 4: platforms

@pytest.fixture
def two_platforms(store):
    """macOS builds a week apart; iOS builds released alongside MAC[0], MAC[2], MAC[4]."""
    r = Rows(store)
    for i, b in enumerate(MAC):
        r.crash("mac", b, T0 + i * 7 * DAY)
    for i, b in enumerate(IOS):
        r.crash("x", b, T0 + i * 14 * DAY + 3600, platform="iOS")
    return r


def test_platform_filter_keeps_the_cross_platform_mapping(store, two_platforms):
    full = build_report(store, since=MAC[2])
    ios = build_report(store, since=MAC[2], platform="iOS")
    assert full["since_builds"]["iOS"] == ios["since_builds"]["iOS"] == IOS[1]
    assert by_id(ios)["x"]["builds"] == by_id(full)["x"]["builds"] == {IOS[1]: 1, IOS[2]: 1}
    assert by_id(ios)["x"]["status"] == "ongoing"
    full = build_report(store, until=MAC[1])
    ios = build_report(store, until=MAC[1], platform="iOS")
    assert full["until_builds"]["iOS"] == ios["until_builds"]["iOS"] == IOS[0]
    assert by_id(ios)["x"]["builds"] == by_id(full)["x"]["builds"] == {IOS[0]: 1}


def test_platform_only_alias_is_mapped(store, two_platforms, _isolated_config, capsys):
    (_isolated_config / "triage.toml").write_text(f'[releases.macOS]\nbeta6 = "{MAC[2]}"\n',
                                                  encoding="utf-8")
    by_alias = build_report(store, since="beta6")
    direct = build_report(store, since=MAC[2])
    assert by_alias["since_builds"] == direct["since_builds"] == {"iOS": IOS[1], "macOS": MAC[2]}
    assert by_id(by_alias)["x"]["builds"] == by_id(direct)["x"]["builds"]
    ios = build_report(store, since="beta6", platform="iOS")
    assert by_id(ios)["x"]["builds"] == {IOS[1]: 1, IOS[2]: 1}
    code, out, err = run_cli(["--db", str(store.path), "report", "--since", "beta6",
                              "--platform", "iOS", "-f", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["since_builds"]["iOS"] == IOS[1]


# ----------------------------------------------------------------------------- bug 9

def test_regression_back_before_a_date_since_is_ongoing(store):
    r = Rows(store)
    # seen on MAC[0], absent on MAC[1] although the same configuration compiled there, back
    # on MAC[2] (first crash on day 14), again on day 18
    for bi, t in ((0, T0), (2, T0 + 14 * DAY), (2, T0 + 18 * DAY)):
        cid = r.compile(CFG_A, t, exit_code=-11)
        r.crash("c", MAC[bi], t, compile_id=cid)
    r.crash("other", MAC[1], T0 + 7 * DAY)
    r.compile(CFG_A, T0 + 7 * DAY + 60)
    assert by_id(build_report(store, since=MAC[2]))["c"]["status"] == "regressed"
    assert by_id(build_report(store, since=iso(T0 + 10 * DAY)))["c"]["status"] == "regressed"
    # came back on day 14, before --since day 16: ongoing now (docs/reports.md)
    c = by_id(build_report(store, since=iso(T0 + 16 * DAY), cluster="c"))["c"]
    assert c["status"] == "ongoing" and c["regression"] is None


# ----------------------------------------------------------------------------- bug 10

def test_report_kind_other_than_crash_says_where_to_look(store, capsys):
    r = Rows(store)
    r.crash("c", MAC[0], T0)
    with store.transaction() as conn:
        conn.execute("INSERT INTO incidents(incident_id, path, sha256, kind, captured_ts, "
                     "os_build, ingested_at) VALUES('h1', '/r/h.ips', 'h1', 'hang', ?, ?, 'now')",
                     (T0, MAC[0]))
    code, out, err = run_cli(["--db", str(store.path), "report", "--kind", "hang"], capsys)
    assert code == 2 and out == ""
    assert "triage incidents --kind hang" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    code, out, err = run_cli(["--db", str(store.path), "report", "--kind", "crash"], capsys)
    assert code == 0 and "c" in out


# ----------------------------------------------------------------------------- bug 11

def test_date_like_alias_names_are_refused(store, _isolated_config, capsys):
    from triage.report.builds import all_aliases, set_alias

    for name in ("2026-09-01", "2026-09-01T10:00", "26A5353q"):
        with pytest.raises(UserError, match="pick another name"):
            set_alias(store, name, MAC[2])
    code, _out, err = run_cli(["--db", str(store.path), "releases", "alias", "2026-09-01",
                               MAC[2]], capsys)
    assert code == 2 and "looks like a date" in err
    set_alias(store, "beta5", MAC[2])            # ordinary names still work
    (_isolated_config / "triage.toml").write_text('[releases]\n2026-09-01 = "26A5353q"\n',
                                                  encoding="utf-8")
    with pytest.raises(UserError, match=r"triage\.toml: \[releases\] 2026-09-01: .*date"):
        all_aliases(store)


# ----------------------------------------------------------------------------- bug 12

def test_last_seen_pairs_time_with_that_crash_build(store):
    from triage.report.render_html import render_html
    from triage.report.render_text import render_markdown

    r = Rows(store)
    r.crash("c", MAC[0], T0)                      # first crash
    r.crash("c", MAC[4], T0 + 5 * DAY)            # highest build
    r.crash("c", IOS[0], T0 + 9 * DAY, platform="iOS")   # newest crash, lower build number
    rep = build_report(store)
    c = by_id(rep)["c"]
    assert c["last_build"] == MAC[4]              # highest build (contract unchanged)
    assert c["last_seen"] == iso(T0 + 9 * DAY) and c["last_seen_build"] == IOS[0]
    assert c["first_seen_build"] == MAC[0] and c["first_build"] == IOS[0]
    md = render_markdown(rep)
    assert f"**last seen**: {iso(T0 + 9 * DAY)} ({IOS[0]})" in md
    assert f"**first seen**: {iso(T0)} ({MAC[0]})" in md
    assert f"{iso(T0 + 9 * DAY)} ({IOS[0]})" in render_html(rep)


# ----------------------------------------------------------------------------- bug 8

def _stack(store, sid, cluster, sig, n, frames):
    with store.transaction() as conn:
        conn.execute("INSERT INTO stacks(stack_id, signature, proto_signature, frames, "
                     "cluster_id, count) VALUES(?,?,?,?,?,?)",
                     (sid, sig, sig, json.dumps(frames), cluster, n))


def test_one_signature_rule_everywhere(store):
    from triage.cluster_views import cluster_records, cluster_signatures
    from triage.context.views import cluster_detail

    raw = "stackoverflow | libsystem_malloc.dylib | MILCompiler [EXC_BAD_ACCESS/SIGSEGV]"
    sym = ("stackoverflow | _malloc_zone_malloc | MIL::Rewriter::matchPattern "
           "[EXC_BAD_ACCESS/SIGSEGV]")
    r = Rows(store)
    r.crash("C-a", MAC[0], T0, signature=raw, stack="s1")   # first: the clusters table's
    for k in range(3):
        r.crash("C-a", MAC[1 + k], T0 + (1 + k) * DAY, signature=sym, stack="s2")
    _stack(store, "s1", "C-a", raw, 1, ["libsystem_malloc.dylib!+0x1e818", "MILCompiler!+0x12"])
    _stack(store, "s2", "C-a", sym, 3, ["libsystem_malloc.dylib!_malloc_zone_malloc",
                                        "MILCompiler!MIL::Rewriter::matchPattern"])
    assert store.conn.execute("SELECT signature FROM clusters WHERE cluster_id='C-a'"
                              ).fetchone()[0] == raw
    assert cluster_signatures(store, ["C-a"]) == {"C-a": sym}
    assert by_id(build_report(store))["C-a"]["signature"] == sym
    assert cluster_detail(store, "C-a")["signature"] == sym
    assert cluster_records(store)[0]["signature"] == sym
    # a tie goes to the symbolicated signature, never the unsymbolicated one
    with store.transaction() as conn:
        conn.execute("UPDATE stacks SET count=1 WHERE stack_id='s2'")
        conn.execute("UPDATE stacks SET count=1 WHERE stack_id='s1'")
    assert cluster_signatures(store, ["C-a"]) == {"C-a": sym}


# ----------------------------------------------------------------------------- shipped fixtures

@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory):
    if not FIXTURES.is_dir():
        pytest.skip("fixtures/DiagnosticReports is missing")
    import triage

    path = tmp_path_factory.mktemp("fx") / "f.db"
    with triage.open(path) as t:
        t.ingest([FIXTURES])
    return path


@pytest.fixture
def fx(fixture_db, tmp_path):
    path = tmp_path / "f.db"
    shutil.copy(fixture_db, path)
    s = open_store(path)
    yield s
    s.close()


def test_fixture_cluster_signature_agrees(fx, capsys):
    """QA case: C-afc23b (3 symbolicated crashes, 1 not) showed the minority signature."""
    from triage.cluster_views import cluster_records
    from triage.context.views import cluster_detail

    want = ("stackoverflow | _xzm_xzone_malloc_tiny | _malloc_zone_malloc | "
            "MIL::Rewriter::matchPattern [EXC_BAD_ACCESS/SIGSEGV]")
    assert cluster_records(fx, ids=["C-afc23b"])[0]["signature"] == want
    assert by_id(build_report(fx, cluster="C-afc23b"))["C-afc23b"]["signature"] == want
    assert cluster_detail(fx, "C-afc23b")["signature"] == want


def test_retired_id_follows_its_crashes_after_merge_then_split(fx):
    from triage.cluster import merge, split
    from triage.cluster_views import cluster_records
    from triage.context.views import cluster_detail

    moved = {r[0] for r in fx.conn.execute(
        "SELECT incident_id FROM incidents WHERE cluster_id='C-d262ad'")}
    sig = fx.conn.execute("SELECT signature FROM incidents WHERE cluster_id='C-d262ad'"
                          ).fetchone()[0]
    merge(fx, "C-034eea", "C-d262ad")
    assert build_report(fx, cluster="C-d262ad")["clusters"][0]["id"] == "C-034eea"
    new_id = split(fx, "C-034eea", signature=sig)["new_id"]
    rep = build_report(fx, cluster="C-d262ad")
    assert [c["id"] for c in rep["clusters"]] == [new_id]
    assert set(rep["clusters"][0]["incidents"]) == moved
    d = cluster_detail(fx, "C-d262ad")
    assert d["id"] == new_id and d["requested_id"] == "C-d262ad"
    assert [c["id"] for c in cluster_records(fx, ids=["C-d262ad"])] == [new_id]


def test_retired_id_spread_over_clusters_is_a_clear_error(fx):
    from triage.cluster import merge, split
    from triage.context.views import cluster_detail

    merge(fx, "C-034eea", "C-d262ad")
    one = fx.conn.execute("SELECT incident_id FROM incidents WHERE cluster_id='C-034eea' AND "
                          "incident_id IN (SELECT i.incident_id FROM incidents i JOIN stacks s "
                          "ON s.stack_id=i.stack_id WHERE s.cluster_id='C-d262ad') LIMIT 1"
                          ).fetchone()[0]
    new_id = split(fx, "C-034eea", incidents=[one])["new_id"]
    for call in (lambda: build_report(fx, cluster="C-d262ad"),
                 lambda: cluster_detail(fx, "C-d262ad")):
        with pytest.raises(UserError, match=rf"C-d262ad.*C-034eea, {new_id}|{new_id}.*C-034eea"):
            call()


def test_until_representative_is_the_last_crash_in_view(store):
    r = Rows(store)
    first = r.crash("c", MAC[0], T0)
    r.crash("c", MAC[0], T0 + 2 * DAY)
    c = by_id(build_report(store, until=iso(T0 + DAY)))["c"]
    assert c["representative"] == first
