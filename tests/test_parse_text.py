"""Legacy text .crash parsing (triage.reports.text): frame lines, image lines, whole reports."""

from __future__ import annotations

import pytest

from triage.records import ParseError
from triage.reports.common import canon_uuid, parse_time, split_os_version
from triage.reports.detect import parse_bytes
from triage.reports.text import parse_frame_line, parse_image_line

SHA = "cd" * 32


# ---- frame lines ------------------------------------------------------------------------------

@pytest.mark.parametrize("line,module,address,symbol,symoff,offset,src,inline", [
    ("0   TouchCanvas   0x0000000102afb3d0 CanvasView.updateEstimated(_:) + 62416 "
     "(CanvasView.swift:231)",
     "TouchCanvas", 0x102afb3d0, "CanvasView.updateEstimated(_:)", 62416, None,
     ("CanvasView.swift", 231), False),
    ("4   TouchCanvas   0x00000001022cbfa8 0x1022c0000 + 49064",
     "TouchCanvas", 0x1022cbfa8, None, None, 49064, None, False),
    ("0   libsystem_kernel.dylib  \t  0x196cf6388 __pthread_kill + 8",
     "libsystem_kernel.dylib", 0x196cf6388, "__pthread_kill", 8, None, None, False),
    ("69  BibleShow.UI  \t  0x1010cfe80 do_runtime_invoke + 60 (object.c:2576) [inlined]",
     "BibleShow.UI", 0x1010cfe80, "do_runtime_invoke", 60, None, ("object.c", 2576), True),
    ("2   ???   0x0000000054485244 0x0 + 0", None, 0x54485244, None, None, 0, None, False),
    ("0   App Namespace      0x0000000102268e70 0x10211c000 + 1363568",
     "App Namespace", 0x102268e70, None, None, 1363568, None, False),
    ("0   Crash-Tester    0x0002f560 0x28000 + 30048 (-[Crasher dereferenceBadPointer] + 24)",
     "Crash-Tester", 0x2f560, "-[Crasher dereferenceBadPointer]", 24, 30048, None, False),
    ("0   libswiftCore.dylib   \t0x00000001ad8d9efc specialized _fatalErrorMessage+ 2378352 "
     "(_:_:file:line:flags:) + 384",
     "libswiftCore.dylib", 0x1ad8d9efc,
     "specialized _fatalErrorMessage+ 2378352 (_:_:file:line:flags:)", 384, None, None, False),
    ("3   TouchCanvas   0x0000000102afb3d0 Line.updateRect(_:) (in TouchCanvas) + 656",
     "TouchCanvas", 0x102afb3d0, "Line.updateRect(_:)", 656, None, None, False),
    ("13  YetanotherMac   0x00000000000ea004 main (main.m:16)",
     "YetanotherMac", 0xea004, "main", None, None, ("main.m", 16), False),
    ("5   SwiftUI   0x1a0 <deduplicated_symbol> + 24", "SwiftUI", 0x1a0, None, 24, None, None,
     False),
    ("6   libobjc.A.dylib\t0x1800cbc1c\tobjc_release + 16", "libobjc.A.dylib", 0x1800cbc1c,
     "objc_release", 16, None, None, False),
])
def test_frame_lines(line, module, address, symbol, symoff, offset, src, inline):
    f = parse_frame_line(line)
    assert f is not None
    assert f.module == module
    assert f.address == address
    assert f.symbol == symbol
    assert f.symbol_offset == symoff
    if offset is not None:
        assert f.offset == offset
    assert (f.source_file, f.source_line) == (src or (None, None))
    assert f.inline is inline


@pytest.mark.parametrize("line", ["Thread 0 Crashed:", "Binary Images:", "", "   rip: 0x01"])
def test_non_frame_lines(line):
    assert parse_frame_line(line) is None


# ---- Binary Images lines ----------------------------------------------------------------------

@pytest.mark.parametrize("line,name,base,size,uuid,arch,path,bundle,version", [
    ("0x102aec000 - 0x102b03fff TouchCanvas arm64  <fe7745ae12db30fa886c8baa1980437a> "
     "/var/containers/Bundle/Application/X/TouchCanvas.app/TouchCanvas",
     "TouchCanvas", 0x102aec000, 0x18000, "fe7745ae-12db-30fa-886c-8baa1980437a", "arm64",
     "/var/containers/Bundle/Application/X/TouchCanvas.app/TouchCanvas", None, None),
    ("0x1025e5000 - 0x1025e6ffb +com.example.apple-samplecode.TouchCanvas (1.0 - 1) "
     "<5ED9BD63-2A55-3DDD-B3FF-EFCF61382F6F> /Users/USER/*/TouchCanvas.app/Contents/MacOS/TouchCanvas",
     "TouchCanvas", 0x1025e5000, 0x1ffc,
     "5ed9bd63-2a55-3ddd-b3ff-efcf61382f6f", None,
     "/Users/USER/*/TouchCanvas.app/Contents/MacOS/TouchCanvas",
     "com.example.apple-samplecode.TouchCanvas", "1.0 - 1"),
    ("       0x10211c000 -        0x1024b3fff App Namespace arm64  "
     "<debeff4e26534f38e59bc9de7b8daade> /private/var/App Namespace Some.app/App Namespace",
     "App Namespace", 0x10211c000, 0x398000, "debeff4e-2653-4f38-e59b-c9de7b8daade", "arm64",
     "/private/var/App Namespace Some.app/App Namespace", None, None),
    ("       0x10864e000 -        0x10ee0ffff +YetAnotherMac x86_64 (400.9.4 - 1.0.0) "
     "<2d903291397d3d14bfca52c7fb8c5e00> /Users/b/YetAnotherMac",
     "YetAnotherMac", 0x10864e000, 0x10ee0ffff - 0x10864e000 + 1,
     "2d903291-397d-3d14-bfca-52c7fb8c5e00", "x86_64", "/Users/b/YetAnotherMac", None,
     "400.9.4 - 1.0.0"),
    ("    0x10b8b8000 -        0x10b8e4000 ReportCrash (???) "
     "<7F5481D8-A82B-351E-9906-8FBAE4EDF398> /System/Library/CoreServices/ReportCrash",
     "ReportCrash", 0x10b8b8000, 0x10b8e4000 - 0x10b8b8000 + 1, "7f5481d8-a82b-351e-9906-8fbae4edf398", None,
     "/System/Library/CoreServices/ReportCrash", None, None),
    ("0x1b3dc2000 - 0x1b3e18fff libc++.1.dylib arm64e  <6bc32e62-1105-31ee-bdea-b97b76d5507a> ???",
     "libc++.1.dylib", 0x1b3dc2000, 0x57000, "6bc32e62-1105-31ee-bdea-b97b76d5507a", "arm64e",
     None, None, None),
])
def test_image_lines(line, name, base, size, uuid, arch, path, bundle, version):
    im = parse_image_line(line, 3)
    assert im is not None and im.index == 3
    assert (im.name, im.base, im.size, im.uuid) == (name, base, size, uuid)
    assert (im.arch, im.path, im.bundle_id, im.version) == (arch, path, bundle, version)


@pytest.mark.parametrize("raw,expected", [
    ("fe7745ae12db30fa886c8baa1980437a", "fe7745ae-12db-30fa-886c-8baa1980437a"),
    ("5ED9BD63-2A55-3DDD-B3FF-EFCF61382F6F", "5ed9bd63-2a55-3ddd-b3ff-efcf61382f6f"),
    ("<5ed9bd63-2a55-3ddd-b3ff-efcf61382f6f>", "5ed9bd63-2a55-3ddd-b3ff-efcf61382f6f"),
    ("not-a-uuid", None), (None, None),
])
def test_canon_uuid(raw, expected):
    assert canon_uuid(raw) == expected


@pytest.mark.parametrize("raw,expected", [
    ("2026-09-18 08:24:00.4423 +0200", "2026-09-18T08:24:00.442300+02:00"),
    ("2025-09-18 08:24:00.4423 +0000", "2025-09-18T08:24:00.442300+00:00"),
    ("2022-08-05 13:24:19.116 +04:00", "2022-08-05T13:24:19.116000+04:00"),
    ("2014-07-16 00:25:09 +0000", "2014-07-16T00:25:09.000000+00:00"),
    ("2020-03-27 18:06:51.4969 -0700", "2020-03-27T18:06:51.496900-07:00"),
    ("2020-03-27 18:06:51.123456789 -0700", "2020-03-27T18:06:51.123456-07:00"),
    ("garbage", None), (None, None),
])
def test_parse_time(raw, expected):
    assert parse_time(raw) == expected


@pytest.mark.parametrize("raw,train,build", [
    ("macOS 26.0 (26A5353q)", "macOS 26.0", "26A5353q"),
    ("iPhone OS 13.3.1 (17D50)", "iPhone OS 13.3.1", "17D50"),
    ("Mac OS X 10.14.6 (Build 18G103)", "Mac OS X 10.14.6", "18G103"),
    ("macOS 15", "macOS 15", None),
])
def test_split_os(raw, train, build):
    assert split_os_version(raw) == (train, build)


# ---- whole reports ----------------------------------------------------------------------------

IOS = """Incident Identifier: 6156848E-344E-4D9E-84E0-87AFD0D0AE7B
CrashReporter Key:   76f2fb60060d6a7f814973377cbdc866fffd521f
Hardware Model:      iPhone8,1
Process:             TouchCanvas [1052]
Path:                /private/var/containers/Bundle/Application/5/TouchCanvas.app/TouchCanvas
Identifier:          com.example.apple-samplecode.TouchCanvas
Version:             1 (3.0)
Code Type:           ARM-64 (Native)
Role:                Foreground
Parent Process:      launchd [1]
Coalition:           com.example.apple-samplecode.TouchCanvas [1806]

Date/Time:           2020-03-27 18:06:51.4969 -0700
Launch Time:         2020-03-27 18:06:31.7593 -0700
OS Version:          iPhone OS 13.3.1 (17D50)
Release Type:        User
Report Version:      104

Exception Type:  EXC_BREAKPOINT (SIGTRAP)
Exception Codes: 0x0000000000000001, 0x0000000102afb3d0
Termination Signal: Trace/BPT trap: 5
Termination Reason: Namespace SIGNAL, Code 0x5
Terminating Process: exc handler [1052]
Triggered by Thread:  0

Application Specific Information:
abort() called
CoreML: compile failed

Last Exception Backtrace:
0   CoreFoundation                	0x1a0 __exceptionPreprocess + 224
1   libobjc.A.dylib               	0x1b0 objc_exception_throw + 56

Thread 0 name:  Dispatch queue: com.apple.main-thread
Thread 0 Crashed:
0   TouchCanvas                   	0x0000000102afb3d0 CanvasView.updateEstimated(_:) + 62416 (CanvasView.swift:231)
1   TouchCanvas                   	0x00000001022cbfa8 0x102aec000 + 49064

Thread 1:
0   libsystem_pthread.dylib       	0x00000001bfd5e5b8 start_wqthread + 0

Thread 0 crashed with ARM Thread State (64-bit):
    x0: 0x0000000000000001   x1: 0x0000000000000000
Binary Images:
0x102aec000 - 0x102b03fff TouchCanvas arm64  <fe7745ae12db30fa886c8baa1980437a> /private/var/containers/Bundle/Application/5/TouchCanvas.app/TouchCanvas
0x1bfd51000 - 0x1bfd60fff libsystem_pthread.dylib arm64e  <9ab9a4d4c4e13c47b2d9e1bf34c36a85> /usr/lib/system/libsystem_pthread.dylib
"""

MACOS12 = """Process:               MemoryLeakingApp [8592]
Path:                  /Users/USER/MemoryLeakingApp.app/MemoryLeakingApp
Identifier:            dev.mobile.MemoryLeakingApp
Version:               1.0 (1)
Code Type:             X86-64 (Native)
Parent Process:        launchd_sim [7423]
Responsible:           SimulatorTrampoline [606]
User ID:               501

Date/Time:             2022-08-05 13:24:19.116 +04:00
OS Version:            macOS 12.4 (21F79)
Report Version:        12
Anonymous UUID:        C795E66C-FD5D-48F3-871C-3818D4AB6957

Crashed Thread:        1  tid_1a3  Dispatch queue: com.apple.root.default-qos

Exception Type:        EXC_CRASH (SIGSEGV)
Exception Codes:       0x0000000000000000, 0x0000000000000000
Exception Note:        EXC_CORPSE_NOTIFY
Termination Reason:    Namespace SIGNAL, Code 11 Segmentation fault: 11
Terminating Process:   exc handler [8592]

Thread 0::  Dispatch queue: com.apple.main-thread
0   libsystem_kernel.dylib            0x00007fff7016c97a mach_msg_trap + 10

Thread 1 Crashed:: tid_1a3 Dispatch queue: com.apple.root.default-qos
0   libsystem_kernel.dylib            0x00007fff7017300e __pthread_kill + 10
1   Espresso Runtime                  0x00000001066482d2 0x106644000 + 17106
2   ???                               0x0000000000000000 0x0 + 0

Thread 2:: SGen worker
0   libsystem_kernel.dylib            0x00007fff7016c97a mach_msg_trap + 10


Binary Images:
       0x106644000 -        0x10664bfff +dev.mobile.MemoryLeakingApp (1.0 - 1) <0A4D6D6B-0D7A-3A52-9CB4-000000000001> /Users/USER/MemoryLeakingApp.app/MemoryLeakingApp
    0x7fff7016b000 -     0x7fff701a4fff libsystem_kernel.dylib (8020.121.3) <61711D11-E776-3BC3-B9A2-6F9F37CB8499> /usr/lib/system/libsystem_kernel.dylib
"""


def parse(text, path="/r/x.crash"):
    data = text.encode() if isinstance(text, str) else text
    return parse_bytes(data, path, SHA)


def test_ios_text_report():
    r = parse(IOS)
    assert (r.format, r.kind, r.bug_type) == ("crash-text", "crash", None)
    assert r.incident_id == "6156848E-344E-4D9E-84E0-87AFD0D0AE7B"
    assert r.crash_reporter_key == "76f2fb60060d6a7f814973377cbdc866fffd521f"
    assert (r.process, r.pid, r.hardware_model) == ("TouchCanvas", 1052, "iPhone8,1")
    assert (r.parent_process, r.parent_pid) == ("launchd", 1)
    assert r.bundle_id == "com.example.apple-samplecode.TouchCanvas"
    assert r.cpu_type == "ARM-64"
    assert r.captured_at == "2020-03-27T18:06:51.496900-07:00"
    assert r.launched_at == "2020-03-27T18:06:31.759300-07:00"
    assert (r.os_version, r.os_train, r.os_build) == (
        "iPhone OS 13.3.1 (17D50)", "iPhone OS 13.3.1", "17D50")
    assert r.os_release_type == "User" and r.platform == "iOS"
    assert (r.exception_type, r.signal) == ("EXC_BREAKPOINT", "SIGTRAP")
    assert (r.termination_namespace, r.termination_code) == ("SIGNAL", 5)
    assert (r.termination_by_process, r.termination_by_pid) == ("exc handler", 1052)
    assert r.asi == {"": ["abort() called", "CoreML: compile failed"]}
    assert [f.symbol for f in r.last_exception_backtrace] == [
        "__exceptionPreprocess", "objc_exception_throw"]
    assert r.crashing_thread == 0 and r.threads[0].queue == "com.apple.main-thread"
    assert len(r.threads) == 2 and r.threads[0].triggered and not r.threads[1].triggered
    f0, f1 = r.crashing_frames()
    assert f0.symbol == "CanvasView.updateEstimated(_:)" and f0.symbol_offset == 62416
    assert f0.offset == 0x102afb3d0 - 0x102aec000
    assert f0.image_uuid == "fe7745ae-12db-30fa-886c-8baa1980437a" and f0.image_index == 0
    assert f1.symbol is None and f1.offset == 49064
    assert r.threads[1].frames[0].image_uuid == "9ab9a4d4-c4e1-3c47-b2d9-e1bf34c36a85"
    assert len(r.images) == 2 and r.images[0].size == 0x18000


def test_macos12_text_report():
    r = parse(MACOS12)
    assert r.incident_id == "sha256:" + SHA[:32]
    assert (r.responsible_process, r.responsible_pid) == ("SimulatorTrampoline", 606)
    assert r.crash_reporter_key == "C795E66C-FD5D-48F3-871C-3818D4AB6957"
    assert r.captured_at == "2022-08-05T13:24:19.116000+04:00"
    assert r.platform == "macOS" and r.os_build == "21F79"
    assert r.termination_code == 11 and r.termination_indicator == "Segmentation fault: 11"
    assert r.crashing_thread == 1
    t1 = r.threads[1]
    assert t1.triggered and t1.queue == "com.apple.root.default-qos" and t1.id == 0x1a3
    assert r.threads[0].queue == "com.apple.main-thread"
    assert r.threads[2].name == "SGen worker"
    f = r.crashing_frames()
    assert [x.module for x in f] == ["libsystem_kernel.dylib", "Espresso Runtime", None]
    assert f[0].image_uuid == "61711d11-e776-3bc3-b9a2-6f9f37cb8499"
    assert f[1].image_uuid == "0a4d6d6b-0d7a-3a52-9cb4-000000000001"   # by address range
    assert f[1].offset == 17106 and f[2].symbol is None
    assert r.images[0].bundle_id == "dev.mobile.MemoryLeakingApp"
    assert r.images[0].name == "MemoryLeakingApp"
    assert r.images[0].version == "1.0 - 1"
    assert r.extra["exception_notes"] == ["EXC_CORPSE_NOTIFY"]


def test_crashed_thread_line_disagrees_with_marker():
    text = MACOS12.replace("Crashed Thread:        1", "Crashed Thread:        2")
    r = parse(text)
    assert r.crashing_thread == 2
    assert any("disagrees" in n for n in r.notes)


def test_crashed_thread_missing_uses_marker():
    text = MACOS12.replace("Crashed Thread:        1", "Crashed Thread:        9")
    r = parse(text)
    assert r.crashing_thread == 1
    assert any("no backtrace" in n for n in r.notes)


def test_invalid_utf8_is_replaced_and_noted():
    data = IOS.encode().replace(b"abort() called", b"abort() \xff\xfe called")
    r = parse(data)
    assert any("UTF-8" in n for n in r.notes)
    assert "\ufffd" in r.asi[""][0]


def test_utf16_file():
    r = parse(b"\xff\xfe" + IOS.encode("utf-16-le"))
    assert r.process == "TouchCanvas"


def test_crlf_line_endings():
    r = parse(IOS.replace("\n", "\r\n"))
    assert r.crashing_frames()[0].symbol == "CanvasView.updateEstimated(_:)"


@pytest.mark.parametrize("text,reason", [
    ("Incident Identifier: X\nProcess: a [1]\nOS Version: iPhone OS 13.3.1 (17D50)\n",
     "truncated"),
    ("just some words\nand more\n", "not a crash report"),
])
def test_text_fragments_raise(text, reason):
    with pytest.raises(ParseError) as ei:
        parse(text)
    assert reason in str(ei.value)


def test_fragment_without_header_parses_with_notes():
    text = ("Thread 0:\n"
            "0   App Namespace      0x0000000102268e70 0x10211c000 + 1363568\n\n"
            "Binary Images:\n"
            "       0x10211c000 -        0x1024b3fff App Namespace arm64  "
            "<debeff4e26534f38e59bc9de7b8daade> /private/var/App Namespace\n")
    r = parse(text)
    assert r.crashing_thread is None and r.notes
    assert r.threads[0].frames[0].image_uuid == "debeff4e-2653-4f38-e59b-c9de7b8daade"


def test_old_macos_signal_only_exception():
    text = IOS.replace("Exception Type:  EXC_BREAKPOINT (SIGTRAP)", "Exception Type:  SIGSEGV")
    r = parse(text)
    assert r.signal == "SIGSEGV"


def test_kscrash_form_and_iphone_old_leb():
    text = IOS.replace(
        "1   TouchCanvas                   \t0x00000001022cbfa8 0x102aec000 + 49064",
        "1   TouchCanvas    0x0002f560 0x28000 + 30048 (-[Crasher dereferenceBadPointer] + 24)")
    text = text.replace("Last Exception Backtrace:\n", "Last Exception Backtrace:\n(0x1a0 0x1b0 0x1c0)\n")
    r = parse(text)
    f1 = r.crashing_frames()[1]
    assert (f1.symbol, f1.symbol_offset, f1.offset) == ("-[Crasher dereferenceBadPointer]", 24,
                                                        30048)
    assert [f.address for f in r.last_exception_backtrace][:3] == [0x1a0, 0x1b0, 0x1c0]


def test_legacy_text_panic():
    text = ("Anonymous UUID:       11111111-2222-3333-4444-555555555555\n\n"
            "Fri Sep 18 08:24:00 2026\n\n"
            "panic(cpu 2 caller 0xffffff8012345678): \"ANE firmware hang\"@/ane.c:42\n"
            "Backtrace (CPU 2), Frame : Return Address\n0xffffff 0xffffff\n\n"
            "OS version: 26A5353q\n")
    r = parse(text, path="/r/Kernel-2026.panic")
    assert r.kind == "panic" and r.extra["panic"].startswith("panic(cpu 2 caller")


def test_legacy_text_hang_sample():
    text = ("Date/Time:        2026-01-02 03:00:00.000 +0000\n"
            "OS Version:       macOS 26.0 (26A5353q)\n"
            "Command:          coremlcompiler [4242]\n"
            "Event:            hang\n"
            "Duration:         12.5s\n"
            "Steps:            125\n\n"
            "  125 start + 1 (dyld + 5000) [0x1000]\n")
    r = parse(text, path="/r/x.hang")
    assert r.kind == "hang" and r.process == "coremlcompiler" and r.pid == 4242
    hang_length = r.extra["duration"]  # the report's "Duration:" field, text as written
    assert hang_length == "12.5s"


def test_application_specific_backtrace_becomes_leb():
    text = IOS.replace("Last Exception Backtrace:\n0   CoreFoundation                \t0x1a0 __exceptionPreprocess + 224\n"
                       "1   libobjc.A.dylib               \t0x1b0 objc_exception_throw + 56\n",
                       "Application Specific Backtrace 1:\n"
                       "0   CoreFoundation                      0x00007fff8f1 __exceptionPreprocess + 171\n")
    assert "Application Specific Backtrace 1" in text
    r = parse(text)
    assert [f.symbol for f in r.last_exception_backtrace] == ["__exceptionPreprocess"]
    assert r.crashing_frames()[0].symbol == "CanvasView.updateEstimated(_:)"


def test_bundle_id_module_becomes_binary_name():
    text = MACOS12.replace(
        "1   Espresso Runtime                  0x00000001066482d2 0x106644000 + 17106",
        "1   dev.mobile.MemoryLeakingApp       0x00000001066482d2 0x106644000 + 17106")
    f = parse(text).crashing_frames()[1]
    assert f.module == "MemoryLeakingApp" and f.offset == 17106
