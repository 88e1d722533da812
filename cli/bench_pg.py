"""``runjournal --store postgresql://… bench``: the PostgreSQL store against the same server's
raw limit, in one run.

The raw baseline is a psycopg loop doing one INSERT and COMMIT per event (the same payload
bytes, into a table of the bench's own schema), with ``synchronous_commit`` off (the
baseline of ``none`` and ``batch``) and on (of ``always``), run by one process and by W
processes released together. Everything runs in a scratch schema that is dropped afterwards;
repetitions are interleaved and the median is reported, as for the file store.
"""

from __future__ import annotations

import os
import shutil
import statistics
import threading
import time
from urllib.parse import urlsplit

from runjournal.journal import Item, Layout, open_store
from runjournal.journal import events as ev
from runjournal.journal.events import encoder
from runjournal.journal.postgres import parse_url, redact

from .bench import EVENT, PAYLOAD, REPS, _together, build_rebuild_journal, live_latency, spread, timed_rebuild

BATCH = 1000


def _scratch(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("schema="))
    return parts._replace(query="&".join(filter(None, [query, f"schema={schema}"]))).geturl()


def _raw_conn(url: str, sync: bool):
    import psycopg

    conninfo, schema = parse_url(url)
    conn = psycopg.connect(conninfo, autocommit=True)
    conn.execute(f"SET synchronous_commit = {'on' if sync else 'off'}")
    return conn, schema


def raw_insert(url: str, n: int, sync: bool, key: str = "raw") -> float:
    """One INSERT and COMMIT per event: the server's limit for one writer."""
    conn, schema = _raw_conn(url, sync)
    data = encoder.encode(EVENT)
    statement = f"INSERT INTO {schema}.raw (k, n, payload) VALUES (%s, %s, %s)"
    try:
        t0 = time.perf_counter()
        for i in range(n):
            conn.execute(statement, (key, i, data))
        return n / (time.perf_counter() - t0)
    finally:
        conn.close()


def journal_append(url: str, mode: str, n: int, task: str = "bench") -> float:
    with open_store(url, durability=mode) as store:
        store.append(task, "warmup", EVENT)
        append = store.append
        t0 = time.perf_counter()
        for _ in range(n):
            append(task, "bench", EVENT)
        return n / (time.perf_counter() - t0)


def batch_append(url: str, n: int) -> float:
    """``append_batch`` of BATCH events per call (durability batch)."""
    with open_store(url) as store:
        items = [Item("batch", EVENT)] * BATCH
        store.append_batch("batch", items[:1])
        t0 = time.perf_counter()
        for _ in range(max(1, n // BATCH)):
            store.append_batch("batch", items)
        return max(1, n // BATCH) * BATCH / (time.perf_counter() - t0)


def _journal_worker(url: str, task: str, n: int, *, barrier) -> None:
    with open_store(url) as store:
        store.prepare(task)
        barrier.wait()
        for i in range(n):
            store.append(task, "writer", ev.OutputChunk(index=1, stream="stdout", data=PAYLOAD[:100] + b"%019d" % i))


def _raw_worker(url: str, key: str, n: int, *, barrier) -> None:
    conn, schema = _raw_conn(url, sync=False)
    statement = f"INSERT INTO {schema}.raw (k, n, payload) VALUES (%s, %s, %s)"
    barrier.wait()
    for i in range(n):
        conn.execute(statement, (key, i, encoder.encode(ev.OutputChunk(index=1, stream="stdout", data=PAYLOAD[:100] + b"%019d" % i))))
    conn.close()


def concurrent(url: str, writers: int, total: int) -> dict:
    """W processes, each appending to a task of its own; the raw loop by W processes."""
    per = max(1, total // writers)
    dt_journal = _together(_journal_worker, lambda w: (url, f"writer-{w}", per), writers)
    dt_raw = _together(_raw_worker, lambda w: (url, f"writer-{w}", per), writers)
    lost = corrupt = 0
    with open_store(url) as store:
        for w in range(writers):
            task = f"writer-{w}"
            got = 0
            for rec in store.records(task):
                if rec.run_seq != got + 1 or not rec.event.data.endswith(b"%019d" % got):
                    lost += 1
                got = rec.run_seq
            lost += per - got
            corrupt += len(store.check(task).problems)
    return {"writers": writers, "events_per_s": round(per * writers / dt_journal), "raw_events_per_s": round(per * writers / dt_raw), "lost": lost, "corrupt": corrupt}


def follow_latency(url: str, samples: int) -> dict:
    """Commit -> a follower's wake-up (``wait``, on another connection, woken by NOTIFY)."""
    lat: list[float] = []
    with open_store(url) as writer, open_store(url) as follower:
        writer.append("follow", "follow", EVENT)
        ready, woke = threading.Event(), threading.Event()
        state = {"after": 1, "t": 0.0}

        def follow() -> None:
            while state["after"] <= samples:
                ready.set()
                if follower.wait("follow", state["after"], 10.0):
                    lat.append((time.perf_counter() - state["t"]) * 1000)
                    state["after"] += 1
                    woke.set()

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        follower._listen()  # listening before the first sample
        time.sleep(0.2)
        for _ in range(samples):
            ready.wait(10)
            ready.clear()
            woke.clear()
            writer.append("follow", "follow", EVENT)
            state["t"] = time.perf_counter()
            woke.wait(10)
        thread.join(10)
    return spread(lat)


def rebuild(url: str, workdir: str, events: int) -> tuple[float, float]:
    """Build a journal on the server from a file one (``append_records``), then time
    ``project --rebuild`` against the server in a child process."""
    runs = os.path.join(workdir, "rebuild-source")
    n = build_rebuild_journal(runs, "bench", events)
    with open_store(runs) as files, open_store(url, durability="none") as server:
        chunk = []
        for rec in files.records("bench"):
            chunk.append(rec)
            if len(chunk) >= 10_000:
                server.append_records("rebuild", chunk)
                chunk = []
        if chunk:
            server.append_records("rebuild", chunk)
    shutil.rmtree(runs)
    layout = Layout(os.path.join(workdir, "rebuild-runs"), os.path.join(workdir, "rebuild-out"))
    return timed_rebuild(["--store", url, "--runs-dir", layout.runs_dir, "--out-dir", layout.out_dir, "project", "--task", "rebuild", "--rebuild"], n)


def run_pg_bench(url: str, events: int, writers: int, workdir: str, say) -> dict:
    import psycopg

    conninfo, _ = parse_url(url)
    schema = f"runjournal_bench_{os.getpid()}_{int(time.time())}"
    scratch = _scratch(url, schema)
    with open_store(scratch) as store:
        store.prepare("bench")  # the schema, made by the store
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {schema}.raw (k text NOT NULL, n bigint NOT NULL, payload bytea NOT NULL, PRIMARY KEY (k, n))")
    try:
        single, synced = min(events, 20_000), min(events, 2_000)
        results: dict[str, list[float]] = {k: [] for k in ("raw", "none", "batch", "raw_fsync", "always", "batched")}
        for rep in range(REPS):
            say(f"single writer, repetition {rep + 1}/{REPS}")
            results["raw"].append(raw_insert(scratch, single, sync=False, key=f"raw-{rep}"))
            results["none"].append(journal_append(scratch, "none", single, f"none-{rep}"))
            results["batch"].append(journal_append(scratch, "batch", single, f"batch-{rep}"))
            results["raw_fsync"].append(raw_insert(scratch, synced, sync=True, key=f"fsync-{rep}"))
            results["always"].append(journal_append(scratch, "always", synced, f"always-{rep}"))
            results["batched"].append(batch_append(scratch, min(events, 100_000)))
        med = {k: round(statistics.median(v)) for k, v in results.items()}
        say(f"{writers} concurrent writers, a task each")
        conc = concurrent(scratch, writers, min(events, 100_000))
        say("follow latency (commit -> wake-up)")
        follow = follow_latency(scratch, 200)
        say(f"rebuild of {events} events")
        rate, rss = rebuild(scratch, workdir, events)
        say("live latency through watch")
        live = live_latency(workdir, 200, url=scratch)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return {
        "store": redact(url),
        "events": events,
        "writers": writers,
        "raw_append_per_s": med["raw"],
        "raw_fsync_per_s": med["raw_fsync"],
        "append_per_s": {"none": med["none"], "batch": med["batch"], "always": med["always"]},
        "batch_append_per_s": med["batched"],
        "concurrent": conc,
        "rebuild_events_per_s": round(rate),
        "rebuild_peak_rss_mb": round(rss, 1),
        "follow_latency_ms": follow,
        "live_latency_ms": live,
    }


__all__ = ["run_pg_bench"]
