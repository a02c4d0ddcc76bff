"""The typer application object and the helpers every command module shares.

Command modules live in ``triage/commands/`` and register themselves on :data:`app`;
``triage.cli`` imports them all. Keep this module light: it is imported by ``triage --help``,
which must not import pandas, scikit-learn or coremltools.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Optional

import typer

ENV_DB = "TRIAGE_DB"

app = typer.Typer(
    name="triage",
    help="Turn Apple crash reports from ML model compilers into a short list of distinct bugs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class _State:
    db: Optional[Path] = None
    rules: list[Path] = []


state = _State()


def default_db_path() -> Path:
    """Per-user data folder (platformdirs), e.g. ``~/.local/share/triage/triage.db``."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("triage", appauthor=False)) / "triage.db"


def resolve_db_path(explicit: Optional[Path] = None) -> Path:
    """``--db`` beats ``$TRIAGE_DB`` beats the per-user default."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_DB)
    if env:
        return Path(env).expanduser()
    return default_db_path()


def db_path() -> Path:
    return resolve_db_path(state.db)


def open_store():
    """Open the store chosen by the global options, creating it (and its folders) on first use:
    only for commands that add data to an empty store (ingest, releases alias). Commands that
    change existing data (recluster, merge, split, symbolicate, link, filed CLUSTER URL) use
    :func:`open_existing_store`: on an empty store they have nothing to do.
    """
    from triage.store.db import Store

    return Store.open(db_path())


def open_existing_store(subject: Optional[str] = None):
    """Open the store for a command that only reads (incidents, clusters, report, show...).

    ``--db PATH`` naming a store that does not exist is a one-line :class:`UserError` (exit 2)
    and nothing is created on disk (no store file, no parent folders); ``subject`` (e.g.
    ``"C-1: no such cluster"``) leads the message when the command was looking something up.
    The per-user default store and ``$TRIAGE_DB`` are created empty on a first run, as before,
    with one note on stderr that nothing was ingested yet (the command gives an empty result).
    """
    from triage.errors import UserError
    from triage.store.db import Store

    path = db_path()
    if not path.exists():
        if state.db is not None:
            if subject:
                raise UserError(f"{subject} (no triage store at {path}; run `triage ingest` "
                                "first)")
            raise UserError(f"{path}: no triage store here (run `triage ingest` first)")
        store = Store.open(path)
        warn(f"triage: note: nothing ingested yet (new empty store {path}; "
             "run `triage ingest REPORTS`)")
        return store
    return Store.open(path)


#: files SQLite keeps beside the store (WAL mode; rollback journal)
STORE_COMPANIONS = ("-wal", "-shm", "-journal")


def _same_path(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)       # hard links, case-insensitive file systems
    except OSError:                          # one of them does not exist (yet)
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def refuse_store_path(path: Path, option: str, *, files_inside: Optional[str] = None) -> None:
    """One-line :class:`UserError` when an output ``path`` (given with ``option``, e.g.
    ``--output``) is the store itself or one of its ``-wal``/``-shm``/``-journal`` files:
    writing there would destroy the store. Call it before anything is written.

    ``files_inside``: ``path`` is a folder the command writes files into, whose names match
    this regular expression (``export --out``); a store in that folder with such a name is
    refused too."""
    import re

    from triage.errors import UserError

    target = Path(path).expanduser()
    store = db_path()
    for suffix in ("",) + STORE_COMPANIONS:
        if _same_path(target, Path(f"{store}{suffix}")):
            what = "the triage store itself" if not suffix else f"the triage store's {suffix} file"
            raise UserError(f"{option} {path}: is {what} ({store}{suffix}); writing there would "
                            "destroy the store, choose another path")
    if files_inside and re.fullmatch(files_inside, store.name) \
            and _same_path(target, store.parent):
        raise UserError(f"{option} {path}: the triage store {store} is in this folder under a "
                        "name this command writes; writing there would destroy the store, "
                        "choose another folder")


@app.callback()
def _main(
    db: Optional[Path] = typer.Option(
        None,
        "--db",
        help=f"SQLite store to use (default: ${ENV_DB}, else a file in the per-user data folder).",
        envvar=None,
    ),
    rules: list[Path] = typer.Option(
        [],
        "--rules",
        help="Extra rule file (frame normalization, signature lists); repeatable. "
        "Adds to the shipped rules and to \\[rules] files in triage.toml.",
    ),
) -> None:
    state.db = db
    state.rules = list(rules)
    for r in rules:      # checked here so that every command refuses it, rules user or not
        check_rule_path(r, f"--rules {r}")


def check_rule_path(path: Path, where: str) -> None:
    """A folder is not a rule file (every stage used to skip it silently): one-line UserError
    starting with ``where`` (the option or config entry naming ``path``)."""
    from triage.errors import UserError

    if Path(path).expanduser().is_dir():
        raise UserError(f"{where}: is a folder, expected a rules file (.toml or .txt)")


def rule_files() -> list[Path]:
    """User rule files: ``[rules] files`` from triage.toml, then every ``--rules``."""
    from triage.config import section

    files = [Path(f) for f in section("rules").get("files", [])]
    for f in files:
        check_rule_path(f, f"{f} ([rules] files in triage.toml)")
    return files + list(state.rules)


def checked_rule_files() -> list[Path]:
    """:func:`rule_files`, each parsed once first (frame rules and signature lists): for commands
    that open an existing store, so that a bad rule file is refused before the store is opened
    (and before a first run's note about a new empty default store)."""
    files = rule_files()
    if files:
        from triage.frames.normalize import load_rules
        from triage.signature import load_siglists

        load_siglists(files)
        load_rules(files)
    return files


# ---------------------------------------------------------------------------- output helpers

def dumps_json(obj: Any) -> str:
    import orjson

    return orjson.dumps(
        obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=_json_default
    ).decode()


def _json_default(obj: Any):
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, int):  # ints beyond 64 bits
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def render_table(rows: list[dict], columns: list[str], title: str | None = None,
                 headers: dict[str, str] | None = None, width: int | None = None) -> str:
    """Render rows as a rich table into a string (fits ``width`` columns, default terminal/100)."""
    from rich.console import Console
    from rich.table import Table

    headers = headers or {}
    table = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        table.add_column(headers.get(c, c), overflow="fold")
    for r in rows:
        table.add_row(*[_cell(r.get(c)) for c in columns])
    if width is None:
        width = 100 if not sys.stdout.isatty() else None
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=False, color_system=None)
    console.print(table)
    return buf.getvalue()


def render_csv(rows: Iterable[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_csv_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def _csv_cell(v: Any) -> str:
    if isinstance(v, (list, dict)):
        import orjson

        return orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS, default=_json_default).decode()
    return "" if v is None else str(v)


def emit(rows: list[dict], fmt: str, columns: list[str], *, title: str | None = None,
         headers: dict[str, str] | None = None, json_obj: Any = None) -> None:
    """Print ``rows`` as a table, JSON array (or ``json_obj`` when given) or CSV."""
    fmt = fmt.value if isinstance(fmt, Enum) else fmt
    if fmt == "json":
        out(dumps_json(rows if json_obj is None else json_obj))
    elif fmt == "csv":
        sys.stdout.write(render_csv(rows, columns))
    else:
        sys.stdout.write(render_table(rows, columns, title=title, headers=headers))


def out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def warn(text: str) -> None:
    """One line on stderr (used for per-file problems: ``path: reason``)."""
    sys.stderr.write(text.rstrip("\n") + "\n")
