"""The watch daemon as a library: convergence without notifications, coalescing, clean stop."""

from __future__ import annotations

import json
import threading
import time

from helpers import DEADLINE, wait_until
from helpers.histories import RunScript, make_run_id

from runjournal.journal.writer import Journal
from runjournal.projections import Watcher


class Running:
    """A Watcher on its own thread, stopped and joined on exit."""

    def __init__(self, tmp_path, **kw):
        self.catch_ups: list[tuple[str, int]] = []
        self.warnings: list[str] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.daemon = Watcher(
            str(tmp_path / ".runs"),
            str(tmp_path / "out"),
            sync=False,
            on_catch_up=lambda task, result: self.catch_ups.append((task, result.applied)),
            warn=self.warnings.append,
            **kw,
        )
        self.thread = threading.Thread(target=self.daemon.run, args=(self.stop, self.ready.set))

    def __enter__(self) -> Running:
        self.thread.start()
        assert self.ready.wait(DEADLINE)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.daemon.wake.set()
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive()


def manifest(tmp_path, run_id: str, task: str = "default") -> dict | None:
    try:
        return json.loads((tmp_path / ".runs" / task / "cli" / run_id / "manifest.json").read_bytes())
    except FileNotFoundError:
        return None


def test_the_tick_catches_up_when_no_notification_comes(tmp_path):
    """A polling observer that never polls in time stands for notifications lost to an overflow."""
    run = RunScript(make_run_id(1))
    with Running(tmp_path, poll=3600.0, tick=0.05) as live:
        with Journal(str(tmp_path / ".runs" / "default" / "journal"), durability="none") as journal:
            journal.append_batch(run.items)
        wait_until(lambda: manifest(tmp_path, run.run_id), "the tick to project the new run")
    assert live.warnings == []


def test_a_burst_coalesces_into_few_catch_ups(tmp_path):
    now = time.time_ns()  # a run from now: the daemon's first pass must not find it stale
    run = RunScript(make_run_id(1, now), start_ts=now, stages=1)
    run.start_stage(1)
    for n in range(300):
        run.output(1, f"line {n}\n".encode())
    run.finish_stage(1).complete()
    with Running(tmp_path, tick=60.0) as live:
        with Journal(str(tmp_path / ".runs" / "default" / "journal"), durability="none") as journal:
            for item in run.items:
                journal.append_batch([item])
        wait_until(lambda: (manifest(tmp_path, run.run_id) or {}).get("status") == "succeeded", "the burst to be projected")
    assert sum(applied for _, applied in live.catch_ups) == len(run.items)
    assert len(live.catch_ups) < len(run.items)  # one catch-up takes whatever was appended before it


def test_only_the_chosen_task_is_projected(tmp_path):
    a, b = RunScript(make_run_id(1), task="a"), RunScript(make_run_id(2), task="b")
    with Running(tmp_path, task="b", tick=0.05) as live:
        for script, task in ((a, "a"), (b, "b")):
            with Journal(str(tmp_path / ".runs" / task / "journal"), durability="none") as journal:
                journal.append_batch(script.items)
        wait_until(lambda: manifest(tmp_path, b.run_id, "b"), "task b to be projected")
    assert manifest(tmp_path, a.run_id, "a") is None
    assert {task for task, _ in live.catch_ups} == {"b"}


def test_stale_runs_are_marked_on_the_tick(tmp_path):
    run = RunScript(make_run_id(1))  # started in 2025 and silent since
    with Journal(str(tmp_path / ".runs" / "default" / "journal"), durability="none") as journal:
        journal.append_batch(run.items)
    with Running(tmp_path, tick=0.05):
        wait_until(lambda: (manifest(tmp_path, run.run_id) or {}).get("status_detail", "").startswith("stale: "), "the run to be marked stale")
