"""Projections: the files people and tools read, rebuilt from the journal."""

from runjournal.lazy import exports

_EXPORTS = {
    "Liveness": "observe",
    "Sightings": "observe",
    "is_stale": "observe",
    "liveness": "observe",
    "CatchUp": "projector",
    "Projector": "projector",
    "RebuildFailed": "projector",
    "write_files": "projector",
    "Paths": "render",
    "AmbiguousRun": "replay",
    "RunNotFound": "replay",
    "Step": "replay",
    "paced": "replay",
    "state_at": "replay",
    "timeline": "replay",
    "PROJECTION_VERSION": "state",
    "Run": "state",
    "TaskState": "state",
    "Watcher": "live",
    "watch": "live",
}

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

__getattr__ = exports(__name__, _EXPORTS)
