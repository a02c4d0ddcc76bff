"""User configuration: ``triage.toml`` in the working folder, then the user config folder.

Sections (all optional)::

    [rules]                       # extra frame/signature rule files (see docs/rules.md)
    files = ["my-rules.toml"]

    [cluster]                     # clustering settings (see docs/clustering.md)
    threshold = 0.3

    [releases]                    # build aliases (see docs/reports.md)
    beta5 = "26A5353q"
    [releases.iOS]
    beta5 = "23A5330a"

Relative paths inside a config file are resolved against that file's folder.
"""

from __future__ import annotations

import copy
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from triage.errors import UserError

CONFIG_NAME = "triage.toml"


def config_paths() -> list[Path]:
    """Config files in precedence order (later ones override earlier keys)."""
    from platformdirs import user_config_dir

    paths = [Path(user_config_dir("triage", appauthor=False)) / CONFIG_NAME,
             Path.cwd() / CONFIG_NAME]
    out = []
    for p in paths:
        try:
            if p.is_file():
                out.append(p)
        except OSError as exc:   # e.g. a config folder this user may not enter (sudo without -H)
            raise UserError(f"{p}: cannot read config: {exc.strerror or exc}") from None
    return out


def _merge(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)   # never share (and later mutate) a file's own tables
    return dst


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read config: {exc}")
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}")
    rules = data.get("rules")
    if isinstance(rules, dict) and isinstance(rules.get("files"), str):
        rules["files"] = [rules["files"]]       # one file: not a string iterated per character
    if isinstance(rules, dict) and "files" in rules and not (
            isinstance(rules["files"], list) and all(isinstance(f, str) for f in rules["files"])):
        raise UserError(f"{path}: [rules] files must be a list of paths, "
                        f"not {rules['files']!r}")
    if isinstance(rules, dict) and isinstance(rules.get("files"), list):
        rules["files"] = [str((path.parent / f).resolve()) for f in rules["files"]]
    return data


class _Loaded(dict):
    """The merged config; ``files`` keeps each file's own (unmerged) data, in order."""

    files: tuple[tuple[Path, dict[str, Any]], ...] = ()


@lru_cache(maxsize=8)
def _load(paths: tuple[Path, ...]) -> _Loaded:
    merged = _Loaded()
    files = []
    for p in paths:
        data = read_config_file(p)
        files.append((p, data))
        _merge(merged, data)
    merged.files = tuple(files)
    return merged


def load_config() -> dict[str, Any]:
    return _load(tuple(config_paths()))


def section_by_file(name: str) -> list[tuple[Path, Any]]:
    """``(config file, raw value)`` of the top-level key ``name`` in every config file that has
    it, in precedence order (unmerged, unchecked): for sections whose errors must name the
    file (``[releases]``, see :func:`triage.report.builds.config_aliases`)."""
    return [(p, copy.deepcopy(data[name])) for p, data in _load(tuple(config_paths())).files
            if name in data]


def section(name: str) -> dict[str, Any]:
    value = load_config().get(name, {})
    return value if isinstance(value, dict) else {}
