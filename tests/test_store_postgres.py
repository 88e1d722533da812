"""The PostgreSQL store beyond the contract suite: the command line against a server, moving
journals between stores, the driver missing, passwords, and a server that goes away.

Needs ``$RUNJOURNAL_TEST_PG`` (helpers/pg.py): skipped without it, failed under CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import DEADLINE, assert_one_error_line, clean_env, pg, wait_until

from runjournal.journal import Item, JournalWriteFailed, open_store
from runjournal.journal import events as ev
from runjournal.journal.errors import StoreUnavailable

RUN = "2025-12-01T09-37-11-576Z-0000000a"


@pytest.fixture
def url(tmp_path: Path):
    """A schema of this test's own on the test server, dropped afterwards."""
    pg.server_url()
    yield pg.store_url(str(tmp_path))
    pg.drop_schema(str(tmp_path))


def cli(root: Path, *args, store: str | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    extra = ["--store", store] if store else []
    return subprocess.run(
        [sys.executable, "-m", "runjournal", "--root", str(root), *extra, *map(str, args)],
        capture_output=True, text=True, cwd=root, env=env or clean_env(), timeout=timeout,
    )  # fmt: skip


def write_config(root: Path, command: str = "echo built") -> None:
    config = {"pipelines": [{"id": "ci", "title": "CI", "stages": [{"kind": "command", "id": "build", "title": "Build", "command": command}]}]}
    (root / "codex.orchestrator.json").write_text(json.dumps(config))


# -- the command line against a server ----------------------------------------------------------


def test_runs_recorded_on_a_server_are_shown_replayed_and_projected_from_another_machine(url: str, tmp_path: Path):
    here, there = tmp_path / "here", tmp_path / "there"
    for root in (here, there):
        root.mkdir()
        write_config(root)
    started = cli(here, "start", "--format", "json", store=url)
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    assert (here / ".runs" / "default" / "cli" / run_id / "manifest.json").exists()  # the runner's own files
    assert not (here / ".runs" / "default" / "journal").exists()  # the journal is on the server

    # another machine: nothing local, everything read from the server
    shown = cli(there, "show", run_id, "--format", "json", store=url)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "succeeded"
    listed = cli(there, "runs", "--format", "json", store=url)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    assert cli(there, "replay", run_id, store=url).returncode == 0
    assert cli(there, "verify", store=url).returncode == 0
    rebuilt = cli(there, "project", "--rebuild", store=url)
    assert rebuilt.returncode == 0, rebuilt.stderr
    mine = json.loads((here / ".runs" / "default" / "cli" / run_id / "manifest.json").read_text())
    theirs = json.loads((there / ".runs" / "default" / "cli" / run_id / "manifest.json").read_text())
    assert theirs == mine


def test_tail_follows_a_server_journal_as_appends_commit(url: str, tmp_path: Path):
    with open_store(url) as store:
        store.append("default", RUN, ev.RunStarted(task_id="default", pipeline_id="p"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runjournal", "--root", str(tmp_path), "--store", url, "tail", "-f", "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )  # fmt: skip
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        reader.start()
        wait_until(lambda: len(lines) >= 1, "the first record")
        with open_store(url) as store:
            for _ in range(3):
                store.append("default", RUN, ev.Heartbeat())
        wait_until(lambda: len(lines) >= 4, "three more records followed")
        assert [json.loads(line)["seq"] for line in lines[:4]] == [1, 2, 3, 4]
    finally:
        proc.terminate()
        proc.communicate(timeout=DEADLINE)


# -- moving history -----------------------------------------------------------------------------


def test_copy_moves_a_file_journal_to_the_server_and_back_with_every_sequence(url: str, tmp_path: Path):
    root = tmp_path / "files"
    root.mkdir()
    write_config(root)
    for _ in range(3):
        assert cli(root, "start").returncode == 0
    # a journal-level record too: a torn tail cut by the next writer
    segment = next((root / ".runs" / "default" / "journal").glob("seg-*.rjl"))
    with open(segment, "ab") as f:
        f.write(b"\x20\x00\x00\x00torn")
    assert cli(root, "verify", "--repair").returncode == 0
    assert cli(root, "exec", "--", "true").returncode == 0

    copied = cli(root, "copy", "--to", url)
    assert copied.returncode == 0, copied.stderr
    assert "compared equal; verified" in copied.stdout
    back = tmp_path / "back"
    back.mkdir()
    returned = cli(back, "copy", "--to", str(back / ".runs"), store=url)
    assert returned.returncode == 0, returned.stderr

    def dump(where: Path, store: str | None = None) -> list[dict]:
        out = cli(where, "tail", "--format", "json", store=store)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    original = dump(root)
    assert any(r["run_id"] == "" for r in original)  # the tail_repaired record
    assert dump(root, url) == original
    assert dump(back) == original
    assert cli(back, "verify").returncode == 0
    assert cli(root, "verify", store=url).returncode == 0

    # again: nothing to copy; and a journal with other records is refused, nothing written
    again = cli(root, "copy", "--to", url)
    assert again.returncode == 0 and "copied 0 record(s)" in again.stdout
    other = tmp_path / "other"
    other.mkdir()
    write_config(other)
    assert cli(other, "start").returncode == 0
    refused = cli(other, "copy", "--to", url)
    assert refused.returncode == 1
    assert_one_error_line(refused.stderr, "holds other records")
    assert dump(root, url) == original


def test_an_interrupted_copy_goes_on_where_it_stopped(url: str, tmp_path: Path):
    source = tmp_path / "runs"
    with open_store(str(source)) as files:
        records = files.append_batch("t", [Item(RUN, ev.Heartbeat()) for _ in range(30)])
    with open_store(url) as server:
        server.append_records("t", records[:12])  # as a copy cut short would leave it
    result = cli(tmp_path, "--runs-dir", str(source), "copy", "--to", url, "--task", "t")
    assert result.returncode == 0, result.stderr
    assert "copied 18 record(s)" in result.stdout and "(12 were there)" in result.stdout
    with open_store(url) as server:
        assert list(server.records("t")) == records


# -- packaging and secrets ---------------------------------------------------------------------


def test_without_the_driver_a_server_store_is_one_clear_line(tmp_path: Path):
    code = "import sys; sys.modules['psycopg'] = None; from runjournal.cli.main import main; main(sys.argv[1:])"
    for args in (["runs"], ["exec", "--", "true"]):
        proc = subprocess.run(
            [sys.executable, "-c", code, "--root", str(tmp_path), "--store", "postgresql://ci:pw@db.example/runs", *args],
            capture_output=True, text=True, env=clean_env(), timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2
        line = assert_one_error_line(proc.stderr, "runjournal[postgres]")
        assert "pw" not in line.replace("pip", "")


def test_no_password_appears_in_output_files_or_the_journal(tmp_path: Path):
    server = pg.server_url()
    secret = "s3cr3t-Pa55word"
    parts = server.split("://", 1)[1]
    user, rest = parts.split("@", 1)
    url = f"postgresql://{user}:{secret}@{rest}{'&' if '?' in rest else '?'}schema={pg.schema_for(str(tmp_path))}"
    try:
        write_config(tmp_path, command="echo $CODEX_ORCHESTRATOR_RUN_ID")
        outputs = []
        for args in (["start"], ["runs"], ["verify"], ["tail"], ["status", "--format", "json"], ["project", "--rebuild"], ["bogus-command"]):
            proc = cli(tmp_path, *args, store=url)
            outputs += [proc.stdout, proc.stderr]
        env = dict(clean_env(), RUNJOURNAL_STORE=url.replace(rest.split("/")[0], "127.0.0.1:1"))  # a server that refuses
        refused = cli(tmp_path, "exec", "--", "true", env=env)
        assert refused.returncode == 1
        assert_one_error_line(refused.stderr, "cannot reach the store", "***")
        outputs += [refused.stdout, refused.stderr]
        assert not [o for o in outputs if secret in o]
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
        with open_store(url) as store:
            assert store.url.count("***") == 1
            for rec in store.records("default"):
                assert secret not in repr(rec)
    finally:
        pg.drop_schema(str(tmp_path))


# -- a server that goes away --------------------------------------------------------------------


def test_a_killed_connection_is_made_again_and_nothing_is_written_twice(url: str):
    import psycopg

    with open_store(url, durability="always") as store:
        store.append("t", RUN, ev.Heartbeat())
        pid = store._conn.info.backend_pid
        with psycopg.connect(pg.server_url(), autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        rec = store.append("t", RUN, ev.Heartbeat())
        assert (rec.seq, rec.run_seq) == (2, 2)
        pid = store._conn.info.backend_pid
        with psycopg.connect(pg.server_url(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert [r.seq for r in store.records("t")] == [1, 2]  # a read makes it again too
        assert store.check("t").ok


def test_an_append_whose_commit_was_not_heard_is_settled_by_looking_it_up(url: str, monkeypatch):
    """The connection dies after the server committed, before the answer came back: the
    store finds the append by its id and does not write it again."""
    with open_store(url) as store:
        store.append("t", RUN, ev.Heartbeat())
        real = store._connection

        calls = {"n": 0}

        class Dying:
            def __init__(self, conn):
                self.conn = conn

            def execute(self, statement, params=()):
                cur = self.conn.execute(statement, params)
                if "append" in str(statement) and calls["n"] == 0:  # the append statements are plain strings
                    calls["n"] += 1
                    self.conn.close()  # committed; the answer is lost with the connection
                    raise store._psycopg.OperationalError("the connection was lost")
                return cur

            def __getattr__(self, name):
                return getattr(self.conn, name)

        monkeypatch.setattr(store, "_connection", lambda: Dying(real()))
        rec = store.append("t", RUN, ev.Heartbeat())
        monkeypatch.undo()
        assert calls["n"] == 1
        assert (rec.seq, rec.run_seq) == (2, 2)
        assert [(r.seq, r.run_seq) for r in store.records("t")] == [(1, 1), (2, 2)]


def test_a_server_that_refuses_connections_is_a_clear_error_and_the_runner_counts_it(tmp_path: Path):
    refused = "postgresql://nobody@127.0.0.1:1/none"
    with open_store(refused, lock_timeout=0.5) as store:
        with pytest.raises(StoreUnavailable, match="cannot reach the store"):
            store.tasks()
        with pytest.raises((StoreUnavailable, JournalWriteFailed)):
            store.append("t", RUN, ev.Heartbeat())
    write_config(tmp_path)
    proc = cli(tmp_path, "start", store=refused)
    assert proc.returncode == 1
    assert_one_error_line(proc.stderr, "cannot reach the store")
    tokens = tmp_path / ".runs" / "default" / ".tokens"
    assert not tokens.exists() or not os.listdir(tokens)  # no run was left behind


def test_a_task_locked_past_the_timeout_is_a_lock_timeout_with_nothing_written(url: str):
    import psycopg

    from runjournal.journal import LockTimeout

    with open_store(url, lock_timeout=0.3) as store:
        store.append("t", RUN, ev.Heartbeat())
        schema = url.split("schema=")[1]
        with psycopg.connect(pg.server_url()) as holder:  # a transaction holding the task's row
            holder.execute(f"SELECT 1 FROM {schema}.tasks WHERE task = 't' FOR UPDATE")
            with pytest.raises(LockTimeout, match="nothing was written"):
                store.append("t", RUN, ev.Heartbeat())
            holder.rollback()
        assert [r.seq for r in store.records("t")] == [1]
        assert store.writer_stats("t").lock_timeouts == 1
        assert store.append("t", RUN, ev.Heartbeat()).seq == 2  # the lock let go: appends go on


# -- what a review found ---------------------------------------------------------------------


def test_an_append_left_in_doubt_and_sent_again_with_expected_sequences_is_recorded_once(url: str):
    """The commit's answer is lost and the server stays away past the lock timeout: the append
    fails in doubt. Sent again (expecting the run where it stood before), its first event is
    found recorded, and the rest is appended after it; nothing twice."""
    with open_store(url, lock_timeout=0.3) as store:
        for _ in range(3):
            store.append("t", RUN, ev.Heartbeat())
        real = store._connection
        state = {"lost": False}

        class AnswerLost:
            def __init__(self, conn):
                self.conn = conn

            def execute(self, statement, params=()):
                cur = self.conn.execute(statement, params)
                if "append" in str(statement) and not state["lost"]:
                    state["lost"] = True
                    self.conn.close()  # committed; then the server is away
                    raise store._psycopg.OperationalError("the connection was lost")
                return cur

            def __getattr__(self, name):
                return getattr(self.conn, name)

        def away():
            if state["lost"]:
                raise StoreUnavailable(f"cannot reach the store {store.url}: away")
            return AnswerLost(real())

        store._connection = away
        first = ev.OutputChunk(index=1, stream="stdout", data=b"first")
        with pytest.raises(JournalWriteFailed, match="may or may not be recorded"):
            store.append("t", RUN, first, expected_seq=3)
        del store._connection  # the server is back
        again = store.append_batch("t", [Item(RUN, first), Item(RUN, ev.Heartbeat())], {RUN: 3})
        assert [(r.seq, r.run_seq) for r in again] == [(4, 4), (5, 5)]
        assert [r.event for r in store.records("t")].count(first) == 1
        assert store.check("t").ok


def test_flush_after_a_killed_connection_makes_it_again(url: str):
    import psycopg

    with open_store(url) as store:
        store.append("t", RUN, ev.Heartbeat())
        with psycopg.connect(pg.server_url(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (store._conn.info.backend_pid,))
        store.flush("t")
        assert store.last_seq("t") == 1


def test_copy_takes_a_task_without_records_and_goes_on_with_the_others(url: str, tmp_path: Path):
    runs = tmp_path / "runs"
    with open_store(str(runs)) as files:
        files.prepare("empty")
        files.append("full", RUN, ev.Heartbeat())
    result = cli(tmp_path, "--runs-dir", str(runs), "copy", "--to", url)
    assert result.returncode == 0, result.stderr
    with open_store(url) as server:
        assert server.tasks() == ["empty", "full"]
        assert server.last_seq("empty") == 0 and server.last_seq("full") == 1


def test_a_password_given_as_a_parameter_is_never_shown(tmp_path: Path):
    url = "postgresql://nobody@127.0.0.1:1/none?password=hunter2&connect_timeout=1"
    with open_store(url, lock_timeout=0.5) as store:
        assert "hunter2" not in store.url
        with pytest.raises(StoreUnavailable) as caught:
            store.tasks()
        assert "hunter2" not in str(caught.value)
    proc = cli(tmp_path, "runs", store=url)
    assert proc.returncode == 1 and "hunter2" not in proc.stderr + proc.stdout


def test_a_read_begun_before_an_archive_reads_what_moved_meanwhile_from_the_archive(url: str, monkeypatch):
    from runjournal.journal import postgres

    monkeypatch.setattr(postgres, "PAGE", 5)  # a read of many pages, the archive between two of them
    other = "2025-12-01T09-37-11-576Z-0000000b"
    with open_store(url, durability="none") as store:
        store.archive_unit_bytes = 100
        for n in range(30):
            store.append("t", RUN, ev.OutputChunk(index=1, stream="stdout", data=b"%02d" % n + b"x" * 40))
        covered = store.record("t", ev.RunsArchived(runs=(RUN,), state=b"")).seq
        store.append("t", other, ev.Heartbeat())
        everything = list(store.records("t"))
        reading = store.records("t")
        begun = [next(reading) for _ in range(7)]
        moved = store.archive("t", covered, {RUN})
        assert len(moved) > 2 and moved[-1].last == 30
        assert begun + list(reading) == everything
        assert [r.seq for r in store.records("t")] == [31, 32]
