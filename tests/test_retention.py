"""Retention: archive ended runs out of the live journal, read them back, prune them; a killed
archiver loses nothing and leaves nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from helpers import DEADLINE, HELPERS, clean_env, pg
from helpers.histories import SECOND, T0, RunScript, make_run_id
from helpers.invoke import invoke  # noqa: F401 - a fixture
from helpers.retention import ended_run, task_files
from runjournal.journal import Journal, archive, check, open_store, read_records
from runjournal.journal import events as ev
from runjournal.projections import Projector

SEGMENT = 1500
TASK = "default"


def build(root: Path, runs: int = 12) -> Path:
    """``runs`` runs one after another (every third failed), in small segments, then one run
    left open: the early segments hold ended runs only."""
    d = root / ".runs" / TASK / "journal"
    with Journal(str(d), durability="none", segment_bytes=SEGMENT) as j:
        for n in range(runs):
            for item in ended_run(n, fail=n % 3 == 2):
                j.append_batch([item])
        open_run = RunScript(make_run_id(runs), start_ts=T0 + runs * 600 * SECOND, stages=2).start_stage(1)
        for item in open_run.items:
            j.append_batch([item])
    return d


def every_seq(d: Path) -> list[int]:
    """Every sequence held, live and archived (a segment in both counts twice)."""
    archived = [r.seq for r in archive.records(str(d))]
    return sorted(archived + [r.seq for r in read_records(str(d))])


def test_archive_moves_ended_runs_and_the_files_rebuild_the_same(tmp_path: Path, invoke):
    d = build(tmp_path)
    assert invoke("project", "--rebuild")[0] == 0
    before = task_files(tmp_path)
    seqs = [r.seq for r in read_records(str(d))]

    code, out, err = invoke("archive", "--keep-last", "2", "--format", "json")
    assert code == 0, err
    [doc] = json.loads(out)
    # 12 ended runs and an open one (the pipeline's newest, so the failed run 11 is not kept
    # for resume): all but the newest 2 ended ones
    assert doc["runs"] == [make_run_id(n) for n in range(10)], doc
    assert doc["units"] and (d / "archive" / (doc["units"][0] + ".gz")).is_file()
    assert not (d / doc["units"][0]).exists()
    assert doc["stored_bytes"] < doc["bytes"]

    report = check(str(d))
    assert report.ok, report.problems
    assert report.archived == len(doc["units"])
    assert every_seq(d) == seqs + [seqs[-1] + 1]  # the runs_archived record is the one more

    assert invoke("project", "--rebuild")[0] == 0
    assert task_files(tmp_path) == before

    archived_run = doc["runs"][0]
    code, out, _ = invoke("runs", "--archived", "--format", "json")
    assert code == 0 and archived_run in [r["run_id"] for r in json.loads(out)]
    code, out, _ = invoke("runs", "--format", "json")
    assert archived_run not in [r["run_id"] for r in json.loads(out)]
    code, out, err = invoke("export", "--run", archived_run)
    assert code == 0, err
    assert [json.loads(line)["event"]["type"] for line in out.splitlines()][:2] == ["run_started", "stage_started"]
    code, out, err = invoke("replay", archived_run, "--format", "json")
    assert code == 0, err
    code, out, err = invoke("replay", archived_run, "--at", "+1s")  # a point after its start, read from the archive
    assert code == 0 and json.loads(out)["run_id"] == archived_run, err
    code, out, err = invoke("show", archived_run)
    assert code == 0 and json.loads(out)["run_id"] == archived_run


def test_prune_deletes_archived_segments_and_dry_run_changes_nothing(tmp_path: Path, invoke):
    d = build(tmp_path)
    assert invoke("project", "--rebuild")[0] == 0
    assert invoke("archive", "--keep-last", "2")[0] == 0
    files = sorted(os.listdir(d / "archive"))
    code, out, err = invoke("prune", "--keep-last", "4", "--dry-run", "--format", "json")
    assert code == 0, err
    [doc] = json.loads(out)
    assert doc["dry_run"] and doc["units"] and doc["bytes"] > 0
    assert sorted(os.listdir(d / "archive")) == files
    copies = {name: (d / "archive" / (name + ".gz")).read_bytes() for name in doc["units"]}
    code, out, err = invoke("prune", "--keep-last", "4", "--format", "json")
    assert code == 0, err
    [done] = json.loads(out)
    assert done["units"] == doc["units"]
    assert not any((d / "archive" / (s + ".gz")).exists() for s in done["units"])
    assert check(str(d)).ok
    # a prune killed after marking its entries and before deleting: the next command deletes them
    for name, data in copies.items():
        (d / "archive" / (name + ".gz")).write_bytes(data)
    assert invoke("archive", "--keep-last", "2")[0] == 0
    assert not any((d / "archive" / (s + ".gz")).exists() for s in done["units"])
    for run_id in done["runs"]:
        assert not (tmp_path / ".runs" / TASK / "cli" / run_id).exists()
    code, out, _ = invoke("runs", "--archived", "--format", "json")
    assert not set(done["runs"]) & {r["run_id"] for r in json.loads(out)}


def test_archive_needs_a_selector(tmp_path: Path, invoke):
    build(tmp_path, runs=2)
    code, _, err = invoke("archive")
    assert code == 2 and "--keep-last" in err


# -- a killed archiver ------------------------------------------------------------------------

#: what both killed archivers begin with: ``counting(fn)`` is ``fn`` with a step counted
#: before it (and after it, with ``after``), the process SIGKILLed at step ``argv[1]``
COUNTING = """
import os, signal, sys
from runjournal.cli.main import main
steps = [0]
kill_at = int(sys.argv[1])
def step():
    steps[0] += 1
    if steps[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
def counting(fn, after=True):
    def wrapped(*a, **k):
        step()
        result = fn(*a, **k)
        if after:
            step()
        return result
    return wrapped
"""

ARCHIVER = COUNTING + """
from runjournal.journal import archive
for name in ("store_copy", "write_manifest", "recover"):
    setattr(archive, name, counting(getattr(archive, name)))
os.unlink = counting(os.unlink)
os.rename = counting(os.rename)
main(["--root", sys.argv[2], "archive", "--keep-last", "1"])
"""


#: kills drawn per run: a few in the default suite (derandomized in CI), many under the stress profile
KILLS = 300 if os.environ.get("HYPOTHESIS_PROFILE") == "stress" else 8


@settings(max_examples=KILLS, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kill_at=st.integers(1, 90))
def test_a_sigkilled_archiver_leaves_each_record_once_and_the_next_finishes(tmp_path_factory, kill_at):
    root = tmp_path_factory.mktemp("killed")
    d = build(root)
    writers = [  # one beating in the open run, one running new runs to their end
        subprocess.Popen([sys.executable, "-c", WRITER, str(d), make_run_id(12)], stdout=subprocess.PIPE, env=clean_env(), text=True),
        subprocess.Popen([sys.executable, "-c", RUNS_WRITER, str(d), str(HELPERS.parent)], stdout=subprocess.PIPE, env=clean_env(), text=True),
    ]
    proc = subprocess.run([sys.executable, "-c", ARCHIVER, str(kill_at), str(root)], env=clean_env(), capture_output=True, timeout=DEADLINE)
    acked = [int(line) for w in writers for line in w.communicate(timeout=DEADLINE)[0].split()]
    assert [w.returncode for w in writers] == [0, 0]
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr

    # every record is where a reader looks, once (a segment caught mid-move is read live)
    held = every_seq_once(d)
    assert set(acked) <= set(held)
    assert held == list(range(1, len(held) + 1))

    # the next archive finishes (or rolls back) what the killed one left
    subprocess.run([sys.executable, "-m", "runjournal", "--root", str(root), "archive", "--keep-last", "1"], env=clean_env(), check=True, timeout=DEADLINE)
    archived = [r.seq for r in archive.records(str(d))]
    live = [r.seq for r in read_records(str(d))]
    assert not set(archived) & set(live)
    assert sorted(archived + live) == list(range(1, len(archived) + len(live) + 1))
    report = check(str(d))
    assert report.ok and not report.archive_unfinished, report.problems

    # the projections rebuild as from the whole history, never archived: every record copied
    # verbatim into a journal of its own and rebuilt there
    whole = tmp_path_factory.mktemp("whole")
    with Journal(str(whole / ".runs" / TASK / "journal"), durability="none") as j:
        j.append_records([*archive.records(str(d)), *read_records(str(d))])
    for place in (root, whole):
        projector = Projector(str(place / ".runs"), str(place / "out"), TASK)
        projector.rebuild()
        projector.store.close()
    assert task_files(root) == task_files(whole)


def every_seq_once(d: Path) -> list[int]:
    """What a reader of the whole history gets: the archive's segments whose live copy is gone,
    then the live journal."""
    live_names = {n for n in os.listdir(d) if n.startswith("seg-")}
    out = []
    for entry in archive.manifest(str(d)).segments:
        if entry.segment in live_names:
            continue
        fd = archive.open_archived(str(d), entry.segment)
        os.close(fd)
        out.extend(range(entry.base, entry.last + 1))
    return sorted(out + [r.seq for r in read_records(str(d))])


WRITER = """
import sys, time
from runjournal.journal import Journal, events as ev
with Journal(sys.argv[1], durability="none") as j:
    for i in range(60):
        rec = j.append(sys.argv[2], ev.Heartbeat())  # the run build() left open
        print(rec.seq, flush=True)
        time.sleep(0.002)
"""


# -- the PostgreSQL store -----------------------------------------------------------------------


@pytest.fixture
def pg_url(tmp_path: Path):
    pg.server_url()  # skips (fails under CI) without a server
    yield pg.store_url(str(tmp_path))
    pg.drop_schema(str(tmp_path))


def build_in(store, runs: int = 12) -> None:
    """What ``build`` writes, through the store's API."""
    for n in range(runs):
        for item in ended_run(n, fail=n % 3 == 2):
            store.append_batch(TASK, [item])
    for item in RunScript(make_run_id(runs), start_ts=T0 + runs * 600 * SECOND, stages=2).start_stage(1).items:
        store.append_batch(TASK, [item])


def test_archive_and_prune_on_the_postgresql_store_as_on_files(tmp_path: Path, invoke, pg_url: str):
    with open_store(pg_url) as store:
        build_in(store)
        seqs = [r.seq for r in store.records(TASK)]

    def cli(*args):
        return invoke("--store", pg_url, *args)

    assert cli("project", "--rebuild")[0] == 0
    before = task_files(tmp_path)
    code, out, err = cli("archive", "--keep-last", "2", "--format", "json")
    assert code == 0, err
    [doc] = json.loads(out)
    assert doc["runs"] == [make_run_id(n) for n in range(10)], doc
    assert doc["units"] and doc["stored_bytes"] < doc["bytes"]
    with open_store(pg_url) as store:
        archived = [r.seq for r in store.archived_records(TASK, {*doc["runs"], ""})]
        live = [r.seq for r in store.records(TASK)]
        assert archived and sorted(archived + live) == seqs + [seqs[-1] + 1]  # each once; the runs_archived record the one more
        assert store.archived_runs(TASK) == set(doc["runs"])
    code, out, err = cli("verify", "--format", "json")
    assert code == 0, out + err

    assert cli("project", "--rebuild")[0] == 0
    assert task_files(tmp_path) == before

    run_id = doc["runs"][0]
    code, out, _ = cli("runs", "--archived", "--format", "json")
    assert code == 0 and run_id in [r["run_id"] for r in json.loads(out)]
    code, out, err = cli("export", "--run", run_id)
    assert code == 0 and json.loads(out.splitlines()[0])["event"]["type"] == "run_started", err
    assert cli("replay", run_id, "--format", "json")[0] == 0
    code, out, _ = cli("show", run_id)
    assert code == 0 and json.loads(out)["run_id"] == run_id

    # one unit (16 MiB) holds the ten runs: a prune of some of them deletes nothing, of all of them the unit
    code, out, err = cli("prune", "--keep-last", "4", "--format", "json")
    assert code == 0 and json.loads(out)[0]["runs"] == [], err
    code, out, err = cli("prune", "--keep-last", "0", "--dry-run", "--format", "json")
    assert code == 0, err
    [dry] = json.loads(out)
    assert dry["dry_run"] and dry["runs"] == doc["runs"] and dry["bytes"] > 0
    code, out, err = cli("prune", "--keep-last", "0", "--format", "json")
    assert code == 0, err
    [done] = json.loads(out)
    assert done["runs"] == dry["runs"] and done["units"] == dry["units"]
    code, out, _ = cli("runs", "--archived", "--format", "json")
    assert not set(done["runs"]) & {r["run_id"] for r in json.loads(out)}
    for run_id in done["runs"]:
        assert not (tmp_path / ".runs" / TASK / "cli" / run_id).exists()
    code, out, err = cli("verify", "--format", "json")
    assert code == 0, out + err


PG_ARCHIVER = COUNTING + """
import zlib
from runjournal.journal import postgres
postgres.ARCHIVE_UNIT_BYTES = 1500  # many units
postgres.PostgresStore._archive_lock = counting(postgres.PostgresStore._archive_lock, after=False)  # a unit begins
packing = counting(zlib.compress, after=False)
postgres.zlib = type("Z", (), {"compress": staticmethod(packing), "decompressobj": staticmethod(zlib.decompressobj), "error": zlib.error})
postgres.PostgresStore._in_transaction = counting(postgres.PostgresStore._in_transaction, after=False)  # before each, and after the last
main(["--root", sys.argv[2], "--store", sys.argv[3], "archive", "--keep-last", "1"])
"""

RUNS_WRITER = """
import sys
sys.path.insert(0, sys.argv[2])
from helpers.histories import SECOND, T0, RunScript, make_run_id
from runjournal.journal import Journal
with Journal(sys.argv[1], durability="none") as j:
    for n in range(20, 24):
        run = RunScript(make_run_id(n), start_ts=T0 + n * 600 * SECOND, stages=1)
        for item in run.stage(1, lines=2).complete().items:
            print(j.append_batch([item])[0].seq, flush=True)
"""

PG_WRITER = """
import sys, time
from runjournal.journal import open_store, events as ev
with open_store(sys.argv[1], durability="none") as store:
    for i in range(40):
        rec = store.append("default", sys.argv[2], ev.Heartbeat())  # the run build_in() left open
        print(rec.seq, flush=True)
        time.sleep(0.002)
"""


@settings(max_examples=KILLS, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kill_at=st.integers(1, 24))  # 23 steps archive this history
def test_a_sigkilled_archiver_on_the_postgresql_store_leaves_each_record_once(tmp_path_factory, kill_at):
    pg.server_url()
    root = tmp_path_factory.mktemp("pgkilled")
    url = pg.store_url(str(root))
    try:
        with open_store(url) as store:
            build_in(store)
        writer = subprocess.Popen([sys.executable, "-c", PG_WRITER, url, make_run_id(12)], stdout=subprocess.PIPE, env=clean_env(), text=True)
        proc = subprocess.run([sys.executable, "-c", PG_ARCHIVER, str(kill_at), str(root), url], env=clean_env(), capture_output=True, timeout=DEADLINE)
        acked = [int(line) for line in writer.communicate(timeout=DEADLINE)[0].split()]
        assert writer.returncode == 0
        # this history takes 23 counted steps to archive: every point up to 20 is a kill
        assert proc.returncode == -signal.SIGKILL if kill_at <= 20 else proc.returncode in (0, -signal.SIGKILL), proc.stderr

        def held() -> tuple[list[int], list[int]]:
            with open_store(url) as store:
                runs = {rec.run_id for rec in store.records(TASK)} | {make_run_id(n) for n in range(13)} | {""}
                return [r.seq for r in store.archived_records(TASK, runs)], [r.seq for r in store.records(TASK)]

        archived, live = held()
        assert not set(archived) & set(live)
        assert sorted(archived + live) == list(range(1, len(archived) + len(live) + 1))
        assert set(acked) <= set(archived + live)

        subprocess.run([sys.executable, "-m", "runjournal", "--root", str(root), "--store", url, "archive", "--keep-last", "1"], env=clean_env(), check=True, timeout=DEADLINE)
        archived, live = held()
        assert archived and not set(archived) & set(live)
        assert sorted(archived + live) == list(range(1, len(archived) + len(live) + 1))
        with open_store(url) as store:
            report = store.check(TASK)
            assert report.ok, report.problems
            # the projections rebuild as from the whole history copied into a journal never archived
            runs = {r.run_id for r in store.records(TASK)} | {make_run_id(n) for n in range(13)} | {""}
            whole = root / "whole"
            with Journal(str(whole / ".runs" / TASK / "journal"), durability="none") as j:
                j.append_records([*store.archived_records(TASK, runs), *store.records(TASK)])
            Projector(str(root / ".runs"), str(root / "out"), TASK, store=store).rebuild()
        projector = Projector(str(whole / ".runs"), str(whole / "out"), TASK)
        projector.rebuild()
        projector.store.close()
        assert task_files(root) == task_files(whole)
    finally:
        pg.drop_schema(str(root))


def test_a_snapshot_reads_back_compressed_or_as_the_first_version_wrote_it_and_no_larger_than_its_limit(monkeypatch):
    import msgspec
    import zlib

    from runjournal.projections import state as pstate

    plain = msgspec.msgpack.encode(pstate.Snapshot({}, 5, ["x"]))
    assert pstate.read_snapshot(plain) == pstate.read_snapshot(zlib.compress(plain)) == pstate.Snapshot({}, 5, ["x"])
    monkeypatch.setattr(pstate, "SNAPSHOT_MAX_BYTES", 1000)
    for hostile in (zlib.compress(msgspec.msgpack.encode(pstate.Snapshot({}, 0, ["a" * 2000]))), b"x not zlib"):
        with pytest.raises(msgspec.DecodeError):
            pstate.read_snapshot(hostile)


# -- what a lagging projector, a forger and a second archiver meet ---------------------------------


def test_a_projector_behind_an_archive_reads_what_moved_and_ends_as_a_rebuild(tmp_path: Path, invoke):
    """Its checkpoint is in the middle of a run whose records are then archived: the next
    catch-up reads them from the archive, so the run's files are final and the same as a rebuild's."""
    d = tmp_path / ".runs" / TASK / "journal"
    runs = [ended_run(n) for n in range(6)]
    cut = len(runs[0]) // 2
    with Journal(str(d), durability="none", segment_bytes=SEGMENT) as j:
        for item in runs[0][:cut]:
            j.append_batch([item])
        assert invoke("project")[0] == 0  # run 0 half-way in the checkpoint
        for item in [*runs[0][cut:], *(it for items in runs[1:] for it in items)]:
            j.append_batch([item])
    code, out, err = invoke("archive", "--keep-last", "1", "--format", "json")
    assert code == 0 and make_run_id(0) in json.loads(out)[0]["runs"], err
    assert invoke("project")[0] == 0
    manifest = tmp_path / ".runs" / TASK / "cli" / make_run_id(0) / "manifest.json"
    assert json.loads(manifest.read_text())["status"] == "succeeded"
    caught_up = task_files(tmp_path)
    assert invoke("project", "--rebuild")[0] == 0
    assert task_files(tmp_path) == caught_up


def test_a_forged_runs_archived_record_deletes_nothing_outside_and_a_bad_one_is_one_line(tmp_path: Path, invoke):
    import msgspec
    import zlib

    from runjournal.projections import retention
    from runjournal.projections import state as pstate
    from runjournal.projections.render import Paths

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("mine")
    d = build(tmp_path, runs=3)
    assert invoke("project", "--rebuild")[0] == 0
    bad_id = "../../../victim"  # from .runs/default/cli/: the victim directory
    forged_run = pstate.Run(bad_id, TASK, "p", "P", T0, status="succeeded", completed_ts=T0 + 1)
    forged = pstate.Snapshot({bad_id: pstate.ArchivedRun(forged_run, [], pstate.WriterTotals())}, T0, [])
    with Journal(str(d), durability="none") as j:
        j.record(ev.RunsArchived(runs=(bad_id,), state=zlib.compress(msgspec.msgpack.encode(forged))))
    assert invoke("project")[0] == 0
    code, out, err = invoke("prune", "--keep-last", "0", "--format", "json")
    assert code == 0, err
    assert bad_id not in json.loads(out)[0]["runs"]
    assert (victim / "keep").read_text() == "mine"
    retention._remove_run_dirs(Paths(str(tmp_path / ".runs"), str(tmp_path / "out"), TASK), [bad_id])  # the last guard, alone
    assert (victim / "keep").read_text() == "mine"
    code, out, _ = invoke("runs", "--archived", "--format", "json")
    assert bad_id not in {r["run_id"] for r in json.loads(out)}

    with Journal(str(d), durability="none") as j:
        j.record(ev.RunsArchived(runs=(), state=b"x\x9cnot a snapshot"))
    for verb in ("archive", "prune"):
        code, out, err = invoke(verb, "--keep-last", "1")
        assert code != 0 and len(err.strip().splitlines()) == 1 and "runs_archived record of sequence" in err, (verb, err)
    assert (victim / "keep").read_text() == "mine"


def test_an_archive_that_raced_another_changes_nothing(tmp_path: Path, monkeypatch):
    """Two archivers fold the same journal; the second to record would leave the first one's
    runs out of its snapshot: it fails with SequenceConflict and moves nothing."""
    from runjournal.journal import FileStore, SequenceConflict
    from runjournal.projections import retention

    build(tmp_path)
    store = FileStore(str(tmp_path / ".runs"), durability="none")
    real, raced = retention.Fold, []

    def racing(store, task):
        fold = real(store, task)
        if not raced:
            raced.append(None)
            raced[0] = retention.archive(store, task, retention.Selection(keep_last=6))  # the other one, meanwhile
        return fold

    monkeypatch.setattr(retention, "Fold", racing)
    with pytest.raises(SequenceConflict):
        retention.archive(store, TASK, retention.Selection(keep_last=2))
    assert raced[0]["runs"]
    kinds = [type(r.event) for r in store.records(TASK)]
    assert kinds.count(ev.RunsArchived) == 1  # the other's record only
    monkeypatch.setattr(retention, "Fold", real)
    done = retention.archive(store, TASK, retention.Selection(keep_last=2))  # once more: it folds anew
    assert set(raced[0]["runs"]) | set(done["runs"]) <= set(real(store, TASK).state.archived)
    assert check(str(tmp_path / ".runs" / TASK / "journal")).ok
    store.close()


def test_an_archived_copy_that_inflates_past_its_entry_is_refused_not_read(tmp_path: Path, invoke):
    import gzip

    d = build(tmp_path)
    code, out, err = invoke("archive", "--keep-last", "2", "--format", "json")
    assert code == 0, err
    first = json.loads(out)[0]["units"][0]
    (d / "archive" / (first + ".gz")).write_bytes(gzip.compress(b"\0" * (64 << 20)))  # 64 MiB of zeros, 64 KB packed
    code, out, _ = invoke("verify", "--format", "json")
    assert code == 1
    [problem] = [p for p in json.loads(out)["problems"] if p["kind"] == "bad-archive"]
    assert "bytes" in problem["detail"]


def test_an_archived_unit_on_postgresql_that_inflates_past_its_row_is_refused(pg_url: str):
    import psycopg
    import zlib

    from runjournal.journal import CorruptRecord

    with open_store(pg_url) as store:
        build_in(store, runs=4)
        store.record(TASK, ev.RunsArchived(runs=(make_run_id(0),), state=b""))
        [unit] = store.archive(TASK, store.last_seq(TASK), {make_run_id(0)})
        schema = pg_url.rsplit("schema=", 1)[1]
        with psycopg.connect(pg.server_url(), autocommit=True) as conn:
            bomb = zlib.compress(b"\0" * (64 << 20))
            conn.execute(f'UPDATE "{schema}".archive SET data = %s WHERE task = %s', (bomb, TASK))
        with pytest.raises(CorruptRecord, match="refused"):
            list(store.archived_records(TASK, {make_run_id(0)}))
        report = store.check(TASK)
        assert [p.kind for p in report.problems] == ["bad-archive"]
        assert unit.bytes * 4 + (1 << 20) < (64 << 20)  # the limit its row allows: far below what it would inflate to
