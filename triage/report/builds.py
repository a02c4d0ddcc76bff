"""Apple OS build numbers, release aliases, and ``--since`` / ``--until`` resolution.

An Apple build number such as ``26A5353q`` reads: major version 26, train letter ``A`` (the
minor release: A = x.0, B = x.1, ...), build number 5353, suffix ``q``. Builds are ordered by
these parts, never by date or by string (``26A5353q`` < ``26A5378a`` < ``26A362`` < ``26B5024e``).

Within one train, Apple numbers seeds (betas, RC candidates) with a 4+ digit number starting with
``5`` (``23A5297i``), and the public release with a smaller number (``23A344``). So a seed sorts
before every non-seed build of the same train; see docs/reports.md.

Pure functions except :func:`stored_aliases` / :func:`set_alias` (store) and
:func:`config_aliases` (``triage.toml``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable

from triage.errors import UserError

BUILD_RE = re.compile(r"^(\d{1,3})([A-Z])(\d{1,5})([a-z]{0,2})$")


@dataclass(frozen=True, slots=True, order=False)
class Build:
    """A parsed Apple build number."""

    text: str
    major: int
    train: str
    number: int
    suffix: str

    @property
    def seed(self) -> bool:
        """True for beta/seed builds (4+ digit number starting with 5, e.g. ``23A5297i``)."""
        digits = str(self.number)
        return len(digits) >= 4 and digits[0] == "5"

    @property
    def key(self) -> tuple:
        return (self.major, self.train, 0 if self.seed else 1, self.number, self.suffix)


def parse_build(text: str | None) -> Build | None:
    """Parse ``26A5353q`` / ``24G90`` / ``21F79`` / ``20A362``; None when it is not a build."""
    if not text:
        return None
    m = BUILD_RE.match(text.strip())
    if not m:
        return None
    return Build(m.group(0), int(m.group(1)), m.group(2), int(m.group(3)), m.group(4))


def build_key(text: str | None) -> tuple:
    """Sortable key for a build string. Unparseable builds sort first, then by text; None first."""
    b = parse_build(text)
    if b is None:
        return (-1, "", -1, -1, text or "")
    return b.key


def is_build(text: str) -> bool:
    return parse_build(text) is not None


def sort_builds(builds: Iterable[str]) -> list[str]:
    return sorted(builds, key=build_key)


# ----------------------------------------------------------------------------- aliases

def config_aliases() -> dict[str, dict[str, str]]:
    """Aliases from ``[releases]`` in triage.toml: ``{platform: {alias: build}}`` ("" = any).

    A value that is neither a string (``beta5 = "26A5353q"``) nor, for a platform table
    (``[releases.iOS]``), a table of strings raises :class:`UserError` naming the file and key.
    """
    from triage.config import section_by_file

    out: dict[str, dict[str, str]] = {}
    for path, releases in section_by_file("releases"):
        for platform, table in _release_tables(path, releases).items():
            out.setdefault(platform, {}).update(table)
    return out


_ALIAS_HINT = 'expected a build number string such as beta5 = "26A5353q"'


def _toml_repr(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _release_tables(path, releases: Any) -> dict[str, dict[str, str]]:
    """Check one file's ``[releases]`` value; ``{platform: {alias: build}}``."""
    if not isinstance(releases, dict):
        raise UserError(f"{path}: releases = {_toml_repr(releases)}: expected a [releases] "
                        'table of aliases (beta5 = "26A5353q")')
    out: dict[str, dict[str, str]] = {}

    def check_name(where: str, alias: str) -> None:
        problem = alias_name_problem(str(alias))
        if problem:
            raise UserError(f"{path}: {where} {alias}: the alias name {problem}; "
                            "pick another name (e.g. beta5, rc, 26.1b2)")

    for key, value in releases.items():
        if isinstance(value, str):
            check_name("[releases]", key)
            out.setdefault("", {})[str(key)] = value
        elif isinstance(value, dict):          # [releases.macOS]
            table = out.setdefault(str(key), {})
            for alias, build in value.items():
                if not isinstance(build, str):
                    raise UserError(f"{path}: [releases.{key}] {alias} = {_toml_repr(build)}: "
                                    f"{_ALIAS_HINT} (platform tables hold aliases only)")
                check_name(f"[releases.{key}]", alias)
                table[str(alias)] = build
        else:
            raise UserError(f"{path}: [releases] {key} = {_toml_repr(value)}: {_ALIAS_HINT}, "
                            f"or a [releases.PLATFORM] table")
    return out


def stored_aliases(store) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for alias, platform, build in store.conn.execute(
            "SELECT alias, platform, build FROM aliases ORDER BY alias, platform"):
        out.setdefault(platform or "", {})[alias] = build
    return out


def all_aliases(store=None) -> dict[str, dict[str, str]]:
    """Config aliases overlaid by stored ones (``triage releases alias`` wins: it is explicit)."""
    merged: dict[str, dict[str, str]] = {}
    sources = [config_aliases()]
    if store is not None:
        sources.append(stored_aliases(store))
    for src in sources:
        for platform, table in src.items():
            merged.setdefault(platform, {}).update(table)
    return merged


_DATE_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}")


def alias_name_problem(alias: str) -> str | None:
    """Why ``alias`` cannot be a release alias name, or None.

    ``--since``/``--until`` try a build number, then a date/time, then an alias, so an alias
    named like a build (``26A5353q``) or starting like a date (``2026-09-01``) could never be
    used: it would always be read as that build or date."""
    if parse_build(alias) is not None:
        return "is itself a build number"
    if _DATE_LIKE.match(alias):
        return "looks like a date (--since/--until would read it as one)"
    return None


def set_alias(store, alias: str, build: str, platform: str | None = None) -> None:
    """Store ``alias`` -> ``build`` (optionally for one platform)."""
    alias = alias.strip()
    if not alias:
        raise UserError("releases alias: the alias name is empty")
    problem = alias_name_problem(alias)
    if problem:
        raise UserError(f"releases alias: {alias!r} {problem}; pick another name")
    if parse_build(build) is None:
        raise UserError(f"releases alias: {build!r} is not an Apple build number "
                        "(expected e.g. 26A5353q, 24G90)")
    with store.transaction() as conn:
        conn.execute("INSERT INTO aliases(alias, platform, build) VALUES(?,?,?) "
                     "ON CONFLICT(alias, platform) DO UPDATE SET build=excluded.build",
                     (alias, platform or "", build))


def aliases_by_build(aliases: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """``{build: ["beta5", "macOS:beta5", ...]}`` for listing."""
    out: dict[str, list[str]] = {}
    for platform, table in aliases.items():
        for alias, build in table.items():
            out.setdefault(build, []).append(f"{platform}:{alias}" if platform else alias)
    for v in out.values():
        v.sort()
    return out


# ----------------------------------------------------------------------------- bounds

@dataclass(slots=True)
class Bound:
    """A resolved ``--since``/``--until`` value.

    Either a time (``ts``, epoch seconds) or builds: ``builds`` maps a platform ("" = any
    platform) to a build number.
    """

    text: str
    kind: str                                   # "build" | "time"
    ts: float | None = None
    builds: dict[str, str] = field(default_factory=dict)

    def build_for(self, platform: str | None) -> str | None:
        if platform and platform in self.builds:
            return self.builds[platform]
        return self.builds.get("")

    def describe(self) -> str:
        if self.kind == "time":
            return self.text
        if set(self.builds) == {""} and self.builds[""] == self.text:
            return self.text
        parts = ", ".join(f"{p or 'any'}={b}" for p, b in sorted(self.builds.items()))
        return f"{self.text} ({parts})"


def _parse_time(text: str, end: bool) -> float | None:
    t = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
            d = date.fromisoformat(t)
            dt = datetime.combine(d, time.min, tzinfo=timezone.utc)
            if end:
                dt = dt + timedelta(days=1) - timedelta(microseconds=1)
            return dt.timestamp()
        if re.match(r"\d{4}-\d{2}-\d{2}[T ]", t):
            dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            return dt.timestamp()
    except ValueError:
        return None
    return None


def resolve_bound(text: str | None, store=None, *, end: bool = False,
                  platform: str | None = None) -> Bound | None:
    """Resolve ``--since``/``--until``: an OS build, an ISO date/time, or an alias.

    A plain date means the start of that day (UTC) for ``--since`` and its end for ``--until``
    (``end=True``). An unknown alias raises :class:`UserError` listing the known aliases.
    """
    if text is None or str(text).strip() == "":
        return None
    text = str(text).strip()
    if parse_build(text) is not None:
        return Bound(text, "build", builds={"": text})
    ts = _parse_time(text, end)
    if ts is not None:
        return Bound(text, "time", ts=ts)
    if re.match(r"\d{4}-\d{2}-\d{2}", text):
        raise UserError(f"{text!r}: not a valid date (expected YYYY-MM-DD or ISO-8601 time)")
    aliases = all_aliases(store)
    builds: dict[str, str] = {}
    for plat, table in aliases.items():
        if text in table:
            builds[plat] = table[text]
    if platform:
        # the entries for that platform (or any platform); an alias with entries for other
        # platforms only is kept whole: build_report carries it over to ``platform`` (by the
        # time of its builds' reports, as a build given directly)
        builds = {p: b for p, b in builds.items() if p in ("", platform)} or builds
    if not builds:
        known = sorted({(f"{p}:{a}" if p else a) for p, t in aliases.items() for a in t})
        hint = ", ".join(known) if known else "none defined (add [releases] to triage.toml or " \
                                              "run `triage releases alias NAME BUILD`)"
        raise UserError(f"unknown release alias {text!r} (not a build number or date); "
                        f"known aliases: {hint}")
    for b in builds.values():
        if parse_build(b) is None:
            raise UserError(f"release alias {text!r} points at {b!r}, which is not a build number")
    return Bound(text, "build", builds=builds)


def bound_json(b: Bound | None) -> Any:
    """How a bound appears in the report JSON (``since``/``until``)."""
    if b is None:
        return None
    if b.kind == "time":
        return b.text
    if set(b.builds) == {""}:
        return b.builds[""] if b.text == b.builds[""] else {"alias": b.text, "build": b.builds[""]}
    return {"alias": b.text, "builds": dict(sorted(b.builds.items()))}


# ----------------------------------------------------------------------------- releases list

def releases_records(store, aliases: dict[str, dict[str, str]] | None = None,
                     kind: str | None = None) -> list[dict[str, Any]]:
    """The ``triage releases --format json`` array (and ``Triage.releases_records()``): builds
    seen in the store (``seen: true``) plus the builds aliases point at with no report yet
    (``seen: false``, ``count`` 0, empty ``platforms``, null times), all in build order, each
    with its parsed parts (``major``/``train``/``number``/``suffix``/``seed``, null when the
    build is unparseable)."""
    if aliases is None:
        aliases = all_aliases(store)
    where, params = ("WHERE kind=?", (kind,)) if kind else ("", ())
    rows = store.conn.execute(
        "SELECT os_build, COALESCE(platform, ''), count(*), min(captured_ts), max(captured_ts) "
        f"FROM incidents {where} GROUP BY os_build, COALESCE(platform, '')", params).fetchall()
    by_build = {}
    for build, plat, n, t0, t1 in rows:
        r = by_build.setdefault(build, {"build": build, "platforms": {}, "count": 0,
                                        "first_seen": None, "last_seen": None})
        r["platforms"][plat or "unknown"] = n
        r["count"] += n
        if t0 is not None and (r["first_seen"] is None or t0 < r["first_seen"]):
            r["first_seen"] = t0
        if t1 is not None and (r["last_seen"] is None or t1 > r["last_seen"]):
            r["last_seen"] = t1
    names_by_build = aliases_by_build(aliases)
    for r in by_build.values():
        r["seen"] = True
    # aliases pointing at builds not (yet) seen are listed too, so they can be checked
    for build in names_by_build:
        if build not in by_build:
            by_build[build] = {"build": build, "platforms": {}, "count": 0, "first_seen": None,
                               "last_seen": None, "seen": False}
    out = []
    for build in sorted(by_build, key=lambda b: build_key(b)):
        r = by_build[build]
        b = parse_build(build)
        r["aliases"] = names_by_build.get(build, [])
        r["major"] = b.major if b else None
        r["train"] = b.train if b else None
        r["number"] = b.number if b else None
        r["suffix"] = b.suffix if b else None
        r["seed"] = b.seed if b else None
        r["first_seen"] = iso_ts(r["first_seen"])
        r["last_seen"] = iso_ts(r["last_seen"])
        r["seen"] = r.pop("seen")           # last, as the CLI always printed it
        out.append(r)
    return out


def iso_ts(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(float(ts), tz=timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return None
