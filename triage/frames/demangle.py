"""Demangling: the single place that imports the demangler (``symbolic`` 10.2.1).

Why ``symbolic`` 10.2.1: it is the only Linux-installable library that demangles both Itanium C++
(``_Z``, Mach-O ``__Z``) and Swift (``$s``, ``_$s``, ``$S``, ``_T0``) names. ``symbolic`` 11 and
later dropped the ``demangle`` module; ``cxxfilt`` / ``c++filt`` / ``llvm-cxxfilt`` do no Swift and
``swift-demangle`` is not packaged for Debian. Replace the body of :func:`demangle` to swap it.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Names that look mangled: Itanium (optionally with the Mach-O underscore, and the block form
# ``___Z..._block_invoke``), Swift 4+ (``$s``/``$S``/``$e``), Swift 3 (``_T0``), old Swift (``_TF``).
_MANGLED = re.compile(r"^(?:_{0,3}Z[A-Za-z0-9_]|_{0,2}\$[sSe][A-Za-z0-9_]|_{0,2}T0[A-Za-z0-9_]|_T[FtTWM])")

try:  # pragma: no cover - the dependency is pinned; the fallback keeps triage usable without it
    from symbolic.demangle import demangle_name as _demangle_name
except Exception:  # noqa: BLE001
    _demangle_name = None


def looks_mangled(name: str) -> bool:
    return bool(name) and name[0] in "_$" and _MANGLED.match(name) is not None


@lru_cache(maxsize=65536)
def demangle(name: str) -> str:
    """Demangled ``name`` (C++ or Swift), or ``name`` unchanged when it is not mangled or the
    demangler fails. Never raises."""
    if not isinstance(name, str) or not looks_mangled(name) or _demangle_name is None:
        return name
    try:
        out = _demangle_name(name)
    except Exception:  # noqa: BLE001 - unknown manglings must never crash
        return name
    if not out or not isinstance(out, str):
        return name
    return out
