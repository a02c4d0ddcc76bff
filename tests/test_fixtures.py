"""Tests of the fixture generator (fixtures/generate.py) and of the shipped fixture folders."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
REPORTS = FIXTURES / "DiagnosticReports"
EVAL = FIXTURES / "eval"
sys.path.insert(0, str(FIXTURES))

import generate as g  # noqa: E402

# files in malformed/ that are not valid .ips on purpose, with the defect each one carries
BROKEN = {
    "truncated-2026-08-20-101500.ips": "json",
    "empty-2026-08-20-101501.ips": "empty",
    "binary-junk-2026-08-20-101502.ips": "json",
    "header-only-2026-08-20-101503.ips": "nobody",
    "no-threads-2026-08-20-101504.ips": "threads",
    "bad-image-index-2026-08-20-101505.ips": "imageindex",
    "invalid-utf8-2026-08-20-101506.ips": "utf8",
    "notes-2026-08-20-101507.ips": "json",
}


def _split_ips(data: bytes) -> tuple[dict, object]:
    text = data.decode("utf-8")
    head, _, rest = text.partition("\n")
    header = json.loads(head)
    body = json.loads(rest) if rest.strip() else None
    return header, body


def _check_crash_body(body: dict) -> None:
    threads = body["threads"]
    assert 0 <= body["faultingThread"] < len(threads)
    assert threads[body["faultingThread"]].get("triggered") is True
    assert sum(1 for t in threads if t.get("triggered")) == 1
    n = len(body["usedImages"])
    for t in threads:
        assert t["frames"], "every thread has frames"
        for fr in t["frames"]:
            assert 0 <= fr["imageIndex"] < n
            img = body["usedImages"][fr["imageIndex"]]
            assert 0 <= fr["imageOffset"] < img["size"]
            if "symbolLocation" in fr and not fr.get("inline"):
                assert fr["symbolLocation"] <= fr["imageOffset"]
    for fr in body.get("lastExceptionBacktrace", []):
        assert 0 <= fr["imageIndex"] < n
    for i, t in enumerate(threads):
        frames = t["frames"]
        for j, fr in enumerate(frames):       # an inline entry shares the next physical frame's offset
            if fr.get("inline"):
                assert j + 1 < len(frames) and frames[j + 1]["imageOffset"] == fr["imageOffset"]


def _ips_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.ips"))


# ---------------------------------------------------------------------------------------------

def test_build_crash_is_deterministic():
    a = g.build_crash("ane_precompile", seed=7, os_build="26A5353q", process="coreai-build")
    b = g.build_crash("ane_precompile", seed=7, os_build="26A5353q", process="coreai-build")
    c = g.build_crash("ane_precompile", seed=8, os_build="26A5353q", process="coreai-build")
    assert g.render_ips(*a) == g.render_ips(*b)
    assert g.render_crash_text(*a) == g.render_crash_text(*b)
    assert g.render_ips(*a) != g.render_ips(*c)


def test_write_corpus_and_eval_are_deterministic(tmp_path):
    a = g.write_corpus(tmp_path / "a", seed=3)
    b = g.write_corpus(tmp_path / "b", seed=3)
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    c = g.write_corpus(tmp_path / "c", seed=4)
    assert [p.read_bytes() for p in a] != [p.read_bytes() for p in c]


@pytest.mark.parametrize("sub", ["DiagnosticReports", "eval"])
def test_shipped_fixtures_are_up_to_date(tmp_path, sub):
    """The committed folders are exactly what the generator writes (regenerate after editing it)."""
    shipped = FIXTURES / sub
    assert shipped.is_dir(), f"run: python fixtures/generate.py --out fixtures ({sub} is missing)"
    fresh = tmp_path / sub
    if sub == "eval":
        g.write_eval(fresh, seed=0)
    else:
        g.write_corpus(fresh, seed=0)
    want = sorted(str(p.relative_to(fresh)) for p in fresh.rglob("*") if p.is_file())
    have = sorted(str(p.relative_to(shipped)) for p in shipped.rglob("*") if p.is_file())
    assert have == want, "shipped fixtures are stale: run python fixtures/generate.py --out fixtures"
    stale = [r for r in want if (fresh / r).read_bytes() != (shipped / r).read_bytes()]
    assert not stale, f"stale files (regenerate): {stale[:5]}"


def test_every_shipped_ips_is_valid():
    seen = Counter()
    for p in _ips_files(REPORTS) + _ips_files(EVAL):
        data = p.read_bytes()
        if p.parent.name == "malformed":
            assert p.name in BROKEN, f"unexpected file in malformed/: {p.name}"
            kind = BROKEN[p.name]
            seen[kind] += 1
            if kind == "empty":
                assert data == b""
            elif kind == "utf8":
                with pytest.raises(UnicodeDecodeError):
                    data.decode("utf-8")
            elif kind == "json":
                with pytest.raises((ValueError, UnicodeDecodeError)):
                    _split_ips(data)
            elif kind == "nobody":
                header, body = _split_ips(data)
                assert header["bug_type"] == "309" and body is None
            elif kind == "threads":
                header, body = _split_ips(data)
                assert "threads" not in body
            elif kind == "imageindex":
                header, body = _split_ips(data)
                with pytest.raises(AssertionError):
                    _check_crash_body(body)
            continue
        header = json.loads(data.decode().partition("\n")[0])
        assert isinstance(header, dict) and header.get("bug_type")
        if header["bug_type"] == "202":          # text body (checked in test_cpu_resource_report_has_text_body)
            continue
        header, body = _split_ips(data)
        if header["bug_type"] == "309":
            assert header["incident_id"] == body["incident"]
            assert header["os_version"].endswith(f"({body['osVersion']['build']})")
            _check_crash_body(body)
            seen["crash"] += 1
    assert seen["crash"] > 300
    assert set(BROKEN.values()) <= set(seen)


def test_cpu_resource_report_has_text_body():
    [p] = [p for p in REPORTS.glob("*.cpu_resource*.ips")]
    head, _, rest = p.read_text().partition("\n")
    assert json.loads(head)["bug_type"] == "202"
    assert rest.startswith("Date/Time:")
    with pytest.raises(ValueError):
        json.loads(rest)


def test_corpus_contents():
    names = [str(p.relative_to(REPORTS)) for p in REPORTS.rglob("*") if p.is_file()]
    assert 60 <= len(names) <= 140
    assert any(n.startswith("Retired/") for n in names)
    assert any(n.endswith(".crash") for n in names)
    assert any(n.endswith(".txt") for n in names)
    kinds = Counter()
    for p in _ips_files(REPORTS):
        try:
            kinds[json.loads(p.read_text().partition("\n")[0])["bug_type"]] += 1
        except (ValueError, UnicodeDecodeError, KeyError):
            pass
    for bt in ("309", "288", "409", "298", "210", "202"):
        assert kinds[bt] >= 1, bt
    translated = next(REPORTS.glob("*.txt")).read_text()
    assert translated.startswith("-------------------------------------\nTranslated Report (Full Report Below)")
    assert "\nFull Report\n" in translated
    total = sum(p.stat().st_size for p in REPORTS.rglob("*") if p.is_file())
    assert total < 4_000_000


def _frame_line_re():
    return re.compile(r"^(\d+)\s+(.+?)\s*\t\s*0x([0-9a-f]+) (.*)$")


@pytest.mark.parametrize("family", g.FAMILIES)
@pytest.mark.parametrize("symbolicated", [True, False])
def test_text_rendering_agrees_with_json(family, symbolicated):
    process = "ANECompilerService" if family == "ane_assert" else "coreai-build"
    header, body = g.build_crash(family, seed=11, os_build="26A5368g", process=process, symbolicated=symbolicated)
    text = g.render_crash_text(header, body).decode()
    ft = body["faultingThread"]
    assert f"\nThread {ft} Crashed::" in text
    block = text.split(f"\nThread {ft} Crashed::", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    frames = body["threads"][ft]["frames"]
    assert len(block) == len(frames)
    rx = _frame_line_re()
    for line, fr in zip(block, frames):
        m = rx.match(line)
        assert m, line
        img = body["usedImages"][fr["imageIndex"]]
        assert m.group(2) == img["name"]
        assert int(m.group(3), 16) == img["base"] + fr["imageOffset"]
        if "symbol" in fr:
            assert m.group(4).startswith(f"{fr['symbol']} + {fr['symbolLocation']}")
            assert m.group(4).endswith("[inlined]") == bool(fr.get("inline"))
        else:
            assert m.group(4) == f"0x{img['base']:x} + {fr['imageOffset']}"
    assert f"Exception Type:        {body['exception']['type']} ({body['exception']['signal']})" in text


def test_ios_text_form():
    header, body = g.build_crash("ane_precompile", seed=2, os_build="23A5318c", process="ChatPlayground")
    text = g.render_crash_text(header, body).decode()
    assert text.startswith(f"Incident Identifier: {body['incident']}\n")
    assert "Hardware Model:      iPhone17,1" in text
    assert f"Triggered by Thread:  {body['faultingThread']}" in text
    assert f"Thread {body['faultingThread']} Crashed:\n" in text
    assert "OS Version:          iPhone OS 26.0 (23A5318c)" in text


def test_variants_keep_offsets_stable_within_a_build():
    """Same build: unsymbolicated and ASLR-shifted reports keep imageOffset; symbol text drifts across builds."""
    a = g.build_crash("ane_precompile", seed=1, os_build="26A5353q", thread_kind="main")[1]
    b = g.build_crash("ane_precompile", seed=2, os_build="26A5353q", thread_kind="main", symbolicated=False)[1]
    fa = [f for f in a["threads"][0]["frames"] if not f.get("inline")]
    fb = b["threads"][0]["frames"]
    assert all("symbol" not in f for f in fb)
    assert [f["imageOffset"] for f in fa[:7]] == [f["imageOffset"] for f in fb[:7]]
    base = {img["name"]: img["base"] for img in a["usedImages"] if img.get("name")}
    base_b = {img["name"]: img["base"] for img in b["usedImages"] if img.get("name")}
    assert base["libobjc.A.dylib"] != base_b["libobjc.A.dylib"]          # ASLR
    early = g.build_crash("ane_precompile", seed=1, os_build="26A5288h", thread_kind="main")[1]
    syms_early = [f.get("symbol") for f in early["threads"][0]["frames"][:4]]
    syms_late = [f.get("symbol") for f in a["threads"][0]["frames"][:4]]
    assert syms_early[1].endswith("llvm::SmallVectorImpl<char>&)")
    assert syms_late[1].endswith("llvm::SmallVectorImpl<unsigned char>&)")
    assert syms_early[3].startswith("__89-[MPSGraphExecutable") and syms_late[3].startswith("__91-[MPSGraphExecutable")
    assert a["threads"][0]["frames"][2].get("inline") is True and "inline" not in early["threads"][0]["frames"][2]


def test_family_shapes():
    so = g.build_crash("stack_overflow", seed=1)[1]
    frames = so["threads"][so["faultingThread"]]["frames"]
    assert len(frames) >= 512
    assert sum("MIL::Rewriter::visit" in f.get("symbol", "") for f in frames) > 200
    exc = g.build_crash("mlir_pass_exception", seed=1, process="python3.12")[1]
    leb = [f["symbol"] for f in exc["lastExceptionBacktrace"]]
    assert leb[0] == "__cxa_throw" and "MIL::ValidationError" in leb[1] and g._OPTOOP in leb
    assert "terminating due to uncaught exception" in exc["asi"]["libc++abi.dylib"][0]
    asrt = g.build_crash("ane_assert", seed=1, process="ANECompilerService", responsible=("coreai-build", 4242),
                         pid=777, parent_pid=1)[1]
    assert asrt["responsibleProc"] == "coreai-build" and asrt["responsiblePid"] == 4242
    assert asrt["asi"]["libsystem_c.dylib"][0].startswith("Assertion failed: (tensor.rank() <= ")
    top = lambda fam: [f["symbol"] for f in g.build_crash(fam, seed=5, thread_kind="main")[1]["threads"][0]["frames"][:6]]
    a, b = top("deep_split_a"), top("deep_split_b")
    assert a[:3] == b[:3] and a[3:6] != b[3:6]
    assert top("slice_update")[0] == top("ane_precompile")[0] == "objc_release"


def _parse_time(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%d %H:%M:%S.%f %z")


def test_journal_links_and_correlations():
    recs = [json.loads(line) for line in (REPORTS / "triage-journal.jsonl").read_text().splitlines()]
    keys = {"schema", "pid", "process", "started_at", "ended_at", "argv", "cwd", "exit_code", "model", "encoding", "flags"}
    for r in recs:
        assert keys <= set(r)
        assert datetime.fromisoformat(r["started_at"]).tzinfo is not None
        assert r["encoding"]["scheme"] in {"palettized", "linear", "sparse", "float16", "mixed"}
    assert sum(r["exit_code"] == 0 for r in recs) >= 30
    linked = 0
    for p in _ips_files(REPORTS):
        if p.parent.name == "malformed":
            continue
        if json.loads(p.read_text().partition("\n")[0])["bug_type"] != "309":
            continue
        header, body = _split_ips(p.read_bytes())
        if body["procName"] == "ChatPlayground":
            continue
        when = _parse_time(body["captureTime"])
        pids = {body["pid"], body["responsiblePid"]}
        hits = [r for r in recs if r["pid"] in pids
                and datetime.fromisoformat(r["started_at"]) <= when <= datetime.fromisoformat(r["ended_at"])]
        assert len(hits) <= 1
        if hits:
            linked += 1
            if body["procName"] == "ANECompilerService":
                assert hits[0]["process"] != "ANECompilerService"
    assert linked >= 50
    # correlations the context stage must find
    by = defaultdict(list)
    for r in recs:
        e, f = r["encoding"], r["flags"]
        by[(e["scheme"], e["dtype"], e["granularity"], e["block_size"], f["preferred_compute"])].append(r["exit_code"])
    int4_ne = by[("linear", "int4", "per_block", 32, "neural-engine")]
    assert int4_ne and all(c != 0 for c in int4_ne)
    assert by[("linear", "int4", "per_block", 32, "gpu")] and all(c == 0 for c in by[("linear", "int4", "per_block", 32, "gpu")])
    pal = by[("palettized", "uint4", "per_grouped_channel", None, "neural-engine")]
    assert pal and all(c == 0 for c in pal)
    sidecars = [p for p in REPORTS.rglob("*.json")]
    assert 2 <= len(sidecars) <= 3
    for s in sidecars:
        assert s.with_suffix(".ips").exists() and keys <= set(json.loads(s.read_text()))


def test_labels_cover_eval_crashes():
    doc = json.loads((EVAL / "labels.json").read_text())
    assert doc["version"] == 1
    labels, split = doc["labels"], doc["split"]
    assert set(labels) == set(split)
    incidents = set()
    for p in sorted((EVAL / "reports").iterdir()):
        text = p.read_text()
        header = json.loads(text.partition("\n")[0])     # .crash files here start with the IPS header line
        if header["bug_type"] == "309":
            incidents.add(header["incident_id"])
        else:
            assert header["incident_id"] not in labels          # non-crash noise is unlabelled
    assert incidents == set(labels)
    assert 300 <= len(labels) <= 600
    assert set(split.values()) == {"tune", "holdout"}
    frac = sum(v == "holdout" for v in split.values()) / len(split)
    assert 0.25 < frac < 0.42
    fams = Counter(labels.values())
    for fam in g.FAMILIES:
        assert fams[fam] >= 8
        assert any(split[i] == "holdout" for i, f in labels.items() if f == fam)


def test_write_bulk_sizes(tmp_path):
    files = g.write_bulk(tmp_path, 4, seed=1)
    assert len(files) == 4
    for p in files:
        size = p.stat().st_size
        assert 20 * 1024 * 0.7 <= size <= 200 * 1024 * 1.3, size
        header, body = _split_ips(p.read_bytes())
        assert 40 <= len(body["usedImages"]) - 1 <= 600
        assert len(body["threads"]) >= 3
        _check_crash_body(body)
