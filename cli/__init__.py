"""The ``runjournal`` command line: a thin translator from flags to the library."""

from .main import cli, main

__all__ = ["cli", "main"]
