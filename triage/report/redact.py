r"""Privacy redaction for exported drafts (on by default; ``--no-redact`` keeps everything).

Removes: user names and home folders (``/Users/<name>/`` -> ``/Users/USER/``,
``/home/<name>/`` -> ``/home/USER/``, also JSON-escaped ``\/Users\/zo\u00eb\/`` and names with
spaces ``/Users/John Smith/``; and the bare user names found that way anywhere else in the
text, as whole words, raw or JSON-escaped), host names (``name.local``, ``Hostname: x``, ``"host": "x"``), serial numbers
(``Serial Number: C02...``, ``"serialNumber": "..."``) and crash reporter keys
(``crashReporterKey`` / ``CrashReporter Key:`` values, plus every key stored in the store).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

USER = "USER"
HOST = "HOST"
REDACTED = "<redacted>"

# a home folder, also JSON-escaped (``\/Users\/zo\u00eb\/``); the name may hold spaces when a
# slash follows it (``/Users/John Smith/``)
_SL = r"\\?/"
_NCH = r"(?:[^/\\\s\"'<>]|\\u[0-9A-Fa-f]{4})"
HOME_RE = re.compile(rf"({_SL}(?:Users|home|private{_SL}var{_SL}users){_SL})"
                     rf"(?!USER(?:{_SL}|$|[^\w.-])|Shared(?:{_SL}|$|[^\w.-]))"
                     rf"({_NCH}+(?: {_NCH}+)*(?={_SL})|{_NCH}+)")
JSON_ESCAPE_RE = re.compile(r"\\u([0-9A-Fa-f]{4})")
TILDE_RE = re.compile(r"(?<![\w/])~([A-Za-z_][\w.-]*)(?=/)")
LOCAL_HOST_RE = re.compile(r"\b[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*\.local\b")
KEYED_HOST_RE = re.compile(
    r"(?i)(\b(?:host(?:name)?|computer ?name|machine ?name)\b[\"']?\s*[:=]\s*[\"']?)"
    r"([A-Za-z0-9][A-Za-z0-9._-]*)")
SERIAL_RE = re.compile(
    r"(?i)(\b(?:serial(?:[ _]?number)?|serialNumber|hardware ?uuid|provisioning ?uuid)\b"
    r"[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9-]{6,40})")
CRK_RE = re.compile(r"(?i)(crash ?reporter ?key[\"']?\s*[:=]\s*[\"']?)([A-Fa-f0-9-]{8,64})")
USER_KEY_RE = re.compile(r"(?i)(\b(?:user(?:name)?|login|owner)\b[\"']?\s*[:=]\s*[\"']?)"
                         r"([A-Za-z_][\w.-]{1,31})")
NEVER_NAMES = {"user", "shared", "root", "admin", "guest", "library", "applications", "system",
               "private", "var", "tmp", "home", "users", "developer", "xcode",
               # generic service / CI accounts: ordinary words (``coreai-build``, "build
               # 26A5353q"); their home folders are still redacted, the bare word is not
               "build", "builds", "builder", "buildbot", "runner", "ci", "jenkins", "bot",
               "agent", "test", "tester", "vagrant", "ubuntu", "administrator", "service",
               "worker", "daemon", "nobody"}


def _unescape(name: str) -> str:
    """``zo\\u00eb`` (JSON-escaped) -> ``zoë``."""
    return JSON_ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), name)


def json_escaped(text: str) -> str:
    """``zoë`` -> ``zo\\u00eb``: how a JSON writer that escapes non-ASCII spells it."""
    return "".join(ch if ord(ch) < 128 else
                   "".join(f"\\u{u:04x}" for u in _utf16(ch)) for ch in text)


def _utf16(ch: str) -> list[int]:
    b = ch.encode("utf-16-be")
    return [int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2)]


def user_names_in(text: str) -> set[str]:
    """User names appearing as home folders in ``text`` (JSON escapes decoded)."""
    names = {_unescape(m.group(2)) for m in HOME_RE.finditer(text)}
    names |= {m.group(1) for m in TILDE_RE.finditer(text)}
    return {n for n in names if n.lower() not in NEVER_NAMES and len(n) >= 2}


JSON_HOST_RE = re.compile(r'"(?:host|hostname|host_name|computer_name|machine)"\s*:\s*"([^"]+)"')
JSON_USER_RE = re.compile(r'"(?:user|username|user_name|login|owner)"\s*:\s*"([^"]+)"')


def name_variants(name: str) -> set[str]:
    """``alice.kim`` -> {alice.kim, alicekim, alice, kim}: how a user name shows up elsewhere
    (bundle ids like ``com.alicekim.App``, a full name ``Alice Kim``)."""
    out = {name}
    parts = [p for p in re.split(r"[._\-\s]+", name) if p]
    if len(parts) > 1:
        out.add("".join(parts))
        out |= {p for p in parts if len(p) >= 3}
    return {v for v in out if v.lower() not in NEVER_NAMES}


@dataclass
class Redactor:
    """Redacts one export. ``names``/``hosts``/``secrets`` are literal strings (learned from
    the store) also removed wherever they appear."""

    names: set[str] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)
    enabled: bool = True

    def learn(self, texts: Iterable[str | None]) -> "Redactor":
        for t in texts:
            if t:
                self.names |= user_names_in(t)
                self.names |= {m.group(1) for m in JSON_USER_RE.finditer(t)
                               if m.group(1).lower() not in NEVER_NAMES}
                self.hosts |= {m.group(1) for m in JSON_HOST_RE.finditer(t)}
        return self

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact(self, text: str) -> str:
        if not self.enabled or not text:
            return text
        names = set(self.names) | user_names_in(text)
        out = HOME_RE.sub(lambda m: m.group(1) + USER, text)
        out = TILDE_RE.sub("~" + USER, out)
        out = CRK_RE.sub(lambda m: m.group(1) + REDACTED, out)
        out = SERIAL_RE.sub(lambda m: m.group(1) + REDACTED, out)
        out = KEYED_HOST_RE.sub(lambda m: m.group(1) + HOST, out)
        out = USER_KEY_RE.sub(lambda m: m.group(1) + USER, out)
        out = LOCAL_HOST_RE.sub(HOST + ".local", out)
        for s in sorted(self.secrets, key=len, reverse=True):
            if s and len(s) >= 6:
                out = out.replace(s, REDACTED)
        for h in sorted(self.hosts, key=len, reverse=True):
            if len(h) >= 3:
                out = re.sub(re.escape(h), HOST, out, flags=re.IGNORECASE)
        variants: set[str] = set()
        for n in names:
            variants |= name_variants(n)
        variants |= {json_escaped(v) for v in variants}      # zoë -> zo\u00eb as well
        for n in sorted(variants, key=len, reverse=True):
            if len(n) < 3 or n.lower() in NEVER_NAMES:
                continue
            # whole words only: not inside a longer run of letters or digits (any script):
            # "kim" is left in "kimono", "zoë" in "zoës"; "-", "_" and "." separate words, so
            # the name is removed from host and file names ("carol-mbp-m4", "jane.doe@").
            # Generic account names (NEVER_NAMES: build, runner, ...) are never bare words.
            out = re.sub(rf"(?<![^\W_]){re.escape(n)}(?![^\W_])", USER, out,
                         flags=re.IGNORECASE)
        return out


def redactor_for(store, incident_ids: Iterable[str] | None = None, enabled: bool = True,
                 ) -> Redactor:
    """A redactor that knows the user names (home folders in stored paths) and the crash
    reporter keys of the store, so they are removed even where no pattern gives them away."""
    r = Redactor(enabled=enabled)
    if not enabled:
        return r
    texts = []
    for (p,) in store.conn.execute(
            "SELECT DISTINCT process_path FROM incidents WHERE process_path IS NOT NULL"):
        texts.append(p)
    for (p,) in store.conn.execute(
            "SELECT DISTINCT substr(path, 1, 200) FROM incidents WHERE path LIKE '/Users/%' "
            "OR path LIKE '/home/%' LIMIT 10000"):
        texts.append(p)
    for (raw,) in store.conn.execute("SELECT raw FROM compiles LIMIT 100000"):
        texts.append(raw)
    r.learn(texts)
    for (k,) in store.conn.execute(
            "SELECT DISTINCT crash_reporter_key FROM incidents WHERE crash_reporter_key IS NOT NULL"):
        r.secrets.add(str(k))
    return r
