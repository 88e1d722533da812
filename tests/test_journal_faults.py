"""Faults of the machine: the OS refuses a write or a read. A clear error, nothing acknowledged lost.

A full disk is a small tmpfs and a read-only journal a read-only bind mount, each mounted in
a private mount namespace (``unshare``, as root) so that nothing outside the test sees it;
permissions are tested from a child that runs as ``nobody`` when the tests run as root.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import DEADLINE, HELPERS, assert_one_error_line, clean_env
from helpers.histories import RunScript, lifecycle, make_run_id, populate

from runjournal.journal import Journal, check, read_records
from runjournal.journal import events as ev
from runjournal.journal import format as fmt
from runjournal.journal.head import SIZE as HEAD_SIZE
from runjournal.journal.writer import HEAD
from runjournal.projections import Projector

SEG1 = fmt.segment_name(1)
RUN = make_run_id(1)
NOBODY = 65534
#: appends one heartbeat to the journal in argv[1]; prints its sequence, or the error it raised
APPEND_ONE = """
import sys
from runjournal.journal import Journal, JournalError, events as ev
try:
    with Journal(sys.argv[1]) as j:
        print(j.append("r", ev.Heartbeat()).seq)
except JournalError as e:
    print(f"{type(e).__name__}: {e}")
    sys.exit(1)
"""

#: writes 1 MiB to argv[1] as a projection file is written; prints the error
WRITE_BIG = """
import sys
from runjournal.journal.fsutil import atomic_write
try:
    atomic_write(sys.argv[1], bytes(1 << 20))
except OSError as e:
    print(f"{e.strerror}: {e.filename}")
"""


def recorded(directory: Path) -> list:
    return list(read_records(str(directory)))


def cli(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "runjournal", "--root", str(root), *args]


def seeded(root: Path) -> tuple[Path, list]:
    """A task journal under ``root`` holding one finished run; its directory and records."""
    directory = Path(populate(root, lifecycle(RUN).items))
    return directory, recorded(directory)


# -- a private mount namespace -----------------------------------------------------------


@functools.cache
def _namespace_problem() -> str | None:
    """Why this machine cannot give a test a private mount namespace (None: it can)."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare(1) or mount(8) is not installed"
    if os.geteuid() != 0:
        return "mounting a tmpfs or a read-only bind mount needs root"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`unshare --mount` failed here: {probe.stderr.strip()}"
    return None


def in_mount_namespace(tmp_path: Path, mounts: list[list[str]], steps: list[list[str]]) -> list[dict]:
    """Mount, then run ``steps`` in a private mount namespace (helpers/mount_ns.py); their results."""
    problem = _namespace_problem()
    if problem:
        pytest.skip(problem)
    plan, results = tmp_path / "plan.json", tmp_path / "results.json"
    plan.write_text(json.dumps({"mounts": mounts, "steps": steps}))
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, str(HELPERS / "mount_ns.py"), str(plan), str(results)],
        capture_output=True, text=True, env=clean_env(), timeout=DEADLINE,
    )
    if done.returncode == 3:
        pytest.skip(f"cannot mount in a private mount namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return json.loads(results.read_text())


# -- a full disk -------------------------------------------------------------------------


def test_a_full_disk_mid_append_gives_a_clear_error_and_loses_nothing(tmp_path):
    disk = tmp_path / "disk"  # a 1 MiB tmpfs; the journal's head alone takes 256 KiB of it
    disk.mkdir()
    journal, projection = disk / ".runs" / "default" / "journal", disk / ".runs" / "default" / ".projection"
    filler, acks = disk / "filler", tmp_path / "acks"
    full, after_cli, freed = tmp_path / "full", tmp_path / "after-cli", tmp_path / "freed"
    results = in_mount_namespace(
        tmp_path,
        [["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)]],
        [
            [sys.executable, str(HELPERS / "full_disk_writer.py"), str(journal), str(filler), "16384", str(acks)],
            ["cp", "-a", str(journal), str(full)],
            cli(disk, "exec", "--", "true"),
            cli(disk, "verify"),
            cli(disk, "tail"),
            cli(disk, "runs"),
            ["ls", "-A", str(projection)],
            ["cp", "-a", str(journal), str(after_cli)],
            ["rm", str(filler)],
            [sys.executable, "-c", APPEND_ONE, str(journal)],
            ["cp", "-a", str(journal), str(freed)],
        ],
    )
    writer, _, exec_, verify, tail, runs, listing, _, _, append, _ = results
    assert [r["returncode"] for r in results] == [0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0], results
    assert writer["stdout"] == (
        f"error JournalWriteFailed: cannot append to {journal}/{SEG1}: No space left on device; "
        "nothing from this append was recorded\n"
    )
    acked = [tuple(map(int, line.split())) for line in acks.read_text().splitlines()]
    assert len(acked) > 50
    # every acknowledged event is there once, in order, and nothing half-written is left behind
    assert [(r.seq, r.event.index) for r in recorded(full)] == acked
    assert check(str(full)).ok
    # the CLI: a writer fails with one line and writes nothing; readers read what is there
    line = assert_one_error_line(exec_["stderr"])
    assert re.fullmatch(rf"error: cannot save the resume token in {disk}/\.runs/default/\.tokens/\S+: No space left on device; nothing was run", line)
    assert exec_["stdout"] == ""
    assert verify["stdout"].startswith(f"{journal}: ok: {len(acked)} records, 1 runs, 1 segments, ")
    assert len(tail["stdout"].splitlines()) == len(acked)
    # runs only reads, so a full disk does not stop it (the writer's events belong to no started run)
    assert (runs["stdout"], runs["stderr"]) == ("no runs\n", "")
    assert "No such file or directory" in listing["stderr"]  # no reader made a .projection/ on the full disk
    assert recorded(after_cli) == recorded(full)
    # with room again, the same journal takes the next append
    assert append["stdout"] == f"{len(acked) + 1}\n"
    assert [r.seq for r in recorded(freed)] == list(range(1, len(acked) + 2))
    assert check(str(freed)).ok


def test_a_disk_that_fills_during_a_run_fails_the_command_and_keeps_what_was_recorded(tmp_path):
    # the stage itself fills the disk, then prints more than the segment's last page holds:
    # what the runner journals after that cannot be written; it keeps the events and retries
    # with each one, and at the end says how many were never recorded
    disk = tmp_path / "disk"
    disk.mkdir()
    journal, during = disk / ".runs" / "default" / "journal", tmp_path / "during"
    stage = f"head -c 4000000 /dev/zero > {disk / 'filler'}; seq 1 20000"
    results = in_mount_namespace(
        tmp_path,
        [["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)]],
        [
            cli(disk, "exec", "--", "sh", "-c", stage),
            ["cp", "-a", str(journal), str(during)],
            ["rm", str(disk / "filler")],
            cli(disk, "verify"),
            cli(disk, "runs", "--format", "json"),
        ],
    )
    exec_, _, _, verify, runs = results
    assert exec_["returncode"] == 1, exec_
    line = assert_one_error_line(exec_["stderr"], "could not be recorded", "No space left on device")
    assert re.fullmatch(r"error: run \S+ succeeded, but \d+ of its event\(s\) could not be recorded \(.*\); the journal shows the run unfinished", line)
    assert "warning: cannot append to " in exec_["stdout"]  # said when the first append failed, not only at the end
    records = recorded(during)
    assert isinstance(records[0].event, ev.RunStarted) and check(str(during)).ok
    assert not any(isinstance(r.event, ev.RunCompleted) for r in records)
    # nothing recorded was lost; with room again the run is there, unfinished
    assert verify["returncode"] == 0, verify
    [run] = json.loads(runs["stdout"])
    assert run["status"] in ("in_progress", "queued")


def test_a_new_journal_on_a_nearly_full_disk_is_a_clear_error_not_a_crash(tmp_path):
    # the head is written through an mmap: without its blocks reserved first, the first store
    # into it on a full disk killed the writer with SIGBUS
    disk = tmp_path / "disk"  # smaller than the head
    disk.mkdir()
    journal, sparse = disk / ".runs" / "default" / "journal", disk / "sparse"
    results = in_mount_namespace(
        tmp_path,
        [["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(disk)]],
        [
            [sys.executable, "-c", APPEND_ONE, str(journal)],
            cli(disk, "exec", "--", "true"),
            ["ls", "-A", str(journal)],
            [sys.executable, "-c", WRITE_BIG, str(disk / "big.json")],
            ["ls", "-A", str(disk)],
            # a head left without its blocks (by an older runjournal): they are reserved under the lock
            ["mkdir", str(sparse)],
            ["truncate", "-s", str(HEAD_SIZE), str(sparse / HEAD)],
            [sys.executable, "-c", APPEND_ONE, str(sparse)],
        ],
    )
    append, exec_, listing, projection, disk_listing, _, _, sparse_append = results
    message = f"cannot open journal {journal} for writing: No space left on device"
    assert (append["returncode"], append["stdout"], append["stderr"]) == (1, f"JournalWriteFailed: {message}\n", "")
    assert exec_["returncode"] == 1
    assert assert_one_error_line(exec_["stderr"]) == f"error: {message}"
    assert listing["stdout"] == ""  # nothing was recorded, and nothing is left to take up room
    # a projection file that does not fit: the error names the file, and no temp file is left
    assert projection["stdout"] == f"No space left on device: {disk / 'big.json'}\n"
    assert disk_listing["stdout"].split() == [".runs"]
    assert (sparse_append["returncode"], sparse_append["stdout"]) == (
        1, f"JournalWriteFailed: cannot prepare journal {sparse} for writing: No space left on device; nothing was recorded\n"
    )


# -- a read-only journal ---------------------------------------------------------------


def read_only(directory: Path) -> list[list[str]]:
    return [["mount", "--bind", str(directory), str(directory)], ["mount", "-o", "remount,bind,ro", str(directory)]]


def test_a_read_only_journal_refuses_writers_clearly_and_still_reads(tmp_path):
    journal, before = seeded(tmp_path)
    results = in_mount_namespace(
        tmp_path,
        read_only(journal),
        [
            [sys.executable, "-c", APPEND_ONE, str(journal)],
            cli(tmp_path, "exec", "--", "true"),
            cli(tmp_path, "verify"),
            cli(tmp_path, "tail"),
            cli(tmp_path, "runs", "--format", "json"),
            cli(tmp_path, "show", RUN),
        ],
    )
    append, exec_, verify, tail, runs, show = results
    message = f"cannot open journal {journal} for writing: Read-only file system"
    assert (append["returncode"], append["stdout"]) == (1, f"JournalWriteFailed: {message}\n")
    assert exec_["returncode"] == 1
    assert assert_one_error_line(exec_["stderr"]) == f"error: {message}"
    # readers need no write access to the journal (the projections live outside it)
    assert [r["returncode"] for r in (verify, tail, runs, show)] == [0, 0, 0, 0], results
    assert verify["stdout"].startswith(f"{journal}: ok: {len(before)} records, 1 runs, 1 segments, ")
    assert len(tail["stdout"].splitlines()) == len(before)
    assert [(r["run_id"], r["status"]) for r in json.loads(runs["stdout"])] == [(RUN, "succeeded")]
    assert json.loads(show["stdout"])["status"] == "succeeded"
    assert recorded(journal) == before
    assert check(str(journal)).ok


@pytest.mark.parametrize("lock_file", [True, False], ids=["with-lock", "without-lock"])
def test_verify_of_a_read_only_journal_with_a_torn_tail_reports_it_and_creates_nothing(tmp_path, lock_file: bool):
    journal, before = seeded(tmp_path)
    segment = journal / fmt.segment_name(1)
    with open(segment, "ab") as f:
        f.write(fmt.encode_frame(b"\x95" + b"x" * 40, True))  # a batch left unfinished by a crash
    if not lock_file:
        (journal / "lock").unlink()  # a journal copied without it: verify must not make one
    listing = sorted(os.listdir(journal))
    writable = subprocess.run(cli(tmp_path, "verify", "--format", "json"), capture_output=True, text=True, env=clean_env(), timeout=DEADLINE)
    (verify,) = in_mount_namespace(tmp_path, read_only(journal), [cli(tmp_path, "verify", "--format", "json")])
    assert (verify["returncode"], verify["stderr"]) == (1, "")
    assert json.loads(verify["stdout"]) == json.loads(writable.stdout)
    assert [p["kind"] for p in json.loads(verify["stdout"])["problems"]] == ["torn-tail"]
    assert sorted(os.listdir(journal)) == listing
    assert recorded(journal) == before


@pytest.mark.parametrize("projected", [False, True], ids=["never-projected", "checkpoint-behind"])
def test_every_read_command_works_on_a_read_only_root_and_shows_a_silent_run_stale(tmp_path, projected: bool):
    root = tmp_path / "root"
    journal, _ = seeded(root)
    silent = RunScript(make_run_id(2), stages=2).stage(1)  # started in 2025, silent since: stale now
    if projected:  # as a root in use has them, then more appended that no projector has seen
        Projector(str(root / ".runs"), str(root / "out"), "default").catch_up()
    populate(root, silent.items)
    before = recorded(journal)
    results = in_mount_namespace(
        tmp_path,
        read_only(root),
        [
            cli(root, "exec", "--", "true"),
            cli(root, "runs", "--format", "json"),
            cli(root, "show", silent.run_id),
            cli(root, "status", silent.run_id, "--format", "json"),
            cli(root, "status", RUN),
            cli(root, "replay", silent.run_id),
            cli(root, "tail"),
            cli(root, "export"),
            cli(root, "verify"),
        ],
    )
    exec_, runs, show, status, finished, replay, tail, export, verify = results
    assert exec_["returncode"] == 1
    assert assert_one_error_line(exec_["stderr"]) == f"error: cannot open journal {journal} for writing: Read-only file system"
    # status of a stale run is 1 (its runner is presumed dead); everything else succeeds
    assert [r["returncode"] for r in results[1:]] == [0, 0, 1, 0, 0, 0, 0, 0], results
    assert all(r["stderr"] == "" for r in results[1:]), results
    assert {(r["run_id"], r["status"], r["stale"]) for r in json.loads(runs["stdout"])} == {(RUN, "succeeded", False), (silent.run_id, "in_progress", True)}
    assert json.loads(show["stdout"])["status_detail"].startswith("stale: no heartbeat since ")
    assert (json.loads(status["stdout"])["stale"], json.loads(status["stdout"])["exit_code"]) == (True, 1)
    assert finished["stdout"].splitlines()[3].startswith("status:    succeeded")
    assert len(tail["stdout"].splitlines()) == len(export["stdout"].splitlines()) == len(before)
    assert recorded(journal) == before  # the staleness was shown, not recorded


# -- permissions -------------------------------------------------------------------------


def _ways_to_run_as_nobody() -> list[tuple[list[str], dict]]:
    """(argv prefix, subprocess arguments) that run a child as ``nobody``: subprocess's own
    ``user=``, else setpriv(1), which keeps root's capabilities until the exec, so an
    interpreter under a private directory (such as /root/.pyenv) can still be started."""
    ways: list[tuple[list[str], dict]] = [([], {"user": NOBODY, "group": NOBODY, "extra_groups": []})]
    if shutil.which("setpriv"):
        ways.append((["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"], {}))
    return ways


@functools.cache
def other_user() -> tuple[list[str], dict] | str:
    """How to run a child as a user who owns none of the test's files, or why it cannot be done.

    As root that is ``nobody`` (root ignores file modes); otherwise the tests' own user,
    for whom the modes the tests set are enough."""
    if os.geteuid() != 0:
        return [], {}
    problems = []
    for prefix, kwargs in _ways_to_run_as_nobody():
        try:
            done = subprocess.run([*prefix, sys.executable, "-c", "import runjournal.cli.main"], capture_output=True, text=True, env=clean_env(), cwd="/", **kwargs)
        except OSError as e:
            problems.append(str(e))
            continue
        if done.returncode == 0:
            return prefix, kwargs
        problems.append(done.stderr.strip()[-200:])
    return f"cannot run this Python and project as user {NOBODY}: {'; '.join(problems)}"


@pytest.fixture
def open_root():
    """A root directory the other user can reach (pytest's tmp_path is private to its owner)."""
    if isinstance(other_user(), str):
        pytest.skip(other_user())
    root = Path(tempfile.mkdtemp(prefix="runjournal-faults-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for path, dirs, _ in os.walk(root):
            for d in dirs:
                os.chmod(os.path.join(path, d), 0o755)
        shutil.rmtree(root)


def run_as_other(*argv: str) -> subprocess.CompletedProcess:
    prefix, kwargs = other_user()
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, env=clean_env(), cwd="/", timeout=DEADLINE, **kwargs)


def test_a_journal_the_user_cannot_write_refuses_writers_clearly_and_still_reads(open_root):
    journal, before = seeded(open_root)
    for name in os.listdir(journal):
        (journal / name).chmod(0o444)
    journal.chmod(0o555)
    append = run_as_other(sys.executable, "-c", APPEND_ONE, str(journal))
    exec_ = run_as_other(*cli(open_root, "exec", "--", "true"))
    verify = run_as_other(*cli(open_root, "verify"))
    tail = run_as_other(*cli(open_root, "tail"))
    message = f"cannot open journal {journal} for writing: Permission denied"
    assert (append.returncode, append.stdout) == (1, f"JournalWriteFailed: {message}\n")
    assert exec_.returncode == 1
    assert assert_one_error_line(exec_.stderr) == f"error: {message}"
    assert verify.returncode == 0 and verify.stdout.startswith(f"{journal}: ok: {len(before)} records, "), verify
    assert tail.returncode == 0 and len(tail.stdout.splitlines()) == len(before), tail
    assert recorded(journal) == before


def test_an_unreadable_segment_is_a_clear_error_for_readers(open_root):
    journal, before = seeded(open_root)
    segment = journal / SEG1
    segment.chmod(0)
    try:
        done = [run_as_other(*cli(open_root, command)) for command in ("verify", "tail", "export")]
    finally:
        segment.chmod(0o644)
    for d in done:
        assert (d.returncode, d.stdout) == (1, ""), d
        assert assert_one_error_line(d.stderr) == f"error: Permission denied: {segment}"
    assert recorded(journal) == before
    assert check(str(journal)).ok


# -- a file size limit -------------------------------------------------------------------


def test_file_size_limit_mid_append_gives_a_clear_error_and_loses_nothing(tmp_path):
    directory = tmp_path / "journal"
    acks = tmp_path / "acks"
    limit = 20_000  # the segment reaches it after about 130 records, mid-record
    out = subprocess.run(
        [sys.executable, str(HELPERS / "fsize_writer.py"), str(directory), str(limit), str(acks)],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        f"error JournalWriteFailed: cannot append to {directory}/{SEG1}: File too large; nothing from this append was recorded\n"
    )
    acked = [tuple(map(int, line.split())) for line in acks.read_text().splitlines()]
    assert len(acked) > 50
    records = list(read_records(str(directory)))
    # every acknowledged event is there, in order, and nothing half-written is left behind
    assert [(r.seq, r.event.index) for r in records] == acked
    assert check(str(directory)).ok
    # without the limit the same journal takes the next append
    with Journal(str(directory)) as journal:
        rec = journal.append("r", ev.Heartbeat())
    assert rec.seq == len(acked) + 1 and rec.run_seq == len(acked) + 1
    assert check(str(directory)).ok


SPILL_OVER_LIMIT = """
import os, resource, sys
from runjournal.journal import spill, events as ev
d = sys.argv[1]
os.makedirs(d)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    spill.write(d, "01795726964628116759-17522-000001.rjp", spill.encode([("r", ev.OutputChunk(index=1, stream="stdout", data=b"y" * 10000), 1)]))
except OSError as e:
    print("refused", e.errno)
print(" ".join(sorted(os.listdir(os.path.join(d, "pending")))) or "empty")
"""


def test_a_spill_that_cannot_be_written_leaves_no_temp_file(tmp_path):
    import errno

    done = subprocess.run([sys.executable, "-c", SPILL_OVER_LIMIT, str(tmp_path / "journal")], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert (done.returncode, done.stdout) == (0, f"refused {errno.EFBIG}\nempty\n"), done.stderr
