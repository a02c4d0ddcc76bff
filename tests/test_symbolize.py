"""Symbolication with a real arm64 Mach-O dylib + dSYM (prebuilt fixture, and rebuilt with
Debian's clang/lld/llvm when present), and peer symbols learned from the store."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from triage.errors import UserError
from triage.frames.normalize import load_rules, normalize_report, normalized_stack
from triage.frames.symbolize import DsymIndex, PeerSymbols, canonical_uuid, symbolicate_report
from triage.records import Frame, Image, Report, Thread

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "fixtures" / "dsym"
TOOLS = ("clang++", "dsymutil", "llvm-nm")


def _have_tools() -> str | None:
    missing = [t for t in TOOLS if not (shutil.which(t) or shutil.which(t + "-14"))]
    if not (shutil.which("ld64.lld") or shutil.which("ld64.lld-14")
            or Path("/usr/lib/llvm-14/bin/ld64.lld").exists()):
        missing.append("ld64.lld")
    return ", ".join(missing) or None


def _symbols(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        addr, _, name = line.split()
        out[name] = int(addr, 16)
    return out


def _build(outdir: Path) -> Path:
    missing = _have_tools()
    if missing:
        pytest.skip(f"LLVM tools not installed ({missing}): apt-get install -y clang lld llvm")
    subprocess.run(["sh", str(FIXTURE / "build.sh"), str(outdir)], check=True,
                   capture_output=True)
    return outdir


@pytest.fixture(scope="module", params=["prebuilt", "fresh"])
def demo(request, tmp_path_factory):
    """(folder with libdemo.dylib + .dSYM, uuid, {symbol: offset})."""
    if request.param == "prebuilt":
        folder = FIXTURE
    else:
        folder = _build(tmp_path_factory.mktemp("dsym"))
    index = DsymIndex.from_paths([folder])
    assert len(index) == 1, index.problems
    uuid = next(iter(index.files))
    return folder, index, uuid, _symbols(folder / "libdemo.symbols.txt")


def _report(uuid: str, frames: list[Frame], **kw) -> Report:
    img = Image(index=0, name="libdemo.dylib", uuid=uuid.upper(), base=0x104000000)
    for f in frames:
        f.module = f.module or "libdemo.dylib"
        if f.image_index is None:
            f.image_index = 0
    return Report(incident_id="i", path="p", sha256="s", format="ips-json", crashing_thread=0,
                  threads=[Thread(index=0, triggered=True, frames=frames)], images=[img], **kw)


def test_index_prefers_dsym(demo):
    folder, index, uuid, _ = demo
    df = index.files[uuid]
    assert df.has_debug and ".dSYM" in df.path and df.arch == "arm64"
    assert canonical_uuid(uuid.upper().replace("-", "")) == uuid


def test_inline_expansion_names_and_lines(demo):
    _, index, uuid, syms = demo
    outer = syms["__ZN4demo13outer_computeEi"]
    helper = syms["__ZN4demo12_GLOBAL__N_113hidden_helperEi"]
    twice = syms["__ZN4demo5twiceIlEET_S1_"]
    r = _report(uuid, [Frame(offset=outer + 8), Frame(offset=helper + 8, symbol="???"),
                       Frame(offset=twice + 8)])
    assert symbolicate_report(r, index) == 4
    fr = r.threads[0].frames
    assert [(f.symbol, f.inline) for f in fr] == [
        ("demo::inner_step(int)", True), ("demo::outer_compute(int)", False),
        ("demo::(anonymous namespace)::hidden_helper(int)", False),
        ("demo::twice<long>(long)", False)]
    assert all(f.symbolicated_by == "dsym" for f in fr)
    assert fr[0].source_file.endswith("demo.cpp") and fr[0].source_line in (6, 7)
    assert fr[1].source_line == 11 and fr[1].symbol_offset == 8
    assert fr[0].offset == fr[1].offset == outer + 8
    normalize_report(r, load_rules([]))
    assert normalized_stack(fr, load_rules([])) == [
        "demo::inner_step", "demo::outer_compute",
        "demo::(anonymous namespace)::hidden_helper", "demo::twice<T>"]


def test_return_addresses_looked_up_at_minus_one(demo):
    _, index, uuid, syms = demo
    entry = syms["_demo_entry"]  # the byte after outer_compute's last instruction
    r = _report(uuid, [Frame(offset=entry), Frame(offset=entry)])
    symbolicate_report(r, index)
    fr = r.threads[0].frames
    assert fr[0].symbol == "demo_entry"                       # the pc: looked up as is
    assert fr[-1].symbol == "demo::outer_compute(int)"        # a return address: at offset - 1


def test_mismatched_uuid_never_used(demo):
    _, index, uuid, syms = demo
    other = "ffffffff" + uuid[8:]
    r = _report(other, [Frame(offset=syms["__ZN4demo13outer_computeEi"] + 8)])
    assert symbolicate_report(r, index) == 0
    assert r.threads[0].frames[0].symbol is None


def test_other_dsym_is_not_used(tmp_path, demo):
    """A dSYM of a different build (different UUID) beside the image is ignored."""
    folder, _, uuid, syms = demo
    if _have_tools():
        pytest.skip("needs the LLVM tools to build a second variant")
    src = (FIXTURE / "demo.cpp").read_text().replace("counter * 3", "counter * 5")
    var = tmp_path / "variant"
    var.mkdir()
    shutil.copy(FIXTURE / "build.sh", var / "build.sh")
    (var / "demo.cpp").write_text(src)
    subprocess.run(["sh", str(var / "build.sh")], check=True, capture_output=True)
    index = DsymIndex.from_paths([var])
    assert len(index) == 1 and uuid not in index
    r = _report(uuid, [Frame(offset=syms["__ZN4demo13outer_computeEi"] + 8)])
    assert symbolicate_report(r, index) == 0


def test_override_policy(demo):
    _, index, uuid, syms = demo
    off = syms["__ZN4demo5twiceIlEET_S1_"] + 4
    r = _report(uuid, [Frame(offset=off, symbol="reported_name", symbolicated_by="report")])
    assert symbolicate_report(r, index, override=False) == 0
    assert r.threads[0].frames[0].symbol == "reported_name"
    assert symbolicate_report(r, index) == 1
    assert r.threads[0].frames[0].symbol == "demo::twice<long>(long)"


def test_last_exception_backtrace_symbolicated(demo):
    _, index, uuid, syms = demo
    r = _report(uuid, [], last_exception_backtrace=[
        Frame(module="libdemo.dylib", image_index=0, offset=syms["__ZN4demo5twiceIlEET_S1_"] + 4)])
    assert symbolicate_report(r, index) == 1


def test_executable_addresses_are_image_relative(tmp_path):
    """__TEXT at 0x100000000: frames give imageOffset, the lookup must still hit."""
    missing = _have_tools()
    if missing:
        pytest.skip(f"LLVM tools not installed ({missing})")
    cc = shutil.which("clang++-14") or shutil.which("clang++")
    ld = shutil.which("ld64.lld-14") or shutil.which("ld64.lld") or "/usr/lib/llvm-14/bin/ld64.lld"
    ds = shutil.which("dsymutil-14") or shutil.which("dsymutil")
    nm = shutil.which("llvm-nm-14") or shutil.which("llvm-nm")
    src = tmp_path / "app.cpp"
    src.write_text((FIXTURE / "demo.cpp").read_text() + "\nint main() { return demo_entry(3); }\n")
    subprocess.run([cc, "-target", "arm64-apple-macos11", "-g", "-O1", "-c", str(src), "-o",
                    str(tmp_path / "app.o")], check=True, capture_output=True)
    subprocess.run([ld, "-arch", "arm64", "-execute", "-e", "_main", "-platform_version", "macos",
                    "11.0", "11.0", "-undefined", "dynamic_lookup", str(tmp_path / "app.o"),
                    "-o", str(tmp_path / "app")], check=True, capture_output=True)
    subprocess.run([ds, str(tmp_path / "app"), "-o", str(tmp_path / "app.dSYM")], check=True,
                   capture_output=True)
    out = subprocess.run([nm, str(tmp_path / "app")], check=True, capture_output=True, text=True)
    syms = {ln.split()[2]: int(ln.split()[0], 16) for ln in out.stdout.splitlines()}
    vm = syms["__mh_execute_header"]
    assert vm == 0x100000000
    index = DsymIndex.from_paths([tmp_path / "app.dSYM"])
    uuid = next(iter(index.files))
    r = _report(uuid, [Frame(offset=syms["__ZN4demo5twiceIlEET_S1_"] - vm + 4)])
    assert symbolicate_report(r, index) == 1
    assert r.threads[0].frames[0].symbol == "demo::twice<long>(long)"


# ---------------------------------------------------------------------------- bad input

def test_bad_frames_never_crash(demo):
    _, index, uuid, _ = demo
    frames = [Frame(offset=None), Frame(offset=-5), Frame(offset=10**30),
              Frame(image_index=99, offset=8), Frame(image_index=None, offset=8),
              Frame(image_uuid="not-a-uuid", offset=8), Frame(inline=True, offset=8)]
    r = _report(uuid, frames)
    r.images = []  # imageIndex out of range everywhere
    symbolicate_report(r, index)
    assert len(r.threads[0].frames) == len(frames)


def test_from_paths_errors(tmp_path):
    with pytest.raises(UserError, match="no such dSYM"):
        DsymIndex.from_paths([tmp_path / "missing"])
    (tmp_path / "junk.txt").write_text("hello")
    (tmp_path / "fake").write_bytes(b"\xcf\xfa\xed\xfe" + b"\x00" * 64)  # Mach-O magic, garbage
    index = DsymIndex.from_paths([tmp_path])
    assert len(index) == 0
    assert symbolicate_report(_report("4c4c4414-5555-3144-a138-5a9be930f7b9",
                                      [Frame(offset=8)]), index) == 0


# ---------------------------------------------------------------------------- peers

def _peer_report(uuid: str, frames: list[Frame]) -> Report:
    return Report(incident_id="x", path="p", sha256="s", format="ips-json", crashing_thread=0,
                  threads=[Thread(index=0, frames=frames)],
                  images=[Image(index=0, name="CoreML", uuid=uuid)])


def test_peer_symbols_roundtrip(tmp_path):
    from triage.store.db import Store

    uuid = "12345678-1234-1234-1234-123456789abc"
    known = _peer_report(uuid, [
        Frame(module="CoreML", image_index=0, symbol="-[MLModel predict]", offset=0x1040,
              symbol_offset=0x40, symbolicated_by="report"),
        Frame(module="CoreML", image_index=0, symbol="-[MLModel predict]", offset=0x1080,
              symbol_offset=0x80, symbolicated_by="report"),
        Frame(module="CoreML", image_index=0, symbol="inlined_thing", offset=0x1080,
              symbol_offset=0x2, inline=True)])
    store = Store.open(tmp_path / "t.db")
    peers = PeerSymbols.load(store)
    assert peers.observe(known) == 2  # new start, then a larger end_seen
    with store.transaction() as conn:
        assert peers.save(conn) == 1
    peers2 = PeerSymbols.load(store)
    assert len(peers2) == 1
    bare = _peer_report(uuid, [Frame(module="CoreML", image_index=0, offset=o)
                               for o in (0x1000, 0x1060, 0x1080, 0x1081, 0x0fff)])
    assert peers2.apply(bare) == 3
    got = [(f.symbol, f.symbol_offset, f.symbolicated_by) for f in bare.threads[0].frames]
    assert got == [("-[MLModel predict]", 0, "peer"), ("-[MLModel predict]", 0x60, "peer"),
                   ("-[MLModel predict]", 0x80, "peer"), (None, None, None), (None, None, None)]
    other = _peer_report("ffffffff-1234-1234-1234-123456789abc",
                         [Frame(module="CoreML", image_index=0, offset=0x1040)])
    assert peers2.apply(other) == 0
    store.close()


def test_peer_table_created_on_old_store(tmp_path):
    import sqlite3

    conn = sqlite3.connect(tmp_path / "old.db")
    peers = PeerSymbols.load(conn)      # no table yet: nothing known, no error
    assert len(peers) == 0
    peers.observe(_peer_report("12345678-1234-1234-1234-123456789abc", [
        Frame(module="M", image_index=0, symbol="f", offset=10, symbol_offset=2)]))
    assert peers.save(conn) == 1
    assert conn.execute("SELECT start, end_seen, symbol FROM symbol_map").fetchall() == \
        [(8, 10, "f")]
