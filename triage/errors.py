"""Errors that reach the user as one line (never a traceback)."""


class UserError(Exception):
    """A problem the user can fix (bad flag value, unknown alias, missing file).

    The CLI prints ``triage: error: <message>`` and exits with ``exit_code``.
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
