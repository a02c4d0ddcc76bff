"""Errors that reach the user as one line (never a traceback)."""


class UserError(Exception):
    """A problem the user can fix (bad flag value, unknown alias, missing file).

    The CLI prints ``triage: error: <message>`` and exits with ``exit_code``.
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def refuse_special_file(path) -> None:
    """UserError for a FIFO, socket or device given as an input file: opening one can block
    forever (a FIFO without a writer). Missing paths are left to the caller's own check."""
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UserError(f"{path}: not a regular file (FIFO, socket or device), not opened")
