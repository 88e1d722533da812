"""``runjournal bench``: this machine's limits and the journal against them, in one run.

Every baseline runs in the same process run as what it is compared with, on the same
payloads, interleaved (A, B, A, B ...), and the median of the repetitions is reported.
Concurrent figures use real processes released together by a barrier, and what they
wrote is read back and checked; lost and corrupt counts are measured, never assumed.

Every measure is repeated (``REPS``); its spread (min, median, max) is reported, and a machine
that looked busy (load average above the core count at the start or the end, or repetitions
of a measure that disagree by more than ``DISAGREE`` times) is warned about.
"""

from __future__ import annotations

import fcntl
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import click

from runjournal.journal import FileStore, Layout, open_store
from runjournal.journal import events as ev
from runjournal.journal.events import Record, encoder
from runjournal.projections.render import percentile

from .context import format_option, pass_settings
from .output import echo, emit_json, table

PAYLOAD = b"x" * 120  # a record of about 170 bytes, as PERFORMANCE.md's figures use
REPS = 3
#: repetitions of one measure whose fastest is more than this many times its slowest: the
#: machine was doing something else
DISAGREE = 2.0


EVENT = ev.OutputChunk(index=1, stream="stdout", data=PAYLOAD)


def raw_append(path: str, n: int) -> float:
    """flock + encode + write + unlock per event, descriptors held open: the machine's limit."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    event = EVENT
    t0 = time.perf_counter()
    for i in range(n):
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.write(fd, encoder.encode(Record(i, "bench", i, time.time_ns(), event)))
        fcntl.flock(lock, fcntl.LOCK_UN)
    dt = time.perf_counter() - t0
    os.close(fd)
    os.close(lock)
    return n / dt


def raw_fsync(path: str, n: int) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    data = encoder.encode(Record(0, "bench", 0, time.time_ns(), EVENT))
    t0 = time.perf_counter()
    for _ in range(n):
        os.write(fd, data)
        os.fdatasync(fd)
    dt = time.perf_counter() - t0
    os.close(fd)
    return n / dt


def journal_append(runs_dir: str, mode: str, n: int) -> float:
    """One event per call through the store's API, as the runner appends heartbeats and stages."""
    with FileStore(runs_dir, durability=mode) as store:
        event = EVENT
        append = store.append
        append("bench", "warmup", event)
        t0 = time.perf_counter()
        for _ in range(n):
            append("bench", "bench", event)
        return n / (time.perf_counter() - t0)


def _journal_worker(runs_dir: str, run_id: str, n: int, durability: str = "batch", *, barrier) -> None:
    with FileStore(runs_dir, durability=durability) as store:
        store.run_seq("bench", run_id)  # open (and catch up) before the clock starts
        barrier.wait()
        for i in range(n):
            store.append("bench", run_id, ev.OutputChunk(index=1, stream="stdout", data=PAYLOAD[:100] + b"%019d" % i))


def _raw_worker(path: str, run_id: str, n: int, sync: bool = False, *, barrier) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    barrier.wait()
    for i in range(n):
        data = encoder.encode(Record(i, run_id, i, time.time_ns(), ev.OutputChunk(index=1, stream="stdout", data=PAYLOAD[:100] + b"%019d" % i)))
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.write(fd, data)
        if sync:
            os.fdatasync(fd)  # the raw ceiling of `always`: write and fdatasync under the lock
        fcntl.flock(lock, fcntl.LOCK_UN)


def _together(target, args_for, writers: int) -> float:
    """Start ``writers`` processes, release them at once, time from the barrier to the last exit."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(writers + 1)
    procs = [ctx.Process(target=target, args=args_for(w), kwargs={"barrier": barrier}) for w in range(writers)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=120)  # a writer that died before the barrier breaks it, never hangs the bench
    except threading.BrokenBarrierError:
        for p in procs:
            p.kill()
            p.join()
        raise RuntimeError(f"benchmark writers did not all start (exit codes {[p.exitcode for p in procs if p.exitcode][:5]})") from None
    t0 = time.perf_counter()
    for p in procs:
        p.join()
    dt = time.perf_counter() - t0
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} benchmark writer(s) failed (exit codes {bad[:5]})")
    return dt


def concurrent(workdir: str, writers: int, total: int) -> dict:
    per = max(1, total // writers)
    runs = os.path.join(workdir, "concurrent-runs")
    raw = os.path.join(workdir, "concurrent-raw.bin")
    dt_journal = _together(_journal_worker, lambda w: (runs, f"writer-{w}", per), writers)
    dt_raw = _together(_raw_worker, lambda w: (raw, f"writer-{w}", per), writers)
    # read back: every writer's events exactly once, in order
    seen: dict[str, int] = {}
    lost = 0
    store = FileStore(runs)
    for rec in store.records("bench"):
        expect = seen.get(rec.run_id, 0)
        if rec.run_seq != expect + 1 or not rec.event.data.endswith(b"%019d" % expect):
            lost += 1
        seen[rec.run_id] = rec.run_seq
    lost += sum(per - seen.get(f"writer-{w}", 0) for w in range(writers))
    report = store.check("bench")
    return {
        "writers": writers,
        "events_per_s": round(per * writers / dt_journal),
        "raw_events_per_s": round(per * writers / dt_raw),
        "lost": lost,
        "corrupt": len(report.problems),
    }


def concurrent_always(workdir: str, writers: int, total: int) -> dict:
    """W processes appending in ``always`` to one journal, against the same processes doing
    write + fdatasync under flock (the raw ceiling); read back and checked as ``concurrent``."""
    per = max(1, total // writers)
    runs = os.path.join(workdir, "always-runs")
    raw = os.path.join(workdir, "always-raw.bin")
    dt_journal = _together(_journal_worker, lambda w: (runs, f"writer-{w}", per, "always"), writers)
    dt_raw = _together(_raw_worker, lambda w: (raw, f"writer-{w}", per, True), writers)
    seen: dict[str, int] = {}
    lost = 0
    store = FileStore(runs)
    for rec in store.records("bench"):
        expect = seen.get(rec.run_id, 0)
        if rec.run_seq != expect + 1:
            lost += 1
        seen[rec.run_id] = rec.run_seq
    lost += sum(per - seen.get(f"writer-{w}", 0) for w in range(writers))
    return {
        "writers": writers,
        "events_per_s": round(per * writers / dt_journal),
        "raw_events_per_s": round(per * writers / dt_raw),
        "lost": lost,
        "corrupt": len(store.check("bench").problems),
    }


def runner_stages(workdir: str, stages: int = 100, reps: int = 3, each: list[float] | None = None) -> dict:
    """A pipeline of ``stages`` stages of `true` run by `runjournal start` (a fresh root each
    time), against the spawn floor: Python starting `/bin/sh -c true` as many times.
    ``each`` gets the seconds of every repetition of the pipeline."""
    import json

    floor_code = f"import subprocess\nfor _ in range({stages}): subprocess.run(['/bin/sh', '-c', 'true'])"
    config = {"pipelines": [{"id": "bench", "title": "bench", "stages": [
        {"kind": "command", "id": f"s{i}", "title": f"s{i}", "command": "true"} for i in range(1, stages + 1)]}]}  # fmt: skip
    runs, floors = [], []
    for rep in range(reps):
        root = os.path.join(workdir, f"stages-{rep}")
        os.makedirs(root)
        with open(os.path.join(root, "codex.orchestrator.json"), "w") as f:
            json.dump(config, f)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", floor_code], check=True)
        floors.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "runjournal", "--root", root, "start"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        runs.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise RuntimeError(f"the {stages}-stage pipeline failed: {done.stderr.decode(errors='replace').strip()}")
    if each is not None:
        each.extend(runs)
    run, floor = statistics.median(runs), statistics.median(floors)
    return {"stages": stages, "seconds": round(run, 3), "spawn_floor_seconds": round(floor, 3), "ratio": round(run / floor, 2)}


def build_rebuild_journal(runs_dir: str, task: str, events: int) -> int:
    """A realistic mix: runs of 5 stages with output, heartbeats every few events, one end each."""
    per_run = 1000
    stages = tuple(ev.StagePlan(id=f"stage-{i}", title=f"Stage {i}", command=f"make step{i}") for i in range(1, 6))
    written = 0
    t = time.time_ns() - events * 1_000_000
    with FileStore(runs_dir, durability="none") as store:
        j = store.writer(task)  # batches of a whole run: the writer of the task, once
        run = 0
        while written < events:
            run += 1
            rid = f"2025-01-01T00-00-00-000Z-{run:08x}"
            batch = [(rid, ev.RunStarted(task_id="bench", pipeline_id="bench", pipeline_title="Bench", stages=stages), t)]
            body = min(per_run, events - written) - 2
            for k in range(max(0, body)):
                t += 1_000_000
                stage, pos = divmod(k, max(1, body // 5))
                stage = min(stage, 4) + 1
                if pos == 0:
                    e = ev.StageStarted(index=stage, stage_id=f"stage-{stage}")
                elif pos == 1 and stage > 1:
                    e = ev.StageFinished(index=stage - 1, stage_id=f"stage-{stage - 1}", summary="ok")
                elif k % 5 == 0:
                    e = ev.OutputChunk(index=stage, stream="stdout", data=b"line of build output %d\n" % k)
                else:
                    e = ev.Heartbeat()
                batch.append((rid, e, t))
            batch.append((rid, ev.RunCompleted(summary="done"), t + 1))
            j.append_batch(batch[: events - written])
            written += min(len(batch), events - written)
    return written


def rebuild(workdir: str, events: int, reps: int = 1) -> list[tuple[float, float]]:
    """``project --rebuild`` in a child process, ``reps`` times on one journal, each from no
    projection files (as the first): events/s and the child's peak RSS in MB, each time."""
    runs = os.path.join(workdir, "rebuild-runs")
    layout = Layout(runs, os.path.join(workdir, "rebuild-out"))
    n = build_rebuild_journal(runs, "bench", events)
    results = []
    for _ in range(reps):
        _without_projections(os.path.join(runs, "bench"), layout.out_dir)
        results.append(timed_rebuild(["--runs-dir", runs, "--out-dir", layout.out_dir, "project", "--task", "bench", "--rebuild"], n))
    return results


def _without_projections(task_dir: str, out_dir: str) -> None:
    """Remove what a rebuild wrote (everything of the task but its journal), between repetitions."""
    for name in os.listdir(task_dir):
        if name != "journal":
            path = os.path.join(task_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
    shutil.rmtree(out_dir, ignore_errors=True)


def timed_rebuild(args: list[str], events: int) -> tuple[float, float]:
    """``runjournal ARGS`` (a rebuild) in a child process: events/s and its peak RSS in MB."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "runjournal", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"rebuild failed: {proc.stderr.read().decode(errors='replace').strip()}")
    proc.stderr.close()
    return events / dt, usage.ru_maxrss / 1024


def live_latency(workdir: str, samples: int, url: str | None = None, each: list[float] | None = None) -> dict:
    """Append -> manifest replaced on disk, with `watch` running as a separate process (on the
    file store of a scratch runs directory, or on the store at ``url``). ``each`` gets every
    sample (ms)."""
    runs = os.path.join(workdir, "live-runs")
    layout = Layout(runs, os.path.join(workdir, "live-out"))
    rid = "2025-01-01T00-00-00-000Z-0000live"
    stages = tuple(ev.StagePlan(id=f"s{i}", title=f"s{i}", command="true") for i in range(1, samples + 1))
    store = open_store(url) if url else FileStore(runs)
    store.append("live", rid, ev.RunStarted(task_id="live", pipeline_id="live", stages=stages))
    manifest = layout.manifest_path("live", rid)
    where = ["--store", url] if url else []
    cmd = [sys.executable, "-m", "runjournal", *where, "--runs-dir", runs, "--out-dir", layout.out_dir, "watch", "--task", "live"]
    watcher = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lat = []
    try:
        _wait_for(lambda: os.path.exists(manifest), 30.0)
        for i in range(1, samples + 1):
            before = os.stat(manifest).st_ino
            store.append("live", rid, ev.StageStarted(index=i, stage_id=f"s{i}"))
            t0 = time.perf_counter()
            _wait_for(lambda: os.stat(manifest).st_ino != before, 10.0, pause=0.0002)
            lat.append((time.perf_counter() - t0) * 1000)
    finally:
        watcher.terminate()
        watcher.wait(30)
        store.close()
    if each is not None:
        each.extend(lat)
    return spread(lat)


def spread(ms: list[float]) -> dict:
    """p50, p90, p99 and max of latencies in ms."""
    ms = sorted(ms)
    return {"p50": round(percentile(ms, 50), 2), "p90": round(percentile(ms, 90), 2), "p99": round(percentile(ms, 99), 2), "max": round(ms[-1], 2)}


def _wait_for(cond, timeout: float, pause: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for the projection")
        time.sleep(pause)


def run_bench(events: int, writers: int, workdir: str, say) -> dict:
    single = min(events, 100_000)
    synced = 500
    results: dict[str, list[float]] = {k: [] for k in ("raw", "none", "batch", "raw_fsync", "always")}
    for rep in range(REPS):
        say(f"single writer, repetition {rep + 1}/{REPS}")
        d = os.path.join(workdir, f"single-{rep}")
        os.makedirs(d)
        results["raw"].append(raw_append(os.path.join(d, "raw.bin"), single))
        results["none"].append(journal_append(os.path.join(d, "none"), "none", single))
        results["batch"].append(journal_append(os.path.join(d, "batch"), "batch", single))
        results["raw_fsync"].append(raw_fsync(os.path.join(d, "fsync.bin"), synced))
        results["always"].append(journal_append(os.path.join(d, "always"), "always", synced))
        shutil.rmtree(d)
    med = {k: round(statistics.median(v)) for k, v in results.items()}
    conc = _repeated(f"{writers} concurrent writers", say, workdir, lambda d: concurrent(d, writers, min(events, 200_000)))
    conc_always = _repeated(f"{writers} concurrent writers in always", say, workdir, lambda d: concurrent_always(d, writers, min(events, 20_000)))
    say(f"a pipeline of 100 stages against the spawn floor, {REPS} repetitions")
    stage_seconds: list[float] = []
    stages = runner_stages(workdir, reps=REPS, each=stage_seconds)
    say(f"rebuild of {events} events, {REPS} repetitions")
    rebuilds = rebuild(workdir, events, reps=REPS)
    rate = statistics.median(r for r, _ in rebuilds)
    rss = max(m for _, m in rebuilds)
    lat_each: list[list[float]] = []

    def live(d: str) -> dict:
        lat_each.append([])
        return live_latency(d, 200, each=lat_each[-1])

    _repeated("live latency through watch", say, workdir, live)
    return {
        "events": events,
        "writers": writers,
        "raw_append_per_s": med["raw"],
        "raw_fsync_per_s": med["raw_fsync"],
        "append_per_s": {"none": med["none"], "batch": med["batch"], "always": med["always"]},
        "concurrent": _median_doc(conc),
        "concurrent_always": _median_doc(conc_always),
        "runner_stages": stages,
        "rebuild_events_per_s": round(rate),
        "rebuild_peak_rss_mb": round(rss, 1),
        "live_latency_ms": spread([ms for samples in lat_each for ms in samples]),  # every repetition's samples
        "spread": {
            "raw_append_per_s": _spread(results["raw"]),
            "append_per_s.none": _spread(results["none"]),
            "append_per_s.batch": _spread(results["batch"]),
            "raw_fsync_per_s": _spread(results["raw_fsync"]),
            "append_per_s.always": _spread(results["always"]),
            "concurrent.events_per_s": _spread([c["events_per_s"] for c in conc]),
            "concurrent.raw_events_per_s": _spread([c["raw_events_per_s"] for c in conc]),
            "concurrent_always.events_per_s": _spread([c["events_per_s"] for c in conc_always]),
            "concurrent_always.raw_events_per_s": _spread([c["raw_events_per_s"] for c in conc_always]),
            "runner_stages.seconds": _spread(stage_seconds, digits=3),
            "rebuild_events_per_s": _spread([r for r, _ in rebuilds]),
            "live_latency_ms.p50": _spread([spread(samples)["p50"] for samples in lat_each], digits=2),
        },
    }


def _repeated(what: str, say, workdir: str, measure) -> list:
    """``measure(directory)`` REPS times, each in a fresh scratch directory (removed after)."""
    done = []
    for rep in range(REPS):
        say(f"{what}, repetition {rep + 1}/{REPS}")
        d = tempfile.mkdtemp(prefix=f"rep{rep + 1}-", dir=workdir)
        try:
            done.append(measure(d))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return done


def _median_doc(docs: list[dict]) -> dict:
    """Repetitions of a concurrent measure as one: rates the median, lost and corrupt the sums."""
    merged = dict(docs[0])
    for key in ("events_per_s", "raw_events_per_s"):
        merged[key] = round(statistics.median(d[key] for d in docs))
    for key in ("lost", "corrupt"):
        merged[key] = sum(d[key] for d in docs)
    return merged


def _spread(values: list[float], digits: int = 0) -> dict:
    def r(x: float):
        return round(x, digits) if digits else round(x)

    return {"min": r(min(values)), "median": r(statistics.median(values)), "max": r(max(values)), "reps": len(values)}


def load_average() -> float | None:
    """The 1-minute load average (None where the system has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def busy(load_start: float | None, load_end: float | None, n_cores: int, spreads: dict[str, dict]) -> list[str]:
    """Why the figures may say more about other work on the machine than about runjournal."""
    reasons = [
        f"load average {load} at the {when}, above the {n_cores} core(s)"
        for when, load in (("start", load_start), ("end", load_end))
        if load is not None and load > n_cores
    ]
    for name, s in spreads.items():
        low, high = sorted((s["min"], s["max"]))
        if high > DISAGREE * low:
            reasons.append(f"{name} repetitions disagree by {high / low if low else float('inf'):.1f}x ({s['min']} to {s['max']})")
    return reasons


@click.command()
@click.option("--events", type=click.IntRange(min=1000), default=1_000_000, show_default=True, help="Events for the rebuild (and the cap for the other parts).")
@click.option("--writers", type=click.IntRange(min=1, max=512), default=50, show_default=True, help="Concurrent writer processes.")
@click.option("--dir", "workdir", type=click.Path(file_okay=False), help="Scratch directory (default: a temporary one, removed afterwards).")
@format_option
@pass_settings
def bench(settings, events, writers, workdir, fmt):
    """Measure this machine: raw limits and the journal against them, in one run.

    Example: runjournal bench --events 200000 --writers 16 --format json
    """
    say = (lambda m: echo(m, err=True))
    server = settings.store_url if (settings.store_url or "").startswith(("postgresql://", "postgres://")) else None
    scratch = tempfile.mkdtemp(prefix="runjournal-bench-", dir=workdir)
    load_start = load_average()
    try:
        if server:
            from .bench_pg import run_pg_bench

            result = run_pg_bench(server, events, writers, scratch, say)
        else:
            result = run_bench(events, writers, scratch, say)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load_end = load_average()
    reasons = busy(load_start, load_end, cores(), result.get("spread", {}))
    result["machine"] = {"cores": cores(), "load_start": load_start, "load_end": load_end, "busy": bool(reasons), "warnings": reasons}
    if reasons:
        echo(f"warning: the machine looked busy, so these figures may not be its own: {'; '.join(reasons)}", err=True)
    if fmt == "json":
        emit_json(result)
        return 0
    if server:
        table(_server_rows(result), ["measure", "figure", "compared"])
        return 0
    a, c, live = result["append_per_s"], result["concurrent"], result["live_latency_ms"]
    ca, st = result["concurrent_always"], result["runner_stages"]
    rows = [
        ["raw flock+write, 1 process", f"{result['raw_append_per_s']:,}/s", ""],
        ["journal append, none", f"{a['none']:,}/s", f"{a['none'] / result['raw_append_per_s']:.2f} x raw"],
        ["journal append, batch", f"{a['batch']:,}/s", f"{a['batch'] / result['raw_append_per_s']:.2f} x raw"],
        ["raw write+fdatasync", f"{result['raw_fsync_per_s']:,}/s", ""],
        ["journal append, always", f"{a['always']:,}/s", f"{a['always'] / result['raw_fsync_per_s']:.2f} x raw fsync"],
        [f"raw, {c['writers']} processes", f"{c['raw_events_per_s']:,}/s", ""],
        [f"journal, {c['writers']} processes", f"{c['events_per_s']:,}/s", f"{c['events_per_s'] / c['raw_events_per_s']:.2f} x raw; lost {c['lost']}, corrupt {c['corrupt']}"],
        [f"raw write+fdatasync under flock, {ca['writers']} processes", f"{ca['raw_events_per_s']:,}/s", ""],
        [f"journal always, {ca['writers']} processes", f"{ca['events_per_s']:,}/s", f"{ca['events_per_s'] / ca['raw_events_per_s']:.2f} x raw; lost {ca['lost']}, corrupt {ca['corrupt']}"],
        [f"{st['stages']} `true` stages (runjournal start)", f"{st['seconds']} s", f"{st['ratio']} x the spawn floor ({st['spawn_floor_seconds']} s)"],
        [f"rebuild of {result['events']:,} events", f"{result['rebuild_events_per_s']:,}/s", f"peak RSS {result['rebuild_peak_rss_mb']} MB"],
        ["append -> manifest via watch", f"p50 {live['p50']} ms", f"p90 {live['p90']} ms, p99 {live['p99']} ms, max {live['max']} ms"],
    ]
    spreads = result["spread"]
    keys = ["raw_append_per_s", "append_per_s.none", "append_per_s.batch", "raw_fsync_per_s", "append_per_s.always", "concurrent.raw_events_per_s",
            "concurrent.events_per_s", "concurrent_always.raw_events_per_s", "concurrent_always.events_per_s", "runner_stages.seconds",
            "rebuild_events_per_s", "live_latency_ms.p50"]  # fmt: skip
    table([row + [_range(spreads[key])] for row, key in zip(rows, keys, strict=True)], ["measure", "figure", "compared", f"min - max of {REPS}"])
    return 0


def _range(s: dict) -> str:
    return f"{s['min']:,} - {s['max']:,}"


def _server_rows(result: dict) -> list[list[str]]:
    a, c, live, follow = result["append_per_s"], result["concurrent"], result["live_latency_ms"], result["follow_latency_ms"]
    raw, raw_sync = result["raw_append_per_s"], result["raw_fsync_per_s"]
    return [
        ["raw INSERT+COMMIT, synchronous_commit off", f"{raw:,}/s", ""],
        ["journal append, none", f"{a['none']:,}/s", f"{a['none'] / raw:.2f} x raw"],
        ["journal append, batch", f"{a['batch']:,}/s", f"{a['batch'] / raw:.2f} x raw"],
        ["raw INSERT+COMMIT, synchronous_commit on", f"{raw_sync:,}/s", ""],
        ["journal append, always", f"{a['always']:,}/s", f"{a['always'] / raw_sync:.2f} x raw on"],
        ["journal append_batch of 1,000", f"{result['batch_append_per_s']:,}/s", ""],
        [f"raw, {c['writers']} processes", f"{c['raw_events_per_s']:,}/s", ""],
        [f"journal, {c['writers']} processes, a task each", f"{c['events_per_s']:,}/s", f"{c['events_per_s'] / c['raw_events_per_s']:.2f} x raw; lost {c['lost']}, corrupt {c['corrupt']}"],
        ["commit -> follower wake-up", f"p50 {follow['p50']} ms", f"p90 {follow['p90']} ms, p99 {follow['p99']} ms, max {follow['max']} ms"],
        [f"rebuild of {result['events']:,} events", f"{result['rebuild_events_per_s']:,}/s", f"peak RSS {result['rebuild_peak_rss_mb']} MB"],
        ["append -> manifest via watch", f"p50 {live['p50']} ms", f"p90 {live['p90']} ms, p99 {live['p99']} ms, max {live['max']} ms"],
    ]
