"""Projections: the files people and tools read, rebuilt from the journal."""

from .projector import CatchUp, Projector, write_files
from .render import Paths
from .state import PROJECTION_VERSION, Run, TaskState, is_stale

__all__ = ["CatchUp", "PROJECTION_VERSION", "Paths", "Projector", "Run", "TaskState", "is_stale", "write_files"]
