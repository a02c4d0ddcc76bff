"""Context stage: compile journal, flags, model encodings, linking, correlations (docs/context.md).

Modules: ``journal`` (``read_journal``), ``flags`` (``parse_flags``), ``encoding``
(``inspect_model``), ``record`` (``triage record``), ``link`` (``link_pending``), ``correlate``
(``compute_contexts``), ``views`` (``cluster_detail``, ``cluster_contexts``). Import the
submodules directly; nothing heavy is imported here.
"""
