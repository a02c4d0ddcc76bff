"""Plain typed records that flow between the pipeline stages.

discover -> parse -> (symbolize, normalize) -> signature -> cluster -> link context -> report.

Every stage is a module of pure functions over these records; only ``triage.store`` and
``triage.cli`` touch the outside world. Keep these classes free of behaviour beyond trivial
helpers, and never rename a field: the JSON contracts in docs/ are built from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Report kinds, decided by bug_type (never by file name).
KIND_CRASH = "crash"
KIND_HANG = "hang"            # stackshot / hang (288, 409)
KIND_JETSAM = "jetsam"        # 298
KIND_PANIC = "panic"          # 210 (and 151 forceReset full panics)
KIND_RESOURCE = "resource"    # 202 cpu_resource / wakeups, 145 etc.
KIND_UNKNOWN = "unknown"

KINDS = (KIND_CRASH, KIND_HANG, KIND_JETSAM, KIND_PANIC, KIND_RESOURCE, KIND_UNKNOWN)


@dataclass(slots=True)
class Image:
    """One entry of ``usedImages`` / ``Binary Images``."""

    index: int
    name: str | None = None
    uuid: str | None = None          # canonical: lowercase with dashes
    base: int | None = None
    size: int | None = None
    path: str | None = None
    arch: str | None = None
    source: str | None = None        # P, S, C, K, U, T, A
    bundle_id: str | None = None
    version: str | None = None


@dataclass(slots=True)
class Frame:
    """One stack frame as the report states it (plus what later stages add).

    ``module`` is the image name ("???" never: None when unknown). ``symbol`` is None where the
    report has none (missing, ``???``, ``<redacted>``, ``<deduplicated_symbol>``, a bare hex
    address). ``function`` and ``normalized`` are filled by ``triage.frames``;
    ``rule`` names the normalization rule(s) that changed the frame.
    """

    module: str | None = None
    symbol: str | None = None
    offset: int | None = None             # offset within the image (imageOffset)
    symbol_offset: int | None = None      # bytes from the symbol start (symbolLocation)
    inline: bool = False
    image_index: int | None = None
    image_uuid: str | None = None
    image_base: int | None = None
    image_path: str | None = None
    address: int | None = None            # absolute pc/return address when known
    source_file: str | None = None
    source_line: int | None = None
    raw_symbol: str | None = None         # symbol text exactly as written in the report
    symbolicated_by: str | None = None    # "report" | "dsym" | None
    # filled by triage.frames
    function: str | None = None
    normalized: str | None = None
    rule: str | None = None


@dataclass(slots=True)
class Thread:
    index: int
    id: int | None = None                 # kernel thread id, NOT an index
    name: str | None = None
    queue: str | None = None
    triggered: bool = False
    frames: list[Frame] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    """One parsed diagnostic report of any kind.

    Times are ISO-8601 strings with a zone offset (``2026-09-18T08:24:00.442300+00:00``) or None.
    Numbers above 2**53 are kept exact as Python ints.
    """

    incident_id: str
    path: str                              # absolute path (for archive members: archive!member)
    sha256: str
    format: str                            # "ips-json" | "ips-text-body" | "crash-text" | "translated+ips" | ...
    bug_type: str | None = None
    kind: str = KIND_UNKNOWN
    process: str | None = None
    process_path: str | None = None
    pid: int | None = None
    parent_process: str | None = None
    parent_pid: int | None = None
    responsible_process: str | None = None
    responsible_pid: int | None = None
    bundle_id: str | None = None
    app_version: str | None = None
    captured_at: str | None = None
    launched_at: str | None = None
    os_version: str | None = None          # header os_version / "OS Version:" line, as written
    os_train: str | None = None            # e.g. "macOS 26.0"
    os_build: str | None = None            # e.g. "26A5353q"
    os_release_type: str | None = None     # "User", "Beta", ...
    platform: str | None = None            # "macOS" | "iOS" | ... (from header platform or os_version)
    hardware_model: str | None = None
    cpu_type: str | None = None
    exception_type: str | None = None      # "EXC_BAD_ACCESS"
    signal: str | None = None              # "SIGSEGV"
    exception_codes: str | None = None
    exception_subtype: str | None = None
    exception_message: str | None = None
    termination_namespace: str | None = None
    termination_code: int | None = None
    termination_indicator: str | None = None
    termination_by_process: str | None = None
    termination_by_pid: int | None = None
    asi: dict[str, list[str]] | None = None
    crashing_thread: int | None = None     # index into threads
    threads: list[Thread] = field(default_factory=list)
    last_exception_backtrace: list[Frame] | None = None
    images: list[Image] = field(default_factory=list)
    crash_reporter_key: str | None = None
    header: dict[str, Any] | None = None   # the raw IPS header object (JSON kinds)
    extra: dict[str, Any] = field(default_factory=dict)   # kind-specific facts (jetsam, panic)
    notes: list[str] = field(default_factory=list)        # parser notes (disagreements, clamps)

    def crashing_frames(self) -> list[Frame]:
        if self.crashing_thread is None or not (0 <= self.crashing_thread < len(self.threads)):
            return []
        return self.threads[self.crashing_thread].frames


class ParseError(Exception):
    """A file that is not a readable report. ``str(err)`` is the one-line reason."""


@dataclass(slots=True)
class FileProblem:
    """One bad input: shown to the user as ``path: reason`` and stored in the ``errors`` table."""

    path: str
    reason: str
