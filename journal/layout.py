"""Where a task's projection files live (contract section 3); the journal is the store's."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .fsutil import root_of
from .naming import validate_run_id, validate_task_id

_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """File-name-safe form of a stage id: lowercase, dashes, at most 60 characters."""
    return _SLUG.sub("-", text.lower()).strip("-")[:60] or "stage"


@dataclass(frozen=True)
class Layout:
    runs_dir: str
    out_dir: str
    #: the directories the user named (the root; the runs and out dirs when given): they may be
    #: symlinks, everything below them that runjournal creates may not (``fsutil.Below``)
    roots: tuple[str, ...] = ()

    def root_of(self, path: str) -> str:
        """The directory the user named that holds ``path``: below it, nothing is followed
        through a link (``fsutil.root_of``)."""
        return root_of(path, self.roots)

    def task_dir(self, task: str) -> str:
        return os.path.join(self.runs_dir, validate_task_id(task))

    def run_dir(self, task: str, run_id: str) -> str:
        return os.path.join(self.task_dir(task), "cli", validate_run_id(run_id))

    def manifest_path(self, task: str, run_id: str) -> str:
        return os.path.join(self.run_dir(task, run_id), "manifest.json")


def command_file(index: int, stage_id: str, ext: str) -> str:
    """``NN-<slug>.<ext>``: the name of a stage's log or error file."""
    return f"{index:02d}-{slug(stage_id)}.{ext}"
