"""triage: turn piles of Apple crash reports from ML model compilers into distinct, linked bugs.

The library API (``triage.open``) is what the CLI is built on; notebooks can call it directly.
Heavy packages (pandas, scikit-learn, coremltools) are imported lazily where used.
"""

__version__ = "0.1.0"


def open(db=None):  # noqa: A001 - deliberate: ``triage.open(db)`` reads naturally
    """Open (creating if needed) a triage store and return a :class:`triage.api.Triage`."""
    from triage.api import Triage

    return Triage(db)
