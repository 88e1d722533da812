"""Many machines, one server: 4 "machines" (separate roots and process trees) run 50
pipelines in one task at once against one PostgreSQL store, each with its own live `watch`.
Every watch must converge to projection files byte-identical to a rebuild on that machine,
with every run in `state.json` and in `metrics.json` exactly once.

Needs ``$RUNJOURNAL_TEST_PG`` (helpers/pg.py): skipped without it, failed under CI=true.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

from helpers import DEADLINE, clean_env, pg, wait_until
from helpers.runner_support import finish, manifest, metrics
from helpers.trees import diff, projection_tree

from runjournal.journal import open_store

MACHINES = 4
RUNS = 50
CONFIG = {
    "pipelines": [
        {
            "id": "many",
            "title": "many machines",
            "stages": [
                {"kind": "command", "id": "hello", "title": "hello", "command": "echo hello from $CODEX_ORCHESTRATOR_RUN_ID"},
                {"kind": "command", "id": "count", "title": "count", "command": "seq 1 200"},
            ],
        }
    ]
}


def argv(root: Path, url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "runjournal", "--root", str(root), "--store", url, *args]


def state_runs(root: Path) -> dict[str, dict]:
    try:
        doc = json.loads((root / "out" / "default" / "state.json").read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    return {r["run_id"]: r for r in doc["runs"]}


def projections(root: Path) -> dict[str, bytes]:
    """The machine's projection files (its own runs' resume tokens are not projections)."""
    return {p: b for p, b in projection_tree(root).items() if p.startswith((".runs/", "out/")) and "/.tokens/" not in p}


class Watch:
    def __init__(self, root: Path, url: str):
        self.proc = subprocess.Popen(argv(root, url, "watch", "--format", "json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=root)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")), daemon=True).start()

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=DEADLINE)
        return self.proc.returncode, err


def test_four_machines_run_fifty_pipelines_in_one_task_and_every_watch_converges(tmp_path: Path):
    url = pg.store_url(str(tmp_path))
    machines = [tmp_path / f"machine-{k}" for k in range(MACHINES)]
    watches: list[Watch] = []
    runners: list[subprocess.Popen] = []
    try:
        for root in machines:
            root.mkdir()
            (root / "codex.orchestrator.json").write_text(json.dumps(CONFIG))
            watches.append(Watch(root, url))
        for watch in watches:
            wait_until(lambda w=watch: any('"ready"' in line for line in w.lines) or w.proc.poll() is not None, "each watch to be ready")
            assert watch.proc.poll() is None, watch.proc.stderr.read()
        for i in range(RUNS):
            root = machines[i % MACHINES]
            with open(root / f"runner-{i}.out", "wb") as out, open(root / f"runner-{i}.err", "wb") as err:
                runners.append(subprocess.Popen(argv(root, url, "start", "--format", "json"), stdout=out, stderr=err, env=clean_env(), cwd=root))
        run_ids = []
        for i, proc in enumerate(runners):
            root = machines[i % MACHINES]
            assert finish(proc, timeout=DEADLINE * 6) == 0, (root / f"runner-{i}.err").read_text()
            run_ids.append(json.loads((root / f"runner-{i}.out").read_text())["run_id"])
        assert len(set(run_ids)) == RUNS

        for root in machines:
            wait_until(
                lambda r=root: set(state_runs(r)) == set(run_ids) and all(v["status"] == "succeeded" for v in state_runs(r).values())
                and len(metrics(r)) == RUNS,
                f"the watch on {root.name} to show all {RUNS} runs",
                timeout=DEADLINE * 2,
            )  # fmt: skip
        for watch in watches:
            code, err = watch.stop()
            assert code == 0, err
        watches = []

        for root in machines:
            live = projections(root)
            assert sorted(m["run_id"] for m in metrics(root)) == sorted(run_ids), "metrics.json: every run exactly once"
            for run_id in run_ids:
                assert manifest(root, run_id)["status"] == "succeeded"
            rebuilt = subprocess.run(argv(root, url, "project", "--rebuild"), capture_output=True, text=True, env=clean_env(), timeout=DEADLINE * 2)
            assert rebuilt.returncode == 0, rebuilt.stderr
            assert not diff(live, projections(root)), f"{root.name}: the live watch differs from a rebuild:\n{diff(live, projections(root))[:3000]}"
        with open_store(url) as store:
            assert store.check("default").ok
            assert store.last_seq("default") == sum(1 for _ in store.records("default"))
    finally:
        for proc in runners:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for watch in watches:
            if watch.proc.poll() is None:
                watch.proc.kill()
                watch.proc.communicate()
        pg.drop_schema(str(tmp_path))
