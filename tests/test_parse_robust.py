"""Property tests: parse_bytes raises ParseError or returns a Report, never anything else."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triage.records import ParseError, Report
from triage.reports.detect import looks_like_report, parse_bytes

HEADER = json.dumps({"bug_type": "309", "incident_id": "A-1", "os_version": "macOS 26.0 (26A1)",
                     "name": "p"})
BODY = json.dumps({
    "procName": "p", "pid": 1, "faultingThread": 0,
    "exception": {"type": "EXC_BAD_ACCESS", "signal": "SIGSEGV"},
    "threads": [{"triggered": True, "frames": [
        {"imageIndex": 0, "imageOffset": 10, "symbol": "objc_release", "symbolLocation": 4}]}],
    "usedImages": [{"base": 4096, "size": 100, "uuid": "e58814cc-dcb7-35a5-badc-e367ed3ac207",
                    "name": "libobjc.A.dylib"}],
}, indent=1)
SAMPLE = (HEADER + "\n" + BODY).encode()

TEXT = (b"Incident Identifier: X\nProcess: p [1]\nException Type: EXC_CRASH (SIGABRT)\n"
        b"Thread 0 Crashed:\n0   libsystem_kernel.dylib  0x1 __pthread_kill + 8\n\n"
        b"Binary Images:\n0x0 - 0xfff libsystem_kernel.dylib arm64 <" + b"a" * 32 + b"> /usr/x\n")

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _check(data: bytes) -> None:
    try:
        rep = parse_bytes(data, "/x", "0" * 64)
    except ParseError as err:
        assert "\n" not in str(err)
        assert not str(err).startswith("parser failed"), str(err)   # an internal bug
    else:
        assert isinstance(rep, Report) and rep.incident_id
    looks_like_report(data[:4096])


@SETTINGS
@given(st.binary(max_size=2000))
def test_random_bytes(data):
    _check(data)


@SETTINGS
@given(st.sampled_from([SAMPLE, TEXT]), st.integers(0, 4000), st.integers(0, 4000),
       st.binary(min_size=0, max_size=8))
def test_mutated_reports(base, pos, cut, junk):
    pos = pos % (len(base) + 1)
    data = base[:pos] + junk + base[pos + len(junk):]
    _check(data)
    _check(data[: cut % (len(data) + 1)])


@SETTINGS
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c,
                                                                        max_size=3),
                    max_leaves=10),
       st.sampled_from(["threads", "usedImages", "exception", "termination", "asi",
                        "faultingThread", "lastExceptionBacktrace", "osVersion", "pid",
                        "captureTime", "bundleInfo"]))
def test_wrong_types_in_body(value, key):
    body = json.loads(BODY)
    body[key] = value
    _check((HEADER + "\n" + json.dumps(body)).encode())
