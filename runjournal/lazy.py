"""Package attributes imported on first use (PEP 562), so that a command imports only what it
runs: ``runjournal --version`` needs none of the layers, ``exec`` not the daemon or the bench."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def exports(package: str, table: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` giving each name of ``table`` (name -> submodule, relative to
    ``package``; "" for a submodule named like the attribute) from its module, once."""

    def __getattr__(name: str) -> object:
        where = table.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{where or name}")
        value = module if not where else getattr(module, name)
        globals_of(package)[name] = value
        return value

    return __getattr__


def globals_of(package: str) -> dict:
    import sys

    return vars(sys.modules[package])
