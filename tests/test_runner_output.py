"""Output capture: a command may print any amount; the runner's memory and the journal stay small.

Per stream and command at most ``outputCapBytes`` (64 KiB by default) reach memory and the
journal: the first half live, the last half at the end, and an exact count of what was left
out between them, which the log and the manifest's command summary both show.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from helpers.runner_support import cli, cmd, journal_bytes, manifest, pipeline, spawn_measured, wait_rss, write_config

MiB = 1024 * 1024
CAP = 64 * 1024


def printer(n: int) -> str:
    """A command printing a first line, ``n`` bytes of 'x', and a last line, on stdout."""
    return f"printf 'FIRST-LINE\\n'; head -c {n} /dev/zero | tr '\\0' x; printf '\\nLAST-LINE\\n'"


def marker(dropped: int, stream: str, total: int, head: int, tail: int) -> bytes:
    return f"\n[runjournal: {dropped} bytes of {stream} left out here ({total} in all; first {head} and last {tail} kept)]\n".encode()


def run_measured(root: Path, pipeline_id: str) -> tuple[dict, int]:
    """Start ``pipeline_id``; its result and the runner process's peak RSS in KiB."""
    proc = spawn_measured(root, "start", pipeline_id, "--format", "json", name=pipeline_id)
    code, rss = wait_rss(proc, root, pipeline_id, timeout=120)
    result = json.loads((root / f"{pipeline_id}.out").read_text())
    assert code == 0, (root / f"{pipeline_id}.err").read_text()
    return result, rss


def test_50_mb_of_stdout_leaves_memory_flat_and_the_journal_small(tmp_path: Path):
    write_config(tmp_path, pipeline("small", cmd("print", printer(1 * MiB))), pipeline("big", cmd("print", printer(50 * MiB))))
    _, rss_small = run_measured(tmp_path, "small")
    before = journal_bytes(tmp_path)
    result, rss_big = run_measured(tmp_path, "big")
    grown = journal_bytes(tmp_path) - before

    # memory: the runner's own peak (os.wait4 of that process) does not grow with the output
    assert rss_big < 80 * 1024, f"runner peak RSS {rss_big} KiB for 50 MiB of output"
    assert rss_big - rss_small < 16 * 1024, f"peak RSS {rss_small} KiB for 1 MiB, {rss_big} KiB for 50 MiB"
    assert grown < 256 * 1024, f"the journal grew by {grown} bytes for 50 MiB of output"

    total = len("FIRST-LINE\n") + 50 * MiB + len("\nLAST-LINE\n")
    dropped = total - CAP
    doc = manifest(tmp_path, result["run_id"])
    [command] = doc["commands"]
    assert command["summary"] == f"FIRST-LINE; output truncated: {dropped} bytes of stdout left out"
    log = (tmp_path / command["log_path"]).read_bytes()
    mark = marker(dropped, "stdout", total, CAP // 2, CAP // 2)
    assert log == b"FIRST-LINE\n" + b"x" * (CAP // 2 - 11) + mark + b"x" * (CAP // 2 - 11) + b"\nLAST-LINE\n"


def test_1_mb_of_stderr_on_failure_gives_a_small_error_file(tmp_path: Path):
    # 1,000,000 bytes of two- and three-byte characters: excerpts must be cut on character boundaries
    script = "import sys; sys.stderr.write('\\u00e9\\u20ac' * 200000); sys.stderr.flush(); sys.exit(4)"
    write_config(tmp_path, pipeline("p", cmd("noisy", f"{sys.executable} -c \"{script}\"")))
    p = cli(tmp_path, "start", "--format", "json")
    assert p.returncode == 1, p.stderr
    doc = manifest(tmp_path, json.loads(p.stdout)["run_id"])
    [command] = doc["commands"]
    assert (command["status"], command["exit_code"]) == ("failed", 4)
    assert command["summary"].endswith(f"output truncated: {1_000_000 - CAP} bytes of stderr left out")

    error_path = tmp_path / command["error_file"]
    assert error_path.stat().st_size <= 10_000
    error = json.loads(error_path.read_text(encoding="utf-8"))
    details = error["details"]
    assert (details["exit_code"], details["signal"], details["stderr_truncated"], details["stderr_total_bytes"]) == (4, None, True, 1_000_000)
    stderr = details["stderr"].encode()
    assert 0 < len(stderr) <= 8192
    assert ("\u00e9\u20ac" * 200000).endswith(details["stderr"])  # the end of the output, whole characters only
    for value in (error["command"], error["reason"]):
        assert len(value.encode()) <= 8192


def test_caps_are_configurable_and_both_pipes_are_read_as_they_come(tmp_path: Path):
    # 3 MB on stderr before anything on stdout: a runner reading one pipe at a time would deadlock
    command = "head -c 3000000 /dev/zero | tr '\\0' e >&2; seq 1 100000; exit 1"
    write_config(tmp_path, pipeline("p", cmd("both", command)), limits={"outputCapBytes": 4096, "stderrExcerptBytes": 512})
    p = cli(tmp_path, "start", "--format", "json")
    assert p.returncode == 1, p.stderr
    doc = manifest(tmp_path, json.loads(p.stdout)["run_id"])
    [command] = doc["commands"]
    numbers = "".join(f"{n}\n" for n in range(1, 100001)).encode()
    assert command["summary"] == (
        f"1; output truncated: {len(numbers) - 4096} bytes of stdout left out; output truncated: {3_000_000 - 4096} bytes of stderr left out"
    )
    # heads in the order they arrived (all of stderr came first), then each stream's count and tail
    log = (tmp_path / command["log_path"]).read_bytes()
    assert log == (
        b"e" * 2048
        + numbers[:2048]
        + marker(len(numbers) - 4096, "stdout", len(numbers), 2048, 2048)
        + numbers[-2048:]
        + marker(3_000_000 - 4096, "stderr", 3_000_000, 2048, 2048)
        + b"e" * 2048
    )
    error = json.loads((tmp_path / command["error_file"]).read_text())
    assert error["details"]["stderr"] == "e" * 512
    assert error["details"]["stderr_truncated"] is True


def test_small_output_is_logged_whole(tmp_path: Path):
    write_config(tmp_path, pipeline("p", cmd("hello", "printf 'one\\ntwo\\n'")))
    p = cli(tmp_path, "start", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = manifest(tmp_path, json.loads(p.stdout)["run_id"])
    [command] = doc["commands"]
    assert command["summary"] == "one"
    assert (tmp_path / command["log_path"]).read_bytes() == b"one\ntwo\n"
