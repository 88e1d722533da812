"""runjournal: pipeline runs recorded as an event-sourced, file-locked, append-only journal.

The layers are subpackages, each with its own ``__all__``: ``runjournal.journal`` (events,
the store), ``runjournal.projections`` (what people read, rebuilt from the journal),
``runjournal.runner`` (runs pipelines and journals them) and ``runjournal.cli``. In the source
tree they sit at the top level beside this directory; ``pyproject.toml`` maps them here, so
installed the project claims this one import name.
"""

#: the version (pyproject.toml reads it from here); no importlib.metadata at start-up
__version__ = "0.1.0"
