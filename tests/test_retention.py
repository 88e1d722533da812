"""Retention: archive ended runs out of the live journal, read them back, prune them; a killed
archiver loses nothing and leaves nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from helpers import DEADLINE, clean_env
from helpers.histories import SECOND, T0, RunScript, make_run_id
from helpers.invoke import invoke  # noqa: F401 - a fixture
from runjournal.journal import Item, Journal, archive, check, read_records

SEGMENT = 1500
TASK = "default"


def ended_run(n: int, fail: bool = False) -> list[Item]:
    run = RunScript(make_run_id(n), start_ts=T0 + n * 600 * SECOND, stages=2)
    run.stage(1, lines=3)
    if fail:
        run.fail_stage(2).fail()
    else:
        run.stage(2, lines=2).complete()
    return run.items


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


def task_files(root: Path) -> dict[str, bytes]:
    return {
        name: (root / path).read_bytes()
        for name, path in (
            ("metrics.json", f".runs/{TASK}/metrics.json"),
            ("summary.json", f".runs/{TASK}/metrics/summary.json"),
            ("state.json", f"out/{TASK}/state.json"),
        )
    }


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

ARCHIVER = """
import os, signal, sys
from runjournal.journal import archive, fsutil
from runjournal.cli.main import main
steps = [0]
kill_at = int(sys.argv[1])
def counting(fn):
    def wrapped(*a, **k):
        steps[0] += 1
        if steps[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        result = fn(*a, **k)
        steps[0] += 1
        if steps[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapped
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
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(d), make_run_id(12)], stdout=subprocess.PIPE, env=clean_env(), text=True
    )
    proc = subprocess.run([sys.executable, "-c", ARCHIVER, str(kill_at), str(root)], env=clean_env(), capture_output=True, timeout=DEADLINE)
    acked = [int(line) for line in writer.communicate(timeout=DEADLINE)[0].split()]
    assert writer.returncode == 0
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
