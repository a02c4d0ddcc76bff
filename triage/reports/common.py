"""Helpers shared by the report parsers (times, OS strings, symbols, UUIDs, kinds).

Pure functions, no I/O. See docs/formats.md for the rules they implement.
"""

from __future__ import annotations

import re
from functools import lru_cache
from datetime import datetime, timedelta, timezone

from triage.records import (
    KIND_CRASH,
    KIND_HANG,
    KIND_JETSAM,
    KIND_PANIC,
    KIND_RESOURCE,
    KIND_UNKNOWN,
)

# bug_type -> kind. Only the numbers are decisive, never the file name.
BUG_TYPE_KINDS: dict[str, str] = {
    "309": KIND_CRASH,      # crash report (JSON body)
    "109": KIND_CRASH,      # iOS 14 crash: JSON header + legacy text body
    "288": KIND_HANG,       # stackshot
    "409": KIND_HANG,       # hang / watchdog stackshot
    "298": KIND_JETSAM,     # JetsamEvent
    "210": KIND_PANIC,      # kernel panic (panic-full)
    "151": KIND_PANIC,      # forceReset full panic (iOS)
    "202": KIND_RESOURCE,   # cpu_resource / microstackshot (text body)
    "142": KIND_RESOURCE,   # wakeups resource (older)
    "145": KIND_RESOURCE,   # disk writes resource
    "206": KIND_RESOURCE,   # cpu / wakeups resource (older iOS)
}

PLATFORMS: dict[int, str] = {
    1: "macOS",
    2: "iOS",
    3: "tvOS",
    4: "watchOS",
    5: "bridgeOS",
    6: "Mac Catalyst",
    7: "iOS Simulator",
    8: "tvOS Simulator",
    9: "watchOS Simulator",
    10: "DriverKit",
    11: "visionOS",
    12: "visionOS Simulator",
}

_OS_PREFIX_PLATFORM = (
    ("macos", "macOS"),
    ("mac os x", "macOS"),
    ("os x", "macOS"),
    ("iphone os", "iOS"),
    ("ipados", "iOS"),
    ("ios", "iOS"),
    ("watch os", "watchOS"),
    ("watchos", "watchOS"),
    ("apple tvos", "tvOS"),
    ("tvos", "tvOS"),
    ("visionos", "visionOS"),
    ("xros", "visionOS"),
    ("bridgeos", "bridgeOS"),
)


def norm_bug_type(value) -> str | None:
    """bug_type as a string ("309"), whether written as a string or a number."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        value = int(value)
    s = str(value).strip()
    return s or None


def kind_for(bug_type: str | None) -> str:
    if bug_type is None:
        return KIND_UNKNOWN
    return BUG_TYPE_KINDS.get(bug_type, KIND_UNKNOWN)


def flag(value) -> bool:
    """Tolerant boolean: true/1/"1"/"true"/"yes" -> True."""
    if value is True:
        return True
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y")
    return False


def as_int(value) -> int | None:
    """An int from an int, an integral float, or a decimal/hex string; None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return int(value)
    if isinstance(value, str):
        s = value.strip()
        try:
            return int(s, 0)
        except ValueError:
            try:
                return int(s)
            except ValueError:
                return None
    return None


def as_str(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


_TIME_RE = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?"
)


def parse_time(value, notes: list[str] | None = None) -> str | None:
    """Apple date text -> timezone-aware ISO-8601 string.

    ``2026-09-18 08:24:00.4423 +0200`` -> ``2026-09-18T08:24:00.442300+02:00``. A time without a
    zone is taken as UTC (and noted).
    """
    if not isinstance(value, str):
        return None
    m = _TIME_RE.search(value)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    if zone is None:
        tz = timezone.utc
        if notes is not None:
            notes.append(f"time without zone taken as UTC: {value.strip()[:60]}")
    elif zone in ("Z", "UTC", "GMT"):
        tz = timezone.utc
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))
        if offset >= timedelta(hours=24):
            return None
        tz = timezone(sign * offset)
    try:
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi), min(int(s), 59), micro, tzinfo=tz)
    except ValueError:
        return None
    return dt.isoformat(timespec="microseconds")


def split_os_version(text: str | None) -> tuple[str | None, str | None]:
    """``macOS 26.0 (26A5353q)`` -> (``macOS 26.0``, ``26A5353q``): the text before the last
    parenthesized group that ends the value (string operations: linear on any input)."""
    if not text:
        return None, None
    t = text.strip()
    i = t.rfind("(") if t.endswith(")") else -1
    if i < 0 or ")" in t[i + 1:-1]:
        return t or None, None
    train, build = t[:i].strip() or None, t[i + 1:-1].strip() or None
    if build and " " in build:       # "(Build 18G103)" style
        build = build.split()[-1]
    return train, build


def platform_from_os(text: str | None) -> str | None:
    if not text:
        return None
    low = text.strip().lower()
    for prefix, name in _OS_PREFIX_PLATFORM:
        if low.startswith(prefix):
            return name
    return None


def platform_from_number(value) -> str | None:
    n = as_int(value)
    if n is None:
        return None
    return PLATFORMS.get(n)


_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


def canon_uuid(value) -> str | None:
    """Any of the three UUID spellings -> lowercase with dashes; None when not a UUID."""
    if not isinstance(value, str):
        return None
    return _canon_uuid(value)


@lru_cache(maxsize=16384)          # system library UUIDs repeat across reports
def _canon_uuid(value: str) -> str | None:
    s = value.strip().strip("<>").replace("-", "")
    if not _HEX32.match(s):
        return None
    s = s.lower()
    return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}"


ZERO_UUID = "00000000-0000-0000-0000-000000000000"

_NO_SYMBOLS = frozenset(("???", "<redacted>", "<deduplicated_symbol>", ""))
_ATOS_IN = re.compile(r" \(in [^()]+\)")
_HEXCHARS = frozenset("0123456789abcdefABCDEF")


def clean_symbol(raw) -> str | None:
    """The symbol as later stages want it, or None where the report has none.

    None for missing, ``???``, ``<redacted>``, ``<deduplicated_symbol>`` or a bare hex address;
    strips atos's `` (in Module)``. No demangling or normalization here.
    """
    if raw is None or not isinstance(raw, str):
        return None
    s = raw.strip()
    if s in _NO_SYMBOLS:
        return None
    if s[:2] in ("0x", "0X") and len(s) > 2 and all(c in _HEXCHARS for c in s[2:]):
        return None
    if " (in " in s:
        s = _ATOS_IN.sub("", s, count=1).strip()
        if s in _NO_SYMBOLS:
            return None
    return s


def fallback_incident_id(sha256: str) -> str:
    return f"sha256:{(sha256 or '')[:32]}"
