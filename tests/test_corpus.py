"""Run the parser over every real report in the shared corpus (skipped when it is absent).

Each well-formed report must parse, and its crashing thread's first frame must match
PROVENANCE.tsv's ``top_crashing_frame`` (compared loosely: symbol text and module). Malformed
files must raise ParseError or parse with notes, never crash.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import pytest

from triage.records import ParseError
from triage.reports.common import kind_for
from triage.reports.detect import looks_like_report, parse_bytes

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

if not (CORPUS / "PROVENANCE.tsv").is_file():
    pytest.skip("shared corpus not present", allow_module_level=True)

MALFORMED = {"lldb__a.out.ips", "acrp__xcode16.txt", "acrp__spaces.txt"}


def _rows() -> list[dict]:
    with open(CORPUS / "PROVENANCE.tsv", newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh, delimiter="\t") if (CORPUS / r["file"]).is_file()]


ROWS = _rows()
GOOD = [r for r in ROWS if r["file"] not in MALFORMED]
BAD = [r for r in ROWS if r["file"] in MALFORMED]


def _parse(name: str):
    data = (CORPUS / name).read_bytes()
    return parse_bytes(data, str(CORPUS / name), hashlib.sha256(data).hexdigest())


def test_corpus_has_files():
    assert len(ROWS) >= 20
    assert BAD, "the malformed samples are listed in PROVENANCE.tsv"


@pytest.mark.parametrize("row", GOOD, ids=[r["file"] for r in GOOD])
def test_well_formed_report_parses(row):
    rep = _parse(row["file"])
    assert rep.incident_id and rep.sha256 and rep.path.endswith(row["file"])
    if row["bug_type"]:
        assert rep.bug_type == row["bug_type"]
        assert rep.kind == kind_for(row["bug_type"])
    else:
        assert rep.kind == "crash"
    if rep.kind == "crash":
        assert rep.crashing_thread is not None
        assert rep.crashing_frames(), "crashing thread has frames"
        assert rep.process
        assert rep.exception_type or rep.signal
    data = (CORPUS / row["file"]).read_bytes()
    assert looks_like_report(data[:4096])


_EXPECT = re.compile(r"^(?P<sym>.*?)\s*\[(?P<mod>[^\[\]]*)\]$")
_OFF = re.compile(r"^(?P<name>.*?)\s+\+\s+(?P<off>\d+)$")


def _check_frame(expected: str, frame, rep=None) -> None:
    m = _EXPECT.match(expected.strip())
    assert m, f"unexpected PROVENANCE format: {expected}"
    sym, mod = m.group("sym").strip(), m.group("mod").strip()
    if mod != "?":
        # text reports on old macOS name images by bundle id; the parser stores the binary name
        bundle = rep.images[frame.image_index].bundle_id if (
            rep is not None and frame.image_index is not None) else None
        assert mod in (frame.module, bundle)
    else:
        assert frame.module is None
    if sym == "<no symbol>":
        assert frame.symbol is None
        return
    ks = re.match(r"^0x[0-9a-fA-F]+\s+\+\s+(\d+)\s+\((.*)\)$", sym)   # KSCrash form
    if ks:
        assert frame.offset == int(ks.group(1))
        inner = _OFF.match(ks.group(2))
        assert frame.symbol == (inner.group("name") if inner else ks.group(2))
        return
    un = re.match(r"^0x[0-9a-fA-F]+\s+\+\s+(\d+)$", sym)               # unsymbolicated
    if un:
        assert frame.symbol is None
        assert frame.offset == int(un.group(1))
        return
    so = _OFF.match(sym)
    if so:
        assert frame.symbol == so.group("name")
        assert frame.symbol_offset == int(so.group("off"))
    else:
        assert frame.symbol == sym


FRAMED = [r for r in GOOD if r["top_crashing_frame"] and "[" in r["top_crashing_frame"]]


@pytest.mark.parametrize("row", FRAMED, ids=[r["file"] for r in FRAMED])
def test_top_crashing_frame_matches_provenance(row):
    rep = _parse(row["file"])
    frames = rep.crashing_frames()
    assert frames
    _check_frame(row["top_crashing_frame"], frames[0], rep)


@pytest.mark.parametrize("row", BAD, ids=[r["file"] for r in BAD])
def test_malformed_reported_not_fatal(row):
    try:
        rep = _parse(row["file"])
    except ParseError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert rep.notes, "a malformed file that parses must carry notes"


def test_same_incident_in_ips_and_text_agree():
    a = _parse("macsym__single-target-crash.ips")
    b = _parse("macsym__single-target-crash.crash")
    fa, fb = a.crashing_frames(), b.crashing_frames()
    assert [f.offset for f in fa[:3]] == [f.offset for f in fb[:3]]
    assert [f.image_uuid for f in fa[:3]] == [f.image_uuid for f in fb[:3]]
    assert a.captured_at == b.captured_at and a.pid == b.pid


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_truncations_never_crash(row):
    data = (CORPUS / row["file"]).read_bytes()
    for cut in (1, 17, len(data) // 3, len(data) // 2, len(data) - 7):
        try:
            parse_bytes(data[:cut], "x", "0" * 64)
        except ParseError:
            pass


def test_same_incident_ips_and_crash_give_identical_frames():
    a = _parse("mobiledev__MemoryLeakingApp-2022-08-05-132419.ips")
    b = _parse("mobiledev__MemoryLeakingApp-2022-08-05-132419.crash")
    key = [(f.module, f.symbol, f.offset, f.image_uuid) for f in a.crashing_frames()]
    assert key == [(f.module, f.symbol, f.offset, f.image_uuid) for f in b.crashing_frames()]
    assert len(key) > 20
