"""PostgreSQL on its worst days: a primary SIGKILLed under 10 writers and its synchronous
standby promoted; a server restarted under a running pipeline.

Each test makes its own throwaway clusters (helpers/pgcluster.py: initdb, as a non-root
account, on free ports of 127.0.0.1). Skipped where there are no server binaries or no test
server (helpers/pg.py), failed instead under CI=true.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import DEADLINE, HELPERS, clean_env, pg, wait_until
from helpers.pgcluster import Cluster, bindir

from runjournal.journal import open_store
from runjournal.journal.events import RunCompleted, WriterStats

WRITERS = 10
COUNT = 150


@pytest.fixture
def place():
    """A directory the cluster account can reach (pytest's tmp_path is private to root)."""
    pg.server_url()  # the PostgreSQL tests run here at all (skip, or fail under CI)
    if bindir() is None:
        message = "no PostgreSQL server binaries (initdb) to make a cluster with"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    top = Path(tempfile.mkdtemp(prefix="runjournal-pg-"))
    top.chmod(0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


@contextlib.contextmanager
def clusters(*made: Cluster):
    try:
        yield made
    finally:
        for cluster in made:
            cluster.remove()


def _reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(DEADLINE)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None and not stream.closed:
            stream.close()


def test_a_synchronous_standby_promoted_after_the_primary_is_killed_has_every_acknowledged_append_once(place: Path):
    primary = Cluster(place / "primary").init(synchronous_standby_names="'standby'", synchronous_commit="on")
    with clusters(primary.start()):
        standby = primary.standby(place / "standby", name="standby")
        with clusters(standby):
            wait_until(lambda: primary.sql("SELECT sync_state FROM pg_stat_replication") == "sync", "the standby to be synchronous")
            hosts = f"127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
            url = f"postgresql://{primary.url.split('://')[1].split('@')[0]}@{hosts}/postgres?target_session_attrs=read-write&connect_timeout=2"
            acks = {k: place / f"w{k}.acks" for k in range(WRITERS)}
            with contextlib.ExitStack() as stack:
                procs = []
                for k in range(WRITERS):
                    p = subprocess.Popen(
                        [sys.executable, str(HELPERS / "failover_writer.py"), url, "t", str(k), str(COUNT), str(acks[k])],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_env(),
                    )  # fmt: skip
                    stack.callback(_reap, p)
                    procs.append(p)
                for p in procs:  # the barrier
                    p.stdin.write("go\n")
                    p.stdin.flush()

                def acked() -> int:
                    return sum(len(a.read_text().splitlines()) for a in acks.values() if a.exists())

                wait_until(lambda: acked() >= WRITERS * COUNT // 3, "a third of the appends acknowledged", timeout=DEADLINE * 2)
                primary.kill()  # mid-run: appends in flight lose their connection
                at_kill = acked()
                standby.promote()
                outputs = [p.communicate(timeout=DEADLINE * 4)[0] for p in procs]
                assert all(o.startswith("done") for o in outputs), outputs
            assert at_kill < WRITERS * COUNT  # the kill did land mid-run

            with open_store(f"postgresql://{standby.url.split('://')[1]}") as store:
                records = list(store.records("t"))
                assert [r.seq for r in records] == list(range(1, len(records) + 1))  # gapless, in commit order
                stored = {(r.run_id, r.run_seq, r.seq): r.event.data for r in records}
                by_run: dict[str, list[bytes]] = {}
                for r in records:
                    by_run.setdefault(r.run_id, []).append(r.event.data)
                for k in range(WRITERS):
                    lines = [line.split() for line in acks[k].read_text().splitlines()]
                    assert len(lines) == COUNT
                    for run_id, run_seq, seq, n in lines:
                        assert stored.get((run_id, int(run_seq), int(seq))) == n.encode(), f"writer {k}: acknowledged event {n} lost"
                # exactly once: every event of every writer is there once, in order
                assert all(data == [b"%d" % n for n in range(1, COUNT + 1)] for data in by_run.values()), "an append was written twice"
                assert len(by_run) == WRITERS
                assert store.check("t").ok


def test_a_pipeline_runs_through_a_server_restart_and_counts_what_it_could_not_write(place: Path, tmp_path: Path):
    server = Cluster(place / "server").init()
    with clusters(server.start()):
        url = f"{server.url}?connect_timeout=2"
        root = tmp_path
        (root / "marks").mkdir()
        stage = "touch marks/in; while [ ! -e marks/release ]; do sleep 0.05; done; echo after"
        config = {
            "pipelines": [{"id": "p", "title": "p", "stages": [{"kind": "command", "id": "wait", "title": "wait", "command": stage}]}],
            "runjournal": {"heartbeatIntervalSeconds": 1, "heartbeatStaleAfterSeconds": 30},
        }
        (root / "codex.orchestrator.json").write_text(json.dumps(config))
        err_path = root / "runner.err"
        with open(err_path, "wb") as err_file:
            runner = subprocess.Popen(
                [sys.executable, "-m", "runjournal", "--root", str(root), "--store", url, "start", "--format", "json"],
                stdout=subprocess.PIPE, stderr=err_file, text=True, env=clean_env(), cwd=root,
            )  # fmt: skip
        try:
            wait_until(lambda: (root / "marks" / "in").exists() or runner.poll() is not None, "the stage to start")
            assert runner.poll() is None, err_path.read_text()
            server.stop("immediate")  # a crash: every connection dies
            # heartbeats fail while it is down: kept in the runner's backlog, counted, said
            wait_until(lambda: "kept in memory" in err_path.read_text(), "a heartbeat to fail while the server is down")
            server.start()
            (root / "marks" / "release").touch()
            out, _ = runner.communicate(timeout=DEADLINE * 2)
        finally:
            _reap(runner)
        err = err_path.read_text()
        assert runner.returncode == 0, err
        run_id = json.loads(out)["run_id"]
        with open_store(url) as store:
            records = [r for r in store.records("default") if r.run_id == run_id]
            assert store.check("default").ok
        kinds = [type(r.event) for r in records]
        assert RunCompleted in kinds
        stats = [r.event for r in records if isinstance(r.event, WriterStats)]
        assert len(stats) == 1
        assert stats[0].heartbeats_failed >= 1, stats  # counted, not crashed
        assert "cannot reach the store" in err or "lost the store" in err  # said, and went on
        manifest = json.loads((root / ".runs" / "default" / "cli" / run_id / "manifest.json").read_text())
        assert manifest["status"] == "succeeded"
