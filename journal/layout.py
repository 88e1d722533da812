"""Where a task's journal and projection files live (contract section 3)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .naming import validate_run_id, validate_task_id

_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """File-name-safe form of a stage id: lowercase, dashes, at most 60 characters."""
    return _SLUG.sub("-", text.lower()).strip("-")[:60] or "stage"


@dataclass(frozen=True)
class Layout:
    runs_dir: str
    out_dir: str

    def task_dir(self, task: str) -> str:
        return os.path.join(self.runs_dir, validate_task_id(task))

    def journal_dir(self, task: str) -> str:
        return os.path.join(self.task_dir(task), "journal")

    def run_dir(self, task: str, run_id: str) -> str:
        return os.path.join(self.task_dir(task), "cli", validate_run_id(run_id))

    def manifest_path(self, task: str, run_id: str) -> str:
        return os.path.join(self.run_dir(task, run_id), "manifest.json")

    def metrics_path(self, task: str) -> str:
        return os.path.join(self.task_dir(task), "metrics.json")

    def summary_path(self, task: str) -> str:
        return os.path.join(self.task_dir(task), "metrics", "summary.json")

    def state_path(self, task: str) -> str:
        return os.path.join(self.out_dir, validate_task_id(task), "state.json")

    def tasks(self) -> list[str]:
        """Tasks that have a journal, sorted."""
        try:
            names = os.listdir(self.runs_dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(self.runs_dir, n, "journal")))


def command_file(index: int, stage_id: str, ext: str) -> str:
    """``NN-<slug>.<ext>``: the name of a stage's log or error file."""
    return f"{index:02d}-{slug(stage_id)}.{ext}"
