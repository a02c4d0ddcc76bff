"""Console entry point: a thin typer layer over the library API.

Each command module in ``triage/commands/`` registers its commands on ``triage.cli_app.app``.
``main`` turns every error into one line on stderr: no Python traceback reaches a user.
"""

from __future__ import annotations

import sys

from triage.cli_app import app
from triage.errors import UserError

# Registration imports: each module only defines typer commands; heavy imports stay inside them.
from triage.commands import ingest as _ingest  # noqa: F401,E402
from triage.commands import frames as _frames  # noqa: F401,E402
from triage.commands import clusters as _clusters  # noqa: F401,E402
from triage.commands import context as _context  # noqa: F401,E402
from triage.commands import report as _report  # noqa: F401,E402


def main(argv: list[str] | None = None) -> int:
    try:
        # standalone_mode=False: usage errors come back as exceptions, printed as one line below
        # (typer's own rendering is a multi-line box)
        rv = app(args=argv, prog_name="triage", standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool):  # typer.Exit(code)
            if rv == 130:
                raise SystemExit(130)
            return rv
    except SystemExit as exc:  # typer/click exit codes pass through
        code = exc.code
        if code == 130 and not getattr(exc, "quiet", False):  # typer: Ctrl-C is Exit(130)
            sys.stderr.write("triage: interrupted (everything committed so far is kept; "
                             "re-run to finish)\n")
        return code if isinstance(code, int) else (0 if code is None else 1)
    except UserError as exc:
        sys.stderr.write(f"triage: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("triage: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # the machine refused something (permissions, space): not a bug
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"triage: error: {where}{exc.strerror or exc}\n")
        return 2
    except Exception as exc:
        import sqlite3

        if _is_click_error(exc):
            return _click_error(exc)
        if not (isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc)):
            return _internal_error(exc)
        from triage.cli_app import db_path

        sys.stderr.write(f"triage: error: {db_path()}: cannot write the store: {exc} "
                         "(check the permissions of the file and its folder)\n")
        return 2
    return 0


def _is_click_error(exc: Exception) -> bool:
    """A click usage error / ClickException / Abort (typer may vendor its own click)."""
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"ClickException", "Abort"})


def _click_error(exc: Exception) -> int:
    if type(exc).__name__ == "NoArgsIsHelpError":  # bare `triage` / group: the help text
        sys.stdout.write(exc.format_message().rstrip("\n") + "\n")
        return 2
    if type(exc).__name__ == "Abort" or not hasattr(exc, "format_message"):
        sys.stderr.write("triage: aborted\n")
        return 1
    ctx = getattr(exc, "ctx", None)
    sub = ctx.command_path.partition(" ")[2] if ctx is not None else ""
    where = f"{sub}: " if sub else ""
    msg = " ".join(str(exc.format_message()).split())
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    sys.stderr.write(f"triage: error: {where}{msg}{hint}\n")
    return getattr(exc, "exit_code", 2)


def _internal_error(exc: Exception) -> int:
    """Last resort: one line, never a traceback (called inside the ``except``)."""
    import os

    if os.environ.get("TRIAGE_DEBUG"):
        raise exc
    sys.stderr.write(f"triage: internal error: {type(exc).__name__}: {exc} "
                     "(set TRIAGE_DEBUG=1 for a traceback)\n")
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
