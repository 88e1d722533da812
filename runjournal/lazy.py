"""Package attributes imported on first use (PEP 562), so that a command imports only what it
runs: ``runjournal --version`` needs none of the layers, ``exec`` not the daemon or the bench."""

from __future__ import annotations

import importlib
import sys
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
        vars(sys.modules[package])[name] = value  # looked up once: the next use is a plain attribute
        return value

    return __getattr__
