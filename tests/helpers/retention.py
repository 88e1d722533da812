"""What the retention tests share: ended runs to archive, and the task files an archive must
leave byte for byte the same."""

from __future__ import annotations

from pathlib import Path

from .histories import SECOND, T0, RunScript, make_run_id


def ended_run(n: int, fail: bool = False) -> list:
    """Run ``n``, started ``n`` × 10 minutes after T0, with two stages; the second fails if ``fail``."""
    run = RunScript(make_run_id(n), start_ts=T0 + n * 600 * SECOND, stages=2)
    run.stage(1, lines=3)
    if fail:
        run.fail_stage(2).fail()
    else:
        run.stage(2, lines=2).complete()
    return run.items


def task_files(root: Path, task: str = "default") -> dict[str, bytes]:
    """metrics.json, summary.json and state.json of ``task`` under ``root``."""
    return {
        name: (root / path).read_bytes()
        for name, path in (
            ("metrics.json", f".runs/{task}/metrics.json"),
            ("summary.json", f".runs/{task}/metrics/summary.json"),
            ("state.json", f"out/{task}/state.json"),
        )
    }
