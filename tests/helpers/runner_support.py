"""Helpers for the runner and run-command tests: configs, the real CLI as a process, run files.

Every run in these tests is a real ``python -m runjournal`` process with real stage processes;
tests synchronise with them through files the stages write (``wait_until``), never sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path


from . import DEADLINE, clean_env, compat_file, wait_until

_validator = None


# -- configs -------------------------------------------------------------------------


def cmd(stage_id: str, command: str, **extra) -> dict:
    """A ``command`` stage."""
    return {"kind": "command", "id": stage_id, "title": extra.pop("title", stage_id), "command": command, **extra}


def sub(stage_id: str, pipeline: str, optional: bool = False) -> dict:
    """A ``subpipeline`` stage."""
    return {"kind": "subpipeline", "id": stage_id, "title": stage_id, "pipeline": pipeline, "optional": optional}


def pipeline(pipeline_id: str, *stages: dict) -> dict:
    return {"id": pipeline_id, "title": f"{pipeline_id} pipeline", "stages": list(stages)}


def write_config(root: Path, *pipelines: dict, limits: dict | None = None, name: str = "codex.orchestrator.json") -> Path:
    """Write a config in Codex Orchestrator's format (plus the optional ``runjournal`` limits)."""
    doc: dict = {"pipelines": list(pipelines)}
    if limits is not None:
        doc["runjournal"] = limits
    path = root / name
    path.write_text(json.dumps(doc, indent=2))
    return path


#: limits that keep crash and cancel tests quick
FAST = {"heartbeatIntervalSeconds": 1, "heartbeatStaleAfterSeconds": 2, "cancelGraceSeconds": 1}


# -- the CLI as a process ------------------------------------------------------------


def argv(root: Path, *args) -> list[str]:
    return [sys.executable, "-m", "runjournal", "--root", str(root), *map(str, args)]


def cli(root: Path, *args, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the CLI to its end; text output captured."""
    return subprocess.run(argv(root, *args), capture_output=True, text=True, cwd=root, env=clean_env(), timeout=timeout)


def spawn(root: Path, *args, name: str = "runner") -> subprocess.Popen:
    """Start the CLI in the background; its stdout and stderr go to ``root/<name>.out|.err``.

    Files, not pipes: nobody has to drain them, so the runner never blocks on its own output.
    """
    out = open(root / f"{name}.out", "wb")
    err = open(root / f"{name}.err", "wb")
    try:
        return subprocess.Popen(argv(root, *args), stdout=out, stderr=err, cwd=root, env=clean_env(), stdin=subprocess.DEVNULL)
    finally:
        out.close()
        err.close()


def finish(proc: subprocess.Popen, timeout: float = DEADLINE) -> int:
    """Wait for a spawned process; fail (after killing it) if it outlives ``timeout``."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"process {proc.args} did not end within {timeout:.0f} s") from None


# A lean launcher: the kernel counts the RSS a child had before exec (a copy of its parent's,
# here pytest's) in its ru_maxrss, so the runner is forked from this small process instead
# of from pytest, and the launcher reports the runner's own peak.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable] + sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def spawn_measured(root: Path, *args, name: str = "runner") -> subprocess.Popen:
    """Like ``spawn``, through a lean launcher that writes the runner's peak RSS (KiB) to ``<name>.rss``."""
    out = open(root / f"{name}.out", "wb")
    err = open(root / f"{name}.err", "wb")
    cmd = [sys.executable, "-c", _LAUNCHER, str(root / f"{name}.rss"), *argv(root, *args)[1:]]
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=err, cwd=root, env=clean_env(), stdin=subprocess.DEVNULL)
    finally:
        out.close()
        err.close()


def wait_rss(proc: subprocess.Popen, root: Path, name: str, timeout: float = DEADLINE) -> tuple[int, int]:
    """Wait for a ``spawn_measured`` process: its exit code and the runner's peak RSS in KiB."""
    code = finish(proc, timeout)
    return code, int((root / f"{name}.rss").read_text())


def output(root: Path, name: str = "runner") -> tuple[str, str]:
    return (root / f"{name}.out").read_text(), (root / f"{name}.err").read_text()


# -- processes -----------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an unreaped zombie has finished running)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(int(name))
            if fields is not None and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                pids.append(int(name))
    return pids


def kill_group(pgid: int) -> None:
    """Clean-up for tests that leave a stage's group orphaned (runner SIGKILLed)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def read_pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


# -- run files -----------------------------------------------------------------------


def task_dir(root: Path, task: str = "default") -> Path:
    return root / ".runs" / task


def run_dirs(root: Path, task: str = "default") -> list[str]:
    cli_dir = task_dir(root, task) / "cli"
    return sorted(os.listdir(cli_dir)) if cli_dir.is_dir() else []


def validate_manifest(doc: dict) -> None:
    """Check ``doc`` against the Codex Orchestrator manifest schema (the test skips, saying so,
    where ../shared/compat is absent: never a check passed unchecked)."""
    global _validator
    if _validator is None:
        import jsonschema  # a test dependency: pip install -e '.[test]'

        _validator = jsonschema.Draft7Validator(json.loads(compat_file("manifest.schema.json").read_text()))
    errors = sorted(_validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "manifest does not match the schema:\n" + "\n".join(f"  at {list(e.path)}: {e.message}" for e in errors)


def manifest(root: Path, run_id: str, task: str = "default") -> dict:
    """The run's manifest, validated against the schema."""
    doc = json.loads((task_dir(root, task) / "cli" / run_id / "manifest.json").read_text())
    validate_manifest(doc)
    return doc


def metrics(root: Path, task: str = "default") -> list[dict]:
    path = task_dir(root, task) / "metrics.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def token_file(root: Path, run_id: str, task: str = "default") -> Path:
    return task_dir(root, task) / ".tokens" / run_id


def journal_bytes(root: Path, task: str = "default") -> int:
    """Size of everything in the task's journal directory."""
    total = 0
    for dirpath, _, files in os.walk(task_dir(root, task) / "journal"):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total


def stage_env(path: Path) -> dict[str, str]:
    """The ``env`` output a stage wrote to ``path`` (one NAME=value a line; values without newlines)."""
    env = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep:
            env[name] = value
    return env


def project(root: Path, task: str = "default") -> subprocess.CompletedProcess:
    """``runjournal project --task T``: one catch-up by an observer, which also marks silent runs stale."""
    return cli(root, "project", "--task", task)


# -- a crashed run -------------------------------------------------------------------

#: stage 2 blocks the first time (after writing its process group to slow.pid); on a later
#: attempt it runs on-resume.sh if the test wrote one, else passes. Stages 1 and 3 count their runs.
CRASH_PIPELINE = pipeline(
    "crashy",
    cmd("one", "echo x >> count-1"),
    cmd(
        "two",
        "echo x >> count-2; if [ -e slow.pid ]; then [ ! -e on-resume.sh ] || sh on-resume.sh; exit $?; fi; "
        "echo $$ > slow.pid.tmp && mv slow.pid.tmp slow.pid; exec sleep 300",
    ),
    cmd("three", "echo x >> count-3"),
)


def runs_of(root: Path, name: str) -> int:
    """How many times a CRASH_PIPELINE stage ran (lines in its counter file)."""
    path = root / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def crashed_run(root: Path, limits: dict | None = None) -> str:
    """Start CRASH_PIPELINE, SIGKILL the runner while stage 2 runs, clean up the orphaned stage.

    Returns the run id. The journal holds the run as started and never finished.
    """
    write_config(root, CRASH_PIPELINE, limits=limits)
    proc = spawn(root, "start", name="crashed")
    pid_file = wait_until(lambda: (root / "slow.pid").exists() and root / "slow.pid", "stage 2 to start")
    proc.send_signal(signal.SIGKILL)
    assert finish(proc) == -signal.SIGKILL
    pgid = int(pid_file.read_text())
    kill_group(pgid)  # the runner died without cancelling: its stage lives on, orphaned
    wait_until(lambda: not group_members(pgid), "the orphaned stage to die")
    run_id = (root / "crashed.out").read_text().split()[1]
    return run_id
