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
        app(args=argv, prog_name="triage", standalone_mode=True)
    except SystemExit as exc:  # typer/click exit codes pass through
        code = exc.code
        if code == 130:  # typer turns Ctrl-C into Exit(130)
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
    except Exception as exc:  # last resort: one line, never a traceback
        import os

        if os.environ.get("TRIAGE_DEBUG"):
            raise
        sys.stderr.write(f"triage: internal error: {type(exc).__name__}: {exc} "
                         "(set TRIAGE_DEBUG=1 for a traceback)\n")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
