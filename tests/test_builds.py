"""OS build ordering, release aliases (config + stored, per platform), --since/--until parsing."""

from __future__ import annotations

import random

import pytest

from triage.errors import UserError
from triage.report.builds import (all_aliases, build_key, parse_build, releases_records,
                                  resolve_bound, set_alias, sort_builds)
from triage.report.synth import open_store


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path, monkeypatch):
    """No user config leaks in: empty XDG config home, a fresh working folder."""
    from triage import config

    home = tmp_path / "xdg"
    home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    config._load.cache_clear()
    yield cwd
    config._load.cache_clear()


def test_parse_build_parts():
    b = parse_build("26A5353q")
    assert (b.major, b.train, b.number, b.suffix, b.seed) == (26, "A", 5353, "q", True)
    b = parse_build("24G90")
    assert (b.major, b.train, b.number, b.suffix, b.seed) == (24, "G", 90, "", False)
    assert parse_build("21F79").train == "F"
    assert parse_build("20A362").number == 362
    assert parse_build("23A5297i").seed
    for bad in ("", None, "beta5", "26.0", "a26A5353q", "26a5353q", "26A5353Q", "2026-09-01"):
        assert parse_build(bad) is None


def test_fixture_builds_order_by_parts_not_string_or_date():
    ordered = ["26A5288h", "26A5316k", "26A5353q", "26A5368g", "26A5378a"]
    shuffled = ordered[:]
    random.Random(3).shuffle(shuffled)
    assert sort_builds(shuffled) == ordered


def test_numeric_not_lexicographic():
    # string order would put 24G90 after 24G100 and 9A before 10A
    assert sort_builds(["24G100", "24G90"]) == ["24G90", "24G100"]
    assert sort_builds(["10A100", "9A100"]) == ["9A100", "10A100"]
    assert sort_builds(["21F79", "20A362", "24G90", "23A5297i"]) == \
        ["20A362", "21F79", "23A5297i", "24G90"]


def test_seed_builds_precede_the_release_of_the_same_train():
    # 23A5297i (beta) < 23A5336a (RC seed) < 23A344 (release) < 23B74 (x.1)
    assert sort_builds(["23B74", "23A344", "23A5336a", "23A5297i"]) == \
        ["23A5297i", "23A5336a", "23A344", "23B74"]
    assert sort_builds(["26A5378a", "26A5378"]) == ["26A5378", "26A5378a"]


def test_unparseable_builds_sort_first_and_never_crash():
    assert sort_builds(["26A5353q", "weird", None])[-1] == "26A5353q"
    assert build_key(None) < build_key("1A1")


def test_resolve_build_date_and_time():
    b = resolve_bound("26A5353q")
    assert b.kind == "build" and b.build_for("macOS") == "26A5353q"
    d = resolve_bound("2026-09-01")
    assert d.kind == "time"
    end = resolve_bound("2026-09-01", end=True)
    assert end.ts - d.ts == pytest.approx(86400, abs=0.01)
    t = resolve_bound("2026-09-01T10:00:00+02:00")
    assert t.ts == pytest.approx(d.ts + 8 * 3600)
    with pytest.raises(UserError, match="not a valid date"):
        resolve_bound("2026-13-45")


def test_config_aliases_and_per_platform(_isolated_config, tmp_path):
    (_isolated_config / "triage.toml").write_text(
        '[releases]\nbeta5 = "26A5353q"\nrc = "26A5378a"\n'
        '[releases.iOS]\nbeta5 = "23A5330a"\n', encoding="utf-8")
    b = resolve_bound("beta5")
    assert b.kind == "build"
    assert b.build_for("macOS") == "26A5353q"      # generic entry
    assert b.build_for("iOS") == "23A5330a"        # per-platform entry wins
    assert resolve_bound("beta5", platform="iOS").builds == {"": "26A5353q", "iOS": "23A5330a"}
    assert resolve_bound("rc").build_for(None) == "26A5378a"


def test_per_platform_only_alias(_isolated_config):
    (_isolated_config / "triage.toml").write_text('[releases.macOS]\nbeta6 = "26A5368g"\n',
                                                  encoding="utf-8")
    b = resolve_bound("beta6")
    assert b.build_for("macOS") == "26A5368g"
    assert b.build_for("iOS") is None
    # an alias with no entry for the platform asked for is kept (the report maps it through
    # the crashes seen on its own platform), never an "unknown alias" error
    assert resolve_bound("beta6", platform="iOS").builds == {"macOS": "26A5368g"}


def test_unknown_alias_lists_known_ones(_isolated_config, tmp_path):
    (_isolated_config / "triage.toml").write_text('[releases]\nbeta5 = "26A5353q"\n',
                                                  encoding="utf-8")
    store = open_store(tmp_path / "t.db")
    set_alias(store, "rc", "26A5378a", "macOS")
    with pytest.raises(UserError) as exc:
        resolve_bound("beta9", store)
    msg = str(exc.value)
    assert "beta9" in msg and "beta5" in msg and "macOS:rc" in msg


def test_unknown_alias_without_any_defined(tmp_path):
    with pytest.raises(UserError, match="none defined"):
        resolve_bound("beta5", open_store(tmp_path / "t.db"))


def test_stored_alias_overrides_config(_isolated_config, tmp_path):
    (_isolated_config / "triage.toml").write_text('[releases]\nbeta5 = "26A5353q"\n',
                                                  encoding="utf-8")
    store = open_store(tmp_path / "t.db")
    set_alias(store, "beta5", "26A5368g")
    assert resolve_bound("beta5", store).build_for("macOS") == "26A5368g"
    set_alias(store, "beta5", "26A5316k", platform="iOS")
    assert all_aliases(store)["iOS"]["beta5"] == "26A5316k"


def test_set_alias_rejects_bad_input(tmp_path):
    store = open_store(tmp_path / "t.db")
    with pytest.raises(UserError, match="not an Apple build"):
        set_alias(store, "beta5", "26.0")
    with pytest.raises(UserError, match="itself a build"):
        set_alias(store, "26A5353q", "26A5353q")


def test_alias_pointing_at_non_build_is_an_error(_isolated_config):
    (_isolated_config / "triage.toml").write_text('[releases]\nbeta5 = "soon"\n',
                                                  encoding="utf-8")
    with pytest.raises(UserError, match="not a build number"):
        resolve_bound("beta5")


def test_releases_records_in_build_order(tmp_path):
    store = open_store(tmp_path / "t.db")
    rows = [("a", "26A5378a", "macOS"), ("b", "26A5288h", "macOS"), ("c", "26A5353q", "macOS"),
            ("d", "26A5353q", "macOS"), ("e", "23A5330a", "iOS")]
    with store.transaction() as conn:
        for i, (iid, build, plat) in enumerate(rows):
            conn.execute("INSERT INTO incidents(incident_id, path, sha256, kind, os_build, "
                         "platform, captured_ts, ingested_at) VALUES(?,?,?,?,?,?,?,?)",
                         (iid, f"/r/{iid}.ips", iid * 8, "crash", build, plat, 1.0e9 + i, "now"))
    set_alias(store, "beta5", "26A5353q")
    out = releases_records(store)
    assert [r["build"] for r in out] == ["23A5330a", "26A5288h", "26A5353q", "26A5378a"]
    r = out[2]
    assert r["count"] == 2 and r["aliases"] == ["beta5"] and r["platforms"] == {"macOS": 2}
    assert r["seed"] is True and r["number"] == 5353


from hypothesis import given, strategies as st  # noqa: E402

builds = st.builds(lambda major, train, number, suffix: f"{major}{train}{number}{suffix}",
                   st.integers(1, 40), st.sampled_from("ABCDEFGH"), st.integers(1, 9999),
                   st.sampled_from(["", "a", "b", "q", "z"]))


@given(st.lists(builds, min_size=1, max_size=30))
def test_sort_is_total_and_by_parts(items):
    out = sort_builds(items)
    assert sorted(out, key=build_key) == out and sorted(items) == sorted(out)
    for a, b in zip(out, out[1:]):
        pa, pb = parse_build(a), parse_build(b)
        # major and train never go backwards, whatever the strings look like
        assert (pa.major, pa.train) <= (pb.major, pb.train)
        if (pa.major, pa.train) == (pb.major, pb.train) and pa.seed == pb.seed:
            assert (pa.number, pa.suffix) <= (pb.number, pb.suffix)


@given(builds)
def test_parse_roundtrip(text):
    b = parse_build(text)
    assert b is not None and f"{b.major}{b.train}{b.number}{b.suffix}" == text


def test_config_rules_files_string_or_bad_type(_isolated_config):
    # regression: `files = "my.toml"` was iterated per character ("m: rule file not found")
    from triage.config import read_config_file

    cfg = _isolated_config / "triage.toml"
    cfg.write_text('[rules]\nfiles = "my.toml"\n', encoding="utf-8")
    assert read_config_file(cfg)["rules"]["files"] == [str(_isolated_config / "my.toml")]
    cfg.write_text('[rules]\nfiles = 5\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"\[rules\] files must be a list"):
        read_config_file(cfg)
