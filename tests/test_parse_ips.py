"""JSON .ips parsing (triage.reports.detect / ips): inline samples for every variant."""

from __future__ import annotations

import copy
import json

import pytest

from triage.records import ParseError
from triage.reports.detect import looks_like_report, parse_bytes

SHA = "ab" * 32

HEADER = {
    "app_name": "ANECompilerService", "timestamp": "2026-09-18 08:24:04.00 +0200",
    "app_version": "1.0", "slice_uuid": "d7cc0747-b895-340b-b98b-ea4d30bdc429",
    "build_version": "1", "platform": 1, "bundleID": "com.apple.ANECompilerService",
    "share_with_app_devs": 0, "is_first_party": 1, "bug_type": "309",
    "os_version": "macOS 26.0 (26A5353q)", "incident_id": "22EA42EF-FD5C-498D-B2E3-4F52041FA3D8",
    "name": "ANECompilerService",
}

BODY = {
    "uptime": 3900000,
    "procLaunch": "2026-09-18 08:23:58.1000 +0200",
    "procRole": "Unspecified",
    "version": 2,
    "modelCode": "Mac15,3",
    "osVersion": {"train": "macOS 26.0", "build": "26A5353q", "releaseType": "Beta"},
    "captureTime": "2026-09-18 08:24:00.4423 +0200",
    "incident": "22EA42EF-FD5C-498D-B2E3-4F52041FA3D8",
    "pid": 1757,
    "cpuType": "ARM-64",
    "procName": "ANECompilerService",
    "procPath": "/System/Library/PrivateFrameworks/ANECompiler.framework/ANECompilerService",
    "parentProc": "launchd", "parentPid": 1,
    "responsibleProc": "python3.11", "responsiblePid": 1700,
    "crashReporterKey": "792F5CBA-A072-8F48-64CE-90F08A75B14F",
    "isCorpse": 1,
    "bundleInfo": {"CFBundleIdentifier": "com.apple.ANECompilerService",
                   "CFBundleShortVersionString": "8.5.4"},
    "exception": {"codes": "0x0000000000000001, 0x0000000000000010", "rawCodes": [1, 16],
                  "type": "EXC_BAD_ACCESS", "signal": "SIGSEGV",
                  "subtype": "KERN_INVALID_ADDRESS at 0x0000000000000010"},
    "termination": {"flags": 0, "code": 11, "namespace": "SIGNAL",
                    "indicator": "Segmentation fault: 11", "byProc": "exc handler", "byPid": 1757},
    "asi": {"libsystem_c.dylib": ["abort() called"]},
    "faultingThread": 1,
    "threads": [
        {"id": 9001, "queue": "com.apple.main-thread", "frames": [
            {"imageOffset": 4000, "symbol": "mach_msg2_trap", "symbolLocation": 8,
             "imageIndex": 1}]},
        {"triggered": True, "id": 9002, "name": "ANE compile", "frames": [
            {"imageOffset": 29212, "symbol": "objc_release", "symbolLocation": 16,
             "imageIndex": 2},
            {"imageOffset": 1200, "symbol": "ANEC::Pass::run()", "symbolLocation": 40,
             "imageIndex": 0, "inline": True, "sourceFile": "Pass.cpp", "sourceLine": 77},
            {"imageOffset": 1200, "symbol": "ANEC::compile(ANEC::Net&)", "symbolLocation": 96,
             "imageIndex": 0},
            {"imageOffset": 5000, "imageIndex": 0},
            {"imageOffset": 16, "imageIndex": 3},
        ]},
    ],
    "usedImages": [
        {"source": "P", "arch": "arm64e", "base": 4295000064, "size": 65536,
         "uuid": "E58814CC-DCB7-35A5-BADC-E367ED3AC207", "name": "ANECompiler",
         "path": "/System/Library/PrivateFrameworks/ANECompiler.framework/ANECompiler",
         "CFBundleIdentifier": "com.apple.ANECompiler"},
        {"source": "C", "arch": "arm64e", "base": 6442450944, "size": 241664,
         "uuid": "60485b6f-67e5-38c1-aec9-efd6031ff166", "name": "libsystem_kernel.dylib",
         "path": "/usr/lib/system/libsystem_kernel.dylib"},
        {"source": "C", "arch": "arm64e", "base": 6442700000, "size": 300000,
         "uuid": "b78b1d5a-d684-3e5f-b6b8-e5cf345cca48",
         "path": "/usr/lib/libobjc.A.dylib"},
        {"size": 0, "source": "A", "base": 0, "uuid": "00000000-0000-0000-0000-000000000000"},
    ],
    "lastExceptionBacktrace": [
        {"imageOffset": 100, "symbol": "__exceptionPreprocess", "symbolLocation": 20,
         "imageIndex": 1},
        {"imageOffset": 200, "symbol": "objc_exception_throw", "symbolLocation": 4,
         "imageIndex": 2},
    ],
}


def ips(header=HEADER, body=BODY, pretty=True) -> bytes:
    h = json.dumps(header, separators=(",", ":"))
    b = json.dumps(body, indent=2) if pretty else json.dumps(body)
    return (h + "\n" + b).encode()


def parse(data: bytes, path: str = "/r/x.ips"):
    return parse_bytes(data, path, SHA)


def mod(**changes):
    body = copy.deepcopy(BODY)
    for k, v in changes.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return body


def test_full_crash_fields():
    r = parse(ips())
    assert r.format == "ips-json"
    assert r.incident_id == "22EA42EF-FD5C-498D-B2E3-4F52041FA3D8"
    assert (r.bug_type, r.kind) == ("309", "crash")
    assert (r.process, r.pid) == ("ANECompilerService", 1757)
    assert r.process_path.endswith("/ANECompilerService")
    assert (r.parent_process, r.parent_pid) == ("launchd", 1)
    assert (r.responsible_process, r.responsible_pid) == ("python3.11", 1700)
    assert r.captured_at == "2026-09-18T08:24:00.442300+02:00"
    assert r.launched_at == "2026-09-18T08:23:58.100000+02:00"
    assert r.os_version == "macOS 26.0 (26A5353q)"
    assert (r.os_train, r.os_build, r.os_release_type) == ("macOS 26.0", "26A5353q", "Beta")
    assert r.platform == "macOS"
    assert (r.hardware_model, r.cpu_type) == ("Mac15,3", "ARM-64")
    assert (r.exception_type, r.signal) == ("EXC_BAD_ACCESS", "SIGSEGV")
    assert r.exception_codes.startswith("0x0000000000000001")
    assert r.exception_subtype.startswith("KERN_INVALID_ADDRESS")
    assert (r.termination_namespace, r.termination_code) == ("SIGNAL", 11)
    assert r.termination_indicator == "Segmentation fault: 11"
    assert (r.termination_by_process, r.termination_by_pid) == ("exc handler", 1757)
    assert r.asi == {"libsystem_c.dylib": ["abort() called"]}
    assert r.crash_reporter_key == "792F5CBA-A072-8F48-64CE-90F08A75B14F"
    assert r.bundle_id == "com.apple.ANECompilerService" and r.app_version == "8.5.4"
    assert r.header["bug_type"] == "309"
    assert r.notes == []


def test_threads_frames_images():
    r = parse(ips())
    assert r.crashing_thread == 1
    assert [t.id for t in r.threads] == [9001, 9002]
    assert r.threads[0].queue == "com.apple.main-thread" and r.threads[1].name == "ANE compile"
    assert r.threads[1].triggered and not r.threads[0].triggered
    f = r.crashing_frames()
    assert [x.module for x in f] == ["libobjc.A.dylib", "ANECompiler", "ANECompiler",
                                     "ANECompiler", None]
    assert [x.symbol for x in f] == ["objc_release", "ANEC::Pass::run()",
                                     "ANEC::compile(ANEC::Net&)", None, None]
    top = f[0]
    assert (top.offset, top.symbol_offset, top.image_index) == (29212, 16, 2)
    assert top.image_uuid == "b78b1d5a-d684-3e5f-b6b8-e5cf345cca48"
    assert top.address == 6442700000 + 29212
    assert top.raw_symbol == "objc_release" and top.symbolicated_by == "report"
    assert f[1].inline and not f[2].inline
    assert (f[1].source_file, f[1].source_line) == ("Pass.cpp", 77)
    assert f[3].symbol is None and f[3].raw_symbol is None and f[3].offset == 5000
    # placeholder all-zero image -> unknown module, no uuid
    assert f[4].module is None and f[4].image_uuid is None and f[4].offset == 16
    im = r.images
    assert len(im) == 4
    assert im[0].uuid == "e58814cc-dcb7-35a5-badc-e367ed3ac207"     # canonical lowercase
    assert im[0].bundle_id == "com.apple.ANECompiler"
    assert im[2].name == "libobjc.A.dylib"                          # from path
    assert im[3].name is None and im[3].uuid is None
    leb = r.last_exception_backtrace
    assert [x.symbol for x in leb] == ["__exceptionPreprocess", "objc_exception_throw"]
    assert leb[1].module == "libobjc.A.dylib"


@pytest.mark.parametrize("raw,expected", [
    ("???", None), ("<redacted>", None), ("<deduplicated_symbol>", None),
    ("0x1022c0000", None), ("", None),
    ("foo (in Binary)", "foo"), ("-[A b:] (in UIKitCore)", "-[A b:]"),
    ("closure #1 in Foo.bar()", "closure #1 in Foo.bar()"),
    ("0xdeadbeefzz", "0xdeadbeefzz"),
])
def test_symbol_cleaning(raw, expected):
    body = mod()
    body["threads"][1]["frames"][0]["symbol"] = raw
    f = parse(ips(body=body)).crashing_frames()[0]
    assert f.symbol == expected
    assert f.raw_symbol == raw


@pytest.mark.parametrize("value", ["309", 309, " 309 "])
def test_bug_type_string_or_number(value):
    r = parse(ips(header={**HEADER, "bug_type": value}))
    assert r.bug_type == "309" and r.kind == "crash"


@pytest.mark.parametrize("value,expected", [
    (True, True), (1, True), ("1", True), ("true", True), (False, False), (0, False),
    ("0", False), ("false", False),
])
def test_flags_tolerant(value, expected):
    body = mod(faultingThread=None)
    body["threads"][1]["triggered"] = value
    body["threads"][1]["frames"][1]["inline"] = value
    r = parse(ips(body=body))
    assert r.crashing_frames()[1].inline is expected if r.crashing_thread == 1 else True
    assert (r.crashing_thread == 1) is expected


def test_numbers_above_2_64_stay_exact():
    big = 2**64 + 5
    huge = 10**30 + 7
    text = ips().decode()
    text = text.replace('"code": 11', f'"code": {big}')
    text = text.replace('"uptime": 3900000', f'"uptime": {huge}')
    r = parse(text.encode())
    assert r.termination_code == big and isinstance(r.termination_code, int)
    assert r.header is not None
    # register-sized values below 2**64 are exact with orjson too
    text2 = ips().decode().replace('"code": 11', f'"code": {2**64 - 1}')
    assert parse(text2.encode()).termination_code == 2**64 - 1


def test_faulting_thread_disagrees_with_triggered():
    body = mod(faultingThread=0)
    r = parse(ips(body=body))
    assert r.crashing_thread == 0
    assert any("disagrees" in n for n in r.notes)


def test_faulting_thread_out_of_range_uses_triggered():
    r = parse(ips(body=mod(faultingThread=7)))
    assert r.crashing_thread == 1
    assert any("out of range" in n for n in r.notes)


def test_no_faulting_thread_uses_triggered():
    r = parse(ips(body=mod(faultingThread=None)))
    assert r.crashing_thread == 1 and r.notes == []


def test_image_index_out_of_range():
    body = mod()
    body["threads"][1]["frames"][0]["imageIndex"] = 99
    r = parse(ips(body=body))
    f = r.crashing_frames()[0]
    assert f.module is None and f.offset == 29212 and f.symbol == "objc_release"
    assert f.address is None
    assert any("imageIndex out of range" in n for n in r.notes)


def test_missing_threads_stored_with_note():
    r = parse(ips(body=mod(threads=None)))
    assert r.threads == [] and r.crashing_thread is None and r.crashing_frames() == []
    assert r.exception_type == "EXC_BAD_ACCESS"
    assert any("no threads" in n for n in r.notes)


def test_crash_body_with_nothing_useful_is_error():
    with pytest.raises(ParseError):
        parse(ips(body={"uptime": 5}))


def test_whole_file_one_json_document():
    doc = {**BODY, "bug_type": "309"}
    r = parse(json.dumps(doc, indent=2).encode())
    assert r.kind == "crash" and r.crashing_thread == 1 and r.header is None
    assert r.incident_id == BODY["incident"]
    r1 = parse(json.dumps(doc).encode())          # one line
    assert r1.kind == "crash" and len(r1.threads) == 2


def test_compact_body_and_bom_and_leading_whitespace():
    r = parse(b"\xef\xbb\xbf\n\n  " + ips(pretty=False))
    assert r.crashing_thread == 1 and r.process == "ANECompilerService"


def test_translated_report_before_json():
    text = ("-------------------------------------\n"
            "Translated Report (Full Report Below)\n"
            "-------------------------------------\n\n"
            "Process:               ANECompilerService [1757]\n"
            "Thread 1 Crashed:\n"
            "0   libobjc.A.dylib  \t  0x1800cbc1c objc_release + 16\n\n"
            "-----------\nFull Report\n-----------\n\n")
    r = parse(("Some markdown note\n\n" + text).encode() + ips() + b"\n\nmore notes\n")
    assert r.format == "translated+ips"
    assert r.crashing_frames()[0].symbol == "objc_release"
    assert r.incident_id == HEADER["incident_id"]


def test_translated_report_with_broken_json_falls_back_to_text():
    text = ("Translated Report (Full Report Below)\n\n"
            "Incident Identifier: 11111111-2222-3333-4444-555555555555\n"
            "Process:               X [5]\n"
            "Exception Type:        EXC_BAD_ACCESS (SIGSEGV)\n"
            "Thread 0 Crashed::  Dispatch queue: com.apple.main-thread\n"
            "0   libobjc.A.dylib  \t  0x1800cbc1c objc_release + 16\n\n"
            "-----------\nFull Report\n-----------\n\n")
    r = parse(text.encode() + ips()[:300])
    assert r.format == "translated-text"
    assert r.crashing_frames()[0].symbol == "objc_release"
    assert any("Full Report" in n for n in r.notes)


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"   \n\t\n", "empty"),
    (b"\x00\x01\x02binary\xff\xfe junk" * 10, "binary"),
    (json.dumps(HEADER).encode() + b"\n", "header only"),
    (json.dumps(HEADER).encode(), "header only"),
    (ips()[:-40], "truncated"),
    (json.dumps(HEADER).encode() + b"\n{\"threads\": [}", "JSON"),
    (json.dumps(HEADER).encode() + b"\n[1, 2]", "not an object"),
    (b"[1,2,3]", "report"),
    (b"hello world, not a report\n", "not a crash report"),
])
def test_bad_input_raises_parse_error(data, reason):
    with pytest.raises(ParseError) as ei:
        parse(data)
    msg = str(ei.value)
    assert reason.lower() in msg.lower()
    assert "\n" not in msg


def test_trailing_text_after_json_body_is_noted():
    r = parse(ips() + b"\n```\nend of note\n")
    assert r.crashing_thread == 1
    assert any("after the JSON body" in n for n in r.notes)


def test_incident_fallback_from_sha():
    h = {k: v for k, v in HEADER.items() if k != "incident_id"}
    r = parse(ips(header=h, body=mod(incident=None)))
    assert r.incident_id == "sha256:" + SHA[:32]


def test_platform_number_and_os_string():
    assert parse(ips(header={**HEADER, "platform": 2})).platform == "iOS"
    h = {k: v for k, v in HEADER.items() if k != "platform"}
    h["os_version"] = "iPhone OS 17.3.1 (21D61)"
    r = parse(ips(header=h))
    assert r.platform == "iOS" and r.os_version == "iPhone OS 17.3.1 (21D61)"


# ---- kinds -------------------------------------------------------------------------------

def _hdr(bug_type):
    return {"bug_type": bug_type, "timestamp": "2026-09-18 08:24:04.00 +0000",
            "os_version": "macOS 26.0 (26A5353q)", "incident_id": "AAAA-1", "name": "x"}


@pytest.mark.parametrize("bug_type,kind", [
    ("309", "crash"), ("288", "hang"), ("409", "hang"), ("298", "jetsam"), ("210", "panic"),
    ("151", "panic"), ("202", "resource"), ("145", "resource"), ("142", "resource"),
    ("999", "unknown"), (385, "unknown"),
])
def test_kind_from_bug_type(bug_type, kind):
    body = {"procName": "x", "pid": 3, "captureTime": "2026-09-18 08:24:00 +0000"}
    if kind == "crash":
        body = BODY
    r = parse(ips(header=_hdr(bug_type), body=body), path="/r/named-like-a-crash.crash")
    assert r.kind == kind
    assert r.captured_at is not None and r.os_build == "26A5353q"


def test_jetsam_extra():
    body = {"crashReporterKey": "k", "product": "iPhone14,2", "build": "iPhone OS 17.3 (21D50)",
            "date": "2026-09-18 08:24:00.12 +0000", "largestProcess": "ANECompilerService",
            "pageSize": 16384,
            "processes": [{"name": "ANECompilerService", "pid": 55, "rpages": 90000,
                           "reason": "per-process-limit"},
                          {"name": "idle", "pid": 7, "rpages": 10}]}
    r = parse(ips(header=_hdr("298"), body=body))
    assert r.kind == "jetsam"
    assert r.extra["largest_process"] == "ANECompilerService"
    assert r.extra["reason"] == "per-process-limit"
    assert r.extra["killed"][0]["pid"] == 55
    assert r.hardware_model == "iPhone14,2"
    assert r.captured_at == "2026-09-18T08:24:00.120000+00:00"


def test_panic_extra():
    body = {"product": "Mac15,3", "panicString": "panic(cpu 2 caller 0xfff): ANE hang\nmore\n",
            "build": "macOS 26.0 (26A5353q)"}
    r = parse(ips(header=_hdr("210"), body=body))
    assert r.kind == "panic" and r.extra["panic"] == "panic(cpu 2 caller 0xfff): ANE hang"


def test_text_bodied_cpu_resource():
    hdr = json.dumps({"bug_type": "202", "os_version": "iPhone OS 17.1 (21B74)",
                      "incident_id": "BBBB-2", "timestamp": "2026-01-02 03:04:05.00 +0000",
                      "name": "coremlcompiler"}).encode()
    body = (b"Date/Time:        2026-01-02 03:00:00.000 +0000\n"
            b"End time:         2026-01-02 03:03:00.000 +0000\n"
            b"OS Version:       iPhone OS 17.1 (Build 21B74)\n"
            b"Command:          coremlcompiler [4242]\n"
            b"Event:            cpu usage\n"
            b"Action taken:     none\n"
            b"Data Source:      Microstackshots\n\n"
            b"Heaviest stack for the target process:\n  10  ??? (libsystem 0x1)\n")
    r = parse(hdr + b"\n" + body)
    assert r.format == "ips-text-body" and r.kind == "resource"
    assert r.process == "coremlcompiler" and r.pid == 4242
    assert r.extra["event"] == "cpu usage" and r.extra["data_source"] == "Microstackshots"
    assert r.incident_id == "BBBB-2" and r.platform == "iOS"


def test_ios14_header_plus_text_crash_body():
    hdr = json.dumps({"bug_type": "109", "os_version": "iPhone OS 14.8 (18H17)",
                      "incident_id": "13917FF0-E1B1-4652-A0D4-000000000001",
                      "name": "itunescloudd", "platform": 2}).encode()
    body = ("Incident Identifier: 13917FF0-E1B1-4652-A0D4-000000000001\n"
            "Process:             itunescloudd [692]\n"
            "Date/Time:           2021-10-22 00:14:53.0749 +0300\n"
            "OS Version:          iPhone OS 14.8 (18H17)\n\n"
            "Exception Type:  EXC_CRASH (SIGABRT)\n"
            "Triggered by Thread:  0\n\n"
            "Thread 0 Crashed:\n"
            "0   libsystem_kernel.dylib        \t0x00000001c3e1a334 0x1c3df1000 + 168756\n\n"
            "Binary Images:\n"
            "0x1c3df1000 - 0x1c3e23fff libsystem_kernel.dylib arm64e  "
            "<86d19965fefe3793-8f5d-171a579268d2> /usr/lib/system/libsystem_kernel.dylib\n")
    r = parse(hdr + b"\n" + body.encode())
    assert (r.format, r.kind, r.bug_type) == ("ips-text-body", "crash", "109")
    f = r.crashing_frames()[0]
    assert f.module == "libsystem_kernel.dylib" and f.offset == 168756 and f.symbol is None
    assert r.header["name"] == "itunescloudd" and r.platform == "iOS"


# ---- sniffing -----------------------------------------------------------------------------

@pytest.mark.parametrize("head,expected", [
    (lambda: ips()[:4096], True),
    (lambda: b"\xef\xbb\xbf" + ips()[:4096], True),
    (lambda: b"Translated Report (Full Report Below)\n", True),
    (lambda: b"Incident Identifier: X\nProcess: a [1]\nException Type: EXC_CRASH", True),
    (lambda: b"Process:         a [1]\nDate/Time: 2020-01-01 00:00:00 +0000\n", True),
    (lambda: b"Thread 0 Crashed:\n0 a 0x1 b + 1\n", True),
    (lambda: b"# My notes\nnothing to see", False),
    (lambda: b'{"name": "package.json", "version": "1.0"}', False),
    (lambda: b"", False),
    (lambda: b"\x00\x01\x02", False),
])
def test_looks_like_report(head, expected):
    assert looks_like_report(head()) is expected


def test_header_glued_to_body_or_pretty_header():
    glued = json.dumps(HEADER).encode() + json.dumps(BODY).encode()
    r = parse(glued)
    assert r.crashing_thread == 1 and r.bug_type == "309"
    pretty = json.dumps(HEADER, indent=2).encode() + b"\n" + json.dumps(BODY, indent=2).encode()
    r2 = parse(pretty)
    assert r2.crashing_thread == 1 and r2.header["name"] == "ANECompilerService"
    assert any("first line" in n for n in r2.notes)


@pytest.mark.parametrize("data", [
    b'{\n  "schema": 1,\n  "pid": 94450,\n  "process": "python3.12",\n  "argv": ["x"]\n}\n',
    b'{"schema": 1, "pid": 1, "process": "p"}\n{"schema": 1, "pid": 2, "process": "q"}\n',
    b'{"name": "package", "version": "1.0"}',
])
def test_other_json_is_not_a_report(data):
    with pytest.raises(ParseError) as ei:
        parse(data)
    assert "not an Apple diagnostic report" in str(ei.value)
    assert not looks_like_report(data)


def test_banner_inside_source_code_is_not_a_translated_report():
    src = b'def f():\n    return ("---\\nTranslated Report (Full Report Below)\\n" + x)\n'
    with pytest.raises(ParseError):
        parse(src)
    assert not looks_like_report(src)


def test_no_crashing_thread_marked_is_noted():
    body = mod(faultingThread=None)
    body["threads"][1]["triggered"] = False
    r = parse(ips(body=body))
    assert r.crashing_thread is None and r.crashing_frames() == []
    assert any("no crashing thread" in n for n in r.notes)


def test_asi_backtraces_text_becomes_leb_when_no_leb():
    body = mod(lastExceptionBacktrace=None)
    body["asiBacktraces"] = [
        "0   CoreFoundation   0x00007ff80f1 __exceptionPreprocess + 226\n"
        "1   libobjc.A.dylib  0x00007ff80e2 objc_exception_throw + 48\n"]
    r = parse(ips(body=body))
    assert [f.symbol for f in r.last_exception_backtrace] == [
        "__exceptionPreprocess", "objc_exception_throw"]
    assert any("asiBacktraces" in n for n in r.notes)
