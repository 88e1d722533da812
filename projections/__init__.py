"""Projections: the files people and tools read, rebuilt from the journal."""

from .observe import Liveness, Sightings, is_stale, liveness
from .projector import CatchUp, Projector, RebuildFailed, write_files
from .render import Paths
from .replay import AmbiguousRun, RunNotFound, Step, paced, state_at, timeline
from .state import PROJECTION_VERSION, Run, TaskState

__all__ = [
    "AmbiguousRun",
    "CatchUp",
    "Liveness",
    "PROJECTION_VERSION",
    "Paths",
    "Projector",
    "RebuildFailed",
    "Run",
    "RunNotFound",
    "Sightings",
    "Step",
    "TaskState",
    "Watcher",
    "is_stale",
    "liveness",
    "paced",
    "state_at",
    "timeline",
    "watch",
    "write_files",
]


def __getattr__(name: str):
    # the daemon needs watchdog (40 ms to import): load it only when asked, so the runner and
    # every other command stay light
    if name in ("Watcher", "watch"):
        from . import live

        return getattr(live, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
